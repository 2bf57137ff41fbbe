"""The functional core's side of a move: owner epochs, fences at an offset, held records,
shadows, pending replays, and what a checkpoint says about them. Each test names the
defect of the code before owner epochs that it would have caught."""

import pytest

from engine.book import Book, Instrument, Market, add, cancel
from engine.book.snapshot import dump, load
from engine.service import core, handover
from engine.service.core import EngineState, Record, Replay, Shadow, restore_partition
from engine.service.errors import NotOwnedError
from engine.service.loop import Engine
from engine.service.settings import EngineSettings
from hotshard.domain import Side, Status
from hotshard.names import TOPIC_PENDING_ORDERS
from hotshard.reasons import Reason
from hotshard.recovery import Checkpoint, FenceEntry
from hotshard.wire import PENDING_END, encode_order, encode_pending_marker
from tests.engine.service.test_core import collect


def order(symbol: str, oid: str, epoch: int, price: int = 10) -> bytes:
    return encode_order(symbol, add(oid, "u", Side.BUY, price, 1), route_epoch=epoch)


def rec(partition: int, offset: int, symbol: str, oid: str, epoch: int = 1) -> Record:
    return (partition, offset, symbol.encode(), order(symbol, oid, epoch))


def statuses(outputs: list[core.Output], symbol: str) -> list[tuple[str, int, int, int]]:
    return [(e[2], e[1], e[4], e[5]) for e in collect(outputs).get(symbol, []) if e[0] == 1]


def test_an_order_stamped_below_the_owner_epoch_is_stale_and_changes_nothing():
    # before: the engine never looked at an order's route epoch
    state = EngineState(Market(open_listing=True))
    state.apply_batch([rec(0, 0, "A", "a1", epoch=3)])
    assert state.epoch["A"] == 3
    out = state.apply_batch([rec(0, 1, "A", "old", epoch=2), rec(0, 2, "A", "new", epoch=3)])
    assert statuses(out.outputs, "A") == [
        ("old", 0, Status.REJECTED, Reason.STALE_ROUTE),
        ("new", 2, Status.ACCEPTED, 0),
    ]


def test_a_rewind_applies_a_fenced_symbol_up_to_its_fence_and_refuses_only_later_ones():
    # before: fences had no offset, so a rewind answered STALE_ROUTE to orders the book
    # had accepted before the fence
    state = EngineState(Market(open_listing=True))
    state.apply_batch([rec(0, i, "A", f"a{i}") for i in range(3)])
    book = state.market.books["A"]
    state.remove_book("A", FenceEntry(2, 2, book.seq, 3, "loc", 1, 0))
    state.rewind(0, 0)
    out = state.apply_batch([rec(0, i, "A", f"a{i}") for i in range(3)] + [rec(0, 3, "A", "late")])
    assert statuses(out.outputs, "A") == [("late", 0, Status.REJECTED, Reason.STALE_ROUTE)]
    assert "A" not in state.market.books


def test_a_fenced_book_holds_newer_epochs_and_a_rollback_applies_them_once_in_order():
    state = EngineState(Market(open_listing=True))
    state.apply_batch([rec(0, 0, "A", "a0")])
    book = state.market.books["A"]
    state.fence("A", FenceEntry(2, 0, book.seq, 3, "loc", 1, 0, handover.state_hash(book)))
    marker = state.handoff("A", 0, book.seq, 3, 2)
    assert len(marker) == 3
    out = state.apply_batch(
        [rec(0, 1, "A", "stale", epoch=1), rec(0, 2, "A", "h1", epoch=3), rec(0, 3, "A", "h2", 3)]
    )
    assert statuses(out.outputs, "A") == [("stale", 0, Status.REJECTED, Reason.STALE_ROUTE)]
    assert [r[1] for r in state.held["A"]] == [2, 3]
    # a checkpoint meanwhile resumes from the book's last durable snapshot: held records
    # are read again after a restart, never taken as applied
    state.stored("A", "loc0", 0, book.seq)
    assert state.checkpoint(0, "e", 0).resume_offset() <= 1
    state.fences.pop("A")  # Unfence (engine.service.operations) then drains
    state.epoch["A"] = 3
    drained = state.drain("A")
    assert statuses(drained.outputs, "A") == [
        ("h1", 2, Status.ACCEPTED, 0),
        ("h2", 3, Status.ACCEPTED, 0),
    ]
    assert state.drain("A").outputs == [] and state.held == {}


