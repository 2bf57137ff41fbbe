"""Snapshot cost of a large book: dump and load time and size.

    python -m bench.snapshot [--orders N]

The book holds N resting GTC limits (both sides, 50 levels a side, 100 users) plus a full
dedup window of ended orders; load is what a restart or a migration target pays before
matching resumes. Median of 3 runs.
"""

import argparse
import statistics
import time

from bench.memory import build, resting_commands
from engine.book import add, snapshot
from engine.runtime import tune_gc
from hotshard.domain import Side, TimeInForce


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.snapshot",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--orders", type=int, default=1_000_000, help="resting orders (default 1,000,000)"
    )
    args = parser.parse_args(argv)
    tune_gc()
    commands = resting_commands(args.orders)
    book = build(commands)
    ended = [add(f"e{i:08d}", "ioc", Side.BUY, 1, 1, tif=TimeInForce.IOC) for i in range(100_000)]
    book.apply_all(ended)
    dumps, loads = [], []
    for _ in range(3):
        start = time.perf_counter()
        data = snapshot.dump(book, input_offset=123)
        dumps.append(time.perf_counter() - start)
        start = time.perf_counter()
        restored, _ = snapshot.load(data)
        loads.append(time.perf_counter() - start)
        del restored
    print(f"resting orders: {book.resting():,}, ended orders remembered: {book.remembered():,}")
    print(f"snapshot size: {len(data) / 1e6:.1f} MB ({len(data) / book.resting():.0f} bytes/order)")
    print(f"dump: {statistics.median(dumps):.2f} s, load: {statistics.median(loads):.2f} s")


if __name__ == "__main__":
    main()
