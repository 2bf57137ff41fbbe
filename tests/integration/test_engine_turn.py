"""The engine's loop turn starts on the first record (hotshard.kafka.consume_batch): an
order is not held for the rest of the poll timeout."""

import time

import pytest

from engine.book import add
from hotshard.domain import Side
from hotshard.local.traffic import EventReader, produce_orders, producer
from tests.integration.conftest import PARTITIONS

pytestmark = pytest.mark.integration

POLL_TIMEOUT_MS = 3000


def test_an_order_is_matched_without_waiting_for_the_rest_of_the_poll_timeout(
    broker, redis_server, engines
):
    # consume(batch, timeout) returned only at the timeout unless the batch filled: with a
    # 3 s poll timeout each order below waited ~3 s (the next turn starts right after the
    # last one's events, so the order arrives at the start of a wait)
    engines("0-3", "turn", "--poll-timeout-ms", str(POLL_TIMEOUT_MS), "--batch-size", "4000")
    prod = producer(broker.bootstrap, **{"linger.ms": 0})
    reader = EventReader(broker.bootstrap, PARTITIONS)
    try:
        took: list[float] = []
        for i in range(4):
            order_id = f"o{i}"
            produce_orders(prod, [("AAA", add(order_id, "u", Side.BUY, 100 + i, 5))], lambda s: 0)
            assert prod.flush(10) == 0
            sent = time.monotonic()
            while not any(e[2] == order_id for e in reader.events.get("AAA", [])):
                assert time.monotonic() - sent < 30, f"no events of {order_id}"
                reader.poll(0.02)
            took.append(time.monotonic() - sent)
        # the first one may meet the start's first turns; the rest meet a turn just begun
        assert max(took[1:]) < POLL_TIMEOUT_MS / 1000 / 2, took
    finally:
        reader.close()
