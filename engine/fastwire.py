"""The engine's Kafka records written and read by hand: protobuf's bytes and meaning, at a
fraction of the cost (event records out, order records in).

`encode_symbol_batch` here is `hotshard.wire.encode_symbol_batch` (the reference, through
the protobuf runtime, and what every reader parses with) with the same arguments and the
same result, byte for byte: OrderStatusBatch, FillBatch and TradeBatch
(proto/hotshard/v1/events.proto) in protobuf's own serialization — fields in number order,
proto3 zeros and empty strings left out, each event a length-delimited message in field 1
of its batch. tests/engine/test_fastwire.py checks the equality on generated streams.
Setting ~10 fields of a protobuf message one by one from Python costs ~0.5 us per event
(the biggest single cost of an engine process, docs/BENCHMARKS.md); this module is
compiled with the book (engine.native, `make native`), where writing an event is a few
dozen byte appends into one buffer.
"""

from typing import Any, Final

from librt.strings import BytesWriter
from mypy_extensions import i64, u8

from hotshard import wire
from hotshard.commands import Command
from hotshard.domain import ID_CHARACTERS, MAX_ID_LENGTH, Action
from hotshard.events import FILL, STATUS, DepthUpdate, Event
from hotshard.reasons import Reason
from hotshard.wire import DecodedOrder, SymbolRecords

_STATUS: Final = STATUS
_FILL: Final = FILL

# field tags: (number << 3) | wire type (0 varint, 2 length-delimited)
_EVENTS: Final = 0x0A  # field 1 of a batch: one event
_B_SYMBOL: Final = 0x12  # field 2 of a batch
_B_AFTER: Final = 0x18  # field 3
_B_THROUGH: Final = 0x20  # field 4
_E_SYMBOL: Final = 0x0A  # field 1 of an event
_E_SEQ: Final = 0x10  # 2
_E_OFFSET: Final = 0x18  # 3
_E_ID: Final = 0x22  # 4 (order_id; a trade's maker_order_id)
_E_USER: Final = 0x2A  # 5 (user_id; a trade's taker_order_id)
_E_6: Final = 0x30  # status / price
_E_7: Final = 0x38  # reason / quantity
_E_8: Final = 0x40  # filled / liquidity / taker_side
_E_9: Final = 0x48  # leaves / trade_id / a trade's ts_ns
_E_10: Final = 0x50  # a status's or fill's ts_ns


def _size(v: i64) -> i64:
    """Bytes of `v` as a varint (a negative int64 takes 10)."""
    if v < 0:
        return 10
    n: i64 = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


def _put(w: BytesWriter, v: i64) -> None:
    """`v` as a varint (a negative int64 as its 64-bit two's complement)."""
    # u8(...): the compiled build's BytesWriter.append takes a C byte (a plain call
    # otherwise)
    if v < 0:
        n: i64 = 0
        while n < 9:
            w.append(u8((v & 0x7F) | 0x80))
            v >>= 7
            n += 1
        w.append(u8(1))
        return
    while v >= 0x80:
        w.append(u8((v & 0x7F) | 0x80))
        v >>= 7
    w.append(u8(v))


def _field_size(v: i64) -> i64:
    """Bytes of a varint field holding `v` (0: left out)."""
    return 1 + _size(v) if v else 0


def _put_field(w: BytesWriter, tag: i64, v: i64) -> None:
    if v:
        w.append(u8(tag))
        _put(w, v)


def _text_size(b: bytes) -> i64:
    n: i64 = len(b)
    return 1 + _size(n) + n if n else 0


def _put_text(w: BytesWriter, tag: i64, b: bytes) -> None:
    n: i64 = len(b)
    if n:
        w.append(u8(tag))
        _put(w, n)
        w.write(b)


def _head(symbol: bytes, after_seq: i64, through_seq: i64) -> bytes:
    """A batch's fields after its events (symbol, after_seq, through_seq)."""
    w = BytesWriter()
    _put_text(w, _B_SYMBOL, symbol)
    _put_field(w, _B_AFTER, after_seq)
    _put_field(w, _B_THROUGH, through_seq)
    return w.getvalue()


