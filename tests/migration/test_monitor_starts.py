"""The local alarm path end to end: load makes the per-symbol order rate cross the alarm's
threshold (lowered for the test), the monitor starts an execution with the alarm event,
DetectHotSymbol picks the hottest symbol of the hottest engine, and it moves."""

import asyncio
import time
from pathlib import Path

import pytest

from hotshard import route
from hotshard.local.control import wait_execution
from hotshard.local.up import UpOptions, up
from tests.migration.harness import HOT, SYMBOLS, drive, judge

pytestmark = pytest.mark.integration


def test_an_alarm_starts_a_migration_of_the_hot_symbol(tmp_path: Path) -> None:
    options = UpOptions(
        symbols=SYMBOLS,
        state_file=tmp_path / "cluster.json",
        monitor_period_s=1.0,
        rate_threshold=20.0,  # orders/s of one symbol; HOT gets ~60% of the load
        cpu_threshold=100.0,
    )
    with up(options) as cluster:
        assert cluster.monitor is not None
        load = asyncio.run(drive(cluster.state(), seed=3, seconds=8))
        deadline = time.monotonic() + 60
        while not cluster.monitor.started and time.monotonic() < deadline:
            time.sleep(0.2)
        assert cluster.monitor.started, "the monitor started nothing"
        arn = cluster.monitor.started[0]
        final = wait_execution(cluster.plane.client("stepfunctions"), arn, 120)
        moved = route.lookup(cluster.redis.client(), HOT)
    assert final["status"] == "SUCCEEDED", final
    assert moved is not None and moved.instance != "engine-0" and moved.epoch == 2
    verdict = judge(load)
    assert not verdict.problems, verdict
