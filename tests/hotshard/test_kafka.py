"""One Kafka configuration builder; MSK IAM is a switch whose token expiry is in seconds."""

import threading
import time
from typing import Any

import pytest

from hotshard import kafka


def test_msk_token_expiry_is_converted_from_milliseconds_to_seconds():
    token, expiry = kafka.msk_oauth_token(
        "eu-west-1", signer=lambda region: (f"tok-{region}", 1_700_000_123_456)
    )
    assert token == "tok-eu-west-1"
    assert expiry == pytest.approx(1_700_000_123.456)


def test_plaintext_config_has_no_sasl():
    config = kafka.client_config("b:9092")
    assert config["bootstrap.servers"] == "b:9092"
    assert "security.protocol" not in config


def test_msk_iam_switch_adds_sasl_oauthbearer_with_a_callback():
    config = kafka.client_config("b:9098", auth=kafka.AUTH_MSK_IAM, region="us-east-1")
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanisms"] == "OAUTHBEARER"
    assert callable(config["oauth_cb"])


def test_msk_iam_needs_a_region_and_unknown_modes_are_refused():
    with pytest.raises(ValueError, match="region"):
        kafka.client_config("b:9098", auth=kafka.AUTH_MSK_IAM)
    with pytest.raises(ValueError, match="auth"):
        kafka.client_config("b:9092", auth="scram")


def test_role_configs_build_on_the_shared_one():
    base = kafka.client_config("b:9092")
    consumer = kafka.consumer_config(base, group_id="hotshard-x", fetch_wait_max_ms=15)
    assert consumer["enable.auto.commit"] is False and consumer["fetch.wait.max.ms"] == 15
    producer = kafka.producer_config(base)
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"


@pytest.mark.parametrize(
    ("mark", "offset", "floor", "stale", "after"),
    [
        (-1, 0, -1, False, 0),  # the partition's first acknowledgement
        (41, 42, 41, False, 42),  # the next record's
        (45, 43, 41, False, 45),  # made before 44, 45 were acknowledged: never lowers it
        (97, 0, 97, True, 0),  # Tansu on s3:// after a restart: offset 0, long passed
        (97, 97, 97, True, 97),  # the floor's own offset is another record's
        (97, 5, 30, True, 5),  # stale: lowered, so a replaced log's next records pass
        (5, 6, 30, True, 6),  # made before the first stale answer: still caught
    ],
)
def test_an_ack_at_or_below_its_floor_is_stale_and_moves_the_mark_to_it(
    mark: int, offset: int, floor: int, stale: bool, after: int
) -> None:
    # a record handed to the producer after offset `floor` of its partition was
    # acknowledged lands beyond it on any log (docs/FAULTS.md, the durable broker)
    assert kafka.stale_ack(offset, floor) is stale
    assert kafka.ack_mark(mark, offset, floor) == after
    # the engine's floor is its mark (its reports come in order): the mark is the offset
    assert kafka.ack_mark(floor, offset, floor) == offset


def test_a_fetch_wait_floor_raises_every_consumer_wait_for_its_block_only() -> None:
    # Tansu on s3:// gives a partition up once the fetch wait passed, listed records or not:
    # a durable broker's consumers need a longer wait than the project's 10-20 ms
    base = kafka.client_config("127.0.0.1:9092")
    assert kafka.consumer_config(base, group_id="g")["fetch.wait.max.ms"] == 20
    with kafka.fetch_wait_floor(500):
        assert kafka.consumer_config(base, group_id="g")["fetch.wait.max.ms"] == 500
        wait = kafka.consumer_config(base, group_id="g", fetch_wait_max_ms=900)
        assert wait["fetch.wait.max.ms"] == 900
    assert kafka.consumer_config(base, group_id="g")["fetch.wait.max.ms"] == 20
    with kafka.fetch_wait_floor(0):  # memory storage: nothing changes
        assert kafka.consumer_config(base, group_id="g")["fetch.wait.max.ms"] == 20


