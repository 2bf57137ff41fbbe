"""Benchmark of the book alone, one core, against C++ Liquibook through its PyPI wrapper.

    python -m bench.book [--orders N] [--repeat R] [--workloads a,b] [--profile FILE]

Three deterministic streams (hotshard/local/flow.py): `liquibook`, the Liquibook performance-test
shape; `zipf100`, 100 Zipf-skewed symbols whose levels grow to thousands of orders; and
`short100`, the same symbols with levels that stay short. Ours is measured two ways, both
with full events (statuses, fills, trades): `stream`, as the engine feeds it (per batch of
1,000 commands, grouped by symbol, one `Book.apply_all` per symbol, then depth conflated per
book), and `call`, one `Book.apply` per command returning that command's events (depth
conflated every 1,000 commands). The peer (`liquibook` package: its plain OrderBook per
symbol, faster than its DepthOrderBook, so the peer computes no depth at all) is called
once per command and collects every accept, fill, cancel and reject callback into a list.
Streams are generated before timing; each run starts from empty books; runs of ours and the
peer alternate; the median of R runs is reported. Rates are per second of this process's CPU
time, not of the wall clock: on a shared machine the wall clock also counts the time other
processes held the core. The build of the book (compiled or pure
Python, engine.native) is printed first. The last lines are, per workload and mode:

    orders/s <workload> <mode>: N (peer M, ratio R)
"""

import argparse
import cProfile
import gc
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import engine.book
from engine.book import Book, Instrument
from engine.runtime import tune_gc
from hotshard.commands import ACTION, ORDER_ID, PRICE, QUANTITY, SIDE, TIF, TYPE, USER_ID, Command
from hotshard.domain import Action, OrderType, Side, TimeInForce
from hotshard.local.flow import Stream, liquibook_stream, short_stream, zipf_stream

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


def run_ours_per_call(stream: Stream) -> int:
    """The stream one command per `Book.apply` call, each returning its events; depth is
    conflated for every book once per DEPTH_EVERY commands."""
    books: dict[str, Book] = {}
    for symbol, _ in stream:
        if symbol not in books:
            books[symbol] = Book(Instrument(symbol))
    all_books = list(books.values())
    events = 0
    for start in range(0, len(stream), DEPTH_EVERY):
        for symbol, command in stream[start : start + DEPTH_EVERY]:
            events += len(books[symbol].apply(command))
        for book in all_books:
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


def timed(
    runs: dict[str, Callable[[Stream], int]], stream: Stream, repeat: int
) -> dict[str, tuple[float, int]]:
    """Per run: median orders/s over `repeat` rounds (the runs alternate within a round, so
    a change in the machine's load hits all of them), and the event count."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    events: dict[str, int] = {}
    for _ in range(repeat):
        for name, run in runs.items():
            gc.collect()
            start = time.process_time()
            events[name] = run(stream)
            rates[name].append(len(stream) / (time.process_time() - start))
    return {name: (statistics.median(rates[name]), events[name]) for name in runs}


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}; Python {platform.python_version()}; {platform.system()} {platform.release()}"


WORKLOADS: dict[str, Callable[[int], Stream]] = {
    "liquibook": liquibook_stream,
    "zipf100": zipf_stream,
    "short100": short_stream,
}


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
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated, of {', '.join(WORKLOADS)} (default all)",
    )
    parser.add_argument(
        "--orders-zipf",
        type=int,
        help="commands of the zipf100 stream, if not --orders: the peer's cancel is linear "
        "in its level's length, so a long zipf100 run is mostly the peer's",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="also write a cProfile of one stream run of ours per workload to FILE.<workload>",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the liquibook peer")
    args = parser.parse_args(argv)
    names = [n for n in args.workloads.split(",") if n]
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workloads: {', '.join(unknown)}")

    print(f"machine: {machine()}")
    print(f"book build: {engine.book.BUILD}")
    print(f"load average at start: {load()}")
    tune_gc()  # the engine's setting, for both books
    runs: dict[str, Callable[[Stream], int]] = {"stream": run_ours, "call": run_ours_per_call}
    if not args.no_peer:
        runs["peer"] = run_peer
    results = []
    for name in names:
        count = args.orders_zipf if name == "zipf100" and args.orders_zipf else args.orders
        stream = WORKLOADS[name](count)
        measured = timed(runs, stream, args.repeat)
        print(
            f"{name}: {len(stream):,} commands; events: ours {measured['stream'][1]:,} "
            f"(per call {measured['call'][1]:,}), peer callbacks "
            f"{measured['peer'][1] if 'peer' in measured else 0:,}; load {load()}"
        )
        if args.profile:
            cProfile.runctx(
                "run_ours(stream)", globals(), {"stream": stream}, f"{args.profile}.{name}"
            )
        results.append((name, measured))
    print(f"load average at end: {load()}")
    for name, measured in results:
        peer = measured["peer"][0] if "peer" in measured else 0.0
        for mode in ("stream", "call"):
            ours = measured[mode][0]
            ratio = ours / peer if peer else float("nan")
            print(f"orders/s {name} {mode}: {ours:,.0f} (peer {peer:,.0f}, ratio {ratio:.2f})")


if __name__ == "__main__":
    main()
