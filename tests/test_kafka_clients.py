"""tests/kafka_clients.py, the suite's guard against Kafka clients that outlive their
broker (issue 13: a test's producer logging "Connection refused" for minutes after its
Tansu stopped), on a real Tansu."""

import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hotshard.edge.runtime import tune_gc
from hotshard.local.services.broker import Broker, tansu
from hotshard.local.services.process import free_port
from tests import kafka_clients
from tests.kafka_clients import Made


@pytest.fixture
def no_collection() -> Iterator[None]:
    """No automatic collection while a test builds a cycle (it would free it early)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def made_of(client: Any) -> Made:
    made = client.__dict__["_hotshard_made"]
    assert isinstance(made, Made)
    return made


def failing_call_kept(call: Callable[[], object]) -> str:
    """What tests/integration/test_engine_control.py's code_of did: the exception kept in
    this frame makes a cycle (traceback -> this frame -> the caller's frame via f_back)."""
    with pytest.raises(RuntimeError) as info:
        call()
    return str(info.value)


def fail() -> None:
    raise RuntimeError("refused")


def _made_and_cycled(bootstrap: str) -> Made:
    from confluent_kafka import Producer  # noqa: PLC0415

    producer = Producer({"bootstrap.servers": bootstrap})
    failing_call_kept(fail)  # this frame, and `producer`, now live until a collection
    return made_of(producer)


def test_a_producer_kept_by_a_reference_cycle_is_named_when_a_collection_frees_it(
    no_collection,
):
    with tansu() as broker:
        made = _made_and_cycled(broker.bootstrap)
        assert made.ref() is not None  # the cycle keeps it
        assert kafka_clients.cycled() == []
    assert kafka_clients.leaked() == []  # the collection it makes frees it: not alive
    assert kafka_clients.cycled() == [made]
    assert kafka_clients.cycled() == []  # reported once
    assert made.test.endswith(
        "::"
        + test_a_producer_kept_by_a_reference_cycle_is_named_when_a_collection_frees_it.__name__
    )
    assert made.sites[-1].startswith("tests/test_kafka_clients.py:")
    described = kafka_clients.describe(made)
    assert "Producer t.test_kafka_clients.py." in described and broker.bootstrap in described


def test_a_closed_producer_or_one_freed_by_reference_counting_is_not_named(no_collection):
    from confluent_kafka import Producer  # noqa: PLC0415

    nobody = f"127.0.0.1:{free_port()}"
    closed = _made_and_cycled(nobody)
    closed.ref().close()
    dropped = Producer({"bootstrap.servers": nobody})
    del dropped
    gc.collect()
    assert kafka_clients.cycled() == []


def test_a_frozen_producer_after_its_broker_stopped_is_named_alive_until_closed():
    from confluent_kafka import Producer  # noqa: PLC0415

    held: list[Any] = []
    with tansu() as broker:
        held.append(Producer({"bootstrap.servers": broker.bootstrap}))
        gc.freeze()  # what the edge's cold start does (hotshard.edge.runtime.tune_gc)
    try:
        assert kafka_clients.leaked(grace_s=0.1) == [made_of(held[0])]
        assert not any(o is held for o in gc.get_objects())  # why a scan of them missed it
    finally:
        held[0].close()
        kafka_clients.restore_gc()
    assert kafka_clients.leaked(grace_s=0.1) == []  # closed: nothing reconnects
    assert kafka_clients.cycled() == []


def test_clients_of_a_running_broker_and_closed_ones_are_not_named(
    broker_for_test: Broker,
) -> None:
    from confluent_kafka import Consumer, Producer  # noqa: PLC0415
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    bootstrap = broker_for_test.bootstrap
    producer = Producer({"bootstrap.servers": bootstrap})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kafka-clients"})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    assert [m.kind for m in kafka_clients.still_open()[-3:]] == [
        "Producer",
        "Consumer",
        "AdminClient",
    ]
    assert kafka_clients.leaked() == []
    producer.close()
    consumer.close()
    del admin  # an AdminClient has no close(): dropping it is all
    assert all(m.bootstrap != bootstrap for m in kafka_clients.still_open())


@pytest.fixture
def broker_for_test() -> Iterator[Broker]:
    with tansu() as b:
        yield b


def test_a_client_made_without_a_client_id_is_named_by_where_the_test_made_it(capfd):
    """librdkafka's log lines name the client by the client.id the guard gave it, and its
    handle number is the guard's count (rdkafka#producer-N)."""
    from confluent_kafka import Producer  # noqa: PLC0415

    nobody = f"127.0.0.1:{free_port()}"  # nothing listens: it logs "Connection refused"
    producer = Producer({"bootstrap.servers": nobody})
    named = Producer({"bootstrap.servers": nobody, "client.id": "order-router"})
    try:
        made, given = made_of(producer), made_of(named)
        assert made.name.startswith("t.test_kafka_clients.py.")
        assert given.name.startswith("order-router#producer-")  # a given client.id stays
        deadline = time.monotonic() + 10
        err = ""
        while time.monotonic() < deadline and not (made.name in err and given.name in err):
            time.sleep(0.2)
            err += capfd.readouterr().err
        assert f"|{made.name}|" in err and f"|{given.name}|" in err
    finally:
        producer.close()
        named.close()


def test_what_a_test_s_tune_gc_did_is_undone_after_it():
    before = gc.get_threshold()
    tune_gc()  # the edge's cold start, as the local gateway's first request runs it
    assert gc.get_freeze_count() > 0 and gc.get_threshold() != before
    assert kafka_clients.restore_gc()
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before
    assert not kafka_clients.restore_gc()
