"""What a pre-copy pause waits for on the engines (issue 11): on a real redis-server, an
engine loop whose Kafka clients are stand-ins (tests.integration.test_snapshot_child's).
Before: the Fence flushed the producer twice (each a broker round trip for every event in
flight) and rewrote the checkpoint of every owned partition, and a Promote took three loop
turns (begin, activate, answer), each waiting for a batch or a poll timeout."""

import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis

from engine.book import Market, snapshot
from engine.service import handover
from engine.service import loop as engine_loop
from engine.service.control import EngineControl
from engine.service.core import EngineState, Shadow
from engine.service.errors import NotDurableError, SnapshotMissingError
from engine.service.loop import Engine
from engine.service.operations import FENCE_FORK_DELAY_S, Operations, PromoteRequest
from engine.service.settings import EngineSettings
from engine.service.store import SnapshotStore
from hotshard import recovery, registry
from hotshard.local.services.redis import RedisServer
from hotshard.v1 import control_pb2
from tests.builders import big_book
from tests.integration.test_snapshot_child import Consumer, Producer

pytestmark = pytest.mark.integration

INSTANCE = "pauser"


class CountingProducer(Producer):
    """The stand-in producer, counting flushes; `fail` flushes answer one undelivered."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0
        self.fail = 0

    def flush(self, timeout: float) -> int:
        self.flushes += 1
        if self.fail:
            self.fail -= 1
            return 1
        return 0


class TimedConsumer(Consumer):
    """The stand-in consumer, keeping the last waits the loop asked of it."""

    def __init__(self) -> None:
        self.waits: deque[float] = deque(maxlen=20)

    def consume(self, n: int, timeout: float) -> list[Any]:
        self.waits.append(timeout)
        return super().consume(n, timeout)


@pytest.fixture
def engine(redis_server: RedisServer) -> Iterator[Engine]:
    client = redis.Redis(port=redis_server.port)
    assert registry.claim_partitions(client, INSTANCE, [0, 1], 60_000) == []
    state = EngineState(Market(open_listing=True))
    engine = Engine(
        EngineSettings(instance_id=INSTANCE, partitions=(0, 1), snapshot_interval_s=3600),
        state,
        TimedConsumer(),
        CountingProducer(),
        client,
        SnapshotStore(client, instance=INSTANCE),
    )
    engine.partitions = [0, 1]
    state.position[0] = 100
    state.position[1] = 50
    loop = threading.Thread(target=engine.run, daemon=True)
    loop.start()
    yield engine
    engine.stopping.set()
    loop.join(30)
    client.close()


def taken(engine: Engine, partition: int) -> int:
    checkpoint = recovery.read_checkpoint(engine.redis, partition)
    assert checkpoint is not None
    return checkpoint.taken_ms


def fail_the_next_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next checkpoint write raises as a restarting Redis would; later ones go through."""
    written = recovery.write_checkpoint
    failures = [redis.ConnectionError("Redis restarting")]

    def flaky(r: redis.Redis, checkpoint: recovery.Checkpoint) -> bool:
        if failures:
            raise failures.pop()
        return written(r, checkpoint)

    monkeypatch.setattr(recovery, "write_checkpoint", flaky)


def test_a_fence_adds_itself_to_the_last_checkpoint_without_a_flush(engine):
    # before: the Fence flushed (waiting for every event in flight on the engine: 100-180
    # ms with a big book's backlog going out) to write the checkpoint as of now
    state = engine.state
    engine.call(lambda: state.add_book(big_book("A", 1_000), 0, 99))
    engine.call(lambda: state.add_book(big_book("B", 1_000), 1, 49))
    assert engine.call(engine.write_checkpoints)
    before = taken(engine, 1)
    engine.call(lambda: state.position.__setitem__(0, 120))  # consumed since: 100..119
    time.sleep(0.01)  # a checkpoint written now would be a later taken_ms
    producer = engine.producer
    assert isinstance(producer, CountingProducer)
    flushes = producer.flushes
    replies: list[Any] = []
    fenced = Operations(engine).fence("A", 1, 2, after_reply=replies.append)
    assert producer.flushes == flushes and fenced.fence_offset == 119
    checkpoint = recovery.read_checkpoint(engine.redis, 0)
    assert checkpoint is not None and checkpoint.fences["A"].offset == 119
    assert checkpoint.offset == 99  # the last durable position: nothing to deliver first
    assert taken(engine, 1) == before  # B's partition: nothing of A there, not rewritten
    assert len(replies) == 1  # the fence snapshot starts once the reply is sent


