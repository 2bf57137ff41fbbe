"""A redis-server of our own on a free port (never the machine's 6379); redis reports its pid,
so a port taken by another server is noticed."""

import contextlib
import shutil
import signal
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


@dataclass
class RedisServer:
    host: str
    port: int
    process: Process
    argv: tuple[str, ...] = ()
    workdir: Path | None = None

    def restart(self) -> None:
        """Start again on the same port and directory (with an AOF it loses nothing that was
        fsynced: appendfsync everysec, at most about a second)."""
        if self.process.alive():
            self.process.stop(signal.SIGKILL)
        assert self.workdir is not None
        self.process = spawn("redis", self.argv, self.workdir)
        wait_for(self._ours, READY_TIMEOUT_S, f"redis-server on {self.port}")

    def _ours(self) -> bool:
        if not self.process.alive():
            raise ServiceError("redis-server exited")
        info = self.client().info("server")
        return bool(info["process_id"] == self.process.popen.pid)

    def client(self) -> Any:
        import redis  # noqa: PLC0415

        return redis.Redis(host=self.host, port=self.port)


@contextlib.contextmanager
def redis_server(*, appendonly: bool = False) -> Iterator[RedisServer]:
    """redis-server on a free port; `appendonly`: with an AOF (appendfsync everysec), so
    a restart (RedisServer.restart) keeps the data."""
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
                "yes" if appendonly else "no",
                "--appendfsync",
                "everysec",
                "--dir",
                str(path),
            ]
            process = spawn("redis", argv, path)
            server = RedisServer("127.0.0.1", port, process, tuple(argv), path)
            try:
                wait_for(server._ours, READY_TIMEOUT_S, f"redis-server on {port}")
            except ServiceError:
                process.stop(signal.SIGKILL)
                continue
            try:
                yield server
            finally:
                server.process.stop(signal.SIGKILL)
            return
        raise ServiceError("could not start redis-server")
