"""The local event source against a real Tansu: a broker that restarted on memory storage
has replaced its event topics (other ids, offsets from 0); the feeder reads them again from
their start instead of from its old positions, which would skip the new log's first
records once it had grown past them."""

import base64
import time
from typing import Any

import pytest
from confluent_kafka import Producer

from hotshard import kafka
from hotshard.local import feeder as feeder_module
from hotshard.local.feeder import Feeder
from hotshard.local.services.broker import tansu
from hotshard.names import TOPIC_ORDER_STATUS

pytestmark = pytest.mark.integration


def produce(bootstrap: str, values: list[bytes]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    for value in values:
        p.produce(TOPIC_ORDER_STATUS, value, partition=0)
    p.flush(10)
    p.close()


def test_a_replaced_event_topic_is_read_again_from_its_start(monkeypatch):
    monkeypatch.setattr(feeder_module, "LOG_CHECK_S", 0.0)  # compare the ids on every read
    seen: list[bytes] = []

    def handler(event: dict[str, Any], _context: Any) -> None:
        for records in event["records"].values():
            seen.extend(base64.b64decode(r["value"]) for r in records)

    with tansu() as broker:
        kafka.create_topics(broker.admin(), 1)
        produce(broker.bootstrap, [b"old-0", b"old-1", b"old-2"])
        feeder = Feeder(kafka.client_config(broker.bootstrap), handler,
                        topics=(TOPIC_ORDER_STATUS,))  # fmt: skip
        feeder._assign()
        try:
            deadline = time.monotonic() + 20
            while len(seen) < 3 and time.monotonic() < deadline:
                feeder.step()
            assert seen == [b"old-0", b"old-1", b"old-2"]
            broker.restart()  # memory storage: the topics are gone
            kafka.create_topics(broker.admin(), 1)
            new = [f"new-{i}".encode() for i in range(5)]
            produce(broker.bootstrap, new)  # offsets 0..4 of the new log
            deadline = time.monotonic() + 20
            while len(seen) < 8 and time.monotonic() < deadline:
                feeder.step()
            # before: read from the old position 3, so new-0..new-2 were never handed over
            assert seen[3:] == new
            assert feeder.replaced == 1
        finally:
            feeder.stop()  # its consumer and its AdminClient, before the broker stops