def test_a_shadow_applies_only_its_symbol_publishes_nothing_and_stops_at_the_fence():
    source = EngineState(Market(open_listing=True))
    recs = [rec(0, 0, "S", "s0"), rec(0, 1, "X", "x0"), rec(0, 2, "S", "s1"), rec(0, 3, "S", "s2")]
    source.apply_batch(recs[:1])
    snap, info = load(dump(source.market.books["S"], input_offset=0, partition=0, owner_epoch=1))
    source_at_0 = load(dump(source.market.books["S"]))[0]
    assert info.owner_epoch == 1
    source.apply_batch(recs[1:3])  # the source goes on: fenced after offset 2
    target = EngineState(Market(open_listing=True))
    target.shadows["S"] = Shadow(snap, 0, 1, info.owner_epoch, 1, "loc")
    target.apply_shadow(recs[1:])
    shadow = target.shadows["S"]
    assert shadow.read == 4 and shadow.last_applied == 3  # applied past the fence at 2...
    assert (
        handover.promote_source(
            has_shadow=True, shadow_past=shadow.last_applied > 2, fallback="loc", symbol="S"
        )
        == "fallback"
    )  # ...so the Promote rebuilds it from the fence snapshot
    again = EngineState(Market(open_listing=True))
    snap2, _ = load(dump(source_at_0, input_offset=0, partition=0, owner_epoch=1))
    again.shadows["S"] = Shadow(snap2, 0, 1, 1, 1, "loc", stop=2)  # Promote(through 2)
    again.apply_shadow(recs[1:])
    mirrored = again.shadows["S"].book
    assert mirrored.seq == source.market.books["S"].seq
    assert handover.state_hash(mirrored) == handover.state_hash(source.market.books["S"])
    assert "X" not in again.market.books and "S" not in again.market.books


def test_a_shadow_holds_its_records_so_a_late_one_past_the_fence_is_dropped_not_applied():
    # before: a record routed before the switch that landed after the Fence (the source
    # refuses it) was applied by the shadow at once; the Promote right after found the
    # shadow past the fence and rebuilt the book from the fence snapshot (3.4 s at 100k
    # orders, 31.5 s at 1M in bench.migration)
    source = EngineState(Market(open_listing=True))
    recs = [rec(0, 0, "S", "s0"), rec(0, 1, "S", "s1"), rec(0, 2, "S", "late")]
    source.apply_batch(recs[:1])
    snap, info = load(dump(source.market.books["S"], input_offset=0, partition=0, owner_epoch=1))
    source.apply_batch(recs[1:2])  # fenced after offset 1: "late" is refused there
    target = EngineState(Market(open_listing=True))
    target.shadows["S"] = Shadow(snap, 0, 1, info.owner_epoch, 1, "loc")
    target.apply_shadow(recs[1:2], now=10.0, hold_s=0.5)
    shadow = target.shadows["S"]
    assert shadow.last_applied == 0 and len(shadow.waiting) == 1  # held
    target.release_shadows(10.6, 0.5)
    assert shadow.last_applied == 1 and shadow.waiting == []  # applied once it waited
    target.apply_shadow(recs[2:], now=11.0, hold_s=0.5)  # the late one
    target.apply_shadow(recs[2:], now=11.1, hold_s=0.5)  # read again: not twice
    assert shadow.read == 3 and shadow.last_applied == 1 and len(shadow.waiting) == 1
    # Promote(through 1) within the hold: not past the fence, and the late one is dropped
    assert shadow.last_applied <= 1
    shadow.stop = 1
    target.release_shadows(11.2, 0.0)
    assert shadow.waiting == [] and shadow.last_applied == 1
    assert handover.state_hash(shadow.book) == handover.state_hash(source.market.books["S"])


