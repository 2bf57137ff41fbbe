"""The local edge (gateway + order_router Lambda handler, real Redis and Tansu) under
fuzzed HTTP requests and WebSocket frames: every request gets a 2xx/4xx answer (never a
5xx, never a dropped connection, except the documented size limit), and every record that
reaches Kafka is a valid order the router was right to send."""

import asyncio
import http.client
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from hotshard import route
from hotshard.edge.settings import EdgeSettings
from hotshard.local.edge import LocalEdge, local_edge
from hotshard.wire import decode_order
from lambdas.order_router import handler as order_router
from tests.fuzz.conftest import FUZZ
from tests.fuzz.strategies import ids, json_values, orders
from tests.hotshard.edge.kit import OPEN, SECRET, CountingProducer, token

pytestmark = pytest.mark.integration


class Recording(CountingProducer):
    """Counts and keeps what reached Kafka."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap)
        self.values: list[bytes] = []

    def produce(self, *args: Any, **kwargs: Any) -> None:
        self.values.append(args[1])
        super().produce(*args, **kwargs)


@pytest.fixture(scope="module")
def fuzz_edge(redis_server: Any, broker: Any) -> Iterator[tuple[LocalEdge, Recording]]:
    import redis  # noqa: PLC0415

    r = redis.Redis(port=redis_server.port)
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
    with local_edge(settings, feed=False) as edge:
        router = order_router.api().router
        recording = Recording(broker.bootstrap)
        # module-scoped: closed here at the end, not by the per-test close_producers
        # (make fuzz runs both tests in one process; closed after the first, the second
        # got INTERNAL from a closed producer)
        OPEN.remove(recording)
        router.producer.close()
        router.producer = recording
        yield edge, recording
        recording.close()


def assert_valid_on_kafka(recording: Recording) -> None:
    for value in recording.values:
        decoded = decode_order(value)
        assert decoded.command is not None and decoded.reason == 0, decoded


methods = st.sampled_from(["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS", "TRACE"])
paths = st.one_of(
    st.sampled_from(
        ["/orders", "/orders/o-1", "/depth/AAPL", "/fills", "/balance", "/instruments"]
    ),
    st.builds(lambda i: f"/orders/{i}", ids.map(str)),
    st.text(alphabet="/abcxyz%?#&=.-_09", max_size=30).map(lambda p: "/" + p),
)
bodies = st.one_of(
    orders().map(lambda o: json.dumps(o).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.just(b"[" * 5000),
)
auths = st.sampled_from(["good", "none", "garbage", "nosub"])


def _auth(kind: str) -> dict[str, str]:
    import time  # noqa: PLC0415

    import jwt  # noqa: PLC0415

    if kind == "good":
        return {"Authorization": f"Bearer {token('fuzz')}"}
    if kind == "garbage":
        return {"Authorization": "Bearer x.y.z"}
    if kind == "nosub":
        claims = {"exp": int(time.time()) + 60}
        return {"Authorization": "Bearer " + jwt.encode(claims, SECRET, "HS256")}
    return {}


@FUZZ
@given(method=methods, path=paths, body=bodies, auth=auths)
def test_fuzzed_http_requests_answer_4xx_or_2xx(fuzz_edge, method, path, body, auth):
    edge, recording = fuzz_edge
    conn = http.client.HTTPConnection("127.0.0.1", edge.gateway.http_port, timeout=15)
    try:
        target = urllib.parse.quote(path, safe="/?&=%#")  # what a client can put on the wire
        conn.request(method, target, body=body, headers=_auth(auth))
        reply = conn.getresponse()
        data = reply.read()
    finally:
        conn.close()
    assert reply.status < 500, (method, path, reply.status, data[:300])
    if reply.status == 202 and method == "POST":
        assert json.loads(data)["type"] in ("ack", "cancel_all")
    assert_valid_on_kafka(recording)


frames = st.one_of(
    orders().map(lambda o: json.dumps({"action": "order", **o})),
    orders().map(lambda o: json.dumps({"action": "replace", **o})),
    orders().map(lambda o: json.dumps({"action": "cancel", **o})),
    json_values.map(lambda v: json.dumps({"action": "subscribe", "symbols": v})),
    json_values.map(json.dumps),
    st.text(max_size=100),
    st.just('{"action": "order", "x": ' + "[" * 20_000 + "]" * 20_000 + "}"),
)


@FUZZ
@given(batch=st.lists(frames, min_size=1, max_size=5))
def test_fuzzed_websocket_frames_are_answered_and_the_connection_stays_open(fuzz_edge, batch):
    edge, recording = fuzz_edge

    async def go() -> None:
        url = f"{edge.gateway.ws_url}?token={token('fuzz')}"
        async with connect(url, open_timeout=10, max_size=None) as ws:
            for text in batch:
                await ws.send(text)
                async with asyncio.timeout(15):
                    reply = json.loads(await ws.recv())
                assert reply.get("reason") != "INTERNAL", reply
            await ws.send(json.dumps({"action": "ping"}))  # still open after all of them
            async with asyncio.timeout(15):
                assert json.loads(await ws.recv())["type"] == "pong"

    asyncio.run(go())
    assert_valid_on_kafka(recording)
