"""The `hotshard` cluster commands' pure parts: partition split, step lines, exit codes."""

import datetime as dt
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from hotshard import names
from hotshard.cli import main, parser
from hotshard.local.commands import (
    EXIT_FAILED,
    EXIT_MIGRATED,
    EXIT_NOTHING,
    EXIT_ROLLED_BACK,
    describe_event,
    fence_label,
    outcome,
    pool_summary,
    why_nothing,
)
from hotshard.local.fleet import engine_label, pool_state
from hotshard.local.up import RESTART_BACKOFF_S, restart_due, split


def test_partitions_are_split_evenly_and_contiguously() -> None:
    assert split(4, 2) == [[0, 1], [2, 3]]
    assert split(5, 2) == [[0, 1, 2], [3, 4]]
    with pytest.raises(ValueError):
        split(1, 2)


def test_exit_codes_say_how_it_ended() -> None:
    assert outcome("SUCCEEDED", None, "Migrated") == ("SUCCEEDED", EXIT_MIGRATED)
    assert outcome("SUCCEEDED", None, "NothingToMove") == ("NOTHING_TO_MOVE", EXIT_NOTHING)
    rolled = outcome("FAILED", names.MIGRATION_ROLLED_BACK, "RolledBack")
    assert rolled == ("ROLLED_BACK", EXIT_ROLLED_BACK)
    failed = outcome("FAILED", names.MIGRATION_ROLLBACK_FAILED, "RollbackFailed")
    assert failed == (names.MIGRATION_ROLLBACK_FAILED, EXIT_FAILED)
    assert outcome("TIMED_OUT", None, None) == ("TIMED_OUT", EXIT_FAILED)


def test_nothing_to_move_says_why() -> None:
    cause = {"errorType": "NoHotSymbol", "errorMessage": "NO_BOOK: HOT has no book on e-0 yet"}
    state = {"error": {"Error": "NoHotSymbol", "Cause": json.dumps(cause)}}
    assert why_nothing(state) == "NO_BOOK: HOT has no book on e-0 yet"
    assert why_nothing({"error": {"Error": "NoHotSymbol", "Cause": "plain"}}) == "plain"
    assert why_nothing({"error": {"Error": "NoHotSymbol"}}) == "NoHotSymbol"
    assert why_nothing({}) == "no reason given"


def test_steps_are_shown_as_they_enter_and_leave() -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    entered: dict[str, float] = {}
    enter = {
        "type": "TaskStateEntered",
        "timestamp": t0,
        "stateEnteredEventDetails": {"name": "WaitForDrain"},
    }
    leave = {
        "type": "TaskStateExited",
        "timestamp": t0 + dt.timedelta(milliseconds=42),
        "stateExitedEventDetails": {"name": "WaitForDrain"},
    }
    failed = {
        "type": "LambdaFunctionFailed",
        "timestamp": t0,
        "lambdaFunctionFailedEventDetails": {
            "error": "EngineUnavailable",
            "cause": '{"errorType": "EngineUnavailable", "errorMessage": "Fence: down"}',
        },
    }
    assert describe_event(enter, entered) == "  -> WaitForDrain"
    assert describe_event(leave, entered) == "  ok WaitForDrain (42 ms)"
    assert describe_event(failed, entered) == "     EngineUnavailable: Fence: down"
    assert describe_event({"type": "LambdaFunctionScheduled", "timestamp": t0}, entered) is None


def test_the_seeds_step_names_say_what_they_did_in_each_strategy() -> None:
    """pre-copy keeps the seed's ReplayPendingOrders, which replays no pending orders
    there: the line says so instead of reading like a replay ran."""
    replay = {"seq": 9, "replayed": 0, "held": 3, "location": "redis:x", "durable": True}

    def left(name: str, strategy: str) -> str | None:
        output = {
            "migration": {"strategy": strategy},
            "snapshot": {"size_bytes": 120, "input_offset": 41},
            "replay": dict(replay, replayed=5 if strategy == "stop-and-copy" else 0),
        }
        event = {
            "type": "TaskStateExited",
            "timestamp": 0.5,
            "stateExitedEventDetails": {"name": name, "output": json.dumps(output)},
        }
        return describe_event(event, {name: 0.5})

    assert left("ReplayPendingOrders", "pre-copy") == (
        "  ok ReplayPendingOrders (0 ms: pre-copy: no pending orders, 3 held applied, durable)"
    )
    assert left("ReplayPendingOrders", "stop-and-copy") == (
        "  ok ReplayPendingOrders (0 ms: 5 pending replayed, 3 held applied, durable)"
    )
    assert left("TransferSnapshot", "pre-copy") == (
        "  ok TransferSnapshot (0 ms: 120 bytes at offset 41 followed)"
    )
    assert left("Cleanup", "pre-copy") == "  ok Cleanup (0 ms)"


