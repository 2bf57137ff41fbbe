"""kill -9 mid-stream, restart: after de-duplication a consumer sees exactly the events of
an uninterrupted run (none lost, none twice) and the books end identical."""

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from engine.book.snapshot import dump
from hotshard import recovery
from hotshard.local.flow import zipf_stream
from hotshard.local.traffic import EventReader, produce_orders, producer
from hotshard.v1 import control_pb2
from tests.integration.conftest import PARTITIONS
from tests.integration.helpers import expected_events, place, total

pytestmark = pytest.mark.integration


def beyond_checkpoints(reader: EventReader, r: Any) -> bool:
    """Has the reader seen events of an order after its partition's last checkpoint? Those
    are exactly the events a restart publishes again."""
    for partition in range(PARTITIONS):
        checkpoint = recovery.read_checkpoint(r, partition)
        covered = checkpoint.offset if checkpoint is not None else -1
        for symbol, offsets in reader.offsets.items():
            if place(symbol) == partition and offsets and max(offsets) > covered:
                return True
    return False


def grew(seen: int) -> Callable[[EventReader], bool]:
    return lambda rd: rd.count() > seen


def test_kill_9_then_restart_loses_and_duplicates_nothing(broker, redis_server, engines):
    extra = ("--snapshot-interval-s", "0.5", "--batch-size", "200")
    engine = engines("0-3", "crash", *extra)
    stream = zipf_stream(100_000, seed=21, symbols=10)
    market, expected = expected_events(stream)
    prod = producer(broker.bootstrap)
    chunks = [stream[i : i + 10_000] for i in range(0, len(stream), 10_000)]
    produce_orders(prod, chunks.pop(0), place)
    assert prod.flush(20) == 0

    reader = EventReader(broker.bootstrap, PARTITIONS)
    r = redis_server.client()
    # Mid-stream: a checkpoint covers some orders, and events of later orders are out.
    # Freeze the engine to look; if everything read is already checkpointed (the engine
    # ran ahead of a slow reader), feed it more and look again.
    assert reader.read_until(
        lambda rd: (
            (checkpoint := recovery.read_checkpoint(r, 0)) is not None and checkpoint.offset > 0
        ),
        timeout=60,
    )
    for _ in range(len(chunks)):
        engine.process.popen.send_signal(signal.SIGSTOP)
        while reader.poll(0.3):
            pass
        if beyond_checkpoints(reader, r):
            break
        produce_orders(prod, chunks.pop(0), place)
        assert prod.flush(20) == 0
        engine.process.popen.send_signal(signal.SIGCONT)
        assert reader.read_until(grew(reader.count()), timeout=30)
    engine.process.kill()
    for chunk in chunks:
        produce_orders(prod, chunk, place)
    assert prod.flush(20) == 0

    began = time.monotonic()
    engine = engines("0-3", "crash", *extra)
    restart_s = time.monotonic() - began
    assert reader.read_until(lambda rd: rd.count() >= total(expected), timeout=90)
    reader.poll(0.5)  # anything beyond would be a duplicate the guard lets through

    assert not reader.guard.gaps
    assert reader.guard.dropped > 0, "the restart replayed nothing: the test did not test"
    for symbol, events in expected.items():
        assert reader.sorted_events(symbol) == events, symbol
    stub = engine.stub()
    for symbol, book in market.books.items():
        reply = stub.Snapshot(control_pb2.SnapshotRequest(symbol=symbol), timeout=10)
        book.depth_update()  # the engine conflated depth; the reference did not
        assert not reply.snapshot  # by reference only
        stored = r.get(reply.location.removeprefix("redis:"))
        assert stored == dump(book, input_offset=reply.input_offset, partition=reply.partition), (
            symbol
        )
    print(f"restart to serving: {restart_s:.2f} s; replayed events dropped: {reader.guard.dropped}")
    reader.close()