def _event(
    w: BytesWriter,
    symbol_field: bytes,
    seq: i64,
    offset: i64,
    a: bytes,
    b: bytes,
    c: i64,
    d: i64,
    e: i64,
    f: i64,
    ts: i64,
) -> None:
    """One event message, in field 1 of its batch: symbol (pre-encoded), seq, offset, two
    strings (fields 4, 5), four varints (fields 6-9), field 10 (a status's or fill's
    ts_ns; a trade has 8 fields and passes its ts_ns as `f`, field 9)."""
    size: i64 = (
        len(symbol_field)
        + _field_size(seq)
        + _field_size(offset)
        + _text_size(a)
        + _text_size(b)
        + _field_size(c)
        + _field_size(d)
        + _field_size(e)
        + _field_size(f)
        + _field_size(ts)
    )
    w.append(u8(_EVENTS))
    _put(w, size)
    w.write(symbol_field)
    _put_field(w, _E_SEQ, seq)
    _put_field(w, _E_OFFSET, offset)
    _put_text(w, _E_ID, a)
    _put_text(w, _E_USER, b)
    _put_field(w, _E_6, c)
    _put_field(w, _E_7, d)
    _put_field(w, _E_8, e)
    _put_field(w, _E_9, f)
    _put_field(w, _E_10, ts)


def encode_symbol_batch(
    symbol: str,
    after_seq: int,
    through_seq: int,
    events: list[Event],
    ends: list[int],
    offsets: list[int],
    depth: DepthUpdate | None,
    depth_offset: int,
    stamps: dict[int, int] | None = None,
) -> SymbolRecords:
    """As `hotshard.wire.encode_symbol_batch` (same arguments, same bytes)."""
    sym = symbol.encode()
    symbol_field = b""
    if sym:
        head = BytesWriter()
        _put_text(head, _E_SYMBOL, sym)
        symbol_field = head.getvalue()
    statuses = BytesWriter()
    fills = BytesWriter()
    trades = BytesWriter()
    start = 0
    for i in range(len(offsets)):
        offset = offsets[i]
        end = ends[i]
        ts = stamps.get(offset, 0) if stamps else 0
        for j in range(start, end):
            event = events[j]
            kind = event[0]
            if kind == _STATUS:
                _event(
                    statuses,
                    symbol_field,
                    event[1],
                    offset,
                    event[2].encode(),
                    event[3].encode(),
                    event[4],
                    event[5],
                    event[6],
                    event[7],
                    ts,
                )
            elif kind == _FILL:
                _event(
                    fills,
                    symbol_field,
                    event[1],
                    offset,
                    event[2].encode(),
                    event[3].encode(),
                    event[4],
                    event[5],
                    event[6],
                    event[7],
                    ts,
                )
            else:
                _event(
                    trades,
                    symbol_field,
                    event[1],
                    offset,
                    event[2].encode(),
                    event[3].encode(),
                    event[4],
                    event[5],
                    event[6],
                    ts,
                    0,
                )
        start = end
    tail = _head(sym, after_seq, through_seq)
    statuses.write(tail)
    fills.write(tail)
    trades.write(tail)
    depth_bytes = None
    if depth is not None:
        depth_ts = stamps.get(depth_offset, 0) if stamps else 0
        depth_bytes = encode_depth(symbol, depth, depth_offset, depth_ts)
    return SymbolRecords(statuses.getvalue(), fills.getvalue(), trades.getvalue(), depth_bytes)


def _levels_size(levels: list[tuple[int, int]]) -> i64:
    """Bytes of a side's PriceLevel messages (field 4 or 5 of a DepthUpdate)."""
    total: i64 = 0
    for price, qty in levels:
        body = _field_size(price) + _field_size(qty)
        total += 1 + _size(body) + body
    return total


