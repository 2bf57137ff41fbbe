"""The local gateway with the real Lambda handlers, a real WebSocket client (websockets),
boto3's apigatewaymanagementapi client, real Redis and Tansu; the last test adds a real
engine process and checks who receives which push."""

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hotshard import route
from hotshard.edge.settings import EdgeSettings
from hotshard.local.edge import LocalEdge, local_edge, order_router
from hotshard.local.services.engine import start_engine
from hotshard.names import MANAGEMENT_SECRET_HEADER
from tests.hotshard.edge.kit import SECRET, token

pytestmark = pytest.mark.integration


@pytest.fixture
def edge(r: Any, redis_server: Any, broker: Any) -> Iterator[LocalEdge]:
    settings = EdgeSettings(
        kafka_brokers=broker.bootstrap,
        redis_port=redis_server.port,
        jwt_secret=SECRET,
        delivery_timeout_ms=5000,
    )
    with local_edge(settings) as running:
        yield running


def http(
    edge: LocalEdge, method: str, path: str, body: Any = None, user: str | None = "alice"
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(edge.gateway.http_url + path, data=data, method=method)
    if user:
        req.add_header("Authorization", f"Bearer {token(user)}")
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            return reply.status, json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def management(edge: LocalEdge, secret: str | None = None) -> Any:
    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=edge.gateway.management_url,
        region_name="us-east-1",
        aws_access_key_id="local-key",
        aws_secret_access_key="local-secret",
    )
    given = edge.gateway.management_secret if secret is None else secret

    def add_secret(request: Any, **_kw: Any) -> None:
        request.headers[MANAGEMENT_SECRET_HEADER] = given

    client.meta.events.register("before-sign.apigatewaymanagementapi.*", add_secret)
    return client