def test_a_shadowed_symbols_records_on_the_own_partition_are_held_and_expected_after_restart():
    # before: a record for a symbol the engine did not own created a fresh book (seq 1)
    state = EngineState(Market(open_listing=True))
    state.apply_batch([rec(3, 0, "B", "b0")])
    state.expect["S"] = 1
    out = state.apply_batch([rec(3, 1, "S", "n1", epoch=2), rec(3, 2, "S", "old", epoch=1)])
    assert "S" not in state.market.books
    assert statuses(out.outputs, "S") == []  # both held: order kept behind the first
    state.stored("B", "locB", 0, 1)
    checkpoint = state.checkpoint(3, "b", 0)
    assert checkpoint.expect["S"].epoch == 1 and checkpoint.expect["S"].from_offset == 1
    restarted = EngineState(Market(open_listing=True))
    b = Book(state.market.books["B"].instrument)
    start = restore_partition(
        restarted,
        Checkpoint.from_json(checkpoint.to_json()),
        3,
        {"B": (b, None)},  # type: ignore[dict-item]
    )
    assert start == 1 and restarted.expect == {"S": 1}
    again = restarted.apply_batch([rec(3, 1, "S", "n1", epoch=2)])
    assert again.outputs == [] and "S" not in restarted.market.books
    assert [r[1] for r in restarted.held["S"]] == [1]


def test_a_pending_replay_applies_its_epochs_records_up_to_the_end_marker_then_the_held():
    state = EngineState(Market(open_listing=True))
    state.apply_batch([rec(3, 0, "S", "s0", epoch=2)])
    state.replays["S"] = Replay("S", TOPIC_PENDING_ORDERS, 0, 0, 2)
    held = state.apply_batch([rec(3, 1, "S", "q1", epoch=2)])
    assert held.outputs == [] and len(state.held["S"]) == 1
    pending: list[Record] = [
        (0, 0, b"S", order("S", "p0", 2)),
        (0, 1, b"S", order("S", "other-epoch", 1)),
        (0, 2, b"T", order("T", "not-ours", 2)),
        (0, 3, b"S", encode_pending_marker("S", 2, PENDING_END)),
        (0, 4, b"S", order("S", "after-end", 2)),
    ]
    out = state.apply_pending(TOPIC_PENDING_ORDERS, pending)
    assert statuses(out.outputs, "S") == [("p0", 2, Status.ACCEPTED, 0)]
    assert state.replays["S"].done and state.replays["S"].replayed == 1
    del state.replays["S"]
    assert statuses(state.drain("S").outputs, "S") == [("q1", 3, Status.ACCEPTED, 0)]


def test_a_move_back_replays_the_buffer_then_the_target_partition_through_its_fence():
    """A move-back's Unfence: the pending buffer to its marker, then the target's partition
    (`orders` 7) through the target's fence offset 12 - not to a marker: what the target
    applied after a marker would be lost, what it refused after its fence applied twice -
    then the held records. Before: a replay always ran to a PENDING_END marker, one only."""
    state = EngineState(Market(open_listing=True))
    state.apply_batch([rec(3, 0, "S", "s0", epoch=2)])
    q = Replay("S", "orders", 7, 10, 2, through=12)
    state.replays["S"] = Replay("S", TOPIC_PENDING_ORDERS, 0, 0, 2, then=(q,))
    assert state.apply_batch([rec(3, 1, "S", "held", epoch=3)]).outputs == []
    buffered: list[Record] = [
        (0, 0, b"S", order("S", "p0", 2)),
        (0, 1, b"S", encode_pending_marker("S", 2, PENDING_END)),
    ]
    out = state.apply_pending(TOPIC_PENDING_ORDERS, buffered)
    assert statuses(out.outputs, "S") == [("p0", 2, Status.ACCEPTED, 0)]
    assert not state.replay_done("S") and state.replays["S"] is q
    assert state.pending_partitions() == {("orders", 7): 10}
    moved: list[Record] = [
        (7, 10, b"S", order("S", "q10", 2)),
        (7, 11, b"T", order("T", "not-ours", 2)),
        (7, 12, b"S", order("S", "q12", 2)),
        (7, 13, b"S", order("S", "refused-by-the-fenced-target", 2)),
    ]
    out = state.apply_pending("orders", moved)
    assert statuses(out.outputs, "S") == [
        ("q10", 3, Status.ACCEPTED, 0),
        ("q12", 4, Status.ACCEPTED, 0),
    ]
    assert q.done and q.replayed == 2 and state.replay_done("S") and "S" not in state.replays
    assert statuses(state.drain("S").outputs, "S") == [("held", 5, Status.ACCEPTED, 0)]


