"""The local edge as one process: gateway + order_router + stream_handler + feeder.

    python -m hotshard.local.edge --kafka-brokers 127.0.0.1:PORT --redis-port PORT \\
        --jwt-secret SECRET [--auto-list] [--limits FILE] [--ws-port N] [--http-port N]
        [--no-feed]

Prints one JSON line {"ws_url", "http_url", "management_url"} when it serves, then runs
until SIGTERM/SIGINT. The handlers are the Lambda modules themselves, configured through
the environment exactly as in AWS (WEBSOCKET_ENDPOINT points at this gateway).
"""

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hotshard.clients import kafka_base
from hotshard.edge.auth import TokenVerifier
from hotshard.edge.settings import EdgeSettings
from hotshard.local.feeder import TopicFeeders
from hotshard.local.gateway import BATCH_WORKERS, LocalGateway, environment
from lambdas.order_router import handler as order_router
from lambdas.stream_handler import handler as stream_handler

BATCH_ENV = "HOTSHARD_GATEWAY_BATCH"
"""The gateway's batch workers (--batch-workers); 0: every order frame to the handler
alone, on 64 handler threads, as before batches (for before/after runs)."""
LOCAL_AWS = {  # boto3 signs requests even to a local endpoint
    "AWS_ACCESS_KEY_ID": "hotshard-local",
    "AWS_SECRET_ACCESS_KEY": "hotshard-local",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


@dataclass
class LocalEdge:
    gateway: LocalGateway
    feeder: TopicFeeders | None


@contextlib.contextmanager
def local_edge(
    settings: EdgeSettings,
    *,
    ws_port: int = 0,
    http_port: int = 0,
    management_port: int = 0,
    feed: bool = True,
    batch_workers: int = BATCH_WORKERS,
) -> Iterator[LocalEdge]:
    """Gateway (+ feeder) in this process, handlers imported from lambdas/. The order
    frames that arrive together go to order_router's handler_many together, in at most
    `batch_workers` batches at once (LocalGateway's batch_router); 0: each frame to the
    handler alone, on the gateway's handler threads."""
    verifier = TokenVerifier(
        secret=settings.jwt_secret,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        user_claim=settings.jwt_user_claim,
    )
    gateway = LocalGateway(
        order_router.handler,
        verifier,
        ws_port=ws_port,
        http_port=http_port,
        management_port=management_port,
        management_secret=settings.management_secret,
        batch_router=order_router.handler_many if batch_workers > 0 else None,
        batch_workers=batch_workers,
    )
    gateway.start()
    settings = replace(
        settings,
        websocket_endpoint=gateway.management_url,
        management_secret=gateway.management_secret,
    )
    env = {**{k: v for k, v in LOCAL_AWS.items() if k not in os.environ}, **settings.env()}
    feeder = None
    try:
        with environment(env):
            order_router.api.cache_clear()
            stream_handler.pusher.cache_clear()
            # built before the first request, as a Lambda container's init phase builds what
            # the module sets up: the idempotent producer fetches its producer id (~0.5 s on
            # the local broker) now, not while the first orders wait for their acks
            order_router.api()
            if feed:
                feeder = TopicFeeders(kafka_base(settings), stream_handler.handler)
                feeder.start()
            yield LocalEdge(gateway, feeder)
    finally:
        if feeder is not None:
            feeder.stop()
        gateway.stop()
        close_handlers()


def close_handlers() -> None:
    """Close what the handlers' cold starts opened (the router's producer, the pusher's
    threads), so no Kafka client outlives the edge."""
    if order_router.api.built():
        order_router.api().close()
    for pusher in stream_handler.pusher.built():
        pusher.close()
    order_router.api.cache_clear()
    stream_handler.pusher.cache_clear()


def parse_args(argv: Sequence[str]) -> tuple[EdgeSettings, Any]:
    p = argparse.ArgumentParser(prog="python -m hotshard.local.edge", description=__doc__)
    base = EdgeSettings.from_env(os.environ)
    p.add_argument("--kafka-brokers", default=base.kafka_brokers)
    p.add_argument("--redis-host", default=base.redis_host)
    p.add_argument("--redis-port", type=int, default=base.redis_port)
    p.add_argument("--jwt-secret", default=base.jwt_secret)
    p.add_argument("--limits", type=Path, default=base.limits_path)
    p.add_argument("--auto-list", action="store_true", default=base.auto_list)
    p.add_argument("--balance-check", action="store_true", default=base.balance_check)
    p.add_argument("--ws-port", type=int, default=0)
    p.add_argument("--http-port", type=int, default=0)
    p.add_argument(
        "--no-feed",
        action="store_true",
        help="no feeder and stream_handler here (python -m hotshard.local.stream runs them)",
    )
    p.add_argument("--management-port", type=int, default=0)
    p.add_argument(
        "--batch-workers",
        type=int,
        default=int(os.environ.get(BATCH_ENV) or BATCH_WORKERS),
        help=f"order batches handled at once; 0: every frame alone (default: ${BATCH_ENV} "
        f"or {BATCH_WORKERS})",
    )
    args = p.parse_args(argv)
    settings = replace(
        base,
        kafka_brokers=args.kafka_brokers,
        redis_host=args.redis_host,
        redis_port=args.redis_port,
        jwt_secret=args.jwt_secret,
        limits_path=args.limits,
        auto_list=args.auto_list,
        balance_check=args.balance_check,
    )
    if not settings.jwt_secret and not settings.jwt_issuer:
        p.error("--jwt-secret (or JWT_SECRET) is required locally")
    return settings, args


def main(argv: Sequence[str] | None = None) -> int:
    settings, args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with local_edge(
        settings,
        ws_port=args.ws_port,
        http_port=args.http_port,
        management_port=args.management_port,
        feed=not args.no_feed,
        batch_workers=args.batch_workers,
    ) as edge:
        urls = {
            "ws_url": edge.gateway.ws_url,
            "http_url": edge.gateway.http_url,
            "management_url": edge.gateway.management_url,
        }
        print(json.dumps(urls), flush=True)
        stop.wait()
    return 0


__all__ = [
    "LOCAL_AWS",
    "LocalEdge",
    "close_handlers",
    "local_edge",
    "main",
    "order_router",  # the handler modules, for benches that invoke them as the gateway does
    "stream_handler",
]


if __name__ == "__main__":
    sys.exit(main())