def test_a_fence_of_a_book_no_checkpoint_holds_yet_flushes_and_writes_it_now(engine):
    state = engine.state
    assert engine.call(engine.write_checkpoints)
    engine.call(lambda: state.add_book(big_book("A", 1_000), 0, 99))  # since that one
    producer = engine.producer
    assert isinstance(producer, CountingProducer)
    flushes = producer.flushes
    fenced = Operations(engine).fence("A", 1, 2)
    assert producer.flushes - flushes == 1
    checkpoint = recovery.read_checkpoint(engine.redis, 0)
    assert checkpoint is not None and checkpoint.fences["A"].offset == fenced.fence_offset
    assert "A" in checkpoint.books


@pytest.mark.parametrize("since", ["rolled back", "snapshot stored"])
def test_a_fence_of_a_book_changed_since_the_last_checkpoint_flushes(engine, since):
    # review of 95e5679: the checkpoint held the symbol, but not this book's lineage (a
    # Rollback's Unfence applied pending records at a higher epoch, whose checkpoint did
    # not land): a restart from it would have lost those records
    state = engine.state
    engine.call(lambda: state.add_book(big_book("A", 1_000), 0, 99))
    assert engine.call(engine.write_checkpoints)
    if since == "rolled back":
        engine.call(lambda: state.epoch.__setitem__("A", 3))
    else:
        engine.call(lambda: state.stored("A", "redis:elsewhere", 99, state.market.books["A"].seq))
    producer = engine.producer
    assert isinstance(producer, CountingProducer)
    flushes = producer.flushes
    fenced = Operations(engine).fence("A", 4, 2)
    assert producer.flushes - flushes == 1  # the checkpoint as it is now, after a flush
    checkpoint = recovery.read_checkpoint(engine.redis, 0)
    assert checkpoint is not None and checkpoint.fences["A"].offset == fenced.fence_offset
    assert checkpoint.books["A"] == state.checkpoint(0, INSTANCE, 0).books["A"]


@pytest.mark.parametrize("since", ["checkpointed before", "born since"])
def test_a_fence_after_a_pre_copy_snapshot_names_it_without_a_flush(engine, since):
    # before: the pre-copy's Snapshot (stored since the last checkpoint) made the Fence
    # flush and write the checkpoint as of now (run 8: flush 6-45 ms inside the pause); a
    # book born (or moved here) since the last checkpoint paid the same
    state = engine.state
    if since == "born since":
        assert engine.call(engine.write_checkpoints)
    engine.call(lambda: state.add_book(big_book("A", 1_000), 0, 99))
    if since == "checkpointed before":
        assert engine.call(engine.write_checkpoints)
    ops = Operations(engine)
    engine.call(lambda: state.position.__setitem__(0, 110))  # consumed since: 100..109
    taken = ops.snapshot("A")  # the pre-copy's (it flushes: its events out first)
    engine.call(lambda: state.position.__setitem__(0, 120))  # and 110..119 after it
    producer = engine.producer
    assert isinstance(producer, CountingProducer)
    flushes = producer.flushes
    fenced = ops.fence("A", 1, 2)
    assert producer.flushes == flushes and fenced.fence_offset == 119
    checkpoint = recovery.read_checkpoint(engine.redis, 0)
    assert checkpoint is not None and checkpoint.fences["A"].offset == 119
    assert checkpoint.offset == 99  # the last durable position
    entry = checkpoint.books["A"]  # the pre-copy snapshot: a restart applies 110..119 on it
    assert (entry.location, entry.offset, entry.seq) == (taken.location, 109, taken.seq)
    assert checkpoint.resume_offset() == 100


def test_a_fence_whose_checkpoint_failed_is_made_durable_by_its_retry(engine, monkeypatch):
    # before: the retry found the fence set and answered it, never written to Redis: a
    # restart of the source would have applied the symbol's records after f again
    state = engine.state
    engine.call(lambda: state.add_book(big_book("A", 1_000), 0, 99))
    fail_the_next_checkpoint(monkeypatch)
    ops = Operations(engine)
    replies: list[Any] = []
    with pytest.raises(redis.ConnectionError):
        ops.fence("A", 1, 2, after_reply=replies.append)
    unwritten = recovery.read_checkpoint(engine.redis, 0)  # (the loop's first turn's, if any)
    assert (unwritten is None or "A" not in unwritten.fences) and replies == []
    fenced = ops.fence("A", 1, 2, after_reply=replies.append)  # the task's retry
    checkpoint = recovery.read_checkpoint(engine.redis, 0)
    assert checkpoint is not None and checkpoint.fences["A"].offset == fenced.fence_offset
    assert len(replies) == 1  # and its snapshot is started, once
    ops.fence("A", 1, 2, after_reply=replies.append)
    assert len(replies) == 1


