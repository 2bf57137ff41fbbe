"""The migration ASL's structure: both strategies, retries, rollback, the alarmed failure."""

import json
from typing import Any

import pytest

from hotshard import names
from infra.migration import ASL_PATH, walk_states

TRANSIENT = {"EngineUnavailable", "StoreUnavailable", "Lambda.ServiceException"}
BEFORE_SWITCH = (
    "ProvisionNewInstance",
    "PauseRouting",
    "WaitForDrain",
    "TransferSnapshot",
    "WaitForCatchUp",
    "SwitchRouting",
)
AFTER_SWITCH = ("ReplayPendingOrders", "Cleanup")
# the steps before the switch each strategy runs (a failure in any of them rolls back)
STRATEGY_BEFORE_SWITCH = {
    "stop-and-copy": tuple(s for s in BEFORE_SWITCH if s != "WaitForCatchUp"),
    "pre-copy": tuple(s for s in BEFORE_SWITCH if s not in ("PauseRouting", "WaitForDrain")),
}


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ASL_PATH.read_text())
    return loaded


def run(asl: dict[str, Any], strategy: str, fail_at: str = "") -> tuple[list[str], str]:
    """Walk the definition as an execution would: every task succeeds except `fail_at`
    (its error goes to the first Catch that matches States.ALL). Returns the tasks run and
    the terminal state."""
    states = asl["States"]
    state: str = asl["StartAt"]
    seen: list[str] = []
    while True:
        spec = states[state]
        if spec["Type"] in ("Succeed", "Fail"):
            return seen, state
        if spec["Type"] == "Choice":
            chosen = [
                c["Next"]
                for c in spec["Choices"]
                if c["Variable"] == "$.migration.strategy" and c["StringEquals"] == strategy
            ]
            state = chosen[0] if chosen else spec["Default"]
            continue
        seen.append(state)
        if state == fail_at:
            (catch,) = [c for c in spec["Catch"] if "States.ALL" in c["ErrorEquals"]]
            state = catch["Next"]
            fail_at = ""
            continue
        state = spec["Next"]


def test_stop_and_copy_runs_the_seed_steps(asl: dict[str, Any]) -> None:
    assert run(asl, "stop-and-copy") == (
        [
            "DetectHotSymbol",
            "ProvisionNewInstance",
            "PauseRouting",
            "WaitForDrain",
            "TransferSnapshot",
            "SwitchRouting",
            "ReplayPendingOrders",
            "Cleanup",
        ],
        "Migrated",
    )


def test_pre_copy_warms_up_and_catches_up_without_pausing(asl: dict[str, Any]) -> None:
    tasks, end = run(asl, "pre-copy")
    assert end == "Migrated"
    assert tasks == [
        "DetectHotSymbol",
        "ProvisionNewInstance",
        "TransferSnapshot",
        "WaitForCatchUp",
        "SwitchRouting",
        "ReplayPendingOrders",
        "Cleanup",
    ]
    assert "PauseRouting" not in tasks and "WaitForDrain" not in tasks


def test_an_unknown_strategy_is_stop_and_copy_only_by_default_branch(
    asl: dict[str, Any],
) -> None:
    # DetectHotSymbol validates the strategy; the Choice's Default is the seed's plan.
    assert asl["States"]["ChooseStrategy"]["Default"] == "PauseRouting"
    assert asl["States"]["AfterTransfer"]["Default"] == "SwitchRouting"


@pytest.mark.parametrize(
    ("strategy", "step"),
    [(s, step) for s, steps in STRATEGY_BEFORE_SWITCH.items() for step in steps],
)
def test_a_failure_before_the_switch_completed_rolls_back(
    asl: dict[str, Any], strategy: str, step: str
) -> None:
    tasks, end = run(asl, strategy, fail_at=step)
    assert step in tasks, f"{strategy} does not run {step}"
    assert tasks[-1] == "Rollback"
    assert end == "RolledBack"
    assert asl["States"][end]["Error"] == names.MIGRATION_ROLLED_BACK


@pytest.mark.parametrize("step", AFTER_SWITCH)
def test_a_failure_after_the_switch_never_routes_back(asl: dict[str, Any], step: str) -> None:
    tasks, end = run(asl, "pre-copy", fail_at=step)
    assert "Rollback" not in tasks
    assert asl["States"][end]["Error"] == names.MIGRATION_FAILED_AFTER_SWITCH


def test_a_failed_rollback_ends_in_the_alarmed_fail_state(asl: dict[str, Any]) -> None:
    _, end = run(asl, "stop-and-copy", fail_at="WaitForDrain")
    assert end == "RolledBack"
    rollback = asl["States"]["Rollback"]
    (catch,) = rollback["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"]
    failed = asl["States"][catch["Next"]]
    assert failed == {**failed, "Type": "Fail", "Error": names.MIGRATION_ROLLBACK_FAILED}
    # The failure of the rollback keeps the original error next to its own.
    assert catch["ResultPath"] not in ("$", "$.error")


def test_nothing_to_move_and_bad_input_change_nothing(asl: dict[str, Any]) -> None:
    detect = asl["States"]["DetectHotSymbol"]
    nexts = {tuple(c["ErrorEquals"]): c["Next"] for c in detect["Catch"]}
    assert nexts == {("NoHotSymbol",): "NothingToMove", ("States.ALL",): "NotStarted"}
    assert asl["States"]["NotStarted"]["Error"] == names.MIGRATION_NOT_STARTED


def test_every_task_retries_transient_errors(asl: dict[str, Any]) -> None:
    tasks = [(n, s) for n, s in walk_states(asl["States"]) if s["Type"] == "Task"]
    assert len(tasks) == 10
    for name, state in tasks:
        retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
        assert retried >= TRANSIENT, name
        assert "States.ALL" not in retried, name  # a real failure goes to its Catch at once
        assert state["Resource"] == f"${{{name}FunctionArn}}"
        assert 0 < state["TimeoutSeconds"] <= 900


def test_polling_steps_retry_their_own_not_ready_errors(asl: dict[str, Any]) -> None:
    def retried(state: str) -> set[str]:
        return {e for r in asl["States"][state]["Retry"] for e in r["ErrorEquals"]}

    assert "InstanceNotReady" in retried("ProvisionNewInstance")
    assert "NotCaughtUp" in retried("WaitForCatchUp")


def test_results_keep_the_input(asl: dict[str, Any]) -> None:
    # Every task adds its result under its own path: later steps (and Rollback) see all.
    paths = [s["ResultPath"] for _, s in walk_states(asl["States"]) if s["Type"] == "Task"]
    assert len(set(paths)) == len(paths)
    assert all(p.startswith("$.") and p.count(".") == 1 for p in paths)
    assert "QueryLanguage" not in json.dumps(asl)
