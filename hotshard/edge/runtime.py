"""What the edge's Lambda handlers apply to their process once per cold start."""

import gc

YOUNG_GENERATION = 50_000
"""Allocations between two young collections (CPython's default: 700). A request allocates
a few hundred objects, nearly all freed by reference counting, so with the default the
cyclic collector ran every few requests: 5-7% of the local gateway's CPU (perf, 1,000
orders/s offered), in gc_collect_main and its traversals, finding next to nothing."""


def tune_gc() -> None:
    """Collect the young generation less often, and move what the cold start built (modules,
    clients, settings) out of the collector's view so no later pass walks it again."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION, older, oldest)