def test_a_replay_through_an_offset_it_already_read_past_is_done_at_once():
    """The target applied nothing of its partition (fence offset below where the move
    began), or the last record it applied is the replay's last: done without waiting for a
    record that may never come."""
    assert Replay("S", "orders", 7, 10, 2, through=9).done
    replay = Replay("S", "orders", 7, 10, 2, through=10)
    assert not replay.done
    state = EngineState(Market(open_listing=True))
    state.apply_batch([rec(3, 0, "S", "s0", epoch=2)])
    state.replays["S"] = replay
    state.apply_pending("orders", [(7, 10, b"S", order("S", "q10", 2))])
    assert replay.done and replay.replayed == 1


def test_junk_symbols_grow_no_cache_and_fences_are_bounded(monkeypatch):
    # before: every junk symbol's key was cached, and fences only grew
    state = EngineState(Market())  # nothing listed: every symbol is unknown
    state.apply_batch([rec(0, i, f"J{i}", "x") for i in range(500)])
    assert state._keys == {} and state.market.books == {}
    monkeypatch.setattr(core, "MAX_FENCES", 10)
    for i in range(50):
        state.fence(f"G{i}", FenceEntry(2, i, 1, 3, "", 1, 0))
    assert list(state.fences) == [f"G{i}" for i in range(40, 50)]


def test_a_frozen_book_holds_its_records_and_goes_on_in_order_after_the_snapshot():
    state = EngineState(Market(open_listing=True))
    state.apply_batch([rec(0, 0, "A", "a0"), rec(0, 1, "B", "b0")])
    state.frozen.add("A")  # a snapshot being dumped off the loop
    out = state.apply_batch(
        [
            rec(0, 2, "A", "a1"),
            (0, 3, b"A", encode_order("A", cancel("a0", "u"), route_epoch=1)),
            rec(0, 4, "B", "b1"),
        ]
    )
    assert statuses(out.outputs, "A") == [] and statuses(out.outputs, "B") == [
        ("b1", 2, Status.ACCEPTED, 0)
    ]
    assert state.applied_offset("A") == 1  # the snapshot is of the book at offset 1
    state.frozen.discard("A")
    back = statuses(state.drain("A").outputs, "A")
    assert back == [("a1", 2, Status.ACCEPTED, 0), ("a0", 3, Status.CANCELLED, 0)]


def test_a_flush_never_waits_as_long_as_the_ownership_ttl():
    # before: FLUSH_TIMEOUT_S (10 s) equalled the default ownership TTL, and only the loop
    # thread refreshed ownership, so one slow flush let the partitions lapse
    class Producer:
        def __init__(self) -> None:
            self.timeouts: list[float] = []

        def flush(self, timeout: float) -> int:
            self.timeouts.append(timeout)
            return 0

    producer = Producer()
    settings = EngineSettings(ownership_ttl_s=6.0, heartbeat_interval_s=1.0)
    engine = Engine(settings, EngineState(Market()), None, producer, None, None)  # type: ignore[arg-type]
    assert engine.flush()
    assert producer.timeouts == [2.0]


def test_a_graceful_stop_delivers_every_event_before_its_final_checkpoint():
    # before: shutdown flushed once (capped at TTL/3); after a big backlog events were still
    # pending, the flush said so and the final checkpoint was skipped (a restart replayed
    # from the previous one; bench.recovery found no checkpoint at all)
    class Producer:
        def __init__(self) -> None:
            self.pending = 5

        def __len__(self) -> int:
            return self.pending

        def flush(self, timeout: float) -> int:
            self.pending -= 1  # one flush's worth delivered
            return self.pending

    producer = Producer()
    engine = Engine(EngineSettings(), EngineState(Market()), None, producer, None, None)  # type: ignore[arg-type]
    engine._deliver_all(60)
    assert len(producer) == 0


def test_a_fence_snapshot_says_so_and_a_shadow_from_it_stops_there():
    book = Book(Instrument("F"))
    info = load(dump(book, input_offset=7, partition=0, owner_epoch=2, fenced=True))[1]
    assert (info.input_offset, info.owner_epoch, info.fenced) == (7, 2, True)
    assert not load(dump(book))[1].fenced


