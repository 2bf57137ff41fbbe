"""Snapshots: versioned, checksummed, and the restored book behaves as the original."""

import tracemalloc
import zlib
from collections.abc import Callable

import pytest

from engine.book import Book, add, snapshot
from engine.book.snapshot import SnapshotError
from hotshard.domain import OrderType, Side
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


def as_version_1(envelope: snapshot_pb2.Snapshot, state: snapshot_pb2.BookState) -> None:
    """Rewrite a version 2 state as version 1 wrote it: the same columns, repeated fields
    only (what `load` still reads from snapshots taken before the packing)."""
    ids = state.order_ids_nul.decode().split("\0") if state.side else []
    users = list(state.users)

    def ints(data: bytes) -> list[int]:
        w = data[0] if data else 8
        return [
            int.from_bytes(data[i : i + w], "little", signed=True) for i in range(1, len(data), w)
        ]

    index, done_index = ints(state.user_index_le), ints(state.done_user_index_le)

    state.price.extend(ints(state.price_le))
    state.leaves.extend(ints(state.leaves_le))
    state.filled.extend(ints(state.filled_le))
    state.order_id.extend(ids)
    state.user_id.extend(users[i] for i in index)
    if state.done_filled_le:
        state.done_order_id.extend(state.done_order_ids_nul.decode().split("\0"))
    state.done_user_id.extend(users[i] for i in done_index)
    state.done_filled.extend(ints(state.done_filled_le))
    for name in (
        "price_le", "leaves_le", "filled_le", "order_ids_nul", "users", "user_index_le",
        "done_order_ids_nul", "done_user_index_le", "done_filled_le",
    ):  # fmt: skip
        state.ClearField(name)
    envelope.format_version = 1


def rewritten(
    b: object, change: Callable[[snapshot_pb2.BookState], object], *, v1: bool, **dump: int
) -> bytes:
    """A snapshot of `b` whose state `change` edits, re-checksummed: a wrong writer, not
    noise (`v1`: in version 1's form first)."""
    envelope = snapshot_pb2.Snapshot()
    envelope.ParseFromString(snapshot.dump(b, **dump))  # type: ignore[arg-type]
    state = snapshot_pb2.BookState()
    state.ParseFromString(envelope.state)
    if v1:
        as_version_1(envelope, state)
    change(state)
    envelope.state = state.SerializeToString()
    envelope.crc32 = zlib.crc32(envelope.state)
    return envelope.SerializeToString()


def three_bids() -> object:
    b = book()
    b.apply(add("1", "alice", Side.BUY, 100, 3))
    b.apply(add("2", "bob", Side.BUY, 99, 4))
    b.apply(add("3", "carol", Side.BUY, 100, 5))
    return b


def corrupted(change: Callable[[snapshot_pb2.BookState], object]) -> bytes:
    return rewritten(three_bids(), change, v1=True)


def test_version_2_packs_the_columns_and_version_1_snapshots_still_load():
    b = book(dedup_window=10)
    for i in range(30):
        side, price = (Side.BUY, 90 + i % 5) if i % 2 else (Side.SELL, 110 - i % 5)
        b.apply(add(f"r{i}", f"u{i % 3}", side, price, 2))
    b.apply(add("x", "u1", Side.SELL, 80, 7))  # trades, leaving ended orders remembered
    b.apply(add("ice", "u2", Side.BUY, 50, 10, display_quantity=2))
    b.apply(add("stop", "u0", Side.SELL, 0, 3, order_type=OrderType.STOP, stop_price=40))
    data = snapshot.dump(b, input_offset=9, partition=2, owner_epoch=3)
    envelope = snapshot_pb2.Snapshot.FromString(data)
    state = snapshot_pb2.BookState.FromString(envelope.state)
    assert envelope.format_version == snapshot.FORMAT_VERSION == 3  # packed, and ranked
    assert state.order_rank_le
    assert (len(state.price), len(state.order_id), len(state.done_order_id)) == (0, 0, 0)
    assert sorted(state.users) == ["u0", "u1", "u2"]  # each user once
    old = rewritten(b, lambda s: None, v1=True, input_offset=9, partition=2, owner_epoch=3)
    assert snapshot_pb2.Snapshot.FromString(old).format_version == 1
    for restored, info in (snapshot.load(data), snapshot.load(old)):
        assert (info.input_offset, info.partition, info.seq, info.owner_epoch) == (9, 2, b.seq, 3)
        assert restored.order_columns() == b.order_columns()
        assert restored.order_extras() == b.order_extras()
        assert restored.stop_columns() == b.stop_columns()
        assert [(o.order_id, o.user_id, o.filled) for o in restored.ended_orders()] == [
            (o.order_id, o.user_id, o.filled) for o in b.ended_orders()
        ]
        # the same answers to the same orders afterwards (duplicates of ended ids included)
        more = [add("r3", "u0", Side.BUY, 99, 1), add("n", "u9", Side.SELL, 90, 40)]
        twin = snapshot.load(data)[0]
        assert [restored.apply(c) for c in more] == [twin.apply(c) for c in more]


