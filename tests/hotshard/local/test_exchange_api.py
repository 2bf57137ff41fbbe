"""The exchange calls beyond placing orders, through the local gateway with the real Lambda
handlers, a real WebSocket client, real Redis and Tansu (and, where the book's answer
matters, a real engine process): ping, instruments, balance, open orders, cancel-all,
cancel-on-disconnect, fills history."""

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from hotshard import route
from hotshard.edge.orders import fund
from hotshard.edge.settings import EdgeSettings
from hotshard.local.edge import LocalEdge, local_edge
from hotshard.local.services.engine import start_engine
from tests.hotshard.edge.kit import SECRET, token

pytestmark = pytest.mark.integration

LIMITS = {
    "*": {"max_quantity": 1000},
    "AAPL": {"tick": 5, "lot": 1, "price_min": 5, "price_max": 100000, "max_notional": 10**9},
}


@pytest.fixture
def edge(r: Any, redis_server: Any, broker: Any, tmp_path: Path) -> Iterator[LocalEdge]:
    limits = tmp_path / "limits.json"
    limits.write_text(json.dumps(LIMITS))
    settings = EdgeSettings(
        kafka_brokers=broker.bootstrap,
        redis_port=redis_server.port,
        jwt_secret=SECRET,
        delivery_timeout_ms=5000,
        limits_path=limits,
    )
    with local_edge(settings) as running:
        yield running


def http(edge: LocalEdge, method: str, path: str, body: Any = None, user: str = "alice") -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(edge.gateway.http_url + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token(user)}")
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            return reply.status, json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def order(order_id: str, side: str, price: int, qty: int, symbol: str = "AAPL") -> dict[str, Any]:
    return {"symbol": symbol, "order_id": order_id, "side": side, "price": price, "quantity": qty}


async def until(
    ws: ClientConnection, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 20
) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not done(got):
            got.append(json.loads(await ws.recv()))
    return got


