"""The local edge (gateway + order_router Lambda handler, real Redis and Tansu) under
fuzzed HTTP requests and WebSocket frames: every request gets a 2xx/4xx answer (never a
5xx, never a dropped connection, except the documented size limit), and every record that
reaches Kafka is a valid order the router was right to send."""

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from hotshard.local.edge import LocalEdge
from tests.fuzz.conftest import FUZZ
from tests.fuzz.strategies import ids, json_values, orders
from tests.hotshard.edge.kit import SECRET, RecordingProducer, recorded_edge, token

pytestmark = pytest.mark.integration

REPLY_TIMEOUT_S = 30
HTTP_TIMEOUT_S = 15
PING = json.dumps({"action": "ping"})


@pytest.fixture(scope="module")
def fuzz_edge(redis_server: Any, broker: Any) -> Iterator[tuple[LocalEdge, RecordingProducer]]:
    with recorded_edge(redis_server, broker) as served:
        yield served


class Link:
    """One WebSocket connection to the edge, kept open from case to case while the server
    keeps it open (a connection per case spent most of a case on its handshake and the
    $connect/$disconnect handlers). A case that loses it fails, and the next case starts
    on a new one."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws: ClientConnection | None = None

    def open(self) -> ClientConnection:
        if self.ws is None:
            url = f"{self.url}?token={token('fuzz')}"
            # no keepalive pings of its own: each case's ping checks the connection, and on a
            # loaded machine a keepalive pong later than 20 s closed it (1011) mid-run
            self.ws = connect(url, open_timeout=10, max_size=None, ping_interval=None)
        return self.ws

    def drop(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None


@pytest.fixture(scope="module")
def ws_link(fuzz_edge: tuple[LocalEdge, RecordingProducer]) -> Iterator[Link]:
    link = Link(fuzz_edge[0].gateway.ws_url)
    yield link
    link.drop()


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


class HttpLink:
    """One HTTP/1.1 connection to the gateway, kept alive from case to case (a connection
    per case spent much of a case on the TCP handshake, a server thread's start and the
    client's setup). http.client opens a new one only after a response that said
    `Connection: close`; one the server dropped without saying so fails the case that lost
    it (each case ends with a probe request on the same connection), and the next case
    starts on a new one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT_S)
        try:
            self.conn.request(method, target, body=body, headers=headers)
            reply = self.conn.getresponse()
            return reply.status, reply.read()
        except BaseException:
            self.drop()  # lost (dropped, or no answer in time): the next case opens a new one
            raise

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@pytest.fixture(scope="module")
def http_link(fuzz_edge: tuple[LocalEdge, RecordingProducer]) -> Iterator[HttpLink]:
    link = HttpLink(fuzz_edge[0].gateway.http_port)
    yield link
    link.drop()


@FUZZ
@given(method=methods, path=paths, body=bodies, auth=auths)
def test_fuzzed_http_requests_answer_4xx_or_2xx(fuzz_edge, http_link, method, path, body, auth):
    recording = fuzz_edge[1]
    target = urllib.parse.quote(path, safe="/?&=%#")  # what a client can put on the wire
    status, data = http_link.request(method, target, body, _auth(auth))
    assert status < 500, (method, path, status, data[:300])
    if status == 202 and method == "POST":
        assert json.loads(data)["type"] in ("ack", "cancel_all")
    # the connection is still open and in step (the request's body read to its end): an
    # unauthenticated request the gateway's authorizer answers without a handler
    assert http_link.request("GET", "/instruments", None, {})[0] == 401
    recording.assert_all_valid()


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
def test_fuzzed_websocket_frames_are_answered_and_the_connection_stays_open(
    fuzz_edge, ws_link, batch
):
    recording = fuzz_edge[1]
    ws = ws_link.open()
    try:
        # all sent at once, then a ping: the gateway handles a connection's frames side by
        # side (one lane per order), so the replies and the pong come in any order; every
        # frame is answered and the pong says the connection is still open after them all
        for text in [*batch, PING]:
            ws.send(text)
        replies = [json.loads(ws.recv(timeout=REPLY_TIMEOUT_S)) for _ in range(len(batch) + 1)]
    except BaseException:
        ws_link.drop()  # lost (closed, or a reply missing): the next case opens a new one
        raise
    assert any(reply.get("type") == "pong" for reply in replies), replies
    for reply in replies:
        assert reply.get("reason") != "INTERNAL", reply
    recording.assert_all_valid()
