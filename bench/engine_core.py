"""The engine's core alone: `EngineState.apply_batch` on pre-encoded `orders` records, no
Kafka, no clock in the loop.

    python -m bench.engine_core [--orders N] [--batch-size B] [--repeat R]
    valgrind --tool=cachegrind python -m bench.engine_core --orders 20000 --count-only

Records are bench.engine's (hotshard.local.flow.zipf_stream, 100 symbols, a client
timestamp on each), encoded before the clock starts. Prints the core's CPU time per order
(thread time, median of --repeat runs on fresh books) and the output records per order.
Under valgrind, run it twice (--orders N and --orders 0 ... --skip-apply) to subtract the
stream's generation: `--skip-apply` does everything but apply_batch, so the difference of
the two instruction counts divided by N is what an order costs the core (deterministic,
whatever the load; PYTHONHASHSEED fixed for the same dict layouts).
"""

import argparse
import marshal
import statistics
import time
from pathlib import Path

from engine.book import BUILD, Market
from engine.runtime import tune_gc
from engine.service.core import EngineState, Record
from hotshard.local.flow import zipf_stream
from hotshard.wire import encode_order


def records(orders: int, seed: int, symbols: int, cache: Path | None = None) -> list[Record]:
    """The stream's records; with `cache`, read from that file if it exists (written
    otherwise): a profiler then sees apply_batch, not the stream's generation."""
    if cache is not None and cache.exists():
        loaded: list[Record] = marshal.loads(cache.read_bytes())
        return loaded[:orders]
    made = _generate(orders, seed, symbols)
    if cache is not None:
        cache.write_bytes(marshal.dumps(made))
    return made


def _generate(orders: int, seed: int, symbols: int) -> list[Record]:
    stream = zipf_stream(orders, seed=seed, symbols=symbols)
    stamp = 1_800_000_000_000_000_000  # a client timestamp of 2027 (fixed: same records)
    return [
        (0, i, s.encode(), encode_order(s, c, client_ts_ns=stamp))
        for i, (s, c) in enumerate(stream)
    ]


def run(batches: list[list[Record]]) -> tuple[float, int]:
    """Apply every batch to a fresh state: (thread CPU seconds, output records)."""
    state = EngineState(Market(open_listing=True))
    state.position[0] = 0
    outputs = 0
    began = time.thread_time()
    for batch in batches:
        outputs += len(state.apply_batch(batch).outputs)
    return time.thread_time() - began, outputs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.engine_core",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--orders", type=int, default=200_000)
    p.add_argument("--batch-size", type=int, default=1000, help="records per apply_batch")
    p.add_argument("--symbols", type=int, default=100)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--cache", type=Path, default=None, help="keep the generated records in this file"
    )
    p.add_argument(
        "--count-only", action="store_true", help="one run, no timing printout (for valgrind)"
    )
    p.add_argument(
        "--skip-apply", action="store_true", help="build the records only (valgrind baseline)"
    )
    args = p.parse_args(argv)
    recs = records(args.orders, args.seed, args.symbols, args.cache)
    size = args.batch_size
    batches = [recs[i : i + size] for i in range(0, len(recs), size)]
    tune_gc()  # as the engine does at start
    if args.skip_apply:
        return 0
    if args.count_only:
        _, outputs = run(batches)
        print(f"{args.orders:,} orders, {outputs:,} output records, build {BUILD}")
        return 0
    times = []
    outputs = 0
    for _ in range(args.repeat):
        spent, outputs = run(batches)
        times.append(spent)
    per = statistics.median(times) / max(args.orders, 1) * 1e6
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"core alone ({BUILD} build): {per:.2f} us CPU per order (median of {args.repeat}: "
        f"{', '.join(f'{t:.3f}' for t in times)} s for {args.orders:,} orders, batches of "
        f"{size}); {outputs / max(args.orders, 1):.3f} output records per order; "
        f"load average {' '.join(load)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
