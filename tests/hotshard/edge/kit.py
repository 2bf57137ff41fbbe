"""Builders shared by the edge and Lambda tests: tokens, events from tests/events, a
producer that counts what it sends, reading one record back from the broker, a handler's
log lines."""

import contextlib
import copy
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from hotshard import kafka
from hotshard.edge.api import EdgeApi
from hotshard.edge.auth import TokenVerifier, mint_token
from hotshard.edge.depth import DepthStore
from hotshard.edge.limits import PreTradeLimits
from hotshard.edge.router import OrderRouter
from hotshard.edge.sessions import Sessions
from hotshard.wire import DecodedOrder, decode_order

EVENTS = Path(__file__).resolve().parents[2] / "events"
SECRET = "test-secret-of-32-characters-or-more!"


def event(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))


def token(user: str, **claims: Any) -> str:
    return mint_token(SECRET, user, **claims)


class LogLines(logging.Handler):
    """A Lambda handler's log lines, as its Powertools Logger's formatter writes them
    (`lines`, parsed); `with LogLines(logger):` captures them at INFO and above."""

    def __init__(self, logger: Any) -> None:
        super().__init__()
        self.setFormatter(logger.registered_formatter)
        self.base = logging.getLogger(logger.name)
        self.lines: list[dict[str, Any]] = []
        self._level_before = self.base.level

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))

    def __enter__(self) -> "LogLines":
        self._level_before = self.base.level
        self.base.addHandler(self)
        self.base.setLevel(logging.INFO)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.base.removeHandler(self)
        self.base.setLevel(self._level_before)


OPEN: list["CountingProducer"] = []
"""Producers made here and not closed yet (tests/hotshard/conftest.py closes them after
every test)."""


def close_producers() -> None:
    while OPEN:
        OPEN.pop().close()


class CountingProducer:
    """A real producer that counts produce() calls (the fuzz test's 'reached Kafka')."""

    def __init__(self, bootstrap: str) -> None:
        base = kafka.client_config(bootstrap)
        self.real = Producer(kafka.producer_config(base, linger_ms=0))
        self.produced = 0
        OPEN.append(self)

    def close(self) -> None:
        self.real.close()

    def flush(self, timeout: float) -> int:
        return int(self.real.flush(timeout))

    def purge(self) -> None:
        self.real.purge()

    def produce(self, *args: Any, **kwargs: Any) -> None:
        self.produced += 1
        self.real.produce(*args, **kwargs)

    def poll(self, timeout: float) -> int:
        return int(self.real.poll(timeout))


class ClosedAfterTaking(CountingProducer):
    """A real producer closed (as by another thread) right after it took a record: the
    record is written (flushed before the close), its delivery report never reaches the
    caller, and poll() on the closed producer raises RuntimeError."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap)
        self.offsets: list[int] = []

    def produce(self, *args: Any, on_delivery: Any, **kwargs: Any) -> None:
        def lost(err: Any, msg: Any) -> None:
            if err is None:
                self.offsets.append(msg.offset())

        super().produce(*args, on_delivery=lost, **kwargs)
        self.real.flush(10)
        self.real.close()

    def close(self) -> None:
        pass  # closed already


class RecordingProducer(CountingProducer):
    """A CountingProducer that also keeps every record value it was given."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap)
        self.values: list[bytes] = []
        self._checked = 0

    def produce(self, *args: Any, **kwargs: Any) -> None:
        self.values.append(args[1])
        super().produce(*args, **kwargs)

    def assert_all_valid(self) -> None:
        """Every record given since the last call is a valid order (each record is decoded
        once, so a long fuzz run does not re-read what it checked before)."""
        upto = len(self.values)
        for value in self.values[self._checked : upto]:
            decoded = decode_order(value)
            assert decoded.command is not None and decoded.reason == 0, decoded
        self._checked = upto


@contextlib.contextmanager
def recorded_edge(redis_server: Any, broker: Any) -> Iterator[tuple[Any, RecordingProducer]]:
    """The local edge (gateway + order_router handler, no feeder) on a flushed Redis with
    AAPL and MSFT listed, its router producing through a RecordingProducer: the fuzz suites'
    edge (tests/fuzz, test_schema_fuzz.py). Yields (LocalEdge, recording)."""
    from hotshard import route  # noqa: PLC0415
    from hotshard.edge.settings import EdgeSettings  # noqa: PLC0415
    from hotshard.local.edge import local_edge  # noqa: PLC0415
    from lambdas.order_router import handler as order_router  # noqa: PLC0415

    r = redis_server.client()
    r.flushdb()
    route.list_symbol_at(r, "AAPL", 0, "e1")
    route.list_symbol_at(r, "MSFT", 1, "e1")
    r.close()
    settings = EdgeSettings(
        kafka_brokers=broker.bootstrap,
        redis_port=redis_server.port,
        jwt_secret=SECRET,
        delivery_timeout_ms=5000,
    )
    with local_edge(settings, feed=False) as served:
        router = order_router.api().router
        recording = RecordingProducer(broker.bootstrap)
        # module-scoped: closed here at the end, not by the per-test close_producers
        # (make fuzz runs both tests in one process; closed after the first, the second
        # got INTERNAL from a closed producer)
        OPEN.remove(recording)
        router.producer.close()
        router.producer = recording
        try:
            yield served, recording
        finally:
            recording.close()


def read_record(bootstrap: str, topic: str, partition: int, offset: int) -> DecodedOrder:
    consumer = Consumer(
        kafka.consumer_config({"bootstrap.servers": bootstrap}, group_id="hotshard-test-read")
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        for _ in range(50):
            for msg in consumer.consume(10, 0.2):
                if msg.error() is None and msg.offset() == offset:
                    return decode_order(msg.value(), msg.key())
        raise AssertionError(f"no record at {topic}/{partition}@{offset}")
    finally:
        consumer.close()


@dataclass
class Edge:
    api: EdgeApi
    router: OrderRouter
    producer: CountingProducer


def edge(r: Any, bootstrap: str, *, limits: PreTradeLimits | None = None, **router_kw: Any) -> Edge:
    producer = CountingProducer(bootstrap)
    router = OrderRouter(r, producer, limits=limits, delivery_timeout_s=5.0, **router_kw)
    api = EdgeApi(router, Sessions(r), TokenVerifier(secret=SECRET), DepthStore(r))
    return Edge(api, router, producer)


def ws_message(api: EdgeApi, connection: str, frame: Any) -> tuple[int, dict[str, Any]]:
    """Send one WebSocket frame (an object is JSON-encoded, a str sent as is) through
    EdgeApi as API Gateway would; returns (statusCode, body)."""
    from aws_lambda_powertools.utilities.data_classes import (  # noqa: PLC0415
        APIGatewayWebSocketEvent,
    )

    from hotshard.local.shapes import websocket_event  # noqa: PLC0415

    text = frame if isinstance(frame, str) else json.dumps(frame)
    route = frame.get("action") if isinstance(frame, dict) else None
    route_key = (
        route if route in ("order", "cancel", "replace", "subscribe", "unsubscribe") else "$default"
    )
    evt = websocket_event(
        route_key, connection, domain="localhost", stage="live", connected_at_ms=1, body=text
    )
    reply = api.websocket(APIGatewayWebSocketEvent(evt))
    return reply["statusCode"], json.loads(reply["body"])