def fail_the_next_snapshot_store(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next snapshot stored raises as a restarting Redis would; later ones go through."""
    put = SnapshotStore.put
    failures = [redis.ConnectionError("Error 111 connecting: Connection refused")]

    def flaky(self: SnapshotStore, *args: Any, **kwargs: Any) -> Any:
        if failures and self is engine.store:  # not another test's engine left in the process
            raise failures.pop()
        return put(self, *args, **kwargs)

    monkeypatch.setattr(SnapshotStore, "put", flaky)


def test_a_fence_snapshot_whose_store_failed_is_stored_by_the_retry(engine, monkeypatch):
    # before: the failed store's job stayed, so every retried Snapshot (TransferSnapshot's)
    # was answered the same "fence snapshot failed" until the engine restarted (the fault
    # matrix's stop-and-copy Redis restart at WaitForDrain / TransferSnapshot)
    engine.call(lambda: engine.state.add_book(big_book("A", 1_000), 0, 99))
    fail_the_next_snapshot_store(engine, monkeypatch)
    ops = Operations(engine)
    fenced = ops.fence("A", 1, 2)
    with pytest.raises(NotDurableError, match="fence snapshot failed"):
        ops.snapshot("A")
    taken = ops.snapshot("A")  # the task's retry
    assert taken.location == fenced.location and taken.size > 0
    book, _ = snapshot.load(engine.store.fetch(taken.location))
    assert handover.state_hash(book) == taken.state_hash


def test_an_unfence_after_a_failed_fence_snapshot_lifts_the_fence(engine, monkeypatch):
    # before: the Rollback's Unfence was answered the failed store's error on every retry,
    # leaving the symbol fenced (MigrationRollbackFailed)
    state = engine.state
    engine.call(lambda: state.add_book(big_book("A", 1_000), 0, 99))
    fail_the_next_snapshot_store(engine, monkeypatch)
    ops = Operations(engine)
    ops.fence("A", 1, 2)
    ops.unfence("A", 0, None)  # waits for the fence snapshot's job, which fails
    assert "A" not in state.fences and "A" in state.market.books


def test_a_promote_of_a_shadow_through_the_fence_takes_one_loop_turn(engine, monkeypatch):
    state = engine.state
    book = big_book("Q", 1_000)
    fence_offset = 70  # on partition 9, which this engine follows but does not own
    shadow = Shadow(book, 9, fence_offset + 1, 1, 0, "loc", snapshot_seq=book.seq)
    engine.call(lambda: state.shadows.__setitem__("Q", shadow))
    calls = []
    call = Engine.call

    def counted(self: Engine, fn: Any, timeout: float = 30.0) -> Any:
        calls.append(fn)
        return call(self, fn, timeout)

    monkeypatch.setattr(Engine, "call", counted)
    promoted = Operations(engine).promote(
        PromoteRequest("Q", fence_offset, book.seq, handover.state_hash(book), 2, 1)
    )
    assert promoted.seq == book.seq and "Q" in state.market.books
    assert state.home["Q"] == 1 and state.epoch["Q"] == 2
    assert len(calls) == 1


def test_a_book_restored_unindexed_is_indexed_by_the_loop_a_slice_a_turn(engine, monkeypatch):
    # a restart (or a Follow) loads a version 3 snapshot without indexing its orders;
    # the loop indexes them between batches, INDEX_SLICE at a time
    monkeypatch.setattr(engine_loop, "INDEX_SLICE", 1_000)
    book, _ = snapshot.load(snapshot.dump(big_book("A", 10_000)))
    assert book.unindexed() == 10_000
    engine.call(lambda: engine.state.add_book(book, 0, 99))
    deadline = time.monotonic() + 30
    while engine.call(book.unindexed):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert engine.call(lambda: book.index.get("r1", "u1")) is not None


class Behind(Consumer):
    """A partition whose high watermark is far ahead: the loop is not caught up."""

    def get_watermark_offsets(self, *a: Any, **kw: Any) -> tuple[int, int]:
        return 0, 10**9


def test_until_caught_up_the_loop_indexes_a_slice_only_every_index_behind_s(engine, monkeypatch):
    # a restart's replay: an idle turn then is a wait for the broker's next fetch, and a
    # slice in it would delay what that fetch brings (before: a slice on every idle turn)
    monkeypatch.setattr(engine_loop, "INDEX_SLICE", 1_000)
    monkeypatch.setattr(engine_loop, "INDEX_BEHIND_S", 0.6)
    engine.consumer = Behind()
    engine.caught_up.clear()
    book, _ = snapshot.load(snapshot.dump(big_book("A", 10_000)))
    engine.call(lambda: engine.state.add_book(book, 0, 99))
    began = time.monotonic()
    time.sleep(0.5)
    left = engine.call(book.unindexed)
    assert left >= 8_000 or time.monotonic() - began > 1.1, left  # a slice, two at most
    engine.caught_up.set()  # then on every idle turn
    deadline = time.monotonic() + 30
    while engine.call(book.unindexed):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_stats_shows_a_shadows_orders_not_indexed_until_the_loop_has_built_them(
    engine, monkeypatch
):
    # WaitForCatchUp waits for 0 (run 15: a 1M Promote queued 48-59 ms behind the slices)
    monkeypatch.setattr(engine_loop, "INDEX_SLICE", 1_000)
    monkeypatch.setattr(engine_loop, "INDEX_BEHIND_S", 3600.0)
    engine.consumer = Behind()
    engine.caught_up.clear()  # not caught up: no slice for now
    engine.serving = True
    book, _ = snapshot.load(snapshot.dump(big_book("Q", 10_000)))
    shadow = Shadow(book, 9, 71, 1, 0, "loc", snapshot_seq=book.seq)
    engine.call(lambda: engine.state.shadows.__setitem__("Q", shadow))
    control = EngineControl(engine)
    request, context = control_pb2.StatsRequest(), cast(Any, None)  # no error to abort with
    assert [s.unindexed for s in control.Stats(request, context).shadows] == [10_000]
    engine.caught_up.set()  # then a slice on every idle turn
    deadline = time.monotonic() + 30
    while control.Stats(request, context).shadows[0].unindexed:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert engine.call(lambda: book.index.get("r1", "u1")) is not None


def test_stats_shows_a_periodic_checkpoint_under_way_until_its_snapshots_are_named(engine):
    # WaitForCatchUp waits for none on the source and the target (run 15: a 1M pause met
    # one begun before the move's Snapshot held new ones)
    engine.serving = True
    state = engine.state
    engine.call(lambda: state.add_book(big_book("A", 100_000), 0, 99))
    control = EngineControl(engine)
    request, context = control_pb2.StatsRequest(), cast(Any, None)
    assert not control.Stats(request, context).checkpointing
    engine.call(engine.periodic_checkpoint)  # forks, then stores off the loop
    assert control.Stats(request, context).checkpointing
    deadline = time.monotonic() + 60
    while control.Stats(request, context).checkpointing:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert recovery.read_checkpoint(engine.redis, 0) is not None


def test_a_fence_lifted_before_its_retry_leaves_nothing_to_finish(engine, monkeypatch):
    # before: the unfinished entry of a fence whose checkpoint failed outlived its Unfence
    # (and a Remove): one FenceEntry per symbol kept for the engine's life
    state = engine.state
    engine.call(lambda: state.add_book(big_book("A", 1_000), 0, 99))
    fail_the_next_checkpoint(monkeypatch)
    ops = Operations(engine)
    with pytest.raises(redis.ConnectionError):
        ops.fence("A", 1, 2, after_reply=lambda _: None)
    assert "A" in ops._unfinished
    ops.unfence("A", 1, None)
    assert "A" not in state.fences and ops._unfinished == {}


def waits(engine: Engine) -> set[float]:
    """The loop's consume waits of its next few turns."""
    consumer = engine.consumer
    assert isinstance(consumer, TimedConsumer)
    engine.call(consumer.waits.clear)
    deadline = time.monotonic() + 10
    while len(consumer.waits) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # the first: the turn that cleared them; 0: a consume of what is buffered only
    return {w for w in list(consumer.waits)[1:] if w}


def test_the_loop_turns_at_1_ms_while_a_move_is_under_way(engine):
    # before: with nothing to read, every turn's consume waited the poll timeout (5 ms) for
    # a record, and a Fence or Promote queued for the loop waited for it
    state = engine.state
    assert waits(engine) == {0.005}
    engine.call(lambda: state.add_book(big_book("A", 1_000), 0, 99))
    Operations(engine).snapshot("A")  # a pre-copy's first step: the Fence comes next
    assert waits(engine) == {0.001}
    engine.call(lambda: setattr(engine, "_moving_until", 0.0))  # the window over
    assert waits(engine) == {0.005}
    book = big_book("Q", 10)
    shadow = Shadow(book, 9, 71, 1, 0, "loc", snapshot_seq=book.seq)
    engine.call(lambda: state.shadows.__setitem__("Q", shadow))  # a move's target
    assert waits(engine) == {0.001}


def test_a_fence_snapshot_forks_a_second_after_the_reply_unless_waited_for(engine):
    # before: it forked on the loop's turn right after the reply, and the fork (holding the
    # whole process for its page tables: 5-240 ms) held the source's delivery of the events
    # up to the fence and of its handoff marker, which the target's shadow waits for. One
    # waited for (stop-and-copy's TransferSnapshot, right after its Fence) forks at once.
    state = engine.state
    engine.call(lambda: state.add_book(big_book("A", 1_000), 0, 99))
    engine.call(lambda: state.add_book(big_book("B", 1_000), 1, 49))
    ops = Operations(engine)
    replies: list[Any] = []
    fenced = ops.fence("A", 1, 2, after_reply=replies.append)
    waited = ops.fence("B", 1, 3, after_reply=replies.append)
    for sent in replies:
        sent()
    replied = time.monotonic()
    taken = ops.snapshot("B")
    assert time.monotonic() - replied < FENCE_FORK_DELAY_S / 2
    assert taken.location == waited.location and taken.size > 0
    time.sleep(max(0.0, replied + FENCE_FORK_DELAY_S / 2 - time.monotonic()))
    with pytest.raises(SnapshotMissingError):
        engine.store.fetch(fenced.location)
    deadline = replied + 30
    while True:
        try:
            engine.store.fetch(fenced.location)
            break
        except SnapshotMissingError:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    assert time.monotonic() - replied >= FENCE_FORK_DELAY_S


def test_a_restarted_engine_stores_the_fence_snapshot_it_owes(engine):
    # a fenced book restored from a checkpoint naming no fence snapshot (the engine died
    # in the second between the Fence's reply and its fork): before, only a Snapshot or a
    # Remove asked of it stored it, and a target's fallback Promote waited for it in vain
    state = engine.state
    ops = Operations(engine)
    book = big_book("A", 1_000)
    location = engine.store.location_for("A", seq=book.seq, input_offset=99, estimate=1)
    fence = recovery.FenceEntry(2, 99, book.seq, 2, location, 1, 0, handover.state_hash(book))

    def restored() -> None:  # as restore_partition leaves it
        state.add_book(book, 0, 99, epoch=1, location="redis:older")
        state.fences["A"] = fence
        state.fence_snapshots_owed.add("A")

    engine.call(restored)
    deadline = time.monotonic() + 30
    while True:
        try:
            data = engine.store.fetch(location)
            break
        except SnapshotMissingError:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    loaded, info = snapshot.load(data)
    assert (info.input_offset, loaded.seq) == (99, book.seq)
    assert ops._wait_job("A") == len(data)


def test_a_periodic_checkpoint_waits_for_the_move_between_its_snapshot_and_its_fence(engine):
    # run 11: at 1M a periodic checkpoint's fork (40-140 ms: the page tables of millions of
    # orders) and its stores met the Fence (107.5 ms on the engine) or the Promote
    state = engine.state
    engine.call(lambda: state.add_book(big_book("A", 1_000), 0, 99))
    now = time.monotonic()
    assert engine_loop.checkpoint_due(now, now - 11, 10, 0.0)
    ops = Operations(engine)
    ops.snapshot("A")  # the pre-copy's
    held = engine._hold_until
    assert held > now
    assert not engine_loop.checkpoint_due(now, now - 11, 10, held)  # due, but held
    late = now + engine_loop.CHECKPOINT_HOLD_S + 10
    assert engine_loop.checkpoint_due(late, now - 11, 10, late + 1)  # never held for good
    ops.fence("A", 1, 2)
    assert engine._hold_until == 0.0  # the pause's step here is done: due again
    assert engine_loop.checkpoint_due(now, now - 11, 10, engine._hold_until)
