"""Memory per resting order: build a book of N resting orders and measure what it holds.

    python -m bench.memory [--orders N]

Orders are plain GTC limits on both sides of one symbol, 50 price levels a side, order ids
of 8-10 characters, 100 users; nothing trades. Measured with tracemalloc (Python heap,
including the id strings the book keeps) and as resident memory growth.
"""

import argparse
import gc
import resource
import tracemalloc

from engine.book import Book, Command, Instrument, add
from hotshard.domain import Side


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--orders", type=int, default=1_000_000, help="resting orders to build (default 1,000,000)"
    )
    args = parser.parse_args(argv)
    commands = resting_commands(args.orders)
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
    resting = book.resting()
    print(f"resting orders: {resting:,}")
    print(f"book structures: {traced / resting:.0f} bytes/order (tracemalloc)")
    print(f"with order-id strings: {(traced + id_bytes) / resting:.0f} bytes/order")
    print(f"resident memory growth: {rss_growth / resting:.0f} bytes/order (ids not included)")


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
    for start in range(0, len(commands), 10_000):
        book.apply_all(commands[start : start + 10_000])
    book.depth_update()
    gc.collect()
    return book


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


if __name__ == "__main__":
    main()
