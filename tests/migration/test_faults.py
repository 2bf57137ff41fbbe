"""The fault matrix around a move (issue 10 goal 5): a task raising, kill -9 of the source or
the target, a Redis restart, a broker pause, each at a step of either strategy. Every run
ends migrated (exit 0) or rolled back (exit 2), never with the symbol MIGRATING, and the
checks of tests/migration/harness.py hold. One representative case runs in `make test`;
the whole matrix is marked `faults` (`make test-all`)."""

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis

import statemachine
from hotshard import names
from hotshard.clients import text
from hotshard.local.control import FAULT_KEY, boto_client
from hotshard.route import ACTIVE
from tests.migration.harness import HOT
from tests.migration.test_correctness import _move_under_load

pytestmark = pytest.mark.integration

PRE_COPY_BEFORE_SWITCH = (
    "ProvisionNewInstance",
    "TransferSnapshot",
    "WaitForCatchUp",
    "SwitchRouting",
)
STOP_AND_COPY_BEFORE_SWITCH = (
    "ProvisionNewInstance",
    "PauseRouting",
    "WaitForDrain",
    "TransferSnapshot",
    "SwitchRouting",
)


def _redis(state: dict[str, Any]) -> redis.Redis:
    return redis.Redis(host=state["redis"]["host"], port=state["redis"]["port"])


def raise_in(step: str) -> Any:
    def before(state: dict[str, Any]) -> None:
        r = _redis(state)
        r.set(FAULT_KEY.format(statemachine.module_of(step)), "fatal")
        r.close()

    return before


def at_step(step: str, act: Any, timeout_s: float = 60.0) -> Any:
    """A `during` that waits until the running execution entered `step`, then acts."""

    def during(state: dict[str, Any]) -> None:
        sfn = boto_client(state["aws_endpoint"])("stepfunctions")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            running = sfn.list_executions(
                stateMachineArn=state["state_machine_arn"], statusFilter="RUNNING"
            )["executions"]
            for execution in running:
                events = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
                if any(e.get("stateEnteredEventDetails", {}).get("name") == step for e in events):
                    act(state)
                    return
            time.sleep(0.05)

    return during


def _engine_pid(state: dict[str, Any], which: str) -> int:
    r = _redis(state)
    try:
        if which == "source":
            instance = text(r.hget(names.REDIS_ROUTE.format(HOT), "instance") or "engine-0")
        else:
            prefix = names.REDIS_FLEET_CLAIM.format("")
            claims = [text(k)[len(prefix) :] for k in r.scan_iter(match=prefix + "*")]
            instance = claims[0]
    finally:
        r.close()
    return _pid_of(state, instance)


def _pid_of(state: dict[str, Any], instance: str) -> int:
    import json  # noqa: PLC0415

    path = Path(state["state_file"])
    fresh = json.loads(path.read_text())
    (engine,) = [e for e in fresh["engines"] if e["id"] == instance]
    return int(engine["pid"])


def kill(which: str) -> Any:
    def act(state: dict[str, Any]) -> None:
        os.kill(_engine_pid(state, which), signal.SIGKILL)

    return act


def restart_redis(state: dict[str, Any]) -> None:
    os.kill(int(state["pids"]["redis"]), signal.SIGTERM)  # the supervisor starts it again


def pause_broker(state: dict[str, Any]) -> None:
    pid = int(state["pids"]["broker"])
    os.kill(pid, signal.SIGSTOP)
    time.sleep(2.0)
    os.kill(pid, signal.SIGCONT)


FAULTS = {
    "raise": None,
    "kill-source": kill("source"),
    "kill-target": kill("target"),
    "redis-restart": restart_redis,
    "broker-pause": pause_broker,
}
MATRIX = [
    (strategy, step, fault)
    for strategy, steps in (
        ("pre-copy", PRE_COPY_BEFORE_SWITCH),
        ("stop-and-copy", STOP_AND_COPY_BEFORE_SWITCH),
    )
    for step in steps
    for fault in FAULTS
    if not (fault == "kill-target" and step == "ProvisionNewInstance")
]
REPRESENTATIVE = {("stop-and-copy", "TransferSnapshot", "raise")}


def _case(strategy: str, step: str, fault: str) -> Any:
    marks = [] if (strategy, step, fault) in REPRESENTATIVE else [pytest.mark.faults]
    return pytest.param(strategy, step, fault, marks=marks, id=f"{strategy}-{step}-{fault}")


@pytest.mark.parametrize(("strategy", "step", "fault"), [_case(*c) for c in MATRIX])
def test_a_fault_during_a_move_ends_moved_or_rolled_back(
    tmp_path: Path, strategy: str, step: str, fault: str
) -> None:
    before = raise_in(step) if fault == "raise" else None
    during = None if fault == "raise" else at_step(step, FAULTS[fault])
    code, summary, printed, _load, verdict = _move_under_load(
        tmp_path, strategy, seed=11, before=before, during=during
    )
    assert code in (0, 2), printed
    if fault == "raise":
        assert code == 2 and summary["status"] == "ROLLED_BACK", printed
    assert verdict.route is not None and verdict.route.status == ACTIVE, verdict.route
    assert not verdict.problems, verdict
    assert verdict.hot_replayed == verdict.events[HOT]
