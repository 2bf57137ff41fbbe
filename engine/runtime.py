"""Process settings every engine entry point applies once at start."""

import gc
import logging
import time
from typing import Any

# The book's objects form no reference cycles, so reference counting frees them; the cyclic
# collector only guards other code. With CPython's default young generation (700
# allocations) it runs every few hundred orders and, measured on the zipf flow, costs
# ~60% of matching throughput; a young generation of 100,000 keeps it to a few percent.
YOUNG_GENERATION = 100_000


def tune_gc(*, collect: bool = True) -> None:
    """Collect less often and move everything built so far (code, config, data loaded at
    start) out of the collector's view. `collect=False`: freeze without a full collection
    first (an engine that tuned before loading its books: a full pass over a million
    restored orders' index is pure cost on the way back to matching)."""
    if collect:
        gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION, older, oldest)


GC_LOG_MS = 5.0
"""A cyclic collection at least this long is logged ("gc"): it holds the GIL, so a move's
step queued for the loop or a gRPC reply waits for it."""


def watch_gc(log: logging.Logger, threshold_ms: float = GC_LOG_MS) -> None:
    """Log every collection of at least `threshold_ms`: its generation, length and what it
    found (a callback per collection: a clock read at its start and end)."""
    began: list[float] = [0.0]

    def timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - began[0]) * 1e3
        if ms >= threshold_ms:
            log.info(
                "gc",
                extra={
                    "generation": info.get("generation"),
                    "gc_ms": round(ms, 1),
                    "collected": info.get("collected"),
                },
            )

    gc.callbacks.append(timed)
