"""One Kafka configuration builder; MSK IAM is a switch whose token expiry is in seconds."""

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
