"""Snapshots: versioned, checksummed, and the restored book behaves as the original."""

import zlib
from collections.abc import Callable

import pytest

from engine.book import add, snapshot
from engine.book.snapshot import SnapshotError
from hotshard.domain import Side
from hotshard.local.flow import zipf_stream
from hotshard.reasons import Reason
from hotshard.v1 import snapshot_pb2
from tests.builders import book


def test_round_trip_keeps_offset_partition_seq_and_state():
    b = book(tick=5, self_trade_prevention=True)
    b.apply(add("1", "alice", Side.BUY, 100, 3))
    b.apply(add("2", "bob", Side.SELL, 105, 4))
    data = snapshot.dump(b, input_offset=41, partition=7)
    restored, info = snapshot.load(data)
    assert (info.symbol, info.input_offset, info.partition, info.seq) == ("TEST", 41, 7, 2)
    assert restored.instrument == b.instrument
    assert restored.depth(5) == b.depth(5)
    assert snapshot.info(data) == info


def test_restored_book_continues_a_realistic_stream_identically():
    stream = [c for s, c in zipf_stream(6000, symbols=1)]
    original = book()
    for command in stream[:3000]:
        original.apply(command)
    restored, _ = snapshot.load(snapshot.dump(original))
    assert [restored.apply(c) for c in stream[3000:]] == [original.apply(c) for c in stream[3000:]]


def test_flipped_byte_is_caught_by_the_checksum():
    data = bytearray(snapshot.dump(book()))
    b = book()
    b.apply(add("1", "alice", Side.BUY, 100, 3))
    data = bytearray(snapshot.dump(b))
    data[-3] ^= 0xFF
    with pytest.raises(SnapshotError) as caught:
        snapshot.load(bytes(data))
    assert caught.value.reason == Reason.CORRUPT_SNAPSHOT


def test_garbage_is_not_a_snapshot():
    with pytest.raises(SnapshotError) as caught:
        snapshot.load(b"\xff\x00garbage")
    assert caught.value.reason == Reason.CORRUPT_SNAPSHOT


def test_unknown_format_version_is_refused_with_its_own_reason():
    envelope = snapshot_pb2.Snapshot()
    envelope.ParseFromString(snapshot.dump(book()))
    envelope.format_version = 99
    with pytest.raises(SnapshotError) as caught:
        snapshot.load(envelope.SerializeToString())
    assert caught.value.reason == Reason.UNSUPPORTED_SNAPSHOT_VERSION


def corrupted(change: Callable[[snapshot_pb2.BookState], object]) -> bytes:
    """A snapshot whose state `change` edits, re-checksummed: a wrong writer, not noise."""
    b = book()
    b.apply(add("1", "alice", Side.BUY, 100, 3))
    b.apply(add("2", "bob", Side.BUY, 99, 4))
    b.apply(add("3", "carol", Side.BUY, 100, 5))
    envelope = snapshot_pb2.Snapshot()
    envelope.ParseFromString(snapshot.dump(b))
    state = snapshot_pb2.BookState()
    state.ParseFromString(envelope.state)
    change(state)
    envelope.state = state.SerializeToString()
    envelope.crc32 = zlib.crc32(envelope.state)
    return envelope.SerializeToString()


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.leaves.__setitem__(0, 0),
        lambda s: s.price.__setitem__(1, -5),
        lambda s: s.order_id.__setitem__(1, "1") or s.user_id.__setitem__(1, "alice"),
        lambda s: s.price.__setitem__(slice(None), [100, 99, 100]),  # 100 again after 99
        lambda s: s.done_order_id.append("x"),
        lambda s: s.user_id.pop(),
    ],
)
def test_a_state_that_makes_no_sense_is_corrupt_even_with_a_good_checksum(change):
    with pytest.raises(SnapshotError) as caught:
        snapshot.load(corrupted(change))
    assert caught.value.reason == Reason.CORRUPT_SNAPSHOT
