"""`hotshard`: the user's entry point to a local hotshard (docs/ARCHITECTURE.md).

    hotshard demo [--strategy pre-copy|stop-and-copy] [--rate R] [--clients C] [--duration S]
    hotshard demo --no-migrate [--orders N] [--symbols K] ...   hotshard demo --in-process
    hotshard replay --input orders.jsonl --output events.jsonl [--depth-levels N] ...
    hotshard fund USER ASSET AMOUNT [--redis-host H] [--redis-port P]
    hotshard up [--engines N] [--warm W] [--partitions P] [--symbols A,B] [--no-monitor]
    hotshard migrate SYMBOL [--strategy pre-copy|stop-and-copy] [--to ENGINE] [--json]
    hotshard routes [--json]      hotshard engines [--json]

Each command has its own --help. Trading against a running gateway is `hotshard-client`.
"""

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from engine import replay

EPILOG = """\
commands:
  demo     `hotshard up`, WebSocket clients trading, the monitor moving the hot symbol live;
           a live view, a summary and a latency plot (--no-migrate: the edge at speed)
  replay   client orders from a file through the books, every event to a file (a backtest)
  fund     an operator's credit (or debit) of a user's balance in Redis, for local use
  up       a local cluster that keeps running: Tansu, Redis (AOF), engines, a warm pool,
           the gateway, moto's Step Functions running the migration ASL, the alarm monitor
  migrate  move a symbol to another engine through the state machine, steps shown live
  routes   the routing table of the running cluster
  engines  each engine's symbols, shadows and fences (its Stats)
see `hotshard COMMAND --help`; `hotshard-client --help` trades against a running gateway.
"""


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(value: str) -> float:
        number = kind(value)
        if number <= 0:
            raise argparse.ArgumentTypeError("must be positive")
        return number

    return parse


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--orders",
        type=_positive(int),
        default=None,
        help="commands to generate (default 20,000; 500,000 with --in-process)",
    )
    p.add_argument(
        "--symbols", type=_positive(int), default=100, help="number of symbols (default 100)"
    )
    p.add_argument("--seed", type=int, default=7, help="seed of the generated flow (default 7)")
    p.add_argument(
        "--top", type=_positive(int), default=10, help="symbols shown in the summary (default 10)"
    )
    p.add_argument(
        "--clients",
        type=_positive(int),
        default=None,
        help="WebSocket clients sending the flow (default 6; 8 with --no-migrate)",
    )
    p.add_argument(
        "--duration",
        type=_positive(float),
        default=None,
        help="stop sending after this many seconds (default 60: the move and 15 s after it, "
        "whichever is first; 30 with --no-migrate)",
    )
    p.add_argument(
        "--strategy",
        choices=("pre-copy", "stop-and-copy"),
        default="pre-copy",
        help="how the monitor's migration moves the hot symbol (default pre-copy)",
    )
    p.add_argument(
        "--rate",
        type=_positive(float),
        default=300.0,
        help="orders/s the clients offer in the migration demo (default 300)",
    )
    p.add_argument(
        "--no-migrate",
        action="store_true",
        help="the flow at speed through two engines and the edge, no migration (the "
        "edge's figures: acks/s, pushes/s, latency)",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="replay through in-process books only (no broker, Redis or engine processes)",
    )


def demo(args: argparse.Namespace) -> int:
    """`hotshard demo`: the cluster demo, or the in-process one (their live views need the
    `cli` extra: rich)."""
    try:
        from rich.console import Console  # noqa: PLC0415
    except ImportError:
        print("hotshard demo needs its extra: pip install 'hotshard[cli]'", file=sys.stderr)
        return 2
    console = Console(width=None if Console().is_terminal else 120)
    if args.in_process:
        from hotshard.local.demo import matching  # noqa: PLC0415

        orders = args.orders or 500_000
        return matching.run(orders, args.symbols, args.seed, args.top, console)
    if not args.no_migrate:
        from hotshard.local.demo import migration  # noqa: PLC0415 - starts real services

        console.rule(
            f"[bold]hotshard demo: a hot symbol moved live ({args.strategy}) while trading"
        )
        options = migration.DemoOptions(
            strategy=args.strategy,
            clients=args.clients or 6,
            rate=args.rate,
            duration=args.duration or 60.0,
            seed=args.seed,
        )
        return migration.run(options, console)
    from hotshard.local.demo import cluster  # noqa: PLC0415 - starts real services

    console.rule(
        "[bold]hotshard demo: WebSocket clients, the local gateway, Tansu, Redis, two engines"
    )
    return cluster.run(
        args.orders or 20_000,
        args.symbols,
        args.seed,
        args.top,
        console,
        clients=args.clients or 8,
        duration=args.duration or 30.0,
    )


