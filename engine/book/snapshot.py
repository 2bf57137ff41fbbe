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
    envelope, state, _ = _open(data)
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
    envelope, state, big = _open(data)
    try:
        instrument = Instrument(
            **{f.name: getattr(state.instrument, f.name) for f in fields(Instrument)}
        )
    except ValueError as exc:
        raise SnapshotError(Reason.CORRUPT_SNAPSHOT, str(exc)) from exc
    book = Book(instrument)
    book.seq = state.seq
    book.last_price = state.last_price

    def column(name: str) -> bytes:
        """A bytes field of the state: copied from the fetched bytes once, or protobuf's."""
        view = big.get(name)
        return bytes(view) if view is not None else getattr(state, name)

    try:
        sides = big.get("side", state.side)
        count = len(sides)
        rank = column("order_rank_le")
        book.restore_orders(
            (
                list(sides),
                _ints(column("price_le"), state.price),
                _ints(column("leaves_le"), state.leaves),
                _ints(column("filled_le"), state.filled),
                _bools(column("post_only")),
                _ids(big.get("order_ids_nul", state.order_ids_nul), state.order_id, count),
                _users(state.users, column("user_index_le"), state.user_id),
            ),
            (list(state.display), list(state.peak), _bools(column("all_or_none"))),
            rank if index_later and envelope.format_version >= 3 and rank else None,
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
        done_filled = _ints(column("done_filled_le"), state.done_filled)
        book.restore_ended(
            _ids(
                big.get("done_order_ids_nul", state.done_order_ids_nul),
                state.done_order_id,
                len(done_filled),
            ),
            _users(state.users, column("done_user_index_le"), state.done_user_id),
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


def _open(
    data: bytes,
) -> tuple[snapshot_pb2.Snapshot, snapshot_pb2.BookState, dict[str, memoryview]]:
    """The envelope, checked, and the state: its big bytes fields (`_BIG`) as slices of
    `data` when the state is a few top-level fields (versions 2 and 3), parsed by protobuf
    otherwise. A 21 MB snapshot is then not copied four times on its way to the book (the
    envelope's parse, `envelope.state`, the state's parse, each field read: ~40 ms and
    ~18,000 page faults for a million orders) but once, a column at a time."""
    envelope = snapshot_pb2.Snapshot()
    state = snapshot_pb2.BookState()
    view = memoryview(data)
    scanned = _scan(view, _ENVELOPE_BIG)
    body: memoryview | bytes
    try:
        if scanned is None:
            envelope.ParseFromString(data)
            body = envelope.state
        else:
            envelope.ParseFromString(scanned[0])
            body = scanned[1].get("state", view[:0])
    except DecodeError as exc:
        raise SnapshotError(Reason.CORRUPT_SNAPSHOT, "not a snapshot") from exc
    if envelope.format_version not in READABLE_VERSIONS:
        raise SnapshotError(
            Reason.UNSUPPORTED_SNAPSHOT_VERSION,
            f"format version {envelope.format_version}, this build reads "
            + ", ".join(str(v) for v in READABLE_VERSIONS),
        )
    if zlib.crc32(body) != envelope.crc32:
        raise SnapshotError(Reason.CORRUPT_SNAPSHOT, "checksum mismatch")
    fields_ = _scan(memoryview(body), _STATE_BIG)
    try:
        # (protobuf parses a memoryview as it does bytes)
        state.ParseFromString(body if fields_ is None else fields_[0])  # type: ignore[arg-type]
    except DecodeError as exc:
        raise SnapshotError(Reason.CORRUPT_SNAPSHOT, "state does not parse") from exc
    if state.instrument.symbol != envelope.symbol:
        raise SnapshotError(Reason.CORRUPT_SNAPSHOT, "symbol differs from the envelope's")
    return envelope, state, ({} if fields_ is None else fields_[1])


# ------------------------------------------------------------- the wire, scanned in place

_ENVELOPE_BIG = {6: "state"}
_STATE_BIG = {
    4: "side",
    8: "post_only",
    22: "all_or_none",
    40: "price_le",
    41: "leaves_le",
    42: "filled_le",
    43: "order_ids_nul",
    45: "user_index_le",
    46: "done_order_ids_nul",
    47: "done_user_index_le",
    48: "done_filled_le",
    49: "order_rank_le",
}
"""The bytes fields (by number) `_scan` leaves in place: hotshard/v1/snapshot.proto's."""
_SCAN_AT_MOST = 4096
"""Top-level fields scanned before leaving the message to protobuf (version 1's repeated
columns: a field per order)."""


def _scan(view: memoryview, big: dict[int, str]) -> tuple[bytes, dict[str, memoryview]] | None:
    """A protobuf message's top-level fields: those numbered in `big` that are
    length-delimited, by name, as slices of `view` (the last of each: proto3's rule for a
    singular field), and the wire bytes of all the others, in their order (what protobuf
    parses to the message without the big fields). None when the bytes are not a sequence
    of fields this reads (a group, a bad wire type, a truncated field: protobuf's parse of
    the whole then says what is wrong) or hold more than `_SCAN_AT_MOST` of them."""
    end = len(view)
    at = 0
    rest: list[memoryview] = []
    found: dict[str, memoryview] = {}
    for _ in range(_SCAN_AT_MOST):
        if at >= end:
            return b"".join(rest), found
        begin = at
        key, at = _varint(view, at)
        wire = key & 7
        if wire == 0:
            _, at = _varint(view, at)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            length, at = _varint(view, at)
            name = big.get(key >> 3)
            if name is not None and at + length <= end:
                found[name] = view[at : at + length]
                at += length
                continue
            at += length
        else:
            return None
        if at > end:
            return None
        rest.append(view[begin:at])
    return None


def _varint(view: memoryview, at: int) -> tuple[int, int]:
    """The varint at `at` and where it ends (past the end: a truncated field; `_scan` then
    gives up)."""
    value = 0
    shift = 0
    end = len(view)
    while at < end and shift < 64:
        byte = view[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
    return 0, end + 1


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


def _ids(packed: bytes | memoryview, repeated: Sequence[str], count: int) -> list[str]:
    if repeated or not count:
        return list(repeated)
    ids = str(packed, "utf-8").split("\0")  # decoded in place: no copy of the bytes first
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
