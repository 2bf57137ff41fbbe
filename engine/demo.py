"""The demo: generate a realistic multi-symbol order flow and send it through a local
cluster (Tansu, Redis, two engine processes, the local API Gateway) with several WebSocket
clients, then show what happened (engine/cluster_demo.py). `--in-process` replays the flow
through in-process books only.

    python -m engine.demo [--orders N] [--symbols K] [--clients C] [--duration S] [--seed S]

The flow is Zipf-skewed across symbols (the hottest takes ~40%): passive limits near the
touch, cancels of live orders, marketable limits and market orders (engine/flow.py).
"""

import argparse
import time
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.book import Market
from engine.flow import Stream, zipf_stream
from engine.runtime import tune_gc
from hotshard.events import KIND, STATUS, STATUS_CODE, TRADE

CHUNK = 10_000


@dataclass
class SymbolTally:
    orders: int = 0
    trades: int = 0
    volume: int = 0
    statuses: Counter[int] = field(default_factory=Counter)


def replay(
    stream: Stream, market: Market, progress: Progress
) -> tuple[dict[str, SymbolTally], float]:
    """Apply the stream; returns per-symbol tallies and the seconds spent in the books."""
    tallies: dict[str, SymbolTally] = {}
    task = progress.add_task("matching", total=len(stream))
    busy = 0.0
    for start in range(0, len(stream), CHUNK):
        chunk = stream[start : start + CHUNK]
        began = time.perf_counter()
        results = [(symbol, market.apply(symbol, command)) for symbol, command in chunk]
        busy += time.perf_counter() - began
        for symbol, events in results:
            tally = tallies.get(symbol) or tallies.setdefault(symbol, SymbolTally())
            tally.orders += 1
            for event in events:
                if event[KIND] == TRADE:
                    tally.trades += 1
                    tally.volume += event[5]
                elif event[KIND] == STATUS:
                    tally.statuses[int(event[STATUS_CODE])] += 1
        progress.advance(task, len(chunk))
    return tallies, busy


def summary(market: Market, tallies: dict[str, SymbolTally], busy: float, top: int) -> Table:
    total = sum(t.orders for t in tallies.values())
    table = Table(title=f"hottest {top} symbols of {len(tallies)}", title_justify="left")
    for column in (
        "symbol",
        "orders",
        "share",
        "orders/s",
        "trades",
        "volume",
        "filled",
        "cancelled",
        "resting",
        "best bid",
        "best ask",
    ):
        table.add_column(column, justify="left" if column == "symbol" else "right")
    ranked = sorted(tallies.items(), key=lambda item: (-item[1].orders, item[0]))[:top]
    for symbol, tally in ranked:
        book = market.books[symbol]
        bid, ask = book.bbo()
        table.add_row(
            symbol,
            f"{tally.orders:,}",
            f"{tally.orders / total:.1%}",
            f"{tally.orders / busy:,.0f}",
            f"{tally.trades:,}",
            f"{tally.volume:,}",
            f"{book.resting():,}",
            f"{bid[0]:,} x {bid[1]:,}" if bid else "-",
            f"{ask[0]:,} x {ask[1]:,}" if ask else "-",
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--orders",
        type=int,
        default=None,
        help="commands to generate (default 20,000; 500,000 with --in-process)",
    )
    parser.add_argument("--symbols", type=int, default=100, help="number of symbols (default 100)")
    parser.add_argument(
        "--seed", type=int, default=7, help="seed of the generated flow (default 7)"
    )
    parser.add_argument(
        "--top", type=int, default=10, help="symbols shown in the summary (default 10)"
    )
    parser.add_argument(
        "--clients", type=int, default=8, help="WebSocket clients sending the flow (default 8)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="stop sending after this many seconds (default 30)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="replay through in-process books only (no broker, Redis or engine processes)",
    )
    args = parser.parse_args(argv)
    if args.orders is None:
        args.orders = 500_000 if args.in_process else 20_000
    if args.orders <= 0 or args.symbols <= 0 or args.clients <= 0 or args.duration <= 0:
        parser.error("--orders, --symbols, --clients and --duration must be positive")

    console = Console(width=None if Console().is_terminal else 120)
    if not args.in_process:
        from engine.cluster_demo import run  # noqa: PLC0415 - starts real services

        console.rule(
            "[bold]hotshard demo: WebSocket clients, the local gateway, Tansu, Redis, two engines"
        )
        return run(
            args.orders,
            args.symbols,
            args.seed,
            args.top,
            console,
            clients=args.clients,
            duration=args.duration,
        )
    console.rule("[bold]hotshard demo: the matching core")
    with Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("generating", total=None)
        stream = zipf_stream(args.orders, seed=args.seed, symbols=args.symbols)
        progress.update(task, total=1, completed=1)
        market = Market(open_listing=True)
        tune_gc()
        tallies, busy = replay(stream, market, progress)

    events = sum(sum(t.statuses.values()) for t in tallies.values())
    trades = sum(t.trades for t in tallies.values())
    fills = 2 * trades
    console.print(summary(market, tallies, busy, args.top))
    console.print(
        f"[bold]{len(stream):,}[/] orders across {len(tallies)} symbols "
        f"in {busy:.2f} s of matching "
        f"([bold]{len(stream) / busy:,.0f}[/] orders/s on one core): "
        f"{trades:,} trades, {fills:,} fills, {events:,} order_status events, "
        f"{sum(b.resting() for b in market):,} orders resting."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