def test_an_order_id_holding_a_nul_is_kept_unpacked():
    b = book()
    b.apply(add("a\0b", "alice", Side.BUY, 100, 3))
    b.apply(add("c", "bob", Side.BUY, 99, 4))
    envelope = snapshot_pb2.Snapshot.FromString(snapshot.dump(b))
    state = snapshot_pb2.BookState.FromString(envelope.state)
    assert list(state.order_id) == ["a\0b", "c"] and not state.order_ids_nul
    assert snapshot.load(snapshot.dump(b))[0].order_columns() == b.order_columns()


@pytest.mark.parametrize(
    "change",
    [
        lambda s: setattr(s, "price_le", s.price_le[:-1]),  # not whole values
        lambda s: setattr(s, "leaves_le", s.leaves_le[:-1]),  # one value short
        lambda s: setattr(s, "filled_le", b"\x03" + s.filled_le[1:]),  # no width 3
        lambda s: setattr(s, "order_ids_nul", s.order_ids_nul + b"\0x"),  # one id too many
        lambda s: setattr(s, "order_ids_nul", b"\xff" + s.order_ids_nul),  # not UTF-8
        lambda s: setattr(s, "user_index_le", s.user_index_le[:-1] + b"\x09"),  # no user 9
        lambda s: s.users.pop(),
    ],
)
def test_a_packed_column_that_makes_no_sense_is_corrupt(change):
    with pytest.raises(SnapshotError) as caught:
        snapshot.load(rewritten(three_bids(), change, v1=False))
    assert caught.value.reason == Reason.CORRUPT_SNAPSHOT


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


# ------------------------------------------------- the state read in place (not copied)


def _wire(number: int, wire: int, payload: bytes) -> bytes:
    """One protobuf field: its key, then (length-delimited) its length and payload."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    key = varint(number << 3 | wire)
    return key + (varint(len(payload)) + payload if wire == 2 else payload)


def _resealed(envelope: snapshot_pb2.Snapshot, state_bytes: bytes) -> bytes:
    envelope.state = state_bytes
    envelope.crc32 = zlib.crc32(state_bytes)
    return envelope.SerializeToString()


def _ordered_book() -> Book:
    b = book()
    for i in range(40):
        b.apply(
            add(
                f"o{i}",
                f"u{i % 3}",
                Side.BUY if i % 2 else Side.SELL,
                90 + i % 5 if i % 2 else 110 + i % 5,
                1 + i,
            )
        )
    return b


def _as_protobuf_reads_it(data: bytes) -> snapshot_pb2.BookState:
    envelope = snapshot_pb2.Snapshot.FromString(data)
    return snapshot_pb2.BookState.FromString(envelope.state)


def _as_load_reads_it(data: bytes) -> snapshot_pb2.BookState:
    _, state, big = snapshot._open(data)
    for name, view in big.items():
        setattr(state, name, bytes(view))
    return state


@pytest.mark.parametrize(
    "extra",
    [
        b"",
        _wire(40, 2, b"\x01\x05\x06"),  # price_le again: the last one counts (proto3)
        _wire(43, 0, b"\x07"),  # order_ids_nul with a varint's wire type: an unknown field
        _wire(999, 2, b"whatever") + _wire(998, 5, b"abcd") + _wire(997, 1, b"12345678"),
        _wire(4, 2, b"\x01"),  # side again
    ],
    ids=["as written", "a column twice", "a wrong wire type", "unknown fields", "side twice"],
)
def test_the_state_read_in_place_is_the_state_protobuf_reads(extra):
    envelope = snapshot_pb2.Snapshot.FromString(snapshot.dump(_ordered_book()))
    data = _resealed(envelope, envelope.state + extra)
    assert _as_load_reads_it(data) == _as_protobuf_reads_it(data)
    assert snapshot.info(data).symbol == "TEST"


def test_a_version_1_state_of_a_field_per_order_is_left_to_protobuf_and_loads_the_same():
    b = book()
    b.apply_all([add(f"o{i}", f"u{i % 3}", Side.BUY, 50 + i % 9, 1) for i in range(3000)])
    data = rewritten(b, lambda s: None, v1=True)  # 6,000 string fields: more than scanned
    _, _, big = snapshot._open(data)
    assert big == {}
    assert _as_load_reads_it(data) == _as_protobuf_reads_it(data)
    restored, _ = snapshot.load(data)
    assert restored.depth(10) == b.depth(10)


@pytest.mark.parametrize("cut", [1, 2, 5, 50])
def test_a_truncated_snapshot_is_corrupt_not_a_crash(cut):
    data = snapshot.dump(_ordered_book())
    with pytest.raises(SnapshotError) as caught:
        snapshot.load(data[:-cut])
    assert caught.value.reason == Reason.CORRUPT_SNAPSHOT


def test_reading_a_snapshot_copies_nothing_the_size_of_its_state():
    """The envelope's `state` and the state's columns are read as slices of the fetched
    bytes: before, `envelope.state` alone was a copy of nearly the whole snapshot."""
    b = book()
    b.apply_all(
        [add(f"order-{i:06d}", f"u{i % 7}", Side.BUY, 50 + i % 30, 1) for i in range(20_000)]
    )
    data = snapshot.dump(b)
    tracemalloc.start()
    try:
        snapshot.info(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(data) // 4, (peak, len(data))
