"""Benchmark of the book alone, one core, against C++ Liquibook through its PyPI wrapper.

    python -m bench.book [--orders N] [--repeat R] [--profile FILE]

Two deterministic streams (bench/streams.py): (a) `liquibook`, the Liquibook
performance-test shape, and (b) `zipf100`, 100 Zipf-skewed symbols with passive limits,
cancels, marketable limits and market orders. Our side produces full events (statuses,
fills, trades) and conflates depth once per 1,000 commands, as the engine does per batch;
the peer (`liquibook` package: its plain OrderBook per symbol, which is faster than its
DepthOrderBook, so the peer computes no depth at all) collects every accept, fill, cancel
and reject callback into a list. Streams are generated before timing; each run starts from
empty books; the median of R runs is reported. The last lines are, per workload:

    orders/s <workload>: N (peer M, ratio R)
"""

import argparse
import cProfile
import gc
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

from engine.book import Book, Instrument
from engine.runtime import tune_gc
from hotshard.commands import ACTION, ORDER_ID, PRICE, QUANTITY, SIDE, TIF, TYPE, USER_ID, Command
from hotshard.domain import Action, OrderType, Side, TimeInForce
from hotshard.local.flow import Stream, liquibook_stream, zipf_stream

DEPTH_EVERY = 1000
ACCEPT, REJECT, FILL, CANCEL, CANCEL_REJECT = range(5)


def run_ours(stream: Stream) -> int:
    """Apply the stream to fresh books as the engine does: per batch of DEPTH_EVERY
    commands, group by symbol (order kept within a symbol), apply each group, then
    conflate depth per touched book. Returns the number of events produced."""
    books: dict[str, Book] = {}
    for symbol, _ in stream:
        if symbol not in books:
            books[symbol] = Book(Instrument(symbol))
    events = 0
    for start in range(0, len(stream), DEPTH_EVERY):
        groups: dict[str, list[Command]] = {}
        for symbol, command in stream[start : start + DEPTH_EVERY]:
            group = groups.get(symbol)
            if group is None:
                groups[symbol] = [command]
            else:
                group.append(command)
        for symbol, commands in groups.items():
            book = books[symbol]
            events += len(book.apply_all(commands))
            if book.depth_update() is not None:
                events += 1
    return events


def run_peer(stream: Stream) -> int:
    """The same stream through liquibook's OrderBook, one per symbol."""
    import liquibook  # noqa: PLC0415 - only the benchmark needs the peer

    collected: list[tuple[Any, ...]] = []

    class Listener(liquibook.OrderListener):  # type: ignore[misc]
        def on_accept(self, order: Any) -> None:
            collected.append((ACCEPT, order.order_id_))

        def on_reject(self, order: Any, reason: str) -> None:
            collected.append((REJECT, order.order_id_, reason))

        def on_fill(self, order: Any, matched: Any, qty: int, cost: int) -> None:
            collected.append((FILL, order.order_id_, matched.order_id_, qty, cost))

        def on_cancel(self, order: Any) -> None:
            collected.append((CANCEL, order.order_id_))

        def on_cancel_reject(self, order: Any, reason: str) -> None:
            collected.append((CANCEL_REJECT, order.order_id_, reason))

    listener = Listener()
    books: dict[str, Any] = {}
    for symbol, _ in stream:
        if symbol not in books:
            book = liquibook.liquibook_book_OrderBook()
            book.set_order_listener(listener)
            books[symbol] = book
    live: dict[tuple[Any, Any], Any] = {}
    simple_order = liquibook.SimpleOrder
    ioc = liquibook.oc_immediate_or_cancel
    none = liquibook.oc_no_conditions
    add, cancel, buy = int(Action.ADD), int(Action.CANCEL), int(Side.BUY)
    market, gtc = int(OrderType.MARKET), int(TimeInForce.GTC)
    for symbol, command in stream:
        if command[ACTION] == add:
            price = 0 if command[TYPE] == market else command[PRICE]
            order = simple_order(command[SIDE] == buy, price, command[QUANTITY])
            live[command[USER_ID], command[ORDER_ID]] = order
            books[symbol].add(order, none if command[TIF] == gtc else ioc)
        elif command[ACTION] == cancel:
            books[symbol].cancel(live.pop((command[USER_ID], command[ORDER_ID])))
    return len(collected)


def timed(run: Callable[[Stream], int], stream: Stream, repeat: int) -> tuple[float, int]:
    """Median orders/s over `repeat` runs, and the event count of the last run."""
    rates = []
    events = 0
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        events = run(stream)
        rates.append(len(stream) / (time.perf_counter() - start))
    return statistics.median(rates), events


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}; Python {platform.python_version()}; {platform.system()} {platform.release()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.book",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--orders", type=int, default=1_000_000, help="commands per stream (default 1,000,000)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per measurement; the median is reported (default 3)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="also write a cProfile of one run of ours per workload to FILE.<workload>",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the liquibook peer")
    args = parser.parse_args(argv)

    print(f"machine: {machine()}")
    tune_gc()  # the engine's setting, for both books
    workloads = {
        "liquibook": liquibook_stream(args.orders),
        "zipf100": zipf_stream(args.orders),
    }
    results = []
    for name, stream in workloads.items():
        ours, events = timed(run_ours, stream, args.repeat)
        peer, peer_events = timed(run_peer, stream, args.repeat) if not args.no_peer else (0.0, 0)
        print(
            f"{name}: {len(stream):,} commands, ours {events:,} events, "
            f"peer {peer_events:,} callbacks"
        )
        if args.profile:
            cProfile.runctx(
                "run_ours(stream)", globals(), {"stream": stream}, f"{args.profile}.{name}"
            )
        results.append((name, ours, peer))
    for name, ours, peer in results:
        ratio = ours / peer if peer else float("nan")
        print(f"orders/s {name}: {ours:,.0f} (peer {peer:,.0f}, ratio {ratio:.2f})")


if __name__ == "__main__":
    main()
