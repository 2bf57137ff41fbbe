"""A book to bytes and back: the restored book behaves exactly as the original would.

Format: hotshard.v1.Snapshot (format version, symbol, the input offset and partition the
state is consistent with, CRC-32 of the state) around a columnar hotshard.v1.BookState.
"""

import zlib
from dataclasses import asdict, dataclass, fields

from google.protobuf.message import DecodeError

from engine.book.book import BUY, SELL, Book
from engine.book.instrument import Instrument
from hotshard.reasons import HotshardError, Reason
from hotshard.v1 import snapshot_pb2

FORMAT_VERSION = 1


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
    if sides:
        state.side = bytes(sides)
        state.price.extend(prices)
        state.leaves.extend(leaves)
        state.filled.extend(filled)
        state.post_only = bytes(post_only)
        state.order_id.extend(order_ids)
        state.user_id.extend(user_ids)
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
    state.done_order_id.extend([o.order_id for o in ended])
    state.done_user_id.extend([o.user_id for o in ended])
    state.done_filled.extend([o.filled for o in ended])
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


def load(data: bytes) -> tuple[Book, SnapshotInfo]:
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
        book.restore_orders(
            (
                list(state.side),
                list(state.price),
                list(state.leaves),
                list(state.filled),
                [bool(b) for b in state.post_only],
                list(state.order_id),
                list(state.user_id),
            ),
            (list(state.display), list(state.peak), [bool(b) for b in state.all_or_none]),
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
        book.restore_ended(
            list(state.done_order_id), list(state.done_user_id), list(state.done_filled)
        )
    except ValueError as exc:
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
    if envelope.format_version != FORMAT_VERSION:
        raise SnapshotError(
            Reason.UNSUPPORTED_SNAPSHOT_VERSION,
            f"format version {envelope.format_version}, this build reads {FORMAT_VERSION}",
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
