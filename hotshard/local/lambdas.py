"""The migration's task Lambdas in processes of their own, as in AWS (each invocation runs
in a Lambda container: a process that runs one invocation at a time and stays warm for the
next).

The in-process dispatch (hotshard.local.control.LambdaDispatch with the handlers
themselves) runs every task on a thread of the process that runs moto, and beside whatever
else that process runs: a benchmark's or a demo's trading clients and readers. There each
round trip inside a move's pause (the route write, the Fence, the Promote) waited for that
process's GIL on its way back (bench.migration run 10: a 30-41 ms route write, a Promote
answered in 1.8 ms on the engine and 76 ms at the task). Here the dispatch only forwards
the event to a warm worker process and waits on a socket (no GIL held), and the task's
own round trips are the worker's alone.

    with TaskProcesses(settings, moto_url) as workers:
        dispatch = LambdaDispatch(workers.handlers())

A worker is `python -m hotshard.local.lambdas --fd N`: it reads invocations from the
socket N (multiprocessing.connection framing, JSON), runs the task's handler with the
local Context (hotshard.local.control.local_context: the cluster's Redis and broker,
moto's Auto Scaling group, the fault points a test armed in Redis) and answers with the
result, or the exception's type, message and traceback, which the dispatch answers with
as a Lambda would (the ASL's Retry and Catch match the type's name).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from hotshard.migration.settings import MigrationSettings

Handler = Callable[[Any, Any], Any]
WARM = 2
"""Workers started with the pool (their imports take ~1-2 s: a cold start outside a move)."""


class TaskError(Exception):
    """A task's handler raised in its worker: the exception's type name (errorType), its
    message and its traceback, as the worker sent them."""

    def __init__(self, error_type: str, message: str, trace: list[str]) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace


class WorkerGone(Exception):  # noqa: N818 - the errorType a Lambda runtime that died gives
    """The worker died during an invocation (a Lambda's Runtime.ExitError)."""


def settings_json(settings: MigrationSettings) -> str:
    return json.dumps(dataclasses.asdict(settings))


def settings_of(text: str) -> MigrationSettings:
    values = json.loads(text)
    values["spare_partitions"] = tuple(values.get("spare_partitions") or ())
    return MigrationSettings(**values)


@dataclasses.dataclass
class Worker:
    popen: subprocess.Popen[bytes]
    conn: Connection

    def invoke(self, name: str, event: Any, context: Any) -> Any:
        request = {
            "function": name,
            "event": event,
            "request_id": getattr(context, "aws_request_id", ""),
            "arn": getattr(context, "invoked_function_arn", ""),
        }
        try:
            self.conn.send_bytes(json.dumps(request).encode())
            reply = json.loads(self.conn.recv_bytes())
        except (EOFError, OSError) as exc:
            raise WorkerGone(f"the worker running {name} exited: {exc}") from exc
        if "error" in reply:
            raise TaskError(reply["error"], reply["message"], reply.get("trace") or [])
        return reply["result"]

    def close(self) -> None:
        self.conn.close()  # the worker reads EOF and exits
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


class TaskProcesses:
    """Warm worker processes, one invocation at a time each; an invocation takes an idle
    one or starts one more (concurrent executions: one container each, as in AWS)."""

    def __init__(
        self,
        settings: MigrationSettings,
        moto_url: str,
        *,
        warm: int = WARM,
        log_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.moto_url = moto_url
        self.log_dir = log_dir
        self._idle: list[Worker] = []
        self._all: list[Worker] = []
        self._lock = threading.Lock()
        for _ in range(warm):
            self._idle.append(self._start())

    def _start(self) -> Worker:
        parent, child = socket.socketpair()
        argv = [
            sys.executable,
            "-m",
            "hotshard.local.lambdas",
            "--fd",
            str(child.fileno()),
            "--settings",
            settings_json(self.settings),
            "--moto-url",
            self.moto_url,
        ]
        log = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log = (self.log_dir / f"task-worker-{len(self._all)}.log").open("ab")
        try:
            popen = subprocess.Popen(
                argv,
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=os.environ.copy(),
            )
        finally:
            child.close()
            if log is not None:
                log.close()
        worker = Worker(popen, Connection(parent.detach()))
        self._all.append(worker)
        return worker

    def _take(self) -> Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.popen.poll() is None:
                    return worker
            return self._start()

    def _give(self, worker: Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def invoke(self, name: str, event: Any, context: Any) -> Any:
        worker = self._take()
        try:
            result = worker.invoke(name, event, context)
        except WorkerGone:
            raise
        except BaseException:
            self._give(worker)
            raise
        self._give(worker)
        return result

    def handlers(self, names: list[str]) -> dict[str, Handler]:
        """Function name -> a handler that runs the function in a worker."""
        return {name: functools.partial(self.invoke, name) for name in names}

    def close(self) -> None:
        with self._lock:
            workers, self._all, self._idle = self._all, [], []
        for worker in workers:
            worker.close()

    def __enter__(self) -> TaskProcesses:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------- the worker


def serve(conn: Connection, settings: MigrationSettings, moto_url: str) -> None:
    """Answer invocations until the dispatch closes its end."""
    from hotshard.local import control  # noqa: PLC0415 - the worker's side only
    from hotshard.migration import runtime  # noqa: PLC0415

    make = control.boto_client(moto_url)
    runtime.use_context(control.local_context(settings, lambda: make("autoscaling")))
    handlers = control.task_handlers()
    while True:
        try:
            request = json.loads(conn.recv_bytes())
        except EOFError:
            return
        name = str(request["function"])
        context = control.InvokeContext(name, str(request["request_id"]), str(request["arn"]))
        try:
            reply: dict[str, Any] = {"result": handlers[name](request["event"], context)}
        except Exception as exc:
            reply = {
                "error": type(exc).__name__,
                "message": str(exc),
                "trace": traceback.format_exception(exc),
            }
        conn.send_bytes(json.dumps(reply).encode())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hotshard.local.lambdas")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--settings", required=True)
    p.add_argument("--moto-url", required=True)
    args = p.parse_args(argv)
    conn = Connection(args.fd)
    try:
        serve(conn, settings_of(args.settings), args.moto_url)
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
