"""The engine's process settings (engine.runtime): a long cyclic collection is logged; the
books' memory on huge pages."""

import gc
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

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


HUGE_CHILD = """
import gc, json, os, sys
from engine.runtime import huge_pages
on = sys.argv[1] == "on"
info = huge_pages() if on else {}
objects = [[i, str(i)] for i in range(300_000)]  # ~60 MB of small objects: pymalloc's arenas
def anon_huge_kb():
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("AnonHugePages"):
            return int(line.split()[1])
    return 0
huge = anon_huge_kb()
pid = os.fork()
if pid == 0:
    os._exit(0 if sum(len(o[1]) for o in objects) > 0 else 1)  # the child reads them
_, status = os.waitpid(pid, 0)
del objects
gc.collect()
from engine import _hugepages
given_back = _hugepages.stats()["freed"]
again = [[i, str(i)] for i in range(300_000)]  # arenas given back are used again
ok = all(a[0] == int(a[1]) for a in again)
print(json.dumps({"info": info, "huge_kb": huge, "child": status, "ok": ok,
                  "given_back": given_back, "stats": _hugepages.stats()}))
"""


def _child(mode: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", HUGE_CHILD, mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="Linux only")
def test_huge_pages_back_the_arenas_and_arenas_are_reused() -> None:
    pytest.importorskip("engine._hugepages", reason="built by `make native`")
    on, off = _child("on"), _child("off")
    assert on["info"]["installed"] and on["stats"]["arena_size"] > 0
    assert on["child"] == 0 and on["ok"] and off["ok"]
    assert on["given_back"] > 0  # the first list's arenas came back to the allocator
    assert on["stats"]["freed"] < on["given_back"]  # and the second list took them again
    assert off["huge_kb"] == 0 or on["info"]["thp"] == "always"
    if on["info"]["thp"] in ("always", "madvise"):
        assert on["huge_kb"] >= 32 * 1024  # most of the ~60 MB on 2 MiB pages
