"""A book to bytes and back: the restored book behaves exactly as the original would.

Format: hotshard.v1.Snapshot (format version, symbol, the input offset and partition the
state is consistent with, CRC-32 of the state) around a columnar hotshard.v1.BookState.
Version 2 packs the big columns into a few byte strings (docs/FORMATS.md "Snapshots"): a
million orders decode in bulk copies rather than a protobuf element per value, ~3x faster
to load. Version 3 (written since) adds the live orders' rank by order id, so a restored
book matches before its order index is built (Book.restore_orders with a rank; the engine
builds the index a slice per loop turn). Versions 1 and 2 still load (indexed at once).
"""

import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

from google.protobuf.message import DecodeError

from engine.book.book import BUY, SELL, Book
from engine.book.instrument import Instrument
from engine.book.packed import pick, unpack_ints
from hotshard.reasons import HotshardError, Reason
from hotshard.v1 import snapshot_pb2

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
"""Version 1: the same columns as repeated protobuf fields only (before packing); 2: no
`order_rank_le`."""

_SWAP = sys.byteorder != "little"  # packed integers are little-endian on every machine


class SnapshotError(HotshardError):
    """The bytes are not a snapshot this version can load (corrupt or unknown version)."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    symbol: str
    input_offset: int
    partition: int
    seq: int
    owner_epoch: int = 0
    fenced: bool = False


def dump(
    book: Book,
    *,
    input_offset: int = -1,
    partition: int = -1,
    owner_epoch: int = 0,
    fenced: bool = False,
) -> bytes:
    state = snapshot_pb2.BookState(seq=book.seq, last_price=book.last_price)
    # hotshard.v1.Instrument has the Instrument dataclass's fields, by the same names
    state.instrument.CopyFrom(snapshot_pb2.Instrument(**asdict(book.instrument)))
    sides, prices, leaves, filled, post_only, order_ids, user_ids = book.order_columns()
    users: dict[str, int] = {}
    if sides:
        state.side = bytes(sides)
        state.price_le = _pack_i64(prices)
        state.leaves_le = _pack_i64(leaves)
        state.filled_le = _pack_i64(filled)
        state.post_only = bytes(post_only)
        _put_ids(state, "order_ids_nul", "order_id", order_ids)
        state.user_index_le = _pack_users(users, user_ids)
        # stable: ties (one id held by two users) by position, as Book.restore_orders checks
        state.order_rank_le = _pack_i64(sorted(range(len(order_ids)), key=order_ids.__getitem__))
    display, peak, aon = book.order_extras()
    if display:
        state.display.extend(display)
        state.peak.extend(peak)
        state.all_or_none = bytes(aon)
    s_sides, s_stops, s_limits, s_qtys, s_tifs, s_displays, s_aons, s_ids, s_users = (
        book.stop_columns()
    )
    if s_sides:
        state.stop_side = bytes(s_sides)
        state.stop_price.extend(s_stops)
        state.stop_limit.extend(s_limits)
        state.stop_quantity.extend(s_qtys)
        state.stop_tif = bytes(s_tifs)
        state.stop_display.extend(s_displays)
        state.stop_all_or_none = bytes(s_aons)
        state.stop_order_id.extend(s_ids)
        state.stop_user_id.extend(s_users)
    ended = book.ended_orders()
    if ended:
        _put_ids(state, "done_order_ids_nul", "done_order_id", [o.order_id for o in ended])
        state.done_user_index_le = _pack_users(users, [o.user_id for o in ended])
        state.done_filled_le = _pack_i64([o.filled for o in ended])
    state.users.extend(users)
    dirty_bids, dirty_asks = book.dirty_prices()
    state.dirty_bids.extend(dirty_bids)
    state.dirty_asks.extend(dirty_asks)
    body = state.SerializeToString()
    envelope = snapshot_pb2.Snapshot(
        format_version=FORMAT_VERSION,
        symbol=book.symbol,
        input_offset=input_offset,
        partition=partition,
        crc32=zlib.crc32(body),
        state=body,
        owner_epoch=owner_epoch,
        fenced=fenced,
    )
    return envelope.SerializeToString()


def info(data: bytes) -> SnapshotInfo:
    """Read the envelope and check the checksum, without building the book."""
    envelope, state = _open(data)
    return SnapshotInfo(
        envelope.symbol,
        envelope.input_offset,
        envelope.partition,
        state.seq,
        envelope.owner_epoch,
        envelope.fenced,
    )


def load(data: bytes, *, index_later: bool = True) -> tuple[Book, SnapshotInfo]:
    """The book and what it is; `index_later` (and a version 3 snapshot): its order index
    is built later (`Book.build_index`, until `Book.unindexed()` is 0), answering the same
    meanwhile."""
    envelope, state = _open(data)
    try:
        instrument = Instrument(
            **{f.name: getattr(state.instrument, f.name) for f in fields(Instrument)}
        )
    except ValueError as exc:
        raise SnapshotError(Reason.CORRUPT_SNAPSHOT, str(exc)) from exc
    book = Book(instrument)
    book.seq = state.seq
    book.last_price = state.last_price
    try:
        count = len(state.side)
        book.restore_orders(
            (
                list(state.side),
                _ints(state.price_le, state.price),
                _ints(state.leaves_le, state.leaves),
                _ints(state.filled_le, state.filled),
                _bools(state.post_only),
                _ids(state.order_ids_nul, state.order_id, count),
                _users(state.users, state.user_index_le, state.user_id),
            ),
            (list(state.display), list(state.peak), _bools(state.all_or_none)),
            state.order_rank_le if index_later and _ranked(envelope, state) else None,
        )
        book.restore_stops(
            (
                list(state.stop_side),
                list(state.stop_price),
                list(state.stop_limit),
                list(state.stop_quantity),
                list(state.stop_tif),
                list(state.stop_display),
                [bool(b) for b in state.stop_all_or_none],
                list(state.stop_order_id),
                list(state.stop_user_id),
            )
        )
        done_filled = _ints(state.done_filled_le, state.done_filled)
        book.restore_ended(
            _ids(state.done_order_ids_nul, state.done_order_id, len(done_filled)),
            _users(state.users, state.done_user_index_le, state.done_user_id),
            done_filled,
        )
    except (ValueError, IndexError) as exc:  # UnicodeDecodeError is a ValueError
        raise SnapshotError(Reason.CORRUPT_SNAPSHOT, str(exc)) from exc
    for price in state.dirty_bids:
        book.mark_dirty(BUY, price)
    for price in state.dirty_asks:
        book.mark_dirty(SELL, price)
    return book, SnapshotInfo(
        envelope.symbol,
        envelope.input_offset,
        envelope.partition,
        book.seq,
        envelope.owner_epoch,
        envelope.fenced,
    )


def _open(data: bytes) -> tuple[snapshot_pb2.Snapshot, snapshot_pb2.BookState]:
    envelope = snapshot_pb2.Snapshot()
    state = snapshot_pb2.BookState()
    try:
        envelope.ParseFromString(data)
    except DecodeError as exc:
        raise SnapshotError(Reason.CORRUPT_SNAPSHOT, "not a snapshot") from exc
    if envelope.format_version not in READABLE_VERSIONS:
        raise SnapshotError(
            Reason.UNSUPPORTED_SNAPSHOT_VERSION,
            f"format version {envelope.format_version}, this build reads "
            + ", ".join(str(v) for v in READABLE_VERSIONS),
        )
    if zlib.crc32(envelope.state) != envelope.crc32:
        raise SnapshotError(Reason.CORRUPT_SNAPSHOT, "checksum mismatch")
    try:
        state.ParseFromString(envelope.state)
    except DecodeError as exc:
        raise SnapshotError(Reason.CORRUPT_SNAPSHOT, "state does not parse") from exc
    if state.instrument.symbol != envelope.symbol:
        raise SnapshotError(Reason.CORRUPT_SNAPSHOT, "symbol differs from the envelope's")
    return envelope, state


# ---------------------------------------------------------------------- packed columns (v2)


_WIDTHS = ((1, "b", 1 << 7), (2, "h", 1 << 15), (4, "i", 1 << 31), (8, "q", 1 << 63))


def _pack_i64(values: Sequence[int]) -> bytes:
    """Signed integers as one byte (their width: 1, 2, 4 or 8) then little-endian values of
    that width, the narrowest that holds them all (a price or a quantity: 2 bytes, not 8)."""
    low, high = (min(values), max(values)) if values else (0, 0)
    width, code = next((w, c) for w, c, bound in _WIDTHS if -bound <= low and high < bound)
    packed = array(code, values)
    if _SWAP:
        packed.byteswap()
    return bytes((width,)) + packed.tobytes()


def _bools(column: bytes) -> list[bool]:
    """A column of one byte per order: usually all zero (a million post_only flags: one
    count in C, not a million bool() calls: ~1 ms instead of ~16)."""
    if column.count(0) == len(column):
        return [False] * len(column)
    return list(map(bool, column))


def _ranked(envelope: snapshot_pb2.Snapshot, state: snapshot_pb2.BookState) -> bool:
    """A rank to restore by (version 3 on: an older writer knew no such field)."""
    return envelope.format_version >= 3 and bool(state.order_rank_le)


def _ints(packed: bytes, repeated: Sequence[int]) -> list[int]:
    """A packed integer column, or (version 1, or written unpacked) its repeated field."""
    return unpack_ints(packed) if packed else list(repeated)


def _put_ids(state: snapshot_pb2.BookState, packed: str, repeated: str, ids: list[str]) -> None:
    """Ids joined by NUL into `packed`; if one holds a NUL itself, the `repeated` field."""
    joined = "\0".join(ids)
    if joined.count("\0") == len(ids) - 1:
        setattr(state, packed, joined.encode())
    else:
        getattr(state, repeated).extend(ids)


def _ids(packed: bytes, repeated: Sequence[str], count: int) -> list[str]:
    if repeated or not count:
        return list(repeated)
    ids = packed.decode().split("\0")
    if len(ids) != count:
        raise ValueError(f"{len(ids)} packed ids for {count} orders")
    return ids


def _pack_users(table: dict[str, int], user_ids: list[str]) -> bytes:
    """Each user's index in `table` (which grows with users not in it yet), packed."""
    return _pack_i64([table.setdefault(u, len(table)) for u in user_ids])


def _users(table: Sequence[str], packed: bytes, repeated: Sequence[str]) -> list[str]:
    if repeated or not packed:
        return list(repeated)
    return pick(list(table), packed)  # IndexError: an index past the table
