"""The local control plane: what Step Functions, Lambda and the Auto Scaling API are in AWS,
on one machine (DESIGN section 8).

- moto in this process (a threaded server on a free port) is the AWS endpoint, configured
  with `{"stepfunctions": {"execute_state_machine": true}, "lambda": {"use_docker":
  false}}` so its Step Functions executes the repository's ASL (statemachine/
  migration.asl.json), `${<Task>FunctionArn}` substituted by the ARNs of Lambda functions
  created in moto, one per task, as infra/migration.py wires them in AWS;
- `LambdaDispatch` is the one adapter: moto's simple Lambda backend answers invokes with a
  canned payload, so its `invoke` is replaced by a call of the task's handler
  (statemachine.tasks.<task>.handler) in this process; an exception becomes the
  `FunctionError` header and `{"errorType", "errorMessage"}` payload a real Lambda
  returns, which the ASL's Retry and Catch match by errorType;
- the tasks' Context (hotshard.migration.runtime.use_context) points at the cluster's
  Redis and broker, and its fleet at moto's Auto Scaling group (hotshard.local.fleet keeps
  that group and the warm engine processes in step).

    with control_plane(settings) as plane:
        arn = plane.start_execution({"symbol": "HOT", "strategy": "pre-copy"})
        final = plane.wait(arn)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import time
import traceback
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any

import redis

import statemachine
from hotshard import clients
from hotshard.local.lambdas import TaskError, TaskProcesses
from hotshard.local.services.process import free_port
from hotshard.migration import runtime, steps
from hotshard.migration.errors import StoreUnavailable
from hotshard.migration.fleet import AutoScalingFleet
from hotshard.migration.markers import Broker
from hotshard.migration.settings import MigrationSettings

MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
FUNCTION_PREFIX = "hotshard-migration-"
ROLE_NAME = "hotshard-migration-local"
STATE_MACHINE_NAME = "hotshard-migration"
ASG_NAME = "hotshard-engines"
REGION = "us-east-1"
KEY, SECRET = "testing", "testing"
TERMINAL = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
TASK_SWITCH_INTERVAL_S = 0.0005

Handler = Callable[[Any, Any], Any]
FAULT_KEY = "local-fault:{}"  # Redis, local only: a task module -> "fatal" | "transient" | "hold"
HELD_KEY = "local-fault-held:{}"  # a task held by "hold" says so: the test injects its fault now
RELEASE_KEY = "local-fault-release:{}"  # the test injected it: the held task goes on
HOLD_TIMEOUT_S = 120.0


class InjectedFault(Exception):  # noqa: N818 - its name is the ASL error a test expects
    """A failure a test asked the local control plane to inject into one task (its Catch
    sees `InjectedFault`; "transient" raises StoreUnavailable, which the ASL retries;
    "hold" raises nothing: the task waits, before its handler runs, until the test has
    injected a fault of its own, e.g. a kill -9, at that step)."""


@dataclass
class InvokeContext:
    """What a handler sees as its Lambda context (Powertools reads these fields)."""

    function_name: str
    aws_request_id: str
    invoked_function_arn: str = ""
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@dataclass
class LambdaDispatch:
    """Function name -> handler; `invoke` has the signature of moto's
    LambdaSimpleBackend.invoke and answers as a Lambda would."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (function, outcome)
    fault: Callable[[str], str | None] | None = None  # function name -> fault to inject
    hold: Callable[[str], None] | None = None  # "hold": wait until released (redis_holds)
    _count: int = 0

    def invoke(
        self,
        function_name: str,
        body: Any,
        response_headers: dict[str, str],
    ) -> bytes:
        name = function_name.rsplit(":", 1)[-1] if ":function:" in function_name else function_name
        name = name.split(":")[0]
        handler = self.handlers.get(name)
        self._count += 1
        if handler is None:
            response_headers["x-amz-function-error"] = "Unhandled"
            self.calls.append((name, "ResourceNotFound"))
            return _error("ResourceNotFoundException", f"no local handler for {name}")
        event = json.loads(body) if body else {}
        context = InvokeContext(name, f"local-{self._count}", function_name)
        try:
            injected = self.fault(name) if self.fault is not None else None
            if injected == "hold":
                if self.hold is not None:
                    self.hold(name)
            elif injected == "transient":
                raise StoreUnavailable(f"injected into {name}")
            elif injected:
                raise InjectedFault(f"injected into {name}: {injected}")
            result = handler(event, context)
        except TaskError as exc:  # raised in the task's own process
            response_headers["x-amz-function-error"] = "Unhandled"
            self.calls.append((name, exc.error_type))
            return _error(exc.error_type, exc.message, exc.trace)
        except Exception as exc:
            response_headers["x-amz-function-error"] = "Unhandled"
            self.calls.append((name, type(exc).__name__))
            return _error(type(exc).__name__, str(exc), traceback.format_exception(exc))
        self.calls.append((name, "ok"))
        return json.dumps(result).encode()