def test_the_commands_take_the_options_of_design_section_8() -> None:
    args = parser().parse_args(
        ["up", "--engines", "3", "--warm", "2", "--partitions", "6", "--symbols", "A,B"]
    )
    assert (args.engines, args.warm, args.partitions, args.symbols) == (3, 2, 6, "A,B")
    assert not args.no_monitor and args.state_file.endswith("cluster.json")
    args = parser().parse_args(
        ["migrate", "HOT", "--strategy", "stop-and-copy", "--to", "e-1", "--json"]
    )
    assert (args.symbol, args.strategy, args.to, args.json) == ("HOT", "stop-and-copy", "e-1", True)
    assert parser().parse_args(["routes", "--json"]).json
    assert parser().parse_args(["engines"]).state_file.endswith("cluster.json")


def test_a_warm_engine_is_marked_warm_only_while_idle() -> None:
    row: dict[str, Any] = {"id": "i-1-5", "warm": True, "symbols": [], "shadows": []}
    assert engine_label(row) == "i-1-5 (warm)"
    assert engine_label({**row, "symbols": [{"symbol": "HOT"}]}) == "i-1-5"
    assert engine_label({**row, "shadows": [{"symbol": "HOT"}]}) == "i-1-5"
    assert engine_label({"id": "engine-0", "warm": False, "symbols": []}) == "engine-0"


def test_the_pool_shows_idle_taken_and_in_use_warm_engines() -> None:
    idle: dict[str, Any] = {"id": "i-1-5", "warm": True, "symbols": [], "shadows": []}
    taken = {**idle, "id": "i-2-5", "claimed_by": "arn:execution:HOT-1"}
    used = {**idle, "id": "i-3-5", "symbols": [{"symbol": "HOT"}]}
    regular = {"id": "engine-0", "warm": False, "symbols": [{"symbol": "AAA"}]}
    rows = [{**row, "pool": pool_state(row)} for row in (idle, taken, used, regular)]
    assert [row["pool"] for row in rows] == ["idle", "taken", "in use", None]
    assert [engine_label(row) for row in rows] == [
        "i-1-5 (warm)",
        "i-2-5 (warm, taken)",
        "i-3-5",
        "engine-0",
    ]
    assert pool_state({**idle, "error": "EngineUnavailable"}) is None
    group = {
        "AutoScalingGroupName": "hotshard-engines-local",
        "DesiredCapacity": 2,
        "MaxSize": 3,
        "Instances": [{"LifecycleState": "InService"}, {"LifecycleState": "Pending"}],
    }
    assert pool_summary(rows, 1, group) == (
        "warm pool: 1 idle of --warm 1, 1 taken by a migration; hotshard-engines-local: "
        "desired 2, max 3, 1 in service"
    )
    assert pool_summary(rows, None, {}) == "warm pool: 1 idle, 1 taken by a migration"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", [["migrate", "HOT"], ["routes"], ["routes", "--json"]])
def test_a_cluster_that_is_gone_is_said_in_one_line_not_a_traceback(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    # A state file left by a `hotshard up` that was killed: nothing answers on its ports.
    port = _closed_port()
    stale = tmp_path / "cluster.json"
    stale.write_text(
        json.dumps(
            {
                "redis": {"host": "127.0.0.1", "port": port},
                "aws_endpoint": f"http://127.0.0.1:{port}",
                "state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:m",
                "engines": [],
            }
        )
    )
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert main([*command, "--state-file", str(stale)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith(f"no answer from the cluster of {stale} (is its `hotshard up` still")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_redis_given_by_hand_that_does_not_answer_is_named(
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = f"127.0.0.1:{_closed_port()}"
    assert main(["routes", "--redis", address]) == EXIT_FAILED
    assert capsys.readouterr().err.startswith(f"no answer from --redis {address}: ConnectionError")


def test_a_crashed_engine_restarts_at_once_and_a_crash_loop_backs_off() -> None:
    assert restart_due(1000.0, 0.0)  # never restarted: at once
    assert not restart_due(1000.0 + RESTART_BACKOFF_S / 2, 1000.0)  # crashed again at once
    assert restart_due(1000.0 + RESTART_BACKOFF_S, 1000.0)


def test_a_fence_names_where_the_book_went_not_an_offset_that_reads_as_a_partition() -> None:
    fence = {"symbol": "HOT", "epoch": 2, "fence_offset": 1, "final_seq": 7, "to_partition": 4}
    assert fence_label(fence) == "HOT->4(e2, through 1)"  # was "HOT@1": partition 1?