def fund(args: argparse.Namespace) -> int:
    """`hotshard fund`: HINCRBY on balance:{USER} (the API only reads balances)."""
    from hotshard.clients import redis_client  # noqa: PLC0415
    from hotshard.edge.orders import balances  # noqa: PLC0415
    from hotshard.edge.orders import fund as credit  # noqa: PLC0415
    from hotshard.edge.settings import EdgeSettings  # noqa: PLC0415

    settings = EdgeSettings(redis_host=args.redis_host, redis_port=args.redis_port)
    r = redis_client(settings)
    try:
        credit(r, args.user, args.asset, args.amount)
        print(json.dumps({"user_id": args.user, "balances": balances(r, args.user)}))
    finally:
        r.close()
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hotshard",
        description="Run hotshard on this machine: the demo cluster and the backtest tool.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser(
        "demo",
        help="a hot symbol moved live while trading goes on (what `make demo` runs)",
        description="`hotshard up` with three engines and a warm one, WebSocket clients "
        "trading a flow in which HOT takes half the orders, the monitor migrating HOT by "
        "itself (--strategy), a live view, a summary and a plot (last line: `plot: PATH`). "
        "--no-migrate: the flow at speed through two engines, acks, pushes, latency. "
        "--in-process: the books alone.",
    )
    _demo_arguments(d)
    d.set_defaults(run=demo)
    r = sub.add_parser(
        "replay",
        help="replay client orders through the books, write every event (a backtest)",
        description=replay.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_arguments(r)
    r.set_defaults(run=replay.run)
    from hotshard.local import commands  # noqa: PLC0415

    u = sub.add_parser(
        "up",
        help="start a local cluster and keep it running (writes .hotshard/cluster.json)",
        description=commands.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands.add_up_arguments(u)
    u.set_defaults(run=commands.up_command)
    m = sub.add_parser(
        "migrate",
        help="move SYMBOL through the migration state machine of the running cluster",
        description=commands.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands.add_migrate_arguments(m)
    m.set_defaults(run=commands.migrate_command)
    for name, run, what in (
        ("routes", commands.routes_command, "the routing table"),
        ("engines", commands.engines_command, "each engine's Stats: symbols, shadows, fences"),
    ):
        q = sub.add_parser(
            name,
            help=f"{what} of the running cluster",
            description=f"{what[0].upper()}{what[1:]} of the cluster `hotshard up` runs "
            "(found through its state file): a table, or with --json one JSON line. Exit 1 "
            "when the cluster does not answer.",
        )
        q.add_argument("--json", action="store_true", help="JSON instead of a table")
        commands.add_state_file(q)
        if name == "routes":
            q.add_argument(
                "--rebuild",
                action="store_true",
                help="first re-list every symbol the engines' checkpoints name that has no "
                "route (a Redis that came back empty); existing routes are kept",
            )
            q.add_argument(
                "--redis",
                default="",
                metavar="HOST:PORT",
                help="this Redis instead of the state file's (e.g. ElastiCache, with "
                "--tls); docs/DEPLOY.md",
            )
            q.add_argument("--tls", action="store_true", help="Redis over TLS")
        q.set_defaults(run=run)
    f = sub.add_parser(
        "fund",
        help="credit (or, negative, debit) a user's balance: an operator's tool",
        description="Add AMOUNT of ASSET (CASH, or a symbol's lots) to balance:{USER} in Redis "
        "and print the user's balances. Orders reserve against it when the edge runs with "
        "BALANCE_CHECK=true; clients read it with GET /balance but cannot change it.",
    )
    f.add_argument("user", help="the user id (the token's sub)")
    f.add_argument("asset", help="CASH or a symbol")
    f.add_argument("amount", type=int, help="integer amount to add (negative: take)")
    f.add_argument(
        "--redis-host",
        default=os.environ.get("REDIS_HOST", "127.0.0.1"),
        help="Redis host (env REDIS_HOST; default 127.0.0.1)",
    )
    f.add_argument(
        "--redis-port",
        type=int,
        default=int(os.environ.get("REDIS_PORT", "6379")),
        help="Redis port (env REDIS_PORT; default 6379)",
    )
    f.set_defaults(run=fund)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
