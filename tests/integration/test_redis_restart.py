"""Redis restarts under a running engine and the local edge (real Tansu, redis-server,
engine process, gateway with the Lambda handlers, HTTP clients): with an AOF nothing is
lost; with an empty Redis `hotshard.route.rebuild_routes` re-lists every symbol from the
engines' checkpoints. Engine, router and stream handler reconnect by themselves; every
acknowledged order reaches its final status exactly once."""

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hotshard import kafka, route
from hotshard.edge.settings import EdgeSettings
from hotshard.local.edge import local_edge
from hotshard.local.services.broker import tansu
from hotshard.local.services.engine import start_engine
from hotshard.local.services.redis import RedisServer, redis_server
from tests.hotshard.edge.kit import SECRET, token

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SYMBOLS = ("AAPL", "MSFT", "IBM")
DOWN_S = 6.0  # longer than redis-py's own reconnect tries (~3.5 s)


def post(http_url: str, order: dict[str, Any], user: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(
        http_url + "/orders", data=json.dumps(order).encode(), method="POST"
    )
    req.add_header("Authorization", f"Bearer {token(user)}")
    try:
        with urllib.request.urlopen(req, timeout=15) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def get(http_url: str, path: str, user: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(http_url + path)
    req.add_header("Authorization", f"Bearer {token(user)}")
    try:
        with urllib.request.urlopen(req, timeout=15) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def submit_until_acked(http_url: str, order: dict[str, Any], user: str, limit_s: float) -> int:
    """Send the same order until it is acknowledged, as a client honouring 503's retry
    hint (and 409 ORDER_IN_FLIGHT) does; returns the tries."""
    deadline = time.monotonic() + limit_s
    tries = 0
    while True:
        tries += 1
        status, body = post(http_url, order, user)
        if status == 202:
            return tries
        assert status in (503, 409, 400) and body.get("reason") in (
            "NOT_DELIVERED",
            "ORDER_IN_FLIGHT",
            "UNKNOWN_SYMBOL",
        ), (status, body)
        assert time.monotonic() < deadline, f"not acknowledged in {limit_s} s: {body}"
        time.sleep(0.2)


@pytest.fixture(params=["aof", "empty"])
def cluster(request: Any, tmp_path: Any) -> Iterator[tuple[str, Any, RedisServer, Any]]:
    aof = request.param == "aof"
    with tansu() as broker, redis_server(appendonly=aof) as redis_srv:
        kafka.create_topics(broker.admin(), 4)
        engine = start_engine(
            workdir=tmp_path,
            brokers=broker.bootstrap,
            redis_port=redis_srv.port,
            partitions="0-3",
            instance="rr-e1",
            extra_args=["--fetch-wait-max-ms", "10", "--snapshot-interval-s", "1"],
        )
        settings = EdgeSettings(
            kafka_brokers=broker.bootstrap,
            redis_port=redis_srv.port,
            jwt_secret=SECRET,
            delivery_timeout_ms=5000,
        )
        try:
            with local_edge(settings) as edge:
                yield request.param, edge, redis_srv, engine
        finally:
            engine.process.stop()


def test_a_redis_restart_loses_no_acknowledged_order(cluster):
    mode, edge, redis_srv, engine = cluster
    url = edge.gateway.http_url
    r = redis_srv.client()
    for symbol in SYMBOLS:
        route.list_symbol(r, symbol)
    users = [f"u{i}" for i in range(4)]

    def order(i: int, symbol: str) -> dict[str, Any]:
        side = "BUY" if i % 2 else "SELL"
        return {"symbol": symbol, "order_id": f"o-{i}", "side": side, "price": 100, "quantity": 1}

    def place(batch: range, pace_s: float = 0.0) -> list[int]:
        def one(i: int) -> int:
            time.sleep(pace_s)
            return submit_until_acked(url, order(i, SYMBOLS[i % 3]), users[i % 4], limit_s=60)

        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(one, batch))

    place(range(120))
    time.sleep(2.5)  # the engine checkpoints every second: the listed symbols are in them
    # load goes on while Redis is killed (-9) and stays down for DOWN_S, then starts again
    # on the same port: with an AOF it keeps what was fsynced
    during = ThreadPoolExecutor(1).submit(place, range(120, 180), 0.6)  # ~9 s of load
    time.sleep(0.3)
    began = time.monotonic()
    redis_srv.process.stop(signal.SIGKILL)
    time.sleep(DOWN_S)
    redis_srv.restart()
    if mode == "empty":
        r = redis_srv.client()
        # it came back empty: no routes (the engines' heartbeat thread may already have
        # written their leases and registry entries again, so not dbsize() == 0)
        assert route.listed_symbols(r) == []
        # the engines write their snapshots and checkpoints again once Redis answers;
        # then the routes come back from them
        deadline = time.monotonic() + 30
        while not route.rebuild_routes(r) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert route.listed_symbols(r) == sorted(SYMBOLS)
    tries = during.result(timeout=90) + place(range(180, 240))
    resumed_s = time.monotonic() - began
    print(
        f"redis restart ({mode}, down {DOWN_S} s): the load's 120 orders all acknowledged "
        f"{resumed_s:.1f} s after the kill, at most {max(tries)} tries each"
    )
    assert resumed_s < 60

    # every order placed after the restart reaches its final status (the stream handler
    # waited for Redis instead of skipping batches); with an AOF those before it too
    checked = range(240) if mode == "aof" else range(180, 240)
    deadline = time.monotonic() + 30
    missing: list[int] = list(checked)
    while missing and time.monotonic() < deadline:
        still = []
        for i in missing:
            status, body = get(url, f"/orders/o-{i}", users[i % 4])
            if status != 200 or body.get("status") not in ("FILLED", "ACCEPTED"):
                still.append(i)
        missing = still
        time.sleep(0.3)
    seen = [get(url, f"/orders/o-{i}", users[i % 4]) for i in missing[:3]]
    assert not missing, f"{len(missing)} orders without a status, e.g. {missing[:5]}: {seen}"
    # matched exactly once: every SELL met a BUY at the same price, nothing doubled
    filled = sum(
        1 for i in checked if get(url, f"/orders/o-{i}", users[i % 4])[1]["status"] == "FILLED"
    )
    assert filled >= len(checked) - 6  # at most one unmatched order per symbol and side
    assert engine.process.alive(), "the engine rode out the outage without a restart"
    assert "redis reachable again" in engine.process.log_path.read_text()
