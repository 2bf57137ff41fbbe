"""Process settings every engine entry point applies once at start."""

import gc
import logging
import time
from pathlib import Path
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


def huge_pages() -> dict[str, Any]:
    """From now on pymalloc takes its arenas (where nearly all of a book's memory lives) from
    2 MiB-aligned regions marked MADV_HUGEPAGE (engine/hugepages.c). The fork that stores
    a snapshot stops the whole process for the copy of its page tables; on huge pages there
    are ~1/512 as many entries to copy for what lies there (a probe process holding a
    million resting orders: fork 14 -> 4 ms; an engine holding one, where about half of its
    memory is pymalloc's: median 25 -> 14 ms; docs/BENCHMARKS.md run 17). Returns the
    allocator's stats and the kernel's THP mode; {"installed": False, ...} where the
    extension is not built (the pure-Python build without a compiler)."""
    try:
        from engine import _hugepages  # type: ignore[attr-defined]  # noqa: PLC0415
    except ImportError:
        return {"installed": False, "thp": _thp_mode()}
    _hugepages.install()
    return {**_hugepages.stats(), "thp": _thp_mode()}


def _thp_mode() -> str:
    """The kernel's transparent huge page mode ("always", "madvise", "never"; "" unknown)."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return ""
    chosen = [word.strip("[]") for word in text.split() if word.startswith("[")]
    return chosen[0] if chosen else ""


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
