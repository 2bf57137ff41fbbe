"""The `hotshard` commands that drive a running local cluster (DESIGN section 8):

    hotshard up [--engines N] [--warm W] [--partitions P] [--symbols A,B] [--no-monitor]
                [--state-file PATH]
    hotshard migrate SYMBOL [--strategy pre-copy|stop-and-copy] [--to ENGINE] [--json]
    hotshard routes [--json]
    hotshard engines [--json]

`up` writes the state file the others read (default .hotshard/cluster.json). `migrate`
starts one execution of the state machine in the cluster's control plane, prints each step
as it enters and leaves it, and exits 0 once the symbol moved, 3 when there was nothing to
move (no hot symbol, the symbol is on that target already, or it has no book yet: no order
was ever sent to it; the reason is printed), 2 when it rolled back, 1 otherwise (rollback
failed, failed after the switch, bad input, timed out); with --json its last line is the
summary."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hotshard import names, route
from hotshard.clients import text
from hotshard.local.control import boto_client, start_execution
from hotshard.local.fleet import engine_label, pool_state
from hotshard.local.up import DEFAULT_STATE_FILE, UpOptions, read_state
from hotshard.migration import plan

EXIT_MIGRATED, EXIT_FAILED, EXIT_ROLLED_BACK, EXIT_NOTHING = 0, 1, 2, 3
POLL_S = 0.2


def _say() -> Callable[[str], None]:
    try:
        from rich.console import Console  # noqa: PLC0415
    except ImportError:
        return lambda line: print(line, flush=True)
    console = Console(stderr=False, highlight=False, soft_wrap=True)
    return lambda line: console.print(line, markup=False)


def _state(args: argparse.Namespace) -> dict[str, Any]:
    try:
        return read_state(Path(args.state_file))
    except FileNotFoundError:
        print(
            f"no cluster: {args.state_file} does not exist (start one: hotshard up)",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_FAILED) from None


def unreachable(exc: BaseException) -> bool:
    """A cluster that does not answer: its Redis or its moto endpoint refuses or times out."""
    import botocore.exceptions  # type: ignore[import-untyped]  # noqa: PLC0415
    import redis  # noqa: PLC0415

    return isinstance(
        exc, (redis.ConnectionError, redis.TimeoutError, botocore.exceptions.ConnectionError)
    )


def says_unreachable(
    run: Callable[[argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    """A cluster command that says, in one line and exit 1, that the cluster does not
    answer (a state file left by a `hotshard up` that was killed, or a wrong --redis)
    instead of a traceback."""

    @functools.wraps(run)
    def command(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except Exception as exc:
            if not unreachable(exc):
                raise
            where = (
                f"--redis {args.redis}"
                if getattr(args, "redis", "")
                else f"the cluster of {args.state_file} (is its `hotshard up` still running?)"
            )
            print(f"no answer from {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_FAILED

    return command


def add_state_file(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-file",
        default=str(DEFAULT_STATE_FILE),
        help=f"the cluster's state file, written by `hotshard up` (default {DEFAULT_STATE_FILE})",
    )


# ---------------------------------------------------------------------- up


def add_up_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engines", type=int, default=2, help="engine processes (default 2)")
    p.add_argument("--warm", type=int, default=1, help="idle warm-pool engines (default 1)")
    p.add_argument("--partitions", type=int, default=4, help="regular partitions (default 4)")
    p.add_argument(
        "--symbols",
        default=",".join(UpOptions.symbols),
        help="symbols to list, comma-separated (default %(default)s)",
    )
    p.add_argument("--no-monitor", action="store_true", help="no alarm monitor: migrate by hand")
    p.add_argument(
        "--broker-storage",
        choices=("memory", "s3"),
        default="memory",
        help="the broker's log: memory (lost when it stops) or s3 (a local S3 of its own, "
        "moto's: a broker restart keeps every acknowledged record) (default %(default)s)",
    )
    add_state_file(p)


def up_command(args: argparse.Namespace) -> int:
    from hotshard.local import up  # noqa: PLC0415 - starts real services

    symbols = tuple(s.strip() for s in args.symbols.split(",") if s.strip())
    options = UpOptions(
        engines=args.engines,
        warm=args.warm,
        partitions=args.partitions,
        symbols=symbols,
        monitor=not args.no_monitor,
        state_file=Path(args.state_file),
        broker_storage=args.broker_storage,
    )
    if args.engines < 1 or args.partitions < args.engines or args.warm < 0:
        print("need --engines >= 1, --partitions >= --engines, --warm >= 0", file=sys.stderr)
        return EXIT_FAILED
    return up.run(options, _say())


# ---------------------------------------------------------------------- migrate


def add_migrate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("symbol", help="the symbol to move")
    p.add_argument(
        "--strategy",
        choices=plan.STRATEGIES,
        default=plan.DEFAULT_STRATEGY,
        help="pre-copy (default: the target follows, a pause of milliseconds) or stop-and-copy",
    )
    p.add_argument("--to", default=None, help="target engine id (default: from the warm pool)")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after S seconds")
    p.add_argument("--json", action="store_true", help="last line: the summary as JSON")
    add_state_file(p)


def _state_of(event: dict[str, Any]) -> dict[str, Any] | None:
    for key in ("stateExitedEventDetails", "stateEnteredEventDetails"):
        details = event.get(key)
        if details and details.get("output" if "Exited" in key else "input"):
            raw = details.get("output") or details.get("input")
            try:
                loaded: dict[str, Any] = json.loads(raw)
                return loaded
            except ValueError:
                return None
    return None


def describe_event(event: dict[str, Any], entered_at: dict[str, float]) -> str | None:
    """One line per step entered or left, per failed task attempt, per end."""
    kind = event["type"]
    at = event["timestamp"]
    stamp = at.timestamp() if hasattr(at, "timestamp") else float(at)
    if kind.endswith("StateEntered"):
        name = event["stateEnteredEventDetails"]["name"]
        entered_at[name] = stamp
        return f"  -> {name}"
    if kind.endswith("StateExited"):
        details = event["stateExitedEventDetails"]
        name = details["name"]
        took = (stamp - entered_at.get(name, stamp)) * 1000
        did = step_detail(name, details.get("output"))
        return f"  ok {name} ({took:.0f} ms{': ' + did if did else ''})"
    if kind == "LambdaFunctionFailed":
        d = event["lambdaFunctionFailedEventDetails"]
        cause = str(d.get("cause", ""))
        with contextlib.suppress(ValueError):
            cause = json.loads(cause).get("errorMessage", cause)
        return f"     {d.get('error')}: {cause[:200]}"
    if kind == "ExecutionFailed":
        d = event["executionFailedEventDetails"]
        return f"  FAILED {d.get('error')}: {d.get('cause', '')}"
    if kind == "ExecutionSucceeded":
        return "  SUCCEEDED"
    return None


def step_detail(name: str, output: str | None) -> str:
    """What TransferSnapshot and ReplayPendingOrders did, from the state they left: their
    names are the seed's, and in pre-copy ReplayPendingOrders replays no pending orders
    (it waits until the target has applied what it held and is durable)."""
    try:
        state = json.loads(output or "")
    except ValueError:
        return ""
    if not isinstance(state, dict):
        return ""
    strategy = (state.get("migration") or {}).get("strategy")
    if name == "TransferSnapshot" and isinstance(state.get("snapshot"), dict):
        snap = state["snapshot"]
        return f"{snap.get('size_bytes', 0)} bytes at offset {snap.get('input_offset')} followed"
    if name == "ReplayPendingOrders" and isinstance(state.get("replay"), dict):
        replay = state["replay"]
        if strategy == "pre-copy":
            replayed = "pre-copy: no pending orders"
        else:
            replayed = f"{replay.get('replayed', 0)} pending replayed"
        durable = "durable" if replay.get("durable") else "not durable"
        return f"{replayed}, {replay.get('held', 0)} held applied, {durable}"
    return ""


def outcome(status: str, error: str | None, last_state: str | None) -> tuple[str, int]:
    """(summary status, exit code) of an ended execution."""
    if status == "SUCCEEDED":
        if last_state == "NothingToMove":
            return "NOTHING_TO_MOVE", EXIT_NOTHING
        return "SUCCEEDED", EXIT_MIGRATED
    if error == names.MIGRATION_ROLLED_BACK:
        return "ROLLED_BACK", EXIT_ROLLED_BACK
    return error or status, EXIT_FAILED


def why_nothing(state: dict[str, Any]) -> str:
    """What DetectHotSymbol said when it found nothing to move (its error's message)."""
    error = state.get("error") or {}
    cause = str(error.get("Cause", ""))
    with contextlib.suppress(ValueError, AttributeError):
        cause = str(json.loads(cause).get("errorMessage", cause))
    return cause or str(error.get("Error", "no reason given"))


@says_unreachable
def migrate_command(args: argparse.Namespace) -> int:
    cluster = _state(args)
    say = _say()
    sfn = boto_client(cluster["aws_endpoint"], cluster.get("aws_region", "us-east-1"))(
        "stepfunctions"
    )
    payload: dict[str, Any] = {"symbol": args.symbol, "strategy": args.strategy}
    if args.to:
        payload["target"] = args.to
    began = time.time()
    arn = start_execution(sfn, cluster["state_machine_arn"], payload)
    say(f"migrating {args.symbol} ({args.strategy}): {arn.rsplit(':', 1)[-1]}")
    seen = 0
    entered_at: dict[str, float] = {}
    last_state: str | None = None
    state: dict[str, Any] = {}
    deadline = time.monotonic() + args.timeout
    described: dict[str, Any] = {}
    while True:
        described = sfn.describe_execution(executionArn=arn)
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
        for event in events[seen:]:
            line = describe_event(event, entered_at)
            if line:
                say(line)
            if event["type"].endswith("StateEntered"):
                last_state = event["stateEnteredEventDetails"]["name"]
            found = _state_of(event)
            if found:
                state = found
        seen = len(events)
        if described["status"] != "RUNNING" and seen:
            break
        if time.monotonic() > deadline:
            say(f"still {described['status']} after {args.timeout:.0f} s; stopping the watch")
            described = {"status": "TIMED_OUT_WATCHING"}
            break
        time.sleep(POLL_S)
    status, code = outcome(described["status"], described.get("error"), last_state)
    if described.get("output"):
        with contextlib.suppress(ValueError):
            state = json.loads(described["output"])
    summary = state.get("cleanup") if status == "SUCCEEDED" else None
    if not isinstance(summary, dict):
        summary = plan.summary(state, status, int(time.time() * 1000))
        if not state.get("migration"):
            summary.update(
                symbol=args.symbol,
                strategy=args.strategy,
                duration_ms=int((time.time() - began) * 1000),
            )
    summary["status"] = status
    if code == EXIT_NOTHING:
        say(f"nothing to move: {why_nothing(state)}")
        say(f"{status}: {summary.get('symbol')} not moved, {summary.get('duration_ms')} ms in all")
    else:
        say(summary_line(status, summary))
    if args.json:
        print(json.dumps({k: summary.get(k) for k in SUMMARY_KEYS}), flush=True)
    return code


def summary_line(status: str, summary: dict[str, Any]) -> str:
    """The last human line of `hotshard migrate` for a move (made or rolled back)."""
    pause = summary.get("pause_ms")
    return (
        f"{status}: {summary.get('symbol')} {summary.get('from')} -> {summary.get('to')}, "
        f"pause {pause if pause is not None else '-'} ms, "
        f"{summary.get('duration_ms')} ms in all, {summary.get('orders_buffered')} orders "
        f"buffered, snapshot {summary.get('snapshot_bytes')} bytes"
    )


SUMMARY_KEYS = (
    "status",
    "symbol",
    "from",
    "to",
    "strategy",
    "pause_ms",
    "duration_ms",
    "orders_buffered",
    "snapshot_bytes",
)


# ---------------------------------------------------------------------- routes, engines


def _redis(cluster: dict[str, Any]) -> Any:
    import redis  # noqa: PLC0415

    return redis.Redis(host=cluster["redis"]["host"], port=int(cluster["redis"]["port"]))


@says_unreachable
def routes_command(args: argparse.Namespace) -> int:
    import redis  # noqa: PLC0415

    address = getattr(args, "redis", "")
    if address:
        host, _, port = address.rpartition(":")
        r = redis.Redis(host=host or "127.0.0.1", port=int(port), ssl=args.tls)
    else:
        r = _redis(_state(args))
    try:
        if getattr(args, "rebuild", False):
            written = route.rebuild_routes(r)
            for w in written:
                print(
                    f"rebuilt {w.symbol}: partition {w.partition} on {w.instance}, epoch {w.epoch}",
                    file=sys.stderr,
                )
            print(f"{len(written)} route(s) rebuilt from the engines' checkpoints", file=sys.stderr)
        rows = [route.lookup(r, s) for s in route.listed_symbols(r)]
    finally:
        r.close()
    table = [
        {
            "symbol": x.symbol,
            "partition": x.partition,
            "instance": x.instance,
            "status": x.status,
            "epoch": x.epoch,
        }
        for x in rows
        if x is not None
    ]
    if args.json:
        print(json.dumps(table))
        return 0
    _print_table(["symbol", "partition", "instance", "status", "epoch"], table)
    return 0


def _claims(cluster: dict[str, Any]) -> dict[str, str]:
    """Engine id -> the migration (or the pool's scale-in) that holds it, from Redis."""
    prefix = names.REDIS_FLEET_CLAIM.format("")
    try:
        r = _redis(cluster)
        try:
            return {
                text(k)[len(prefix) :]: text(r.get(k) or b"")
                for k in r.scan_iter(match=prefix + "*", count=500)
            }
        finally:
            r.close()
    except Exception:
        return {}


def engine_rows(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    from hotshard.migration.engines import EngineClient  # noqa: PLC0415

    claims = _claims(cluster)
    out = []
    for engine in cluster["engines"]:
        row: dict[str, Any] = {
            "id": engine["id"],
            "grpc": engine["grpc"],
            "partitions": engine["partitions"],
            "warm": engine["warm"],
        }
        if engine["id"] in claims:
            row["claimed_by"] = claims[engine["id"]]
        try:
            with EngineClient(engine["grpc"], timeout_s=3.0) as client:
                stats = client.stats()
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
            row["pool"] = pool_state(row)  # None: an engine that does not answer is no one's
            out.append(row)
            continue
        row.update(
            cpu_percent=round(stats.cpu_percent, 1),
            orders_per_second=round(stats.orders_per_second, 1),
            consumer_lag=stats.consumer_lag,
            symbols=[
                {
                    "symbol": s.symbol,
                    "partition": s.partition,
                    "orders_per_second": round(s.orders_per_second, 1),
                    "resting": s.resting_orders,
                    "seq": s.seq,
                    "epoch": s.owner_epoch,
                    "held": s.held,
                }
                for s in stats.symbols
            ],
            shadows=[
                {
                    "symbol": s.symbol,
                    "source_partition": s.source_partition,
                    "lag": s.lag,
                    "seq": s.seq,
                }
                for s in stats.shadows
            ],
            fences=[
                {
                    "symbol": f.symbol,
                    "epoch": f.epoch,
                    "fence_offset": f.fence_offset,
                    "final_seq": f.final_seq,
                    "to_partition": f.to_partition,
                }
                for f in stats.fences
            ],
        )
        row["pool"] = pool_state(row)
        out.append(row)
    return out


def pool_summary(rows: list[dict[str, Any]], warm: int | None, group: dict[str, Any]) -> str:
    """One line under `hotshard engines`: the pool against its size and the group behind it."""
    idle = sum(1 for row in rows if row.get("pool") == "idle")
    taken = sum(1 for row in rows if row.get("pool") == "taken")
    size = f" of --warm {warm}" if warm is not None else ""
    line = f"warm pool: {idle} idle{size}, {taken} taken by a migration"
    if group:
        in_service = sum(
            1 for i in group.get("Instances", []) if i["LifecycleState"] == "InService"
        )
        line += (
            f"; {group.get('AutoScalingGroupName')}: desired {group.get('DesiredCapacity')}, "
            f"max {group.get('MaxSize')}, {in_service} in service"
        )
    return line


def _group(cluster: dict[str, Any]) -> dict[str, Any]:
    name = cluster.get("auto_scaling_group")
    if not name:
        return {}
    try:
        client = boto_client(cluster["aws_endpoint"], cluster.get("aws_region", "us-east-1"))(
            "autoscaling"
        )
        groups = client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        found: dict[str, Any] = groups["AutoScalingGroups"][0]
        return found
    except Exception:
        return {}


def engines_command(args: argparse.Namespace) -> int:
    cluster = _state(args)
    rows = engine_rows(cluster)
    if args.json:
        print(json.dumps(rows))
        return 0
    flat = []
    for row in rows:
        flat.append(
            {
                "engine": engine_label(row),
                "partitions": ",".join(str(p) for p in row["partitions"]),
                "cpu %": row.get("cpu_percent", "-"),
                "orders/s": row.get("orders_per_second", "-"),
                "symbols": " ".join(
                    f"{s['symbol']}@{s['partition']}(seq {s['seq']}, e{s['epoch']})"
                    for s in row.get("symbols", [])
                )
                or row.get("error", ""),
                "shadows": " ".join(
                    f"{s['symbol']}(lag {s['lag']})" for s in row.get("shadows", [])
                ),
                "fences": " ".join(fence_label(f) for f in row.get("fences", [])),
            }
        )
    _print_table(list(flat[0]) if flat else ["engine"], flat)
    print(pool_summary(rows, cluster.get("warm_pool"), _group(cluster)))
    return 0


def fence_label(fence: dict[str, Any]) -> str:
    """A book that left (or is leaving) this engine: the partition it went to, its route
    epoch there, and the last offset of its old partition it applied ("@" names a
    partition in the symbols column, so the offset is not written that way)."""
    return (
        f"{fence['symbol']}->{fence['to_partition']}"
        f"(e{fence['epoch']}, through {fence['fence_offset']})"
    )


def _print_table(columns: list[str], rows: list[dict[str, Any]]) -> None:
    try:
        from rich.console import Console  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415
    except ImportError:
        print("\t".join(columns))
        for row in rows:
            print("\t".join(str(row.get(c, "")) for c in columns))
        return
    table = Table()
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in columns))
    Console().print(table)
