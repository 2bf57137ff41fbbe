"""The local edge (`python -m hotshard.local.edge`: gateway, order_router, stream_handler and
the feeder) as a child process; its URLs are the JSON line it prints once it serves."""

import json
import secrets
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from hotshard import names
from hotshard.local.services.process import (
    READY_TIMEOUT_S,
    Process,
    ServiceError,
    spawn,
    wait_for,
)

PORT_NAMES = ("ws", "http", "management")
QUIET = {"POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "WARNING"}


@dataclass
class GatewayProcess:
    ws_url: str
    http_url: str
    management_url: str
    management_secret: str
    """Given to the stream handler only (start_stream): the Management API's shared secret."""
    process: Process

    @property
    def ports(self) -> tuple[int, int, int]:
        """(WebSocket, HTTP, Management API) ports, as start_gateway(ports=...) takes them."""
        ws, http, management = (
            urllib.parse.urlsplit(u).port for u in (self.ws_url, self.http_url, self.management_url)
        )
        assert ws and http and management
        return ws, http, management


def start_gateway(
    workdir: Path,
    brokers: str,
    redis_port: int,
    secret: str,
    *,
    feed: bool = True,
    management_secret: str = "",
    ports: tuple[int, int, int] = (0, 0, 0),
) -> GatewayProcess:
    """Start the local edge with JWT secret `secret`; returns once it serves. feed=False:
    without the feeder and stream_handler (`start_stream` runs them in their own process).
    `ports`: (WebSocket, HTTP, Management API), 0 = a free one; a restart passes the
    ports of the gateway it replaces (GatewayProcess.ports), so clients reconnect to the
    same URLs."""
    repo = Path(__file__).resolve().parents[3]
    argv = [
        sys.executable,
        "-m",
        "hotshard.local.edge",
        "--kafka-brokers",
        brokers,
        "--redis-port",
        str(redis_port),
        *([] if feed else ["--no-feed"]),
        *(f"--{name}-port={port}" for name, port in zip(PORT_NAMES, ports, strict=True) if port),
    ]
    management_secret = management_secret or secrets.token_urlsafe(32)
    env = {
        "PYTHONPATH": str(repo),
        "JWT_SECRET": secret,
        names.ENV_MANAGEMENT_SECRET: management_secret,
        **QUIET,
    }
    log = workdir / "gateway.log"
    start = log.stat().st_size if log.exists() else 0  # a restart appends to the same log
    process = spawn("gateway", argv, workdir, env)
    urls: dict[str, str] = {}

    def serving() -> bool:
        if not process.alive():
            raise ServiceError(f"gateway exited:\n{process.log_tail()}")
        with open(process.log_path, "rb") as f:
            f.seek(start)
            lines = f.read().decode(errors="replace").splitlines()
        for line in lines:
            if line.startswith("{") and '"ws_url"' in line:
                urls.update(json.loads(line))
                return True
        return False

    try:
        wait_for(serving, READY_TIMEOUT_S, "the local gateway", interval=0.05)
    except ServiceError:
        process.stop()
        raise
    return GatewayProcess(
        urls["ws_url"], urls["http_url"], urls["management_url"], management_secret, process
    )


def start_stream(
    workdir: Path, brokers: str, redis_port: int, management_url: str, management_secret: str
) -> Process:
    """Start the feeder and stream_handler (`python -m hotshard.local.stream`) posting to
    `management_url` with the gateway's `management_secret`; returns once it reads."""
    repo = Path(__file__).resolve().parents[3]
    argv = [
        sys.executable,
        "-m",
        "hotshard.local.stream",
        "--kafka-brokers",
        brokers,
        "--redis-port",
        str(redis_port),
        "--management-url",
        management_url,
    ]
    env = {"PYTHONPATH": str(repo), names.ENV_MANAGEMENT_SECRET: management_secret, **QUIET}
    process = spawn("stream", argv, workdir, env)

    def reading() -> bool:
        if not process.alive():
            raise ServiceError(f"stream handler exited:\n{process.log_tail()}")
        return '"stream"' in process.log_path.read_text(errors="replace")

    try:
        wait_for(reading, READY_TIMEOUT_S, "the local stream handler", interval=0.05)
    except ServiceError:
        process.stop()
        raise
    return process
