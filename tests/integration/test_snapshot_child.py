"""The engine's snapshots never hold a book (engine.service.forked): on a real redis-server,
an engine loop whose Kafka clients are stand-ins. Before: the periodic snapshot and the
Snapshot RPC froze the book while a worker thread dumped it (its records were held, for
9-13 s at 1M orders on a loaded machine), and a Fence of that symbol waited behind it."""

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from engine.book import Book, Market, add, snapshot
from engine.service import forked
from engine.service import loop as engine_loop
from engine.service.core import EngineState
from engine.service.errors import SnapshotMissingError
from engine.service.loop import Engine
from engine.service.operations import Operations
from engine.service.settings import EngineSettings
from engine.service.store import SnapshotStore
from hotshard import recovery, registry
from hotshard.domain import Side
from hotshard.local.services.redis import RedisServer
from hotshard.wire import encode_order
from tests.builders import big_book

pytestmark = pytest.mark.integration

INSTANCE = "snapper"


class Consumer:
    def consume(self, n: int, timeout: float) -> list[Any]:
        time.sleep(timeout)
        return []

    def assign(self, partitions: list[Any]) -> None:
        pass

    def get_watermark_offsets(self, *a: Any, **kw: Any) -> tuple[int, int]:
        return 0, 0

    def close(self) -> None:
        pass


class Producer:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes, int]] = []

    def produce(self, topic: str, value: bytes, key: bytes, partition: int) -> None:
        self.records.append((topic, value, key, partition))

    def flush(self, timeout: float) -> int:
        return 0

    def poll(self, timeout: float) -> int:
        return 0

    def __len__(self) -> int:
        return 0

    def purge(self) -> None:
        pass

    def close(self) -> None:
        """Engine.shutdown closes its producer (close_clients)."""


def record(offset: int, symbol: str, oid: str) -> tuple[int, int, bytes, bytes]:
    value = encode_order(symbol, add(oid, "u", Side.BUY, 90, 1), route_epoch=0)
    return (0, offset, symbol.encode(), value)


@pytest.fixture
def engine(redis_server: RedisServer) -> Iterator[Engine]:
    client = redis.Redis(port=redis_server.port)
    assert registry.claim_partitions(client, INSTANCE, [0], 60_000) == []
    state = EngineState(Market(open_listing=True))
    engine = Engine(
        EngineSettings(instance_id=INSTANCE, partitions=(0,), snapshot_interval_s=3600),
        state,
        Consumer(),
        Producer(),
        client,
        SnapshotStore(client, instance=INSTANCE),
    )
    engine.partitions = [0]
    state.position[0] = 100
    yield engine
    client.close()


def settle(engine: Engine) -> None:
    """Run the loop's posted work until the periodic checkpoint is done."""
    deadline = time.monotonic() + 120
    while engine._periodic is not None or not engine._controls.empty():
        assert time.monotonic() < deadline
        engine._run_controls()
        time.sleep(0.005)


def test_the_periodic_snapshot_holds_nothing_and_stores_the_book_at_its_offset(engine):
    state = engine.state
    book = big_book("A", 60_000)
    state.add_book(book, 0, 99)
    at_fork = snapshot.dump(book, input_offset=99, partition=0)
    engine.periodic_checkpoint()
    assert engine._periodic is not None  # the child is dumping A now
    result = state.apply_batch([record(100 + i, "A", f"new{i}") for i in range(50)])
    assert result.orders == {"A": 50} and not state.held  # matched at once, nothing held
    settle(engine)
    entry = state.snaps["A"]
    assert (entry.offset, entry.seq) == (99, 60_000)
    assert engine.store.fetch(entry.location) == at_fork  # the book at offset 99
    assert "A" in state.dirty  # it changed since
    checkpoint = recovery.read_checkpoint(engine.redis, 0)
    assert checkpoint is not None and checkpoint.books["A"].location == entry.location


