"""The router's first orders after a cold start (a Lambda container's init, the local
gateway's start) are not held up by its new producer, on a real Tansu and redis-server."""

import time
from typing import Any

from hotshard import kafka, names, route
from hotshard.edge import api as edge_api
from hotshard.edge.settings import EdgeSettings, order_producer
from hotshard.local.services.process import free_port

FIRST_ACK_BUDGET_S = 0.35
"""Build -> first order acknowledged. Without the warm-up: 0.50-1.0 s (librdkafka asks for
the producer id again on a 500 ms timer); with it ~0.06 s on a quiet machine."""


def test_a_new_edge_api_acknowledges_its_first_order_without_waiting_for_its_producer(
    broker: Any, redis_server: Any, r: Any
) -> None:
    route.list_symbol_at(r, "AAPL", 0, "e1")
    settings = EdgeSettings(
        kafka_brokers=broker.bootstrap, redis_port=redis_server.port, jwt_secret="s"
    )
    began = time.monotonic()
    api = edge_api.build(settings)
    try:
        order = {"symbol": "AAPL", "order_id": "first", "side": "BUY", "price": 100, "quantity": 1}
        ack = api.router.submit("alice", order)
        took = time.monotonic() - began
    finally:
        api.close()
    assert ack.topic == names.TOPIC_ORDERS and ack.offset >= 0
    assert took < FIRST_ACK_BUDGET_S, f"first order acknowledged {took * 1000:.0f} ms after build"


def test_warming_a_producer_whose_broker_is_not_there_says_so_within_its_timeout() -> None:
    settings = EdgeSettings(kafka_brokers=f"127.0.0.1:{free_port()}", jwt_secret="s")
    producer = order_producer(settings)
    try:
        began = time.monotonic()
        assert not kafka.warm_producer(producer, (names.TOPIC_ORDERS,), timeout_s=0.5)
        assert time.monotonic() - began < 2.0
    finally:
        producer.purge()
        producer.flush(0)
