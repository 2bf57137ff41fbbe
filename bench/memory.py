"""Memory of the book: per resting order, and of ended-order duplicate protection.

    python -m bench.memory [--orders N] [--symbols 100,5000] [--dedup-ids IDS]

Resting orders: plain GTC limits on both sides of one symbol, 50 price levels a side,
order ids of 8-10 characters, 100 users; nothing trades. Measured with tracemalloc (Python
heap, including the order-id strings the book keeps; the 100 user-id strings are shared)
and as resident memory growth.

Duplicate protection: the engine's own Market (`engine.service.settings.market_for`) of S
symbols (each `--symbols` value) with the engine options `--dedup-ids IDS` and
`--dedup-window IDS/S` (one budget of IDS remembered ended-order ids shared by all books);
each symbol gets 1.25 windows of IOC orders that expire, so every book's window is full
and has started forgetting. Each runs in a fresh child process (so no earlier
measure's freed pages hide growth); reported: ids remembered and the child's resident
memory growth, which holds the books, the index, the ended orders and their id strings
(order ids and, as from the wire, one user-id string per order). The budget bounds the
process whatever the number of symbols.
"""

import argparse
import gc
import multiprocessing
import resource
import tracemalloc

import engine.book
from engine.book import Book, Command, Instrument, add
from engine.book.market import DEFAULT_DEDUP_IDS
from engine.runtime import tune_gc
from engine.service.settings import EngineSettings, market_for
from hotshard.domain import Side, TimeInForce

CHUNK = 10_000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--orders", type=int, default=1_000_000, help="resting orders to build (default 1,000,000)"
    )
    parser.add_argument(
        "--symbols",
        default="100,5000",
        help="comma-separated symbol counts for the dedup measure (default 100,5000; "
        "empty: skip it)",
    )
    parser.add_argument(
        "--dedup-ids",
        type=int,
        default=DEFAULT_DEDUP_IDS,
        help=f"the engine's --dedup-ids, the budget of remembered ids (default "
        f"{DEFAULT_DEDUP_IDS:,})",
    )
    args = parser.parse_args(argv)
    print(f"book build: {engine.book.BUILD}", flush=True)
    tune_gc()
    fork = multiprocessing.get_context("fork")
    for symbols in [int(s) for s in args.symbols.split(",") if s]:
        child = fork.Process(target=dedup, args=(symbols, args.dedup_ids))
        child.start()
        child.join()
        if child.exitcode:
            raise SystemExit(f"the dedup measure for {symbols} symbols failed")
    if args.orders > 0:
        resting(args.orders)


def resting(count: int) -> None:
    commands = resting_commands(count)
    build(commands)  # warm-up: first-touch costs are not the book's
    rss_before = rss()
    book = build(commands)
    rss_growth = rss() - rss_before
    del book
    tracemalloc.start()
    book = build(commands)
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # the id strings were built before tracing: add the one str per order the book keeps
    id_bytes = sum(c[1].__sizeof__() for c in commands[:1000]) * len(commands) // 1000
    live = book.resting()
    print(f"resting orders: {live:,}")
    print(f"book structures: {traced / live:.0f} bytes/order (tracemalloc)")
    print(f"with order-id strings: {(traced + id_bytes) / live:.0f} bytes/order")
    print(f"resident memory growth: {rss_growth / live:.0f} bytes/order (ids not included)")


def resting_commands(count: int) -> list[Command]:
    """`count` GTC limits that never trade: both sides, 50 levels a side, 100 users."""
    users = [f"user{i:03d}" for i in range(100)]
    return [
        add(
            f"o{i:08d}",
            users[i % 100],
            Side.BUY if i % 2 else Side.SELL,
            999 - i % 50 if i % 2 else 1000 + i % 50,
            100,
        )
        for i in range(count)
    ]


def build(commands: list[Command]) -> Book:
    gc.collect()
    book = Book(Instrument("MEM"))
    for start in range(0, len(commands), CHUNK):
        book.apply_all(commands[start : start + CHUNK])
    book.depth_update()
    gc.collect()
    return book


def dedup(symbols: int, ids: int) -> None:
    """Fill every book's window of a Market of `symbols` symbols; report what it holds."""
    window = ids // symbols
    market = market_for(EngineSettings(dedup_ids=ids, dedup_window=window))
    names = [f"S{i:05d}" for i in range(symbols)]
    per_symbol = window + window // 4
    gc.collect()
    before = rss()
    serial = 0
    for name in names:
        book = market.book(name)
        assert book is not None
        for start in range(0, per_symbol, CHUNK):
            commands = [
                add(
                    f"x{serial + i:09d}",
                    f"user{(serial + i) % 100:03d}",
                    Side.BUY,
                    100,
                    1,
                    tif=TimeInForce.IOC,
                )
                for i in range(min(CHUNK, per_symbol - start))
            ]
            serial += len(commands)
            book.apply_all(commands)
    gc.collect()
    growth = rss() - before
    remembered = sum(book.remembered() for book in market)
    print(
        f"dedup, {symbols:,} symbols: window {window:,} each, {remembered:,} ids remembered "
        f"(budget {ids:,}) after {serial:,} ended orders: resident memory growth "
        f"{growth / 1e6:,.0f} MB, {growth / max(remembered, 1):.0f} bytes/id",
        flush=True,
    )


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


if __name__ == "__main__":
    main()
