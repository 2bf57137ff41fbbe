"""hotshard.local.demo.report and the migration demo's pure parts: the summary of a recorded
run, the plot drawn from one, the steps read from an execution history, the flow."""

import datetime as dt
import math
from pathlib import Path
from typing import Any

from hotshard.local.demo import report
from hotshard.local.demo.migration import HOT, Lane, migration_of, snapshot_bytes, steps_of


def recorded() -> report.Recorded:
    """A run: HOT at ~10 ms before, a stall of 80 ms in the move, ~12 ms after."""
    steps = [
        report.Step("DetectHotSymbol", 100.0, 100.2),
        report.Step("SwitchRouting", 100.5, 100.6),
        report.Step("Cleanup", 100.7, 101.0),
    ]
    samples = [(90.0 + i * 0.01, 10.0 + (i % 10) * 0.1) for i in range(1000)]  # 90..99.99
    samples += [(100.0 + i * 0.01, 80.0 if i == 50 else 11.0) for i in range(100)]  # 100..101
    samples += [(101.5 + i * 0.01, 12.0) for i in range(500)]
    migration = {
        "status": "SUCCEEDED",
        "from": "engine-0",
        "to": "i-1",
        "strategy": "pre-copy",
        "pause_ms": 42,
        "duration_ms": 1000,
        "orders_buffered": 7,
        "snapshot_bytes": 36_000,
        "switched_ms": 100_500,
        "resumed_ms": 100_542,
        "paused_ms": None,
    }
    return report.Recorded(
        HOT, "pre-copy", samples, steps, migration, 90.0, 106.5, sent=1600, acked=1600, lost=0
    )


def test_latency_is_split_before_during_and_after_the_move() -> None:
    run = recorded()
    phases = report.split(run)
    assert [len(phases[p]) for p in report.PHASES] == [1000, 100, 500]
    summary = report.summarize(run)
    assert summary.migration_s == (100.0, 101.0)
    assert summary.latency["before"].p50 == 10.4
    assert summary.latency["before"].p99 == 10.9
    assert summary.latency["during"].worst == 80.0
    assert summary.latency["during"].p50 == 11.0
    assert summary.latency["after"].p99 == 12.0
    assert (summary.pause_ms, summary.duration_ms, summary.orders_buffered) == (42, 1000, 7)
    assert (summary.source, summary.target, summary.lost) == ("engine-0", "i-1", 0)


def test_summary_lines_say_every_figure() -> None:
    text = "\n".join(report.summary_lines(report.summarize(recorded()), HOT))
    for part in (
        "SUCCEEDED (pre-copy) engine-0 -> i-1",
        "pause 42.0 ms",
        "duration 1,000.0",
        "orders buffered 7",
        "snapshot 36,000 bytes",
        "lost 0",
        "before: p50 10.4 ms, p99 10.9 ms",
        "during: p50 11.0 ms",
        "worst 80.0 ms",
    ):
        assert part in text, part


def test_a_run_that_never_moved_says_so() -> None:
    run = report.Recorded(HOT, "stop-and-copy", [(1.0, 5.0), (2.0, 7.0)])
    summary = report.summarize(run)
    assert summary.status == "NOT STARTED" and summary.pause_ms is None
    assert summary.latency["before"].count == 2
    assert math.isnan(summary.latency["during"].p50)
    assert "pause -" in "\n".join(report.summary_lines(summary, HOT))


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert report.percentile(values, 0.5) == 50.0
    assert report.percentile(values, 0.99) == 99.0
    assert report.percentile([3.0], 0.99) == 3.0
    assert math.isnan(report.percentile([], 0.5))


def test_a_recorded_run_round_trips_and_plots(tmp_path: Path) -> None:
    run = recorded()
    report.save(run, tmp_path / "run.json")
    again = report.load(tmp_path / "run.json")
    assert again == run
    png = report.plot(again, tmp_path / "run.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 20_000  # two panels of points, not an empty canvas


def _event(kind: str, name: str, second: float) -> dict[str, Any]:
    key = "stateEnteredEventDetails" if kind.endswith("Entered") else "stateExitedEventDetails"
    at = dt.datetime.fromtimestamp(second, tz=dt.UTC)
    return {"type": kind, "timestamp": at, key: {"name": name}}


def test_steps_come_from_the_execution_history() -> None:
    events = [
        {"type": "ExecutionStarted", "timestamp": dt.datetime.fromtimestamp(9, tz=dt.UTC)},
        _event("TaskStateEntered", "DetectHotSymbol", 10.0),
        _event("TaskStateExited", "DetectHotSymbol", 10.25),
        _event("ChoiceStateEntered", "ChooseStrategy", 10.25),
        _event("ChoiceStateExited", "ChooseStrategy", 10.26),
        _event("TaskStateEntered", "WaitForCatchUp", 10.3),
    ]
    assert steps_of(events) == [
        report.Step("DetectHotSymbol", 10.0, 10.25),
        report.Step("ChooseStrategy", 10.25, 10.26),
        report.Step("WaitForCatchUp", 10.3, None),
    ]


def test_the_migration_record_comes_from_the_final_state() -> None:
    output = {
        "migration": {"symbol": HOT, "strategy": "stop-and-copy", "source": {"instance": "e0"}},
        "target": {"instance": "w1"},
        "pause": {"paused_ms": 1000},
        "switch": {"switched_ms": 1100, "resumed_ms": 1150},
        "cleanup": {"status": "SUCCEEDED", "pause_ms": 150, "from": "e0", "to": "w1"},
    }
    got = migration_of(output, "SUCCEEDED")
    assert got["pause_ms"] == 150 and got["paused_ms"] == 1000 and got["resumed_ms"] == 1150
    failed = migration_of({"migration": output["migration"]}, "FAILED")
    assert failed["status"] == "FAILED" and failed["from"] == "e0" and failed["to"] is None


def test_the_flow_is_hot_on_one_symbol_and_cancels_only_its_own_orders() -> None:
    lane = Lane("trader-0", seed=3)
    frames = [lane.next() for _ in range(4000)]
    hot = sum(1 for f in frames if f["symbol"] == HOT)
    assert 0.45 < hot / len(frames) < 0.55
    placed: set[str] = set()
    for frame in frames:
        if frame["action"] == "order":
            assert frame["order_id"] not in placed
            placed.add(frame["order_id"])
        else:
            assert frame["order_id"] in placed
    again = Lane("trader-0", seed=3)
    assert [again.next() for _ in range(4000)] == frames  # deterministic per seed
    other = Lane("trader-0", seed=4)
    assert [other.next() for _ in range(50)] != frames[:50]


def test_snapshot_bytes_are_read_where_the_snapshot_is_when_the_output_omits_them() -> None:
    class Store:
        def strlen(self, key: str) -> int:
            assert key == "snapshot-data:HOT:7"
            return 1234

    assert snapshot_bytes(Store(), {"snapshot": {"size_bytes": 99, "location": "redis:x"}}) == 99
    moved = {"snapshot": {"size_bytes": 0, "location": "redis:snapshot-data:HOT:7"}}
    assert snapshot_bytes(Store(), moved) == 1234
    assert snapshot_bytes(Store(), {"snapshot": {"location": "s3://b/k"}}) == 0
    assert snapshot_bytes(Store(), {}) == 0