@pytest.mark.integration
def test_a_failed_topic_id_leaves_no_cycle_that_keeps_the_admin_client(broker: Any) -> None:
    """AdminClient has no close(): it goes when its last reference does. A failed
    describe_topics kept it in a cycle (the Future's exception -> its traceback -> the frame
    of topic_id -> the futures and the admin), so the feeder's client outlived its broker
    until a garbage collection, logging "Connection refused" meanwhile."""
    import gc  # noqa: PLC0415
    import weakref  # noqa: PLC0415

    from confluent_kafka import KafkaException  # noqa: PLC0415
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    gc.collect()
    gc.disable()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        gone = weakref.ref(admin)
        failed = False
        try:
            kafka.topic_id(admin, "no-such-topic", timeout_s=2)
        except KafkaException:
            failed = True
        assert failed
        del admin
        assert gone() is None, "the AdminClient outlives its last reference"
    finally:
        gc.enable()


def _topic_consumer(broker: Any, topic: str) -> Any:
    """A consumer of a fresh one-partition `topic`, assigned from its start, that has
    completed a fetch already (its first consume found the empty partition)."""
    from confluent_kafka import Consumer, TopicPartition  # noqa: PLC0415

    kafka.create_topics(broker.admin(), 1, (topic,))
    consumer = Consumer(
        kafka.consumer_config(
            {"bootstrap.servers": broker.bootstrap}, group_id=f"g-{topic}", fetch_wait_max_ms=10
        )
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    consumer.consume(1, 0.5)
    return consumer


def _produce(broker: Any, topic: str, count: int, first: int = 0) -> None:
    from confluent_kafka import Producer  # noqa: PLC0415

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for i in range(first, first + count):
        producer.produce(topic, str(i).encode(), partition=0)
    assert producer.flush(10) == 0


def _timed(call: Any) -> tuple[list[Any], float]:
    began = time.monotonic()
    messages = call()
    return messages, time.monotonic() - began


@pytest.mark.integration
def test_consume_batch_returns_on_the_first_record_not_at_the_end_of_the_timeout(
    broker: Any,
) -> None:
    # librdkafka's consume(n, timeout) holds the record until the timeout passes (n not
    # reached): the engine's turn, and every record in it, waited the whole poll timeout
    consumer = _topic_consumer(broker, "batch-first")
    try:
        for i in range(3):
            _produce(broker, "batch-first", 1, first=i)
            messages, took = _timed(lambda: kafka.consume_batch(consumer, 1000, 6.0))
            assert [m.value() for m in messages] == [str(i).encode()]
            assert took < 3.0, f"record {i} came after {took:.2f} s of a 6 s timeout"
        # nothing there: the whole timeout, then nothing
        messages, took = _timed(lambda: kafka.consume_batch(consumer, 1000, 0.3))
        assert messages == [] and took >= 0.25
    finally:
        consumer.close()


@pytest.mark.integration
def test_consume_batch_takes_what_is_buffered_up_to_the_batch_size_without_waiting(
    broker: Any,
) -> None:
    consumer = _topic_consumer(broker, "batch-buffered")
    try:
        _produce(broker, "batch-buffered", 50)
        time.sleep(1.0)  # the fetcher has all 50 (fetch wait 10 ms) by now
        got: list[Any] = []
        took = 0.0
        for size in (20, 20, 10):
            messages, spent = _timed(lambda: kafka.consume_batch(consumer, 20, 6.0))
            assert len(messages) == size
            got += messages
            took += spent
        # the last batch is short (10 of 20) and nothing more comes: returned at once
        assert took < 3.0, f"three batches of buffered records took {took:.2f} s"
        assert [int(m.value()) for m in got] == list(range(50))
    finally:
        consumer.close()


@pytest.mark.integration
def test_consume_batch_waits_batch_wait_for_more_once_the_first_record_is_there(
    broker: Any,
) -> None:
    consumer = _topic_consumer(broker, "batch-wait")
    try:
        for wait, expected in ((2.5, 6), (0.0, 1)):
            _produce(broker, "batch-wait", 1)
            later = threading.Timer(0.4, _produce, (broker, "batch-wait", 5))
            later.start()
            messages, took = _timed(lambda w=wait: kafka.consume_batch(consumer, 100, 6.0, w))
            later.join()
            assert len(messages) == expected, (wait, took)
            # the batch did not fill: it ends after the batch wait, not the 6 s timeout
            assert took < 5.0
            if expected == 1:  # drain the five for the next round
                while len(messages) < 6:
                    messages += kafka.consume_batch(consumer, 100, 6.0)
    finally:
        consumer.close()
