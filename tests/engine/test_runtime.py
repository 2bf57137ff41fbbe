"""The engine's process settings: a long cyclic collection is logged (engine.runtime)."""

import gc
import logging

import pytest

from engine.runtime import watch_gc


def test_a_collection_at_least_the_threshold_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.runtime.gc")
    before = list(gc.callbacks)
    try:
        watch_gc(log, threshold_ms=0.0)  # every collection is "long"
        with caplog.at_level(logging.INFO, logger="test.runtime.gc"):
            gc.collect(1)
        records = [r for r in caplog.records if r.getMessage() == "gc"]
        assert records and records[-1].generation == 1  # type: ignore[attr-defined]
        assert records[-1].gc_ms >= 0.0  # type: ignore[attr-defined]
        caplog.clear()
        gc.callbacks[:] = before
        watch_gc(log, threshold_ms=60_000.0)
        with caplog.at_level(logging.INFO, logger="test.runtime.gc"):
            gc.collect(0)
        assert not [r for r in caplog.records if r.getMessage() == "gc"]
    finally:
        gc.callbacks[:] = before
