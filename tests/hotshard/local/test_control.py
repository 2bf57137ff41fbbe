"""The local control plane: moto's Step Functions executing the repository's ASL with the
task Lambdas dispatched in-process (hotshard.local.control), and the adapter alone."""

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

import statemachine
from hotshard import names, route
from hotshard.local.control import (
    FAULT_KEY,
    FUNCTION_PREFIX,
    HELD_KEY,
    RELEASE_KEY,
    ControlPlane,
    InjectedFault,
    LambdaDispatch,
    control_plane,
    execution_name,
    point_faults,
    redis_faults,
    redis_holds,
    task_handlers,
)
from hotshard.local.services.redis import RedisServer
from hotshard.migration import runtime
from hotshard.migration.errors import NoHotSymbol
from hotshard.migration.settings import MigrationSettings


def test_the_adapter_answers_like_a_lambda() -> None:
    def ok(event: Any, context: Any) -> dict[str, Any]:
        return {"got": event, "name": context.function_name}

    def refuses(event: Any, context: Any) -> None:
        raise NoHotSymbol("nothing")

    dispatch = LambdaDispatch({"f-ok": ok, "f-no": refuses})
    headers: dict[str, str] = {}
    arn = "arn:aws:lambda:us-east-1:123456789012:function:f-ok"
    assert json.loads(dispatch.invoke(arn, b'{"a": 1}', headers)) == {
        "got": {"a": 1},
        "name": "f-ok",
    }
    assert "x-amz-function-error" not in headers
    payload = json.loads(dispatch.invoke("f-no", "{}", headers))
    assert headers["x-amz-function-error"] == "Unhandled"
    assert (payload["errorType"], payload["errorMessage"]) == (
        "NoHotSymbol",
        "NO_HOT_SYMBOL: nothing",
    )
    headers.clear()
    payload = json.loads(dispatch.invoke("f-missing", "{}", headers))
    assert payload["errorType"] == "ResourceNotFoundException"
    assert dispatch.calls == [
        ("f-ok", "ok"),
        ("f-no", "NoHotSymbol"),
        ("f-missing", "ResourceNotFound"),
    ]


def test_a_held_task_runs_its_handler_once_released() -> None:
    seen: list[str] = []

    def ok(event: Any, context: Any) -> dict[str, Any]:
        seen.append("handler")
        return {"ok": True}

    faults = {"f-ok": "hold"}
    dispatch = LambdaDispatch(
        {"f-ok": ok}, fault=lambda name: faults.pop(name, None), hold=seen.append
    )
    headers: dict[str, str] = {}
    assert json.loads(dispatch.invoke("f-ok", "{}", headers)) == {"ok": True}
    assert json.loads(dispatch.invoke("f-ok", "{}", headers)) == {"ok": True}  # taken once
    assert seen == ["f-ok", "handler", "handler"] and "x-amz-function-error" not in headers
    assert dispatch.calls == [("f-ok", "ok"), ("f-ok", "ok")]


