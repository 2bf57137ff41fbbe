"""The consumer's exactly-once guard: repeats dropped, losses reported."""

from hotshard.dedupe import DepthGuard, Gap, SequenceGuard
from hotshard.events import STATUS, DepthUpdate
from hotshard.v1 import events_pb2


def status_batch(
    symbol: str, after: int, through: int, seqs: list[int], offset: int = 0
) -> events_pb2.OrderStatusBatch:
    batch = events_pb2.OrderStatusBatch(symbol=symbol, after_seq=after, through_seq=through)
    for seq in seqs:
        batch.events.add(
            symbol=symbol,
            seq=seq,
            input_offset=offset + seq,
            order_id=f"o{seq}",
            user_id="u",
            status=1,
        )
    return batch


def seqs(guard: SequenceGuard, batch: events_pb2.OrderStatusBatch, partition: int = 0) -> list[int]:
    return [event[1] for event, _ in guard.admit(STATUS, partition, batch)]


def test_a_replayed_record_is_dropped_whole():
    guard = SequenceGuard()
    assert seqs(guard, status_batch("A", 0, 3, [1, 2, 3])) == [1, 2, 3]
    assert seqs(guard, status_batch("A", 0, 3, [1, 2, 3])) == []
    assert guard.dropped == 3 and not guard.gaps


def test_a_replay_cut_at_other_batch_boundaries_keeps_only_the_new_events():
    guard = SequenceGuard()
    seqs(guard, status_batch("A", 0, 3, [1, 2, 3]))
    assert seqs(guard, status_batch("A", 1, 5, [2, 3, 4, 5])) == [4, 5]
    assert not guard.gaps


def test_a_missing_record_is_reported_as_a_gap_and_later_events_still_flow():
    guard = SequenceGuard()
    seqs(guard, status_batch("A", 0, 3, [1, 2, 3]))
    assert seqs(guard, status_batch("A", 5, 6, [6])) == [6]
    assert guard.gaps == [Gap(STATUS, "A", 3, 6)]


def test_empty_range_records_advance_coverage_so_sparse_topics_see_no_false_gap():
    guard = SequenceGuard()
    seqs(guard, status_batch("A", 0, 3, []))
    seqs(guard, status_batch("A", 3, 7, [5]))
    assert not guard.gaps


def test_symbols_are_independent():
    guard = SequenceGuard()
    seqs(guard, status_batch("A", 0, 3, [1, 2, 3]))
    assert seqs(guard, status_batch("B", 0, 2, [1, 2])) == [1, 2]


def test_unsequenced_events_are_deduplicated_on_partition_and_input_offset():
    guard = SequenceGuard()
    first = status_batch("X", 0, 0, [0], offset=10)
    assert seqs(guard, first) == [0]
    assert seqs(guard, first) == []
    assert seqs(guard, first, partition=1) == [0]
    assert seqs(guard, status_batch("X", 0, 0, [0], offset=11)) == [0]


def test_depth_updates_not_newer_than_the_applied_one_are_dropped():
    guard = DepthGuard()
    assert guard.admit("A", DepthUpdate(5, [(10, 1)], []))
    assert not guard.admit("A", DepthUpdate(5, [(10, 1)], []))
    assert not guard.admit("A", DepthUpdate(3, [], []))
    assert guard.admit("A", DepthUpdate(9, [], [(11, 2)]))


def test_depth_guard_takes_a_snapshot_at_the_applied_seq_but_not_a_repeated_change():
    guard = DepthGuard()
    assert guard.admit("A", DepthUpdate(5, [(10, 1)], []))
    assert not guard.admit("A", DepthUpdate(5, [(10, 1)], []))
    assert guard.admit("A", DepthUpdate(5, [(10, 1)], [], snapshot=True))
    assert not guard.admit("A", DepthUpdate(4, [], [], snapshot=True))