def test_a_fenced_book_with_no_snapshot_yet_is_born_again_after_a_restart():
    # before: killed between its Fence (checkpointed) and its fence snapshot being stored,
    # the engine came back with the fence and no book: the records up to the fence were
    # ignored as "applied before it left" and every later one refused, for good
    state = EngineState(Market(open_listing=True))
    state.apply_batch([rec(0, i, "A", f"a{i}") for i in range(3)])
    book = state.market.books["A"]
    fenced = handover.state_hash(book)
    state.fence("A", FenceEntry(2, 2, book.seq, 3, "not-stored", 1, 0, fenced))
    checkpoint = state.checkpoint(0, "e", 0)
    assert checkpoint.books["A"].location == ""
    again = EngineState(Market(open_listing=True))
    start = restore_partition(again, checkpoint, 0, {})
    assert start == 0 and "A" in again.fences
    assert not again.through_fence("A")  # an Unfence now would replay ahead of a0..a2
    again.apply_batch([rec(0, 0, "A", "a0")])
    assert not again.through_fence("A")
    out = again.apply_batch(
        [rec(0, i, "A", f"a{i}") for i in (1, 2)] + [rec(0, 3, "A", "h", epoch=2)]
    )
    assert again.through_fence("A")
    reborn = again.market.books["A"]
    assert (reborn.seq, handover.state_hash(reborn)) == (book.seq, fenced)
    assert statuses(out.outputs, "A") == [
        ("a1", 2, Status.ACCEPTED, 0),
        ("a2", 3, Status.ACCEPTED, 0),
    ]
    assert [r[1] for r in again.held["A"]] == [3]  # after the fence: held for the rollback


def test_a_late_promote_cannot_bring_back_a_book_a_move_back_fenced_and_removed():
    """The move-back fenced the promoted target at e + 2 and removed its book; a copy of the
    switch's Promote (e + 1) still on its way must not install it again (it would apply
    q's e + 1 records nobody reads). A later move here, at a higher epoch, may."""
    left = FenceEntry(7, 12, 5, 1, "loc", 6, 9)
    with pytest.raises(NotOwnedError) as refused:
        handover.refuse_left(left, 6, "S")
    assert refused.value.reason == Reason.STALE_ROUTE
    handover.refuse_left(left, 7, "S")
    handover.refuse_left(None, 6, "S")


class _Acked:
    """A delivered record as confluent_kafka reports it (Message's accessors)."""

    def __init__(self, offset: int | None, partition: int = 0, topic: str = "trades") -> None:
        self._offset = offset
        self._partition = partition
        self._topic = topic

    def offset(self) -> int | None:
        return self._offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition


@pytest.mark.parametrize(("offset", "written"), [(41, True), (None, False), (-1, False)])
def test_an_event_acknowledged_without_an_offset_is_not_taken_as_written(offset, written):
    # before: the producer reported failures only, so a record librdkafka called delivered
    # with no offset (a retried batch answered DUPLICATE_SEQUENCE_NUMBER; Tansu on durable
    # storage answered so after a restart for a trades record it did not have) passed, the
    # next checkpoint covered it, and its seq stayed a hole for every reader
    class Producer:
        def flush(self, timeout: float) -> int:
            engine.on_delivery(None, _Acked(offset))  # callbacks run inside flush
            return 0

    engine = Engine(EngineSettings(), EngineState(Market()), None, Producer(), None, None)  # type: ignore[arg-type]
    assert engine.flush() is written
    assert bool(engine._failure) is not written


def test_an_event_acknowledged_at_an_offset_its_partition_had_passed_stops_the_engine():
    # Tansu 0.6 on s3:// storage, restarted with a batch on its way, acknowledged the retry
    # at an offset long passed and never stored the record; the old code took it as
    # delivered (only the offset's presence was checked), so the next checkpoint covered it
    # and its seq stayed a hole for every reader. Reports of a partition come in the order
    # of its records (the producer is idempotent): each lands beyond the one before.
    reports = [(41, 0, "trades"), (42, 0, "trades"), (0, 1, "trades"), (3, 0, "fills")]

    class Producer:
        def flush(self, timeout: float) -> int:
            for offset, partition, topic in reports:
                engine.on_delivery(None, _Acked(offset, partition, topic))
            return 0

    engine = Engine(EngineSettings(), EngineState(Market()), None, Producer(), None, None)  # type: ignore[arg-type]
    assert engine.flush() and not engine._failure  # each partition of each topic on its own
    reports = [(43, 0, "trades"), (0, 0, "trades")]
    assert not engine.flush()
    failure: str = engine._failure  # (mypy keeps it narrowed to "" from the first assert)
    assert failure == (
        "event not delivered to trades: acknowledged at offset 0 of partition 0, which was "
        "past 43 before: not known to be written"
    )