async def frames(ws: ClientConnection, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            out.append(json.loads(await ws.recv()))
    return out


def test_the_router_is_built_before_the_first_request(edge):
    # built at the first request, its idempotent producer fetched its producer id while the
    # first orders waited (~0.5 s on Tansu): in `make demo` the first second's orders were
    # acked ~1 s late, decaying as the backlog drained
    assert order_router.api.built()


def test_connect_is_refused_without_a_valid_token(edge):
    async def go() -> None:
        for url in (edge.gateway.ws_url, edge.gateway.ws_url + "?token=garbage"):
            with pytest.raises(InvalidStatus) as info:
                async with connect(url, open_timeout=5):
                    pass
            assert info.value.response.status_code == 401

    asyncio.run(go())


def test_an_order_over_websocket_is_acknowledged_and_management_api_reaches_the_client(edge, r):
    route.list_symbol_at(r, "AAPL", 0, "e1")
    api = management(edge)

    async def go() -> None:
        url = f"{edge.gateway.ws_url}?token={token('alice')}"
        async with connect(url, open_timeout=5) as ws:
            order = {
                "action": "order",
                "request_id": 7,
                "symbol": "AAPL",
                "order_id": "w-1",
                "side": "BUY",
                "price": 10,
                "quantity": 1,
            }
            await ws.send(json.dumps(order))
            (ack,) = await frames(ws, 1)
            assert ack["type"] == "ack" and ack["request_id"] == 7 and ack["partition"] == 0
            await ws.send(json.dumps({"action": "dance"}))
            (forbidden,) = await frames(ws, 1)
            assert forbidden["message"] == "Forbidden"

            conns = [c.decode() for c in r.smembers("user-conns:alice")]
            assert len(conns) == 1
            await asyncio.to_thread(
                api.post_to_connection, ConnectionId=conns[0], Data=b'{"type":"HELLO"}'
            )
            (hello,) = await frames(ws, 1)
            assert hello == {"type": "HELLO"}
            info = await asyncio.to_thread(api.get_connection, ConnectionId=conns[0])
            assert info["Identity"]["SourceIp"] == "127.0.0.1"
            await asyncio.to_thread(api.delete_connection, ConnectionId=conns[0])
            with pytest.raises(ConnectionClosed):
                await frames(ws, 1, timeout=5)
        with pytest.raises(api.exceptions.GoneException):
            api.post_to_connection(ConnectionId=conns[0], Data=b"x")
        for _ in range(50):  # $disconnect runs as the socket closes
            if not r.smembers("user-conns:alice"):
                break
            await asyncio.sleep(0.05)
        assert not r.smembers("user-conns:alice")

    asyncio.run(go())


def test_http_api_posts_and_reads_orders_behind_the_local_authorizer(edge, r):
    route.list_symbol_at(r, "AAPL", 1, "e1")
    order = {"symbol": "AAPL", "order_id": "h-9", "side": "SELL", "price": 12, "quantity": 3}
    assert http(edge, "POST", "/orders", order, user=None)[0] == 401
    status, ack = http(edge, "POST", "/orders", order)
    assert status == 202 and ack["partition"] == 1
    status, again = http(edge, "POST", "/orders", order)
    assert status == 202 and again["duplicate"] and again["offset"] == ack["offset"]
    status, bad = http(edge, "POST", "/orders", {**order, "order_id": "h-10", "quantity": "x"})
    assert status == 400 and bad["reason"] == "MALFORMED"
    status, record = http(edge, "GET", "/orders/h-9")
    assert status == 200 and record["routing"] == "ACCEPTED"
    assert http(edge, "GET", "/orders/h-9", user="bob")[0] == 404
    assert http(edge, "GET", "/nothing")[0] == 404


def test_crossing_orders_push_each_user_only_its_own_events(
    edge, r, redis_server, broker, tmp_path
):
    engine = start_engine(
        workdir=tmp_path,
        brokers=broker.bootstrap,
        redis_port=redis_server.port,
        partitions="0-3",
        instance="edge-e1",
        extra_args=["--fetch-wait-max-ms", "10"],
    )
    try:
        route.list_symbol(r, "MSFT")

        async def go() -> None:
            base = edge.gateway.ws_url
            async with (
                connect(f"{base}?token={token('dave')}", open_timeout=5) as alice,
                connect(f"{base}?token={token('erin')}", open_timeout=5) as bob,
                connect(f"{base}?token={token('frank')}", open_timeout=5) as carol,
            ):
                await carol.send(json.dumps({"action": "subscribe", "symbols": ["MSFT"]}))
                (subscribed,) = await frames(carol, 1)
                assert subscribed["type"] == "subscribed" and subscribed["symbols"] == ["MSFT"]
                sell = {
                    "action": "order",
                    "symbol": "MSFT",
                    "order_id": "a-1",
                    "side": "SELL",
                    "price": 100,
                    "quantity": 5,
                }
                await alice.send(json.dumps(sell))
                # The sell must be the resting order: wait for its ack before the buy goes
                # out on another connection (the gateway serves connections side by side).
                early: list[dict[str, Any]] = []
                while not any(p["type"] == "ack" for p in early):
                    early.extend(await frames(alice, 1))
                buy = {
                    "action": "order",
                    "symbol": "MSFT",
                    "order_id": "b-1",
                    "side": "BUY",
                    "price": 100,
                    "quantity": 3,
                }
                await bob.send(json.dumps(buy))

                def wanted(pushes: list[dict[str, Any]]) -> bool:
                    kinds = [p["type"] for p in pushes]
                    return "ack" in kinds and "FILL" in kinds and kinds.count("ORDER_STATUS") >= 2

                async def collect(ws: ClientConnection, done: Any) -> list[dict[str, Any]]:
                    got: list[dict[str, Any]] = []
                    deadline = time.monotonic() + 20
                    while not done(got) and time.monotonic() < deadline:
                        try:
                            async with asyncio.timeout(0.5):
                                got.append(json.loads(await ws.recv()))
                        except TimeoutError:
                            pass
                    return got

                a, b, c = await asyncio.gather(
                    collect(alice, lambda got: wanted([*early, *got])),
                    collect(bob, wanted),
                    collect(carol, lambda got: {"TRADE", "DEPTH"} <= {p["type"] for p in got}),
                )
                a = [*early, *a]
                for got, user, order_id in ((a, "dave", "a-1"), (b, "erin", "b-1")):
                    assert wanted(got), got
                    pushes = [p for p in got if p["type"] != "ack"]
                    assert {p["data"]["user_id"] for p in pushes} == {user}
                    assert {p["data"]["order_id"] for p in pushes} == {order_id}
                    fill = next(p for p in pushes if p["type"] == "FILL")["data"]
                    assert (fill["price"], fill["quantity"]) == (100, 3)
                trade = next(p for p in c if p["type"] == "TRADE")["data"]
                assert (trade["maker_order_id"], trade["taker_order_id"]) == ("a-1", "b-1")
                assert not any(p["type"] in ("FILL", "ORDER_STATUS") for p in c)

        asyncio.run(go())
        for _ in range(100):
            status, record = http(edge, "GET", "/orders/b-1", user="erin")
            if record.get("status") == "FILLED":
                break
            time.sleep(0.05)
        assert record["status"] == "FILLED" and record["filled"] == 3
        status, depth = http(edge, "GET", "/depth/MSFT")
        assert status == 200 and depth["asks"] == [[100, 2]] and depth["bids"] == []
    finally:
        engine.process.stop(signal.SIGKILL)