def test_a_fence_does_not_wait_for_the_periodic_snapshot_of_its_symbol_it_cancels_it(engine):
    state = engine.state
    book = big_book("A", 200_000)
    state.add_book(book, 0, 99)
    state.apply_batch([record(100, "A", "late")])  # after the snapshot the fence stores
    ops = Operations(engine)
    loop = threading.Thread(target=engine.run, daemon=True)
    loop.start()
    try:
        engine.call(engine.periodic_checkpoint)
        child = engine._periodic
        assert child is not None
        fenced = ops.fence("A", 1, 1)
        assert child.cancelled  # it had not delivered A: the fence did not wait for it
        assert (fenced.fence_offset, fenced.final_seq) == (100, 200_001)
        # the fence snapshot is the fenced book, and what a Snapshot of it answers
        result = ops.snapshot("A")
        assert result.location == fenced.location and result.input_offset == 100
        restored, info = snapshot.load(engine.store.fetch(fenced.location))
        assert (info.fenced, info.seq, restored.resting()) == (True, 200_001, 200_001)
        deadline = time.monotonic() + 60
        while engine._periodic is not None:  # the cancelled child is reaped
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        engine.stopping.set()
        loop.join(30)


def test_the_final_checkpoint_of_a_stop_is_dumped_by_a_child_not_in_the_engine(engine, monkeypatch):
    # before: shutdown's checkpoint dumped every changed book in the engine's own process
    # (the last place a book was dumped on the loop thread besides "redis-back")
    in_process: list[str] = []

    def watched(book: Book, **kw: Any) -> bytes:
        in_process.append(book.symbol)  # a forked child's calls never show up here
        return snapshot.dump(book, **kw)

    monkeypatch.setattr(engine_loop, "dump", watched, raising=False)
    monkeypatch.setattr(forked, "dump", watched)
    state = engine.state
    book = big_book("A", 50_000)
    state.add_book(book, 0, 99)
    state.apply_batch([record(100, "A", "last")])
    at_stop = snapshot.dump(book, input_offset=100, partition=0)
    engine.shutdown()
    assert in_process == []
    checkpoint = recovery.read_checkpoint(engine.redis, 0)
    assert checkpoint is not None
    entry = checkpoint.books["A"]
    assert (entry.offset, entry.seq) == (100, 50_001)
    assert engine.store.fetch(entry.location) == at_stop


def test_a_fence_answered_over_grpc_forks_its_snapshot_only_after_the_reply(engine, caplog):
    """Fence with `after_reply` (what the gRPC handler passes): no child is forked until
    the handler's reply is sent, then the fence snapshot is stored as before. Before: the
    fork ran on the loop's next turn, and when the handler thread had not yet sent the
    reply by then, the move's pause waited for the fork (156-161 ms on an engine holding
    2.1 million orders)."""
    caplog.set_level(logging.INFO, logger="hotshard.engine")
    state = engine.state
    state.add_book(big_book("A", 20_000), 0, 99)
    ops = Operations(engine)
    replies: list[Any] = []
    loop = threading.Thread(target=engine.run, daemon=True)
    loop.start()
    try:
        fenced = ops.fence("A", 1, 1, after_reply=replies.append)
        time.sleep(0.3)  # many loop turns: the old code forked on the first
        forked = [r for r in caplog.records if r.getMessage() == "fence snapshot"]
        assert forked == [] and len(replies) == 1
        with pytest.raises(SnapshotMissingError):
            engine.store.fetch(fenced.location)
        replies[0]()  # the reply is sent
        result = ops.snapshot("A")  # waits for the fence snapshot
        assert result.location == fenced.location
        assert [r for r in caplog.records if r.getMessage() == "fence snapshot"]
        restored, info = snapshot.load(engine.store.fetch(fenced.location))
        assert (info.fenced, restored.resting()) == (True, 20_000)
    finally:
        engine.stopping.set()
        loop.join(30)
