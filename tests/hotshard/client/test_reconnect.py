"""The client's full-jitter backoff (pure), then reconnection against the real local
gateway: it is stopped and started again on the same ports under a connected client,
which comes back by itself, subscribes again and resends what was unanswered."""

import asyncio
import gc
import random
import statistics
from collections.abc import Iterator
from typing import Any

import pytest

from hotshard import route
from hotshard.client.retry import ReconnectPolicy, RetryPolicy
from hotshard.client.session import Client
from hotshard.edge.sessions import Sessions
from hotshard.edge.settings import EdgeSettings
from hotshard.local.edge import local_edge
from hotshard.local.services.process import free_port
from tests.hotshard.edge.kit import SECRET, token


def test_stale_route_retries_wait_a_full_jitter_of_the_exponential_bound():
    policy = RetryPolicy(max_retries=6, base_s=0.1, cap_s=0.8, rng=random.Random(7))
    for retry, bound in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (6, 0.8)):
        waits = [policy.delay(retry) for _ in range(400)]
        assert all(w is not None and 0.0 <= w <= bound for w in waits)
        spread = [w for w in waits if w is not None]
        # uniform on [0, bound]: mean near bound/2, and both ends are reached
        assert abs(statistics.mean(spread) - bound / 2) < bound * 0.08
        assert min(spread) < bound * 0.05 and max(spread) > bound * 0.95
    assert policy.delay(7) is None
    assert policy.ceiling(3) == pytest.approx(0.4)


def test_reconnect_backoff_is_jittered_capped_and_bounded():
    policy = ReconnectPolicy(max_attempts=5, base_s=0.1, cap_s=1.0, rng=random.Random(1))
    waits = [policy.delay(n) for n in range(1, 6)]
    assert all(
        w is not None and 0 <= w <= min(1.0, 0.1 * 2 ** (n - 1)) for n, w in enumerate(waits, 1)
    )
    assert len(set(waits)) == 5  # not lock-step
    assert policy.delay(6) is None
    assert ReconnectPolicy(max_attempts=0).delay(10_000) is not None  # 0: forever


@pytest.fixture
def edge_settings(r: Any, redis_server: Any, broker: Any) -> Iterator[EdgeSettings]:
    route.list_symbol_at(r, "AAPL", 0, "e1")
    yield EdgeSettings(
        kafka_brokers=broker.bootstrap,
        redis_port=redis_server.port,
        jwt_secret=SECRET,
        delivery_timeout_ms=5000,
    )


@pytest.mark.integration
def test_the_client_reconnects_resubscribes_and_resends_after_a_gateway_restart(edge_settings, r):
    ws_port, http_port = free_port(), free_port()
    order = {"action": "order", "symbol": "AAPL", "side": "BUY", "price": 10, "quantity": 1}

    async def go() -> None:
        edge = local_edge(edge_settings, ws_port=ws_port, http_port=http_port)
        running = edge.__enter__()
        policy = ReconnectPolicy(max_attempts=0, base_s=0.05, cap_s=0.3)
        client = await Client.connect(running.gateway.ws_url, token("rita"), reconnect=policy)
        try:
            assert (await client.subscribe(["AAPL"]))["type"] == "subscribed"
            first = await client.request({**order, "order_id": "r-1"})
            assert first["type"] == "ack"

            edge.__exit__(None, None, None)  # the gateway goes away: connections close
            for _ in range(100):
                if not client._connected.is_set():
                    break
                await asyncio.sleep(0.05)
            # requests made while it is gone wait for the new connection
            pending = await client.send({**order, "order_id": "r-2"})
            again = await client.send({**order, "order_id": "r-1"})
            await asyncio.sleep(0.5)
            edge = local_edge(edge_settings, ws_port=ws_port, http_port=http_port)
            edge.__enter__()

            acked = await pending
            assert acked["type"] == "ack" and acked["order_id"] == "r-2"
            dup = await again  # resent idempotently: the first one's ack, nothing new
            assert dup["duplicate"] is True and dup["offset"] == first["offset"]
            assert client.stats.reconnects == 1 and client.stats.resent >= 2
            # subscribed again on the new connection, without being asked
            for _ in range(50):
                if Sessions(r).of_symbols(["AAPL"]).get("AAPL"):
                    break
                await asyncio.sleep(0.05)
            assert Sessions(r).of_symbols(["AAPL"]).get("AAPL")
            assert client.subscriptions == {"AAPL"}
        finally:
            await client.close()
            edge.__exit__(None, None, None)

    asyncio.run(go())
    # the dropped connection's tasks end with their loop: run their finalizers now, not
    # inside a later test (a finalizer run by a collection in ast.parse upsets CPython
    # 3.11's recursion check there)
    gc.collect()
