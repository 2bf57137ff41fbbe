"""Recovery defects of the engine before owner epochs, each on real processes: an adopted
partition was not reclaimed after a restart, Restore was not idempotent, a position out of
range was silently rewound to the start, a restart could load another owner's snapshot."""

import signal
import time

import grpc
import pytest

from engine.book import Book, Instrument, add
from engine.book.snapshot import dump
from hotshard import names, recovery
from hotshard.domain import Side
from hotshard.local.traffic import EventReader, produce_orders, producer
from hotshard.v1 import control_pb2
from tests.integration.conftest import PARTITIONS

pytestmark = pytest.mark.integration


def test_an_adopted_partition_is_reclaimed_after_a_restart_and_restore_is_idempotent(
    broker, redis_server, engines
):
    engine = engines("1", "adopter")
    stub = engine.stub()
    book = Book(Instrument("ADOPT"))
    for i in range(5):
        book.apply(add(f"o{i}", "u", Side.BUY, 100 + i, 1))
    data = dump(book, input_offset=-1, partition=-1)
    request = control_pb2.RestoreRequest(
        symbol="ADOPT", snapshot=data, follow=True, partition=2, from_offset=0
    )
    first = stub.Restore(request, timeout=20)
    again = stub.Restore(request, timeout=20)  # a retried call: the same answer
    assert again == first and first.seq == 5
    r = redis_server.client()
    assert r.get(names.REDIS_PARTITION_HOME.format(2)) == b"adopter"
    prod = producer(broker.bootstrap)
    produce_orders(prod, [("ADOPT", add("n1", "u", Side.SELL, 200, 1))], lambda s: 2)
    prod.flush(10)
    reader = EventReader(broker.bootstrap, PARTITIONS)
    assert reader.read_until(lambda rd: len(rd.events.get("ADOPT", [])) >= 1, timeout=30)
    time.sleep(1.5)  # a periodic checkpoint of partition 2
    engine.process.stop(signal.SIGKILL)
    engine = engines("1", "adopter")  # started with its configured partitions only
    health = engine.stub().Health(control_pb2.HealthRequest(), timeout=5)
    assert list(health.partitions) == [1, 2] and "ADOPT" in health.symbols
    produce_orders(prod, [("ADOPT", add("n2", "u", Side.SELL, 201, 1))], lambda s: 2)
    prod.flush(10)
    assert reader.read_until(
        lambda rd: any(e[2] == "n2" and e[1] == 7 for e in rd.events.get("ADOPT", [])), timeout=30
    )
    reader.close()


def test_a_position_out_of_range_stops_the_engine_instead_of_rewinding(
    broker, redis_server, engines
):
    r = redis_server.client()
    engine = engines("0", "ranged")
    engine.process.stop(signal.SIGTERM, timeout=20)
    # A checkpoint beyond the end of the log (the log was replaced): before, the consumer's
    # auto.offset.reset=earliest silently replayed partition 0 from its start.
    r.set(names.REDIS_PARTITION_OWNER.format(0), "ranged", px=10_000)
    assert recovery.write_checkpoint(r, recovery.Checkpoint(0, 50_000, instance="ranged"))
    r.delete(names.REDIS_PARTITION_OWNER.format(0))
    prod = producer(broker.bootstrap)
    produce_orders(prod, [("RANGE", add("x", "u", Side.BUY, 1, 1))], lambda s: 0)
    prod.flush(10)
    engine = engines("0", "ranged", wait=False)
    deadline = time.monotonic() + 30
    while engine.process.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not engine.process.alive(), "an out-of-range position must not be rewound"
    assert engine.process.popen.returncode == 3  # cannot start
    assert "outside its log" in engine.process.log_tail(30)


def test_a_restart_loads_the_snapshot_its_checkpoint_names_not_a_later_one_of_another_owner(
    broker, redis_server, engines
):
    r = redis_server.client()
    engine = engines("0", "first")
    prod = producer(broker.bootstrap)
    produce_orders(
        prod, [("OWN", add(f"o{i}", "u", Side.BUY, 10 + i, 1)) for i in range(3)], lambda s: 0
    )
    prod.flush(10)
    reader = EventReader(broker.bootstrap, PARTITIONS)
    assert reader.read_until(lambda rd: len(rd.events.get("OWN", [])) >= 3, timeout=30)
    time.sleep(1.5)
    engine.process.stop(signal.SIGKILL)
    checkpoint = recovery.read_checkpoint(r, 0)
    assert checkpoint is not None and checkpoint.books["OWN"].seq == 3
    # another engine (a move's target) stores a later snapshot of OWN and records it under
    # the name the old code looked up (`snapshot:{S}`)
    other = Book(Instrument("OWN"))
    for i in range(9):
        other.apply(add(f"x{i}", "v", Side.SELL, 50 + i, 1))
    key = names.REDIS_SNAPSHOT_DATA.format("OWN", "9-99")
    r.set(key, dump(other, input_offset=99, partition=3))
    r.hset("snapshot:OWN", mapping={"location": f"redis:{key}", "partition": 3, "seq": 9})
    engine = engines("0", "first")
    stats = engine.stub().Stats(control_pb2.StatsRequest(), timeout=5)
    [own] = [s for s in stats.symbols if s.symbol == "OWN"]
    assert (own.seq, own.resting_orders) == (3, 3)
    with pytest.raises(grpc.RpcError):
        engine.stub().Snapshot(control_pb2.SnapshotRequest(symbol="NOT-HERE"), timeout=5)
    reader.close()
