"""What a restart waits for before it matches again (issue 11, recovery after kill -9): on a
real redis-server, an engine whose Kafka clients are stand-ins (test_snapshot_child's).
Before: the partitions were assigned only after the snapshots were loaded (the first fetch
waited for the load: ~0.8 s of CPU for a million orders, with another core idle), and the
loop said it had caught up at its first empty consume, which after a restart comes before
the first fetch does: the gRPC server then started (its imports: ~0.3 s of the
interpreter) beside the replay."""

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from engine.book import Market, snapshot
from engine.service import loop as engine_loop
from engine.service.core import EngineState
from engine.service.loop import Engine
from engine.service.settings import EngineSettings
from engine.service.store import SnapshotStore
from hotshard import registry
from hotshard.local.services.redis import RedisServer
from tests.builders import big_book
from tests.integration.test_snapshot_child import Consumer, Producer

pytestmark = pytest.mark.integration

INSTANCE = "restarter"


class RecordingConsumer(Consumer):
    """The stand-in consumer, noting each assignment in `events`; its high watermark is
    `high` (None: no fetch response yet)."""

    def __init__(self, events: list[Any], high: int | None = 0) -> None:
        self.events = events
        self.high = high

    def assign(self, partitions: list[Any]) -> None:
        self.events.append(("assign", [(p.topic, p.partition, p.offset) for p in partitions]))

    def get_watermark_offsets(self, *a: Any, **kw: Any) -> tuple[int, int]:
        return (-1001, -1001) if self.high is None else (0, self.high)


def _engine(client: redis.Redis, consumer: Any) -> Engine:
    return Engine(
        EngineSettings(instance_id=INSTANCE, partitions=(0,), snapshot_interval_s=3600),
        EngineState(Market(open_listing=True)),
        consumer,
        Producer(),
        client,
        SnapshotStore(client, instance=INSTANCE),
    )


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    r = redis.Redis(port=redis_server.port)
    assert registry.claim_partitions(r, INSTANCE, [0], 60_000) == []
    yield r
    r.close()


def test_a_restart_fetches_while_its_snapshot_loads(client, monkeypatch):
    # a checkpoint at offset 99 naming a stored snapshot of a 2,000-order book
    before = _engine(client, Consumer())
    before.partitions = [0]
    book = big_book("A", 2_000)
    before.state.position[0] = 100
    before.state.add_book(book, 0, 99)
    data = snapshot.dump(book, input_offset=99)
    stored = before.store.put("A", data, partition=0, input_offset=99, seq=book.seq, owner_epoch=0)
    before.stored("A", stored.location, 99, book.seq)
    assert before.write_checkpoints()

    events: list[Any] = []

    def noted(data: bytes, **kw: Any) -> Any:
        events.append("load")
        return snapshot.load(data, **kw)

    monkeypatch.setattr(engine_loop, "load", noted)
    engine = _engine(client, RecordingConsumer(events))
    engine.start()
    try:
        assert events == [("assign", [("orders", 0, 100)]), "load"]  # once, before the load
        assert engine.state.market.books["A"].resting() == 2_000
    finally:
        engine.stopping.set()


def test_the_loop_is_caught_up_only_once_it_has_read_to_the_high_watermark(client):
    consumer = RecordingConsumer([], high=None)  # no fetch response yet
    engine = _engine(client, consumer)
    engine.partitions = [0]
    loop = threading.Thread(target=engine.run, daemon=True)
    loop.start()
    try:
        assert not engine.caught_up.wait(0.3)  # its consumes return nothing meanwhile
        consumer.high = 100  # a fetch answered: 100 records wait
        assert not engine.caught_up.wait(0.3)
        engine.call(lambda: engine.state.position.__setitem__(0, 100))  # read through them
        deadline = time.monotonic() + 10
        assert engine.caught_up.wait(max(0.0, deadline - time.monotonic()))
    finally:
        engine.stopping.set()
        loop.join(10)