def _put_levels(w: BytesWriter, tag: i64, levels: list[tuple[int, int]]) -> None:
    for price, qty in levels:
        w.append(u8(tag))
        _put(w, _field_size(price) + _field_size(qty))
        _put_field(w, 0x08, price)
        _put_field(w, 0x10, qty)


def encode_depth(symbol: str, depth: DepthUpdate, input_offset: int, ts_ns: int = 0) -> bytes:
    """As `hotshard.wire.encode_depth`: a DepthBatch of one DepthUpdate (symbol 1, seq 2,
    input_offset 3, bids 4, asks 5, snapshot 6, ts_ns 7; the batch's symbol in field 2)."""
    sym = symbol.encode()
    bids = depth.bids
    asks = depth.asks
    snapshot: i64 = 1 if depth.snapshot else 0
    size: i64 = (
        _text_size(sym)
        + _field_size(depth.seq)
        + _field_size(input_offset)
        + _levels_size(bids)
        + _levels_size(asks)
        + _field_size(snapshot)
        + _field_size(ts_ns)
    )
    w = BytesWriter()
    w.append(u8(_EVENTS))
    _put(w, size)
    _put_text(w, _E_SYMBOL, sym)
    _put_field(w, 0x10, depth.seq)
    _put_field(w, 0x18, input_offset)
    _put_levels(w, 0x22, bids)
    _put_levels(w, 0x2A, asks)
    _put_field(w, 0x30, snapshot)
    _put_field(w, 0x38, ts_ns)
    _put_text(w, _B_SYMBOL, sym)
    return w.getvalue()


# ---------------------------------------------------------------------- reading orders

_ID_BYTE: Final = bytes(1 if chr(c) in ID_CHARACTERS else 0 for c in range(256))
"""1 for the bytes an id may hold (hotshard.domain.ID_CHARACTERS: all ASCII)."""
_ADD: Final = int(Action.ADD)
_CANCEL: Final = int(Action.CANCEL)
_REPLACE: Final = int(Action.REPLACE)
_MAX_ID: Final = MAX_ID_LENGTH
_NO_REASON: Final = Reason.NONE


def decode_order(value: bytes | None, key: bytes | None = None) -> DecodedOrder:
    """As `hotshard.wire.decode_order` (same result for every input). A well-formed order
    (known fields of the expected wire types, ids of ID_CHARACTERS, an ADD, CANCEL or
    REPLACE, no marker, varints below 2^63) is read here; anything else goes to the
    reference, which also gives every reason a record may be refused for."""
    read = decode_plain(value) if value else None
    if read is None:
        return wire.decode_order(value, key)
    symbol, command, epoch, client_ts, received = read
    return DecodedOrder(
        symbol, command, epoch, client_ts, _NO_REASON, command[1], command[2], received
    )


def _id_at(data: bytes, start: i64, end: i64) -> str | None:
    """The id in data[start:end], or None if it is not 1..MAX_ID_LENGTH id bytes."""
    if end <= start or end - start > _MAX_ID:
        return None
    i = start
    while i < end:
        if not _ID_BYTE[data[i]]:
            return None
        i += 1
    return data[start:end].decode("ascii")


