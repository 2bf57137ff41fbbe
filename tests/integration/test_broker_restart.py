"""The broker restarts while an engine runs (Tansu on durable s3:// storage kept by moto's
S3, hotshard.local.services.broker.durable_tansu): nothing is lost or duplicated.

Tansu forgets idempotent-producer state on restart, so the engine's idempotent producer
gets a FATAL OUT_OF_ORDER_SEQUENCE_NUMBER on its next send: the engine then exits 1 (as it
must: an undelivered event may not be skipped) and its supervisor (systemd
Restart=always in AWS; this test here) restarts it from its checkpoint.
"""

from collections.abc import Iterator

import pytest

from hotshard import kafka
from hotshard.local.flow import zipf_stream
from hotshard.local.services.broker import Broker, durable_tansu
from hotshard.local.traffic import EventReader, produce_orders, producer
from tests.integration.conftest import PARTITIONS
from tests.integration.helpers import expected_events, place, total

pytestmark = pytest.mark.integration


@pytest.fixture
def durable_broker() -> Iterator[Broker]:
    with durable_tansu() as broker, kafka.fetch_wait_floor(broker.fetch_wait_min_ms):
        kafka.create_topics(broker.admin(), PARTITIONS)
        yield broker


def test_engine_rides_out_a_broker_restart(durable_broker, engines):
    broker = durable_broker
    engine = engines("0-3", "ride", brokers=broker.bootstrap)
    stream = zipf_stream(4000, seed=31, symbols=6)
    _, expected = expected_events(stream)
    prod = producer(broker.bootstrap, **{"enable.idempotence": False})
    produce_orders(prod, stream[:2000], place)
    assert prod.flush(20) == 0
    reader = EventReader(broker.bootstrap, PARTITIONS)
    _, first_half = expected_events(stream[:2000])
    assert reader.read_until(lambda r: r.count() >= total(first_half), timeout=60)

    broker.restart()  # same port, same durable storage

    produce_orders(prod, stream[2000:], place)
    assert prod.flush(60) == 0
    restarts = broker_restarts = 0

    def done(r: EventReader) -> bool:
        # Play systemd for both: the engine exits 1 when the restarted broker has forgotten
        # its producer's state, and the restarted Tansu itself sometimes dies soon after
        # (seen about 1 run in 10 under load; its log is not kept). Its log is durable.
        nonlocal engine, restarts, broker_restarts
        if broker.process is not None and not broker.process.alive() and broker_restarts < 3:
            broker_restarts += 1
            broker.restart()
        if not engine.process.alive() and restarts < 3:
            assert engine.process.popen.returncode == 1
            restarts += 1
            engine = engines("0-3", "ride", brokers=broker.bootstrap)
        return r.count() >= total(expected)

    if not reader.read_until(done, timeout=90):
        tansu = broker.process
        alive = tansu is not None and tansu.alive()
        pytest.fail(
            f"events stopped at {reader.count()} of {total(expected)}; broker alive: {alive}; "
            f"engine alive: {engine.process.alive()}\n--- tansu log tail ---\n"
            f"{tansu.log_tail() if tansu is not None else ''}"
        )
    reader.poll(0.5)
    print(f"engine restarts: {restarts}; broker restarts beyond the first: {broker_restarts}")
    assert not reader.guard.gaps
    for symbol, events in expected.items():
        assert reader.sorted_events(symbol) == events, symbol
    reader.close()