def _error(kind: str, message: str, trace: list[str] | None = None) -> bytes:
    return json.dumps(
        {"errorType": kind, "errorMessage": message, "stackTrace": trace or []}
    ).encode()


@contextlib.contextmanager
def dispatching(dispatch: LambdaDispatch) -> Iterator[LambdaDispatch]:
    """moto's simple Lambda backend invokes through `dispatch` inside the block."""
    from moto.awslambda_simple.models import LambdaSimpleBackend  # noqa: PLC0415

    original = LambdaSimpleBackend.invoke

    def invoke(
        _self: Any,
        function_name: str,
        _qualifier: str | None,
        body: Any,
        _headers: Any,
        response_headers: Any,
    ) -> bytes:
        return dispatch.invoke(function_name, body, response_headers)

    LambdaSimpleBackend.invoke = invoke  # type: ignore[assignment,method-assign]
    try:
        yield dispatch
    finally:
        LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]


def task_handlers() -> dict[str, Handler]:
    """Function name in moto -> the task module's handler, for every task of the ASL."""
    out: dict[str, Handler] = {}
    for task in statemachine.task_names():
        module = import_module(f"statemachine.tasks.{statemachine.module_of(task)}")
        out[FUNCTION_PREFIX + statemachine.module_of(task)] = module.handler
    return out


@dataclass
class ControlPlane:
    url: str
    region: str
    state_machine_arn: str
    dispatch: LambdaDispatch
    client_factory: Callable[[str], Any]

    def client(self, service: str) -> Any:
        return self.client_factory(service)

    def start_execution(self, payload: Mapping[str, Any], name: str | None = None) -> str:
        return start_execution(self.client("stepfunctions"), self.state_machine_arn, payload, name)

    def wait(self, execution_arn: str, timeout_s: float = 300.0) -> dict[str, Any]:
        return wait_execution(self.client("stepfunctions"), execution_arn, timeout_s)


def execution_name(payload: Mapping[str, Any]) -> str:
    """A unique execution name that says what it moves (`HOT-pre-copy-1a2b3c4d`)."""
    what = str(payload.get("symbol") or payload.get("engine") or "alarm")
    what = "".join(c if c.isalnum() or c in "-_" else "-" for c in what)[:40]
    strategy = str(payload.get("strategy") or "auto")[:16]
    return f"{what}-{strategy}-{uuid.uuid4().hex[:8]}"


def start_execution(
    sfn: Any, state_machine_arn: str, payload: Mapping[str, Any], name: str | None = None
) -> str:
    reply = sfn.start_execution(
        stateMachineArn=state_machine_arn,
        name=name or execution_name(payload),
        input=json.dumps(dict(payload)),
    )
    return str(reply["executionArn"])


