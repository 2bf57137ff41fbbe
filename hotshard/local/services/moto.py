"""moto in server mode on a free port: the local AWS endpoint (S3 and the control-plane APIs
the project uses)."""

import contextlib
import signal
import sys
import urllib.request
from collections.abc import Iterator

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


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as reply:
        return bool(reply.status < 500)


@contextlib.contextmanager
def moto_server(region: str = "us-east-1") -> Iterator[AwsEndpoint]:
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
                yield AwsEndpoint(url, "testing-key", "testing-secret", region, process)
            finally:
                process.stop(signal.SIGKILL)
            return
        raise ServiceError("could not start moto server")
