"""The local event source against a real Tansu: a broker that restarted on memory storage
has replaced its event topics (other ids, offsets from 0); the feeder reads them again from
their start instead of from its old positions, which would skip the new log's first
records once it had grown past them."""

import base64
import threading
import time
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from hotshard import kafka
from hotshard.local import feeder as feeder_module
from hotshard.local.feeder import Feeder, TopicFeeders
from hotshard.local.services.broker import tansu
from hotshard.names import TOPIC_DEPTH, TOPIC_ORDER_STATUS

pytestmark = pytest.mark.integration


def produce(bootstrap: str, values: list[bytes], topic: str = TOPIC_ORDER_STATUS) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    for value in values:
        p.produce(topic, value, partition=0)
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


def committed(bootstrap: str, topic: str) -> int:
    config = kafka.consumer_config({"bootstrap.servers": bootstrap}, group_id=feeder_module.GROUP)
    c = Consumer(config)
    try:
        (tp,) = c.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        c.close()


def test_a_status_is_handed_over_while_a_depth_batch_is_still_being_pushed():
    """Each topic is invoked on its own, as each topic's event source mapping in AWS: with
    the depth batch's invocation stuck (posting, say), the order_status records still go
    to the handler, and are committed; the depth batch is committed only once it returned.
    Before, one thread invoked the topics of a read one after another: the status waited."""
    entered, release = threading.Event(), threading.Event()
    seen: dict[str, list[bytes]] = {TOPIC_ORDER_STATUS: [], TOPIC_DEPTH: []}

    def handler(event: dict[str, Any], _context: Any) -> None:
        for records in event["records"].values():
            topic = records[0]["topic"]
            if topic == TOPIC_DEPTH:
                entered.set()
                assert release.wait(30)
            seen[topic].extend(base64.b64decode(r["value"]) for r in records)

    with tansu() as broker:
        kafka.create_topics(broker.admin(), 1)
        produce(broker.bootstrap, [b"depth-0"], topic=TOPIC_DEPTH)
        feeders = TopicFeeders(kafka.client_config(broker.bootstrap), handler,
                               topics=(TOPIC_DEPTH, TOPIC_ORDER_STATUS))  # fmt: skip
        feeders.start()
        try:
            assert entered.wait(20), "the depth batch never reached its handler"
            produce(broker.bootstrap, [b"status-0", b"status-1"])
            deadline = time.monotonic() + 10
            while len(seen[TOPIC_ORDER_STATUS]) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert seen[TOPIC_ORDER_STATUS] == [b"status-0", b"status-1"]
            assert seen[TOPIC_DEPTH] == []
            assert wait_until(lambda: committed(broker.bootstrap, TOPIC_ORDER_STATUS) == 2)
            assert committed(broker.bootstrap, TOPIC_DEPTH) < 1  # not pushed yet
            release.set()
            assert wait_until(lambda: committed(broker.bootstrap, TOPIC_DEPTH) == 1)
            assert seen[TOPIC_DEPTH] == [b"depth-0"]
        finally:
            release.set()
            feeders.stop()


def wait_until(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_feeder_stopped_mid_batch_commits_it_and_then_closes_its_consumer(monkeypatch):
    # before: stop() closed the consumer after its 10 s join though the thread was still
    # in the handler; the batch's commit then raised RuntimeError on the closed consumer:
    # the thread died with a traceback and the batch's offsets were never committed
    monkeypatch.setattr(feeder_module, "STOP_WAIT_S", 0.3, raising=False)  # (old: 10 s)
    entered, release = threading.Event(), threading.Event()
    died: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_value))

    def handler(_event: dict[str, Any], _context: Any) -> None:
        entered.set()
        assert release.wait(30)

    with tansu() as broker:
        kafka.create_topics(broker.admin(), 1)
        produce(broker.bootstrap, [b"status-0"])
        feeder = Feeder(kafka.client_config(broker.bootstrap), handler,
                        topics=(TOPIC_ORDER_STATUS,))  # fmt: skip
        feeder.start()
        thread = feeder._thread
        assert thread is not None
        try:
            assert entered.wait(20)
            feeder.stop()  # returns while the batch is still in its handler
            assert thread.is_alive()
            release.set()
            thread.join(10)
            assert not thread.is_alive() and died == []
            assert committed(broker.bootstrap, TOPIC_ORDER_STATUS) == 1
        finally:
            release.set()
            thread.join(10)