def eventually(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_ping_instruments_balance_and_open_orders_without_an_engine(edge, r):
    route.list_symbol_at(r, "AAPL", 0, "e1")
    route.list_symbol_at(r, "MSFT", 1, "e1")

    async def ping() -> None:
        async with connect(f"{edge.gateway.ws_url}?token={token('alice')}") as ws:
            await ws.send(json.dumps({"action": "ping", "request_id": "p-1"}))
            (pong,) = await until(ws, lambda got: len(got) == 1)
            assert pong["type"] == "pong" and pong["request_id"] == "p-1"
            assert abs(pong["ts_ns"] - time.time_ns()) < 10 * 10**9

    asyncio.run(ping())

    status, found = http(edge, "GET", "/instruments")
    assert status == 200
    by = {i["symbol"]: i for i in found["instruments"]}
    assert set(by) == {"AAPL", "MSFT"}
    assert (by["AAPL"]["tick"], by["AAPL"]["price_min"], by["AAPL"]["price_max"]) == (5, 5, 100000)
    assert by["MSFT"]["max_quantity"] == 1000 and by["MSFT"]["tick"] == 1
    assert by["AAPL"]["status"] == "ACTIVE"
    status, one = http(edge, "GET", "/instruments?symbol=MSFT")
    assert [i["symbol"] for i in one["instruments"]] == ["MSFT"]
    status, nope = http(edge, "GET", "/instruments?symbol=NOPE")
    assert (status, nope["reason"]) == (400, "UNKNOWN_SYMBOL")
    # the tick is checked before the broker: PRICE_OFF_TICK, and the instruments said so
    status, off = http(edge, "POST", "/orders", order("o-x", "BUY", 12, 1))
    assert (status, off["reason"]) == (400, "PRICE_OFF_TICK")

    assert http(edge, "GET", "/balance")[1]["balances"] == {}
    fund(r, "alice", "CASH", 5000)  # the operator's tool (hotshard fund); not an API call
    status, balance = http(edge, "GET", "/balance")
    assert status == 200 and balance["balances"] == {"CASH": 5000}
    assert balance["balance_check"] is False
    assert http(edge, "GET", "/balance", user="bob")[1]["balances"] == {}

    for order_id, symbol in (("o-1", "AAPL"), ("o-2", "MSFT"), ("o-3", "AAPL")):
        assert http(edge, "POST", "/orders", order(order_id, "BUY", 10, 1, symbol))[0] == 202
    status, listed = http(edge, "GET", "/orders")
    assert status == 200 and [o["order_id"] for o in listed["orders"]] == ["o-1", "o-2", "o-3"]
    assert listed["more"] is False and listed["orders"][0]["routing"] == "ACCEPTED"
    page = http(edge, "GET", "/orders?limit=2")[1]
    assert [o["order_id"] for o in page["orders"]] == ["o-1", "o-2"] and page["more"] is True
    aapl = http(edge, "GET", "/orders?symbol=AAPL")[1]
    assert [o["order_id"] for o in aapl["orders"]] == ["o-1", "o-3"]
    assert http(edge, "GET", "/orders", user="bob")[1]["orders"] == []
    too_big = f"{2**64}-0"  # fits the cursor's pattern, not a stream id (was 502)
    for bad in (
        "/orders?limit=0",
        "/orders?limit=x",
        "/orders?limit=5000",
        "/fills?before=z",
        f"/fills?before={too_big}",
        f"/fills?before=1-{2**64}",
    ):
        status, refused = http(edge, "GET", bad)
        assert (status, refused["reason"]) == (400, "MALFORMED"), bad
    for oldest in ("0-0", "000-0"):
        assert http(edge, "GET", f"/fills?before={oldest}")[1]["fills"] == []  # none older

    status, done = http(edge, "DELETE", "/orders?symbol=AAPL")
    assert status == 202 and done["type"] == "cancel_all"
    assert sorted(done["cancelled"]) == ["o-1", "o-3"] and done["failed"] == []
    # no engine here: the orders stay open until the book's CANCELLED arrives
    assert len(http(edge, "GET", "/orders")[1]["orders"]) == 3


def test_cancel_all_cancel_on_disconnect_and_fills_with_an_engine(
    edge, r, redis_server, broker, tmp_path
):
    engine = start_engine(
        workdir=tmp_path,
        brokers=broker.bootstrap,
        redis_port=redis_server.port,
        partitions="0-3",
        instance="api-e1",
        extra_args=["--fetch-wait-max-ms", "10"],
    )
    try:
        route.list_symbol(r, "AAPL")
        base = edge.gateway.ws_url

        def acked(n: int) -> Callable[[list[dict[str, Any]]], bool]:
            return lambda got: sum(p.get("type") == "ack" for p in got) >= n

        def statuses(*wanted: tuple[str, str]) -> Callable[[list[dict[str, Any]]], bool]:
            def done(got: list[dict[str, Any]]) -> bool:
                seen = {
                    (p["data"]["order_id"], p["data"]["status"])
                    for p in got
                    if p.get("type") == "ORDER_STATUS"
                }
                return set(wanted) <= seen

            return done

        async def go() -> None:
            async with connect(f"{base}?token={token('alice')}") as alice:
                for i, price in enumerate((100, 105, 110)):
                    await alice.send(
                        json.dumps({"action": "order", **order(f"s-{i}", "SELL", price, 4)})
                    )
                await until(alice, statuses(("s-0", "ACCEPTED"), ("s-2", "ACCEPTED")))
                # bob lifts s-0 and part of s-1: alice is the maker of two fills
                async with connect(f"{base}?token={token('bob')}") as bob:
                    await bob.send(json.dumps({"action": "order", **order("b-1", "BUY", 105, 6)}))
                    await until(bob, statuses(("b-1", "FILLED")))
                await until(alice, statuses(("s-0", "FILLED"), ("s-1", "PARTIALLY_FILLED")))
                eventually(lambda: len(http(edge, "GET", "/fills")[1]["fills"]) == 2)
                fills = http(edge, "GET", "/fills")[1]
                assert [(f["order_id"], f["quantity"]) for f in fills["fills"]] == [
                    ("s-1", 2),
                    ("s-0", 4),
                ]  # newest first
                assert {f["liquidity"] for f in fills["fills"]} == {"MAKER"}
                assert {f["side"] for f in fills["fills"]} == {"SELL"}
                first = http(edge, "GET", "/fills?limit=1")[1]
                assert [f["order_id"] for f in first["fills"]] == ["s-1"] and first["next"]
                second = http(edge, "GET", f"/fills?limit=1&before={first['next']}")[1]
                assert [f["order_id"] for f in second["fills"]] == ["s-0"]
                assert http(edge, "GET", "/fills?symbol=MSFT")[1]["fills"] == []
                bob_fills = http(edge, "GET", "/fills", user="bob")[1]["fills"]
                assert [(f["order_id"], f["liquidity"]) for f in bob_fills] == [
                    ("b-1", "TAKER"),
                    ("b-1", "TAKER"),
                ]

                eventually(lambda: len(http(edge, "GET", "/orders")[1]["orders"]) == 2)
                await alice.send(json.dumps({"action": "cancel_all", "request_id": 9}))
                got = await until(alice, statuses(("s-1", "CANCELLED"), ("s-2", "CANCELLED")))
                (reply,) = [p for p in got if p.get("type") == "cancel_all"]
                assert sorted(reply["cancelled"]) == ["s-1", "s-2"] and reply["request_id"] == 9
                eventually(lambda: http(edge, "GET", "/orders")[1]["orders"] == [])

            # cancel-on-disconnect: opt in, rest an order, drop the connection
            async with connect(f"{base}?token={token('alice')}") as alice:
                await alice.send(json.dumps({"action": "cancel_on_disconnect", "enabled": True}))
                (optin,) = await until(alice, lambda got: len(got) == 1)
                assert optin == {"type": "cancel_on_disconnect", "enabled": True}
                await alice.send(json.dumps({"action": "order", **order("d-1", "SELL", 120, 1)}))
                await until(alice, statuses(("d-1", "ACCEPTED")))
            # a connection that did not opt in leaves its orders alone
            async with connect(f"{base}?token={token('bob')}") as bob:
                await bob.send(json.dumps({"action": "order", **order("k-1", "BUY", 50, 1)}))
                await until(bob, statuses(("k-1", "ACCEPTED")))

        asyncio.run(go())
        eventually(
            lambda: http(edge, "GET", "/orders/d-1")[1].get("status") == "CANCELLED", timeout=20
        )
        time.sleep(0.5)
        assert http(edge, "GET", "/orders/k-1", user="bob")[1]["status"] == "ACCEPTED"
        assert [o["order_id"] for o in http(edge, "GET", "/orders", user="bob")[1]["orders"]] == [
            "k-1"
        ]
    finally:
        engine.process.stop(signal.SIGKILL)
