"""`python -m engine`: one engine process (see `python -m engine --help`)."""

import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

from engine.book import DedupBudgetError
from engine.runtime import tune_gc, watch_gc
from engine.service.core import EngineState
from engine.service.errors import EngineFailedError
from engine.service.logs import JsonLines
from engine.service.loop import Engine
from engine.service.settings import EngineSettings, market_for, parse_args
from engine.service.store import SnapshotStore, s3_client
from hotshard import clients, kafka
from hotshard.names import KAFKA_GROUP_PREFIX, TOPIC_ORDERS

SERVICE = "engine"  # the `service` field of every log line (the Lambdas name theirs)
CONTROL_WAIT_S = 2.0
"""The gRPC server starts once the loop has caught up with its partitions, or after this
long at the latest."""


def configure_logging(level: str, instance: str = "", stream: IO[str] | None = None) -> None:
    """JSON log lines on stderr with the fields the Lambdas' Powertools Logger writes
    (level, location, message, timestamp, service, and each record's `extra`), plus the
    engine's `instance` (engine.service.logs). The engine's modules log with the standard
    `logging.getLogger(...)`; the root handler formats them all."""
    formatter = JsonLines(SERVICE, **({"instance": instance} if instance else {}))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def build(settings: EngineSettings) -> Engine:
    """Connect everything the engine needs; nothing starts consuming yet."""
    from confluent_kafka import Consumer, Producer  # noqa: PLC0415
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    market = market_for(settings)  # first: a listing over the budget fails before connecting
    base = clients.kafka_base(settings)
    if settings.create_topics:
        kafka.create_topics(AdminClient(base), settings.create_topics)
    r = clients.redis_client(settings, timeout_s=10, quick_retries=2)
    s3 = (
        s3_client(settings.aws_region, settings.s3_endpoint_url)
        if settings.snapshot_bucket
        else None
    )
    store = SnapshotStore(
        r,
        s3,
        settings.snapshot_bucket,
        settings.snapshot_s3_threshold,
        settings.instance,
        Path(settings.snapshot_dir) if settings.snapshot_dir else None,
    )
    consumer = Consumer(
        kafka.consumer_config(
            base,
            group_id=f"{KAFKA_GROUP_PREFIX}engine-{settings.instance}",
            fetch_wait_max_ms=settings.fetch_wait_max_ms,
            offset_reset="error",
        )
    )
    engine = Engine(settings, EngineState(market), consumer, None, r, store)
    engine.log_identity = functools.partial(kafka.topic_id, AdminClient(base), TOPIC_ORDERS)
    engine.producer = Producer(
        {
            **kafka.producer_config(base, linger_ms=settings.linger_ms),
            "client.id": f"engine-{settings.instance}",  # names it in librdkafka's log lines
            "on_delivery": engine.on_delivery,
        }
    )
    return engine


def main(argv: Sequence[str] | None = None) -> int:
    entered = time.time()  # the imports are done
    settings = parse_args(argv)
    configure_logging(settings.log_level, settings.instance)
    log = logging.getLogger("hotshard.engine")
    try:
        engine = build(settings)
    except DedupBudgetError as exc:
        log.error("cannot start", extra={"error": str(exc)})
        return 2
    engine.mark("imported", entered)
    engine.mark("clients built")

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received, stopping", extra={"signal": signal.Signals(signum).name})
        engine.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    began = time.monotonic()
    # before the books load, with no full collection first: it would pass over every object
    # the imports made (~20 ms of CPU on the way back to matching) to free ~200 of them
    tune_gc(collect=False)
    watch_gc(log)
    try:
        engine.start()
    except EngineFailedError as exc:
        log.error("cannot start", extra={"error": str(exc)})
        return 3
    tune_gc(collect=False)  # the loaded books leave the collector's view, no full pass
    # Matching first: the gRPC server (grpc, health, reflection: the slowest imports of the
    # start) comes up on its own thread once the loop has caught up, so after a crash the
    # books match again without waiting for it (control callers retry UNAVAILABLE meanwhile)
    control = Control(engine, settings.grpc_bind, settings.grpc_port, began)
    control.thread.start()
    try:
        engine.run()
    except EngineFailedError as exc:
        log.error(
            "engine failed; exiting for a restart from the checkpoint", extra={"error": str(exc)}
        )
        control.stop(0)
        return 1
    except Exception:
        # a bug: exit (non-zero, gRPC threads stopped) rather than linger without consuming
        log.exception("engine crashed; exiting for a restart from the checkpoint")
        control.stop(0)
        return 1
    engine.shutdown()
    control.stop(1)
    return 0


class Control:
    """The gRPC server, started on its own thread (see main)."""

    def __init__(self, engine: Engine, bind: str, port: int, began: float) -> None:
        self.engine = engine
        self.bind = bind
        self.port = port
        self.began = began
        self.server: Any = None
        self.failed: BaseException | None = None
        self.thread = threading.Thread(target=self._start, name="control-setup", daemon=True)

    def _start(self) -> None:
        self.engine.caught_up.wait(CONTROL_WAIT_S)
        try:
            from engine.service.control import serve  # noqa: PLC0415 - see main

            self.server = serve(self.engine, self.bind, self.port)
        except BaseException as exc:  # e.g. the port is taken: the engine cannot go on
            logging.getLogger("hotshard.engine").error(
                "cannot serve gRPC", extra={"error": str(exc)}
            )
            self.failed = exc
            self.engine.fail(f"gRPC control did not start: {exc}")
            return
        logging.getLogger("hotshard.engine").info(
            "serving",
            extra={
                "grpc": self.engine.settings.address,
                "ready_s": round(time.monotonic() - self.began, 3),
            },
        )

    def stop(self, grace: float) -> None:
        self.thread.join(30)
        if self.server is not None:
            self.server.stop(grace).wait(5)


if __name__ == "__main__":
    raise SystemExit(main())