def decode_plain(data: bytes) -> tuple[str, Command, int, int, int] | None:
    """A well-formed order (see decode_order) as (symbol, command, route_epoch,
    client_ts_ns, received_ts_ns), without building its DecodedOrder (the engine's batch
    loop, engine.service.batch, needs one only for a record it cannot apply at once);
    None for anything else (decode_order reads that through the reference)."""
    n: i64 = len(data)
    pos: i64 = 0
    action: i64 = 0
    side: i64 = 0
    otype: i64 = 0
    tif: i64 = 0
    price: i64 = 0
    qty: i64 = 0
    epoch: i64 = 0
    client_ts: i64 = 0
    stop: i64 = 0
    display: i64 = 0
    received: i64 = 0
    post_only = False
    aon = False
    symbol: str | None = None
    order_id: str | None = None
    user_id: str | None = None
    while pos < n:
        # the tag: one byte for fields 1-15, two for 16 and 17
        tag: i64 = data[pos]
        pos += 1
        if tag >= 0x80:
            if pos >= n:
                return None
            second: i64 = data[pos]
            pos += 1
            if second >= 0x80:
                return None
            tag = (tag & 0x7F) | (second << 7)
        field = tag >> 3
        wire_type = tag & 7
        # the value: a varint of at most 9 bytes (< 2^63), or a length and that many bytes
        v: i64 = 0
        shift: i64 = 0
        while True:
            if pos >= n or shift > 56:
                return None
            b: i64 = data[pos]
            pos += 1
            v |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
        if wire_type == 2:
            if v > n or field < 2 or field > 4:
                return None
            end = pos + v
            if end > n:
                return None
            text = _id_at(data, pos, end)
            if text is None:
                return None
            if field == 2:
                symbol = text
            elif field == 3:
                order_id = text
            else:
                user_id = text
            pos = end
            continue
        if wire_type != 0:
            return None
        if field == 1:
            action = v
        elif field == 5:
            side = v
        elif field == 6:
            otype = v
        elif field == 7:
            tif = v
        elif field == 8:
            post_only = v != 0
        elif field == 9:
            price = v
        elif field == 10:
            qty = v
        elif field == 11:
            epoch = v
        elif field == 12:
            client_ts = v
        elif field == 14:
            stop = v
        elif field == 15:
            display = v
        elif field == 16:
            aon = v != 0
        elif field == 17:
            received = v
        else:
            return None  # 13 (a marker record), or a field this engine does not know
        if field <= 7 and v > 0x7FFFFFFF:
            return None  # an enum beyond int32: the reference's to read
    if symbol is None or order_id is None or user_id is None:
        return None
    command: Command
    if action == _ADD:
        command = (
            action,
            order_id,
            user_id,
            side,
            otype,
            tif,
            post_only,
            price,
            qty,
            stop,
            display,
            aon,
        )
    elif action == _CANCEL:
        command = (action, order_id, user_id, 0, 0, 0, False, 0, 0, 0, 0, False)
    elif action == _REPLACE:
        command = (action, order_id, user_id, 0, 0, 0, False, price, qty, 0, 0, False)
    else:
        return None
    return symbol, command, epoch, client_ts, received


ConsumedRecord = tuple[int, int, bytes | None, bytes | None]
"""(partition, offset, key, value) of a consumed record (engine.service.core.Record)."""


def split_messages(
    messages: list[Any], owned: list[int], pending_topic: str, replayed: set[int]
) -> tuple[
    list[ConsumedRecord],
    list[ConsumedRecord],
    list[ConsumedRecord],
    list[ConsumedRecord],
    list[Any],
]:
    """A consumed batch (confluent_kafka Messages) as records by where they go: of owned
    partitions, of followed ones (shadows), of `pending_topic` (replays), those of
    followed partitions in `replayed` (a move-back's replay, also in the second list),
    and the consumer errors. Compiled: five method calls per message from the engine's
    loop cost ~1 us per order interpreted (py-spy, docs/BENCHMARKS.md).

    The accessors are taken once from the messages' class and called as functions: a
    method call by name looks the method up each time (~256 instructions a call, six
    calls a message; callgrind: 2,193 -> 1,562 instructions per message here); a message
    of another class (none from confluent_kafka) is read by name."""
    records: list[ConsumedRecord] = []
    shadowed: list[ConsumedRecord] = []
    pending: list[ConsumedRecord] = []
    moved_back: list[ConsumedRecord] = []
    errors: list[Any] = []
    if not messages:
        return records, shadowed, pending, moved_back, errors
    kind: Any = type(messages[0])
    error_of = kind.error
    partition_of = kind.partition
    offset_of = kind.offset
    key_of = kind.key
    value_of = kind.value
    topic_of = kind.topic
    for m in messages:
        if type(m) is not kind:
            return _split_by_name(messages, owned, pending_topic, replayed)
        error = error_of(m)
        if error is not None:
            errors.append(error)
            continue
        partition: int = partition_of(m)
        record: ConsumedRecord = (partition, offset_of(m), key_of(m), value_of(m))
        if topic_of(m) == pending_topic:
            pending.append(record)
        elif partition in owned:
            records.append(record)
        else:
            shadowed.append(record)
            if partition in replayed:
                moved_back.append(record)
    return records, shadowed, pending, moved_back, errors


