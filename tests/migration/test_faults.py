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
from hotshard.local.control import FAULT_KEY, HELD_KEY, RELEASE_KEY
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


def hold_in(step: str) -> Any:
    """A `before` that makes the step's first invocation wait, before its handler runs,
    until the injector has struck (hotshard.local.control.redis_holds)."""

    def before(state: dict[str, Any]) -> None:
        r = _redis(state)
        r.set(FAULT_KEY.format(statemachine.module_of(step)), "hold")
        r.close()

    return before


Act = Any  # (state) -> None: the fault, done once the step is entered
Arm = Any  # (state) -> Act: run before the migration starts, to resolve what it acts on


def at_step(step: str, arm: Arm, fired: list[str], timeout_s: float = 240.0) -> Any:
    """A `during` that arms the fault at once (before the migration starts), waits until
    the execution's task for `step` is held (hold_in: entered, its handler not run yet),
    acts, releases the task, and notes in `fired` the step or what went wrong (a fault
    that never fired tested nothing). Before, it polled the execution's history and could
    miss the step: a whole pre-copy move takes ~2 s, one poll up to 6 s at load ~30.
    `timeout_s` outlasts a slow start at load ~20 (`hotshard migrate` itself, a Provision
    waiting for an engine)."""
    module = statemachine.module_of(step)

    def during(state: dict[str, Any]) -> None:
        try:
            act = arm(state)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if _ask(state, lambda r: r.exists(HELD_KEY.format(module)), retry_s=0):
                    act(state)
                    fired.append(step)
                    return
                time.sleep(0.05)
            fired.append(f"{step} not entered within {timeout_s:.0f} s")
        except Exception as exc:  # the thread's end: the test says why it never fired
            fired.append(f"{type(exc).__name__}: {exc}")
        finally:  # the held task goes on (after a Redis restart: once it answers again)
            _ask(state, lambda r: r.set(RELEASE_KEY.format(module), "1", ex=600), retry_s=60)

    return during


def _ask(state: dict[str, Any], command: Any, retry_s: float) -> Any:
    """`command(redis)`, tried again for `retry_s` while Redis does not answer (None then)."""
    deadline = time.monotonic() + retry_s
    while True:
        r = _redis(state)
        try:
            return command(r)
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)
        finally:
            r.close()


def source_instance(state: dict[str, Any]) -> str:
    """The hot symbol's owner now: armed before the move, the move's source (looked up once
    the step is entered, it is the target already if the step was SwitchRouting)."""
    r = _redis(state)
    try:
        return text(r.hget(names.REDIS_ROUTE.format(HOT), "instance") or "engine-0")
    finally:
        r.close()


def target_instance(state: dict[str, Any]) -> str:
    """The engine the running move claimed (ProvisionNewInstance has run); the warm pool's
    own claims (an engine being scaled in) name no execution."""
    r = _redis(state)
    try:
        prefix = names.REDIS_FLEET_CLAIM.format("")
        claims = {text(k)[len(prefix) :]: text(r.get(k) or b"") for k in r.scan_iter(prefix + "*")}
    finally:
        r.close()
    (claimed,) = [engine for engine, by in claims.items() if ":execution:" in by]
    return claimed


def _pid_of(state: dict[str, Any], instance: str) -> int:
    """The instance's process now (the supervisor may have restarted it: the state file
    names its current pid)."""
    import json  # noqa: PLC0415

    path = Path(state["state_file"])
    fresh = json.loads(path.read_text())
    (engine,) = [e for e in fresh["engines"] if e["id"] == instance]
    return int(engine["pid"])


def _kill(instance: str) -> Act:
    def act(state: dict[str, Any]) -> None:
        os.kill(_pid_of(state, instance), signal.SIGKILL)

    return act


def kill_source(state: dict[str, Any]) -> Act:
    return _kill(source_instance(state))  # resolved now, before the step runs


def kill_target(_state: dict[str, Any]) -> Act:
    return lambda state: _kill(target_instance(state))(state)  # claimed by then


def _now(act: Act) -> Arm:
    return lambda _state: act


def restart_redis(state: dict[str, Any]) -> None:
    os.kill(int(state["pids"]["redis"]), signal.SIGTERM)  # the supervisor starts it again


def pause_broker(state: dict[str, Any]) -> None:
    pid = int(state["pids"]["broker"])
    os.kill(pid, signal.SIGSTOP)
    time.sleep(2.0)
    os.kill(pid, signal.SIGCONT)


FAULTS: dict[str, Arm] = {
    "raise": None,
    "kill-source": kill_source,
    "kill-target": kill_target,
    "redis-restart": _now(restart_redis),
    "broker-pause": _now(pause_broker),
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
    before = raise_in(step) if fault == "raise" else hold_in(step)
    fired: list[str] = []
    during = None if fault == "raise" else at_step(step, FAULTS[fault], fired)
    code, summary, printed, _load, verdict = _move_under_load(
        tmp_path, strategy, seed=11, before=before, during=during
    )
    assert code in (0, 2), printed
    assert fault == "raise" or fired == [step], f"{fault} never fired at {step}: {fired}"
    if fault == "raise":
        assert code == 2 and summary["status"] == "ROLLED_BACK", printed
    assert verdict.route is not None and verdict.route.status == ACTIVE, verdict.route
    assert not verdict.problems, verdict
    assert verdict.hot_replayed == verdict.events[HOT]


# A task raising inside SwitchRouting once the route has moved to the target: right after
# route.move / route.switch ("moved": the source's Fence, the pending buffer's marker and
# the target's Promote not done yet) or after the Promote ("promoted": the target owns the
# symbol and applies what q holds of it). The Rollback is a move-back: before it fenced the
# target, a promoted target went on applying q's records after the marker the source's
# replay stopped at (acked orders lost to a book nobody reads, seqs forked).
SWITCH_POINTS = [
    (strategy, point)
    for strategy in ("pre-copy", "stop-and-copy")
    for point in ("moved", "promoted")
]
# All four under `faults`: each took 2-3.5 min at load 20-39 (the < 60 s make-test slot is
# tests/integration/test_move_back_fenced.py: the same move-back, deterministic, ~15-45 s).
SWITCH_REPRESENTATIVE: set[tuple[str, str]] = set()


def raise_inside(step: str, point: str) -> Any:
    def before(state: dict[str, Any]) -> None:
        r = _redis(state)
        r.set(FAULT_KEY.format(f"{statemachine.module_of(step)}@{point}"), "fatal")
        r.close()

    return before


def _switch_case(strategy: str, point: str) -> Any:
    marks = [] if (strategy, point) in SWITCH_REPRESENTATIVE else [pytest.mark.faults]
    return pytest.param(strategy, point, marks=marks, id=f"{strategy}-SwitchRouting@{point}")


@pytest.mark.parametrize(("strategy", "point"), [_switch_case(*c) for c in SWITCH_POINTS])
def test_a_task_raising_after_the_route_moved_moves_it_back_as_if_it_never_moved(
    tmp_path: Path, strategy: str, point: str
) -> None:
    code, summary, printed, _load, verdict = _move_under_load(
        tmp_path, strategy, seed=11, before=raise_inside("SwitchRouting", point)
    )
    assert code == 2 and summary["status"] == "ROLLED_BACK", printed
    assert verdict.route is not None and verdict.route.status == ACTIVE, verdict.route
    assert verdict.route.instance == summary["from"], (verdict.route, summary)
    assert verdict.route.epoch == 3, verdict.route  # listed at 1, moved at 2, back at 3
    assert not verdict.problems, verdict
    assert verdict.hot_replayed == verdict.events[HOT]