@pytest.mark.integration
def test_a_hold_waits_until_the_test_releases_it(r: Any) -> None:
    function = FUNCTION_PREFIX + "transfer_snapshot"
    r.set(FAULT_KEY.format("transfer_snapshot"), "hold")
    assert redis_faults(r)(function) == "hold" and redis_faults(r)(function) is None
    done = threading.Event()

    def run() -> None:
        redis_holds(r, timeout_s=30)(function)
        done.set()

    held = threading.Thread(target=run)
    held.start()
    deadline = time.monotonic() + 10
    while not r.exists(HELD_KEY.format("transfer_snapshot")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.exists(HELD_KEY.format("transfer_snapshot"))
    assert not done.wait(0.5)  # held: the fault is the test's to inject now
    r.set(RELEASE_KEY.format("transfer_snapshot"), "1")
    assert done.wait(5)
    held.join(5)
    assert not r.exists(RELEASE_KEY.format("transfer_snapshot"))  # taken: the next one waits
    began = time.monotonic()
    redis_holds(r, timeout_s=0.3)(function)  # never released: it gives up, it never hangs
    assert 0.3 <= time.monotonic() - began < 3


def _getdels(r: Any) -> int:
    return int(r.info("commandstats").get("cmdstat_getdel", {}).get("calls", 0))


@pytest.mark.integration
def test_a_fault_point_with_nothing_armed_costs_no_round_trip(r: Any) -> None:
    """Two points are inside SwitchRouting's pause: reaching them must not ask Redis
    (before, each was a GETDEL there: a round trip in the pause the benchmark measures)."""
    r.set(FAULT_KEY.format("switch_routing@promoted"), "fatal")
    fault = point_faults(r)  # the task's context is made: one MGET
    r.config_resetstat()
    fault("SwitchRouting:moved")
    assert _getdels(r) == 0
    with pytest.raises(InjectedFault, match="SwitchRouting at promoted"):
        fault("SwitchRouting:promoted")
    fault("SwitchRouting:promoted")  # taken once
    assert _getdels(r) == 1 and not r.exists(FAULT_KEY.format("switch_routing@promoted"))
    r.set(FAULT_KEY.format("cleanup@somewhere"), "fatal")  # not a known point: asked
    with pytest.raises(InjectedFault):
        fault("Cleanup:somewhere")


def test_a_redis_that_does_not_answer_holds_no_fault_and_no_task() -> None:
    gone = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    function = FUNCTION_PREFIX + "cleanup"
    assert redis_faults(gone)(function) is None
    began = time.monotonic()
    redis_holds(gone, timeout_s=0.5)(function)
    assert time.monotonic() - began < 5


def test_every_task_of_the_asl_has_its_handler() -> None:
    handlers = task_handlers()
    assert set(handlers) == {
        FUNCTION_PREFIX + statemachine.module_of(t) for t in statemachine.task_names()
    }
    assert len(handlers) == 10


def test_execution_names_say_what_they_move() -> None:
    assert execution_name({"symbol": "HOT", "strategy": "pre-copy"}).startswith("HOT-pre-copy-")
    assert execution_name({"source": "aws.cloudwatch"}).startswith("alarm-auto-")
    assert execution_name({"symbol": "a b"}) != execution_name({"symbol": "a b"})


@pytest.fixture(scope="module")
def plane(redis_server: RedisServer) -> Iterator[ControlPlane]:
    settings = MigrationSettings(redis_port=redis_server.port, spare_partitions=(4,))
    with control_plane(settings) as p:
        yield p


def _events(plane: ControlPlane, arn: str) -> list[dict[str, Any]]:
    sfn = plane.client("stepfunctions")
    events: list[dict[str, Any]] = sfn.get_execution_history(executionArn=arn)["events"]
    return events


@pytest.mark.integration
def test_the_deployed_machine_is_the_repository_asl(plane: ControlPlane) -> None:
    described = plane.client("stepfunctions").describe_state_machine(
        stateMachineArn=plane.state_machine_arn
    )
    definition = json.loads(described["definition"])
    assert definition["States"].keys() == statemachine.load()["States"].keys()
    assert "FunctionArn}" not in described["definition"]
    resource = definition["States"]["Rollback"]["Resource"]
    assert resource.endswith(f":function:{FUNCTION_PREFIX}rollback")


@pytest.mark.integration
def test_bad_input_ends_not_started_through_the_real_task(plane: ControlPlane, r: Any) -> None:
    arn = plane.start_execution({"strategy": "teleport", "symbol": "X"})
    final = plane.wait(arn, 60)
    assert (final["status"], final["error"]) == ("FAILED", names.MIGRATION_NOT_STARTED)
    failed = [e for e in _events(plane, arn) if e["type"] == "LambdaFunctionFailed"]
    assert failed[0]["lambdaFunctionFailedEventDetails"]["error"] == "BadInput"


@pytest.mark.integration
def test_a_symbol_already_on_its_target_is_nothing_to_move(plane: ControlPlane, r: Any) -> None:
    route.list_symbol_at(r, "HOT", 0, "engine-0")
    r.hset(
        names.REDIS_ENGINE.format("engine-0"), mapping={"address": "127.0.0.1:1", "partitions": "0"}
    )
    r.sadd(names.REDIS_ENGINES, "engine-0")
    arn = plane.start_execution({"symbol": "HOT", "target": "engine-0"})
    final = plane.wait(arn, 60)
    assert final["status"] == "SUCCEEDED"
    entered = [
        e["stateEnteredEventDetails"]["name"]
        for e in _events(plane, arn)
        if e["type"].endswith("StateEntered")
    ]
    assert entered == ["DetectHotSymbol", "NothingToMove"]


@pytest.fixture(scope="module")
def isolated(redis_server: RedisServer, tmp_path_factory: Any) -> Iterator[ControlPlane]:
    settings = MigrationSettings(redis_port=redis_server.port, spare_partitions=(4,))
    logs = tmp_path_factory.mktemp("task-workers")
    with control_plane(settings, task_processes=True, log_dir=logs) as p:
        yield p


@pytest.mark.integration
def test_tasks_in_their_own_processes_answer_as_lambdas(isolated: ControlPlane, r: Any) -> None:
    """The dispatch forwards each task to a worker process (hotshard.local.lambdas): its
    refusal comes back with its own errorType, which the ASL's Catch matches; a result
    comes back as the step's. A task that ran in this process would meet a Context that
    refuses to be made."""

    def not_here(_execution: str) -> Any:
        raise AssertionError("a task ran in the dispatching process")

    runtime.use_context(not_here)
    try:
        _through_the_workers(isolated, r)
    finally:
        runtime.use_context(None)


def _through_the_workers(isolated: ControlPlane, r: Any) -> None:
    arn = isolated.start_execution({"strategy": "teleport", "symbol": "X"})
    final = isolated.wait(arn, 60)
    assert (final["status"], final["error"]) == ("FAILED", names.MIGRATION_NOT_STARTED)
    failed = [e for e in _events(isolated, arn) if e["type"] == "LambdaFunctionFailed"]
    assert failed[0]["lambdaFunctionFailedEventDetails"]["error"] == "BadInput"
    route.list_symbol_at(r, "HOT2", 0, "engine-0")
    r.hset(
        names.REDIS_ENGINE.format("engine-0"), mapping={"address": "127.0.0.1:1", "partitions": "0"}
    )
    r.sadd(names.REDIS_ENGINES, "engine-0")
    arn = isolated.start_execution({"symbol": "HOT2", "target": "engine-0"})
    assert isolated.wait(arn, 60)["status"] == "SUCCEEDED"
    assert ("hotshard-migration-detect_hot_symbol", "BadInput") in isolated.dispatch.calls