def _split_by_name(
    messages: list[Any], owned: list[int], pending_topic: str, replayed: set[int]
) -> tuple[
    list[ConsumedRecord],
    list[ConsumedRecord],
    list[ConsumedRecord],
    list[ConsumedRecord],
    list[Any],
]:
    """split_messages for messages of more than one class: each method called by name."""
    records: list[ConsumedRecord] = []
    shadowed: list[ConsumedRecord] = []
    pending: list[ConsumedRecord] = []
    moved_back: list[ConsumedRecord] = []
    errors: list[Any] = []
    for m in messages:
        error = m.error()
        if error is not None:
            errors.append(error)
            continue
        partition: int = m.partition()
        record: ConsumedRecord = (partition, m.offset(), m.key(), m.value())
        if m.topic() == pending_topic:
            pending.append(record)
        elif partition in owned:
            records.append(record)
        else:
            shadowed.append(record)
            if partition in replayed:
                moved_back.append(record)
    return records, shadowed, pending, moved_back, errors


HISTOGRAM_SUBBUCKETS: Final = 4  # buckets per doubling: a value is off by < 1/8 of itself
HISTOGRAM_MIN_BITS: Final = 14  # latencies below 2^14 ns (16 us) share the lowest bucket
HISTOGRAM_MAX_BITS: Final = 38  # ... above 2^38 ns (~275 s) the highest: <= 96 buckets in all


def bucket_of(latency_ns: int) -> int:
    """The histogram bucket of a latency (engine.service.metrics): 4 per power of two
    (mantissa's top two bits); below 2^(MIN_BITS-1) the lowest bucket, from 2^MAX_BITS
    the highest."""
    bits = latency_ns.bit_length()
    if bits < HISTOGRAM_MIN_BITS:
        return HISTOGRAM_MIN_BITS * HISTOGRAM_SUBBUCKETS
    if bits > HISTOGRAM_MAX_BITS:
        return HISTOGRAM_MAX_BITS * HISTOGRAM_SUBBUCKETS + 3
    return bits * HISTOGRAM_SUBBUCKETS + ((latency_ns >> (bits - 3)) & 3)


def count_latencies(
    histogram: dict[int, int], now_ns: int, stamps: list[int]
) -> tuple[list[int], int, int, int]:
    """Latencies now_ns - stamp (>= 0) counted into `histogram` (bucket -> orders); returns
    them with their min, max and sum (`stamps` not empty). Once per order: compiled."""
    latencies: list[int] = []
    low = high = now_ns - stamps[0] if now_ns > stamps[0] else 0
    total = 0
    # a symbol's orders of one batch mostly fall in one bucket: counted as runs, the
    # histogram is updated once per run, not per order (two dict operations each)
    run_bucket = -1
    run = 0
    for ts in stamps:
        latency = now_ns - ts if now_ns > ts else 0
        latencies.append(latency)
        b = bucket_of(latency)
        if b != run_bucket:
            if run:
                histogram[run_bucket] = histogram.get(run_bucket, 0) + run
            run_bucket = b
            run = 0
        run += 1
        if latency < low:  # noqa: PLR1730 - min() is a generic call compiled
            low = latency
        if latency > high:  # noqa: PLR1730
            high = latency
        total += latency
    if run:
        histogram[run_bucket] = histogram.get(run_bucket, 0) + run
    return latencies, low, high, total