def wait_execution(sfn: Any, execution_arn: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """DescribeExecution once the execution ended (TimeoutError if it did not in time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] in TERMINAL:
            return described
        if time.monotonic() > deadline:
            raise TimeoutError(f"{execution_arn} still {described['status']}")
        time.sleep(0.1)


def boto_client(url: str, region: str = REGION) -> Callable[[str], Any]:
    import boto3  # type: ignore[import-untyped]  # noqa: PLC0415

    def make(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=url,
            region_name=region,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
        )

    return make


def redis_faults(r: Any) -> Callable[[str], str | None]:
    """Faults a test put in Redis (`local-fault:<task module>`), each taken once. A Redis
    that does not answer (a test restarting it) has no fault to give: the task runs as it
    would in AWS, where nothing asks Redis first."""

    def take(function: str) -> str | None:
        try:
            value = r.getdel(FAULT_KEY.format(function.removeprefix(FUNCTION_PREFIX)))
        except (redis.ConnectionError, redis.TimeoutError):
            return None
        return (
            None if value is None else (value.decode() if isinstance(value, bytes) else str(value))
        )

    return take


def point_faults(r: Any) -> Callable[[str], None]:
    """Context.fault locally: `local-fault:<task module>@<point>` (e.g.
    `local-fault:switch_routing@moved`, just after SwitchRouting moved the route) makes the
    step raise InjectedFault at that point, once. The known points (steps.FAULT_POINTS)
    armed are read in one MGET now, when the task's context is made, so a point reached
    with nothing armed costs no round trip inside the step: two of them are inside
    SwitchRouting's pause (a Redis round trip took up to 351 ms at load 30; in AWS there
    is none). Tests arm them before the execution or while its task is held, i.e. before
    this. A point not in the list, or a Redis that did not answer the MGET, is asked
    when reached."""
    points = steps.FAULT_POINTS
    try:
        values = r.mget([_point_key(p) for p in points])
        armed: set[str] | None = {p for p, v in zip(points, values, strict=True) if v is not None}
    except (redis.ConnectionError, redis.TimeoutError):
        armed = None

    def fault(point: str) -> None:
        if armed is not None and point in points:
            if point not in armed:
                return
            armed.discard(point)  # taken once
        if r.getdel(_point_key(point)) is not None:
            task, _, where = point.partition(":")
            raise InjectedFault(f"injected into {task} at {where}")

    return fault


def _point_key(point: str) -> str:
    task, _, where = point.partition(":")
    return FAULT_KEY.format(f"{statemachine.module_of(task)}@{where}")


def redis_holds(r: Any, timeout_s: float = HOLD_TIMEOUT_S) -> Callable[[str], None]:
    """How a task held by the "hold" fault waits: it sets `local-fault-held:<task module>`,
    then waits until the test sets `local-fault-release:<task module>` (taken once) or
    `timeout_s` passed. A fault injected from outside at a step is then sure to strike
    while the execution is in that step, however slow the machine (a whole pre-copy move
    takes ~2 s, a poll of the execution's history up to seconds at load 30). Redis not
    answering meanwhile (the fault may be its restart) is waited out."""

    def hold(function: str) -> None:
        module = function.removeprefix(FUNCTION_PREFIX)
        deadline = time.monotonic() + timeout_s
        said = False
        while time.monotonic() < deadline:
            try:
                if not said:
                    r.set(HELD_KEY.format(module), "1", ex=int(timeout_s) + 60)
                    said = True
                if r.getdel(RELEASE_KEY.format(module)) is not None:
                    return
            except (redis.ConnectionError, redis.TimeoutError):
                pass
            time.sleep(0.05)

    return hold


def local_context(
    settings: MigrationSettings, autoscaling: Callable[[], Any]
) -> Callable[[str], steps.Context]:
    """The tasks' Context on this machine: the cluster's Redis and broker, moto's fleet."""

    def make(execution: str) -> steps.Context:
        r = clients.redis_client(settings)
        fleet = AutoScalingFleet(
            r,
            spare=settings.spare_partitions,
            asg_name=settings.engine_asg,
            autoscaling=autoscaling,
        )
        return steps.Context(
            settings,
            r,
            fleet,
            Broker(clients.kafka_base(settings)),
            execution,
            fault=point_faults(r),
        )

    return make


def _configure(url: str) -> None:
    """A fresh moto (its backends are per process: a second control plane in one process
    starts from nothing) configured to execute state machines without Docker."""
    reset = urllib.request.Request(f"{url}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(reset, timeout=10):
        pass
    request = urllib.request.Request(
        f"{url}/moto-api/config",
        data=json.dumps(MOTO_CONFIG).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        if reply.status >= 300:
            raise RuntimeError(f"moto refused its config: {reply.status}")


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("handler.py", "# dispatched in-process by hotshard.local.control\n")
    return buffer.getvalue()


def deploy(make: Callable[[str], Any], settings: MigrationSettings) -> str:
    """What the CDK migration stack creates, in moto: a role, one function per task, the
    state machine from the substituted ASL. Returns the state machine's ARN."""
    iam = make("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(trust))
    role_arn = role["Role"]["Arn"]
    lam = make("lambda")
    arns: dict[str, str] = {}
    environment = {
        "SPARE_PARTITIONS": ",".join(str(p) for p in settings.spare_partitions),
        "ENGINE_ASG": settings.engine_asg,
    }
    for task in statemachine.task_names():
        module = statemachine.module_of(task)
        created = lam.create_function(
            FunctionName=FUNCTION_PREFIX + module,
            Runtime="python3.11",
            Role=role_arn,
            Handler=f"statemachine.tasks.{module}.handler",
            Code={"ZipFile": _zip()},
            Timeout=900,
            Environment={"Variables": environment},
        )
        arns[task] = created["FunctionArn"]
    machine = make("stepfunctions").create_state_machine(
        name=STATE_MACHINE_NAME, definition=statemachine.definition(arns), roleArn=role_arn
    )
    return str(machine["stateMachineArn"])


@contextlib.contextmanager
def control_plane(
    settings: MigrationSettings,
    region: str = REGION,
    *,
    task_processes: bool = False,
    log_dir: Path | None = None,
) -> Iterator[ControlPlane]:
    """moto in this process with the state machine deployed and Lambda dispatched to the
    task handlers; the tasks use `settings` (the cluster's Redis, broker, spare partitions,
    moto's Auto Scaling group). `task_processes`: each task runs in a warm worker process
    of its own (hotshard.local.lambdas), as a Lambda does, not on a thread of this one
    (their output in `log_dir`)."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("moto").setLevel(logging.CRITICAL)  # its ASL interpreter logs every Fail
    port = free_port()
    # moto's Step Functions calls Lambda on its own server: MOTO_PORT says where.
    previous = os.environ.get("MOTO_PORT")
    os.environ["MOTO_PORT"] = str(port)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    # The tasks run on threads of this process, beside whatever else it runs (a demo's or
    # a benchmark's trading clients): each blocking call of a task (Redis, gRPC) gives up
    # the GIL, and with CPython's 5 ms switch interval getting it back waited behind a busy
    # thread; a move's pause (one task: route, Fence, Promote) paid that per call. In AWS
    # each task is a Lambda process of its own.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(TASK_SWITCH_INTERVAL_S)
    try:
        _configure(url)
        make = boto_client(url, region)
        runtime.use_context(local_context(settings, lambda: make("autoscaling")))
        with contextlib.ExitStack() as stack:
            handlers = task_handlers()
            if task_processes:
                workers = stack.enter_context(TaskProcesses(settings, url, log_dir=log_dir))
                handlers = workers.handlers(list(handlers))
            dispatch = LambdaDispatch(handlers)
            with dispatching(dispatch):
                arn = deploy(make, settings)
                yield ControlPlane(url, region, arn, dispatch, make)
    finally:
        sys.setswitchinterval(switch_interval)
        runtime.use_context(None)
        server.stop()
        if previous is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = previous
