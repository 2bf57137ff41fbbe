"""`python -m engine` as a child process on a free gRPC port, and its control stub."""

import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotshard.local.services.process import (
    READY_TIMEOUT_S,
    Process,
    ServiceError,
    free_port,
    spawn,
    wait_for,
)


@dataclass
class EngineProcess:
    """`python -m engine` as a child process."""

    grpc_port: int
    instance: str
    process: Process

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def channel(self) -> Any:
        import grpc  # noqa: PLC0415

        return grpc.insecure_channel(self.address)

    def stub(self) -> Any:
        from hotshard.v1 import control_pb2_grpc  # noqa: PLC0415

        return control_pb2_grpc.EngineControlStub(self.channel())  # type: ignore[no-untyped-call]

    def wait_serving(self, timeout: float = READY_TIMEOUT_S) -> None:
        from hotshard.v1 import control_pb2  # noqa: PLC0415

        stub = self.stub()

        def serving() -> bool:
            if not self.process.alive():
                raise ServiceError(f"engine exited:\n{self.process.log_tail()}")
            return bool(stub.Health(control_pb2.HealthRequest(), timeout=1).serving)

        wait_for(serving, timeout, f"engine {self.instance}", interval=0.05)


def start_engine(
    *,
    workdir: Path,
    brokers: str,
    redis_port: int,
    partitions: str,
    instance: str,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    grpc_port: int | None = None,
    wait: bool = True,
    wrapper: Sequence[str] = (),
) -> EngineProcess:
    """`wrapper`: a command the engine runs under (e.g. valgrind and its options)."""
    port = grpc_port or free_port()
    argv = [
        *wrapper,
        sys.executable,
        "-m",
        "engine",
        "--kafka-brokers",
        brokers,
        "--redis-host",
        "127.0.0.1",
        "--redis-port",
        str(redis_port),
        "--grpc-bind",
        "127.0.0.1",
        "--grpc-port",
        str(port),
        "--partitions",
        partitions,
        "--instance-id",
        instance,
        *extra_args,
    ]
    repo = Path(__file__).resolve().parents[3]
    engine = EngineProcess(
        port,
        instance,
        spawn(f"engine-{instance}", argv, workdir, {"PYTHONPATH": str(repo), **(env or {})}),
    )
    if wait:
        try:
            engine.wait_serving()
        except ServiceError:
            engine.process.stop(signal.SIGKILL)
            raise
    return engine
