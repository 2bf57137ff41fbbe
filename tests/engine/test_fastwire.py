"""The engine's hand-written records: its events are protobuf's bytes and its orders read
as protobuf reads them (hotshard.wire, the reference every other reader and writer uses),
under either build of engine.fastwire."""

import random
from collections.abc import Iterator
from typing import Any

import pytest

from engine.book import Book, Instrument
from engine.fastwire import decode_order, encode_symbol_batch
from hotshard import wire
from hotshard.commands import Command, add, cancel, replace
from hotshard.domain import OrderType, Side
from hotshard.events import DepthUpdate
from hotshard.local.flow import Stream, short_stream, zipf_stream


def batches(stream: Stream, size: int) -> Iterator[tuple[Any, ...]]:
    """Per chunk of `size` commands: per symbol, its events, ends and offsets."""
    books: dict[str, Book] = {}
    offset = 0
    for start in range(0, len(stream), size):
        groups: dict[str, list[tuple[int, Command]]] = {}
        for symbol, command in stream[start : start + size]:
            groups.setdefault(symbol, []).append((offset, command))
            offset += 1
        for symbol, items in groups.items():
            book = books.setdefault(symbol, Book(Instrument(symbol)))
            ends: list[int] = []
            events = book.apply_all([c for _, c in items], ends)
            yield symbol, events, ends, [o for o, _ in items], book.depth_update()


@pytest.mark.parametrize("flow", [zipf_stream, short_stream])
def test_the_bytes_are_protobufs(flow):
    rng = random.Random(3)
    checked = 0
    for symbol, events, ends, offsets, depth in batches(flow(6000, seed=4), 700):
        # stamps on some orders only, offset 0 included (a zero field is left out)
        stamps = {o: rng.randrange(1, 1 << 62) for o in offsets if rng.random() < 0.5}
        args = (symbol, events[0][1] - 1, events[-1][1], events, ends, offsets, depth, offsets[-1])
        for s in (stamps, None, {}):
            assert encode_symbol_batch(*args, s) == wire.encode_symbol_batch(*args, s)
        checked += len(events)
    assert checked > 10_000


def test_edge_values_are_protobufs():
    """Zeros, 64-bit values, negative ints (two's complement), non-ASCII ids, no events."""
    events = [
        (1, 1, "ä-1", "u", 0, 0, 0, 0),
        (3, (1 << 63) - 1, "m", "t", -5, 1 << 40, 2, 7),
        (2, 3, "", "", 127, 128, 1, 16383),
        (2, 4, "x" * 300, "y", -1, 16384, 0, 0),
    ]
    ends, offsets = [1, 4], [0, 1 << 50]
    depth = DepthUpdate(4, [(10, 5)], [])
    for after, through in ((0, 0), (0, 4), (127, 1 << 62)):
        args = ("SYM", after, through, events, ends, offsets, depth, 0, {0: 9, 1 << 50: -3})
        assert encode_symbol_batch(*args) == wire.encode_symbol_batch(*args)
    empty: tuple[Any, ...] = ("S", 5, 5, [], [], [], None, 0)
    assert encode_symbol_batch(*empty) == wire.encode_symbol_batch(*empty)


def order_records() -> list[bytes]:
    """Encoded orders of every kind (the flows, the order types, epochs, stamps)."""
    rng = random.Random(9)
    out = []
    for symbol, command in [*zipf_stream(3000, seed=2), *short_stream(2000, seed=3)]:
        out.append(
            wire.encode_order(
                symbol,
                command,
                route_epoch=rng.choice((0, 1, 7, 1 << 40)),
                client_ts_ns=rng.choice((0, 1, 1 << 62)),
                received_ts_ns=rng.choice((0, 5, (1 << 63) - 1)),
            )
        )
    specials = [
        add("o-1", "u:1", Side.SELL, 10, 5, order_type=OrderType.STOP_LIMIT, stop_price=12),
        add("o.2", "u@2", Side.BUY, 10, 50, display_quantity=5, all_or_none=False),
        add("o~3", "u_3", Side.BUY, 10, 50, all_or_none=True, post_only=True),
        add("o4", "u", Side.BUY, -3, -1),  # negative int64s: the reference's to read
        replace("o5", "u", 11, 3),
        cancel("o6", "u"),
        add("ä", "u", Side.BUY, 1, 1),  # not an id
        add("x" * 65, "u", Side.BUY, 1, 1),  # too long
        add("", "u", Side.BUY, 1, 1),
    ]
    out.extend(wire.encode_order("SYM", c, route_epoch=(1 << 64) - 1) for c in specials)
    out.extend(wire.encode_order("SYM", c) for c in specials)
    out.append(wire.encode_pending_marker("SYM", 3))
    return out


def test_orders_read_as_the_reference_reads_them():
    rng = random.Random(11)
    records = order_records()
    cases = list(records)
    for value in records[:3000]:
        data = bytearray(value)
        kind = rng.randrange(4)
        if kind == 0 and data:  # a flipped byte
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:  # truncated
            del data[rng.randrange(len(data) + 1) :]
        elif kind == 2:  # an unknown or repeated field appended
            data += bytes([rng.randrange(256) for _ in range(rng.randrange(1, 6))])
        else:  # two records in one (every field twice: the last wins)
            data += rng.choice(records)
        cases.append(bytes(data))
    cases += [b"", bytes(rng.randrange(256) for _ in range(40))]
    fast = 0
    for value in cases:
        for key in (None, b"SYM"):
            got = decode_order(value, key)
            assert got == wire.decode_order(value, key), value
            fast += got.command is not None
    assert fast > 8000


def test_most_orders_take_the_fast_path():
    from engine.fastwire import decode_plain  # noqa: PLC0415

    records = order_records()[:5000]
    assert sum(decode_plain(v) is not None for v in records) == len(records)


def test_depth_records_are_protobufs():
    from engine.fastwire import encode_depth  # noqa: PLC0415

    updates = [
        DepthUpdate(0, [], []),
        DepthUpdate(7, [(10, 5), (9, 0)], [(11, 1 << 40)], snapshot=False),
        DepthUpdate(1 << 62, [(1, 1)] * 30, [(-3, -4), (0, 0)], snapshot=True),
    ]
    for *_, depth in batches(short_stream(3000, seed=6), 500):
        if depth is not None:
            updates.append(depth)
    for update in updates:
        for offset, ts in ((0, 0), (5, 1 << 60), (1 << 50, -1)):
            for symbol in ("S", "", "x" * 200):
                got = encode_depth(symbol, update, offset, ts)
                assert got == wire.encode_depth(symbol, update, offset, ts)


def test_a_consumed_batch_is_split_by_where_each_record_goes():
    from confluent_kafka import KafkaError, Message  # noqa: PLC0415

    from engine.fastwire import split_messages  # noqa: PLC0415

    def msg(topic: str, partition: int, offset: int) -> Message:
        return Message(topic=topic, partition=partition, offset=offset, key=b"K", value=b"V")

    eof = KafkaError(KafkaError._PARTITION_EOF)
    messages = [
        msg("orders", 0, 5),  # owned
        msg("orders", 3, 9),  # followed (a shadow), not being replayed
        msg("pending-orders", 0, 2),  # a replay of buffered orders
        Message(topic="orders", partition=1, error=eof),
        msg("orders", 2, 7),  # followed and being replayed: a shadow and a move-back
        msg("pending-orders", 3, 4),  # the pending topic, whatever its partition
        msg("orders", 1, 6),  # owned
    ]
    records, shadowed, pending, moved_back, errors = split_messages(
        messages, [0, 1], "pending-orders", {2}
    )
    assert records == [(0, 5, b"K", b"V"), (1, 6, b"K", b"V")]
    assert shadowed == [(3, 9, b"K", b"V"), (2, 7, b"K", b"V")]
    assert pending == [(0, 2, b"K", b"V"), (3, 4, b"K", b"V")]
    assert moved_back == [(2, 7, b"K", b"V")]
    assert [e.code() for e in errors] == [KafkaError._PARTITION_EOF]
    assert split_messages([], [0], "pending-orders", set()) == ([], [], [], [], [])


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # a negative int64 as protobuf writes it: 10 bytes
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    return _varint(number << 3) + _varint(value)


def _order(
    *extra: bytes, symbol: bytes = b"S", order_id: bytes = b"o", user_id: bytes = b"u"
) -> bytes:
    """An ADD's bytes written field by field (protobuf's writer never writes some of these
    shapes: empty strings, a known field with another wire type, enums beyond int32)."""
    head = _field(1, 1)
    head += _field(2, symbol) + _field(3, order_id) + _field(4, user_id)
    return head + _field(10, 5) + b"".join(extra)


def test_hand_written_records_read_as_the_reference_reads_them():
    from engine.fastwire import decode_plain  # noqa: PLC0415

    cases = {
        "an empty order id": _order(order_id=b""),
        "an empty symbol": _order(symbol=b""),
        "no symbol field": _field(1, 1) + _field(3, b"o") + _field(4, b"u"),
        "the action as a string": _order(_field(1, b"x")),
        "the side as a string": _order(_field(5, b"x")),
        "a string in field 6": _order(_field(6, b"x")),
        "tif 2^31": _order(_field(7, 1 << 31)),
        "tif 2^32 + 1": _order(_field(7, (1 << 32) + 1)),
        "side 2^31": _order(_field(5, 1 << 31)),
        "tif 2^31 - 1": _order(_field(7, (1 << 31) - 1)),
        "post_only 2^40": _order(_field(8, 1 << 40)),
        "a negative price": _order(_field(9, -(1 << 40))),
    }
    for name, value in cases.items():
        for key in (None, b"S"):
            assert decode_order(value, key) == wire.decode_order(value, key), name
    assert decode_order(None) == wire.decode_order(None)
    assert decode_order(None, b"S") == wire.decode_order(None, b"S")
    # the longest ids an order may have are still read on the fast path
    longest = _order(symbol=b"S" * 64, order_id=b"o" * 64, user_id=b"u" * 64)
    read = decode_plain(longest)
    assert read is not None and read[1][1:3] == ("o" * 64, "u" * 64)
    assert decode_order(longest) == wire.decode_order(longest)


def test_big_negative_values_and_an_empty_symbol_are_protobufs():
    # in the int64 fields (filled, leaves, prices, quantities, offsets, times): two's
    # complement in 10 bytes, every 7 bits of them
    events = [
        (1, 1, "o", "u", 3, 0, -(1 << 40), -(1 << 62)),
        (2, 2, "o", "u", -(1 << 33), -(1 << 63), 1, 3),
        (3, 3, "m", "t", -(1 << 45), -(1 << 50), 2, 0),
    ]
    for symbol in ("", "S"):
        args = (symbol, 0, 3, events, [3], [-(1 << 41)], None, 0, {-(1 << 41): -(1 << 55)})
        assert encode_symbol_batch(*args) == wire.encode_symbol_batch(*args), symbol


def _split_reference(
    messages: list[Any], owned: list[int], pending_topic: str, replayed: set[int]
) -> tuple[list[Any], ...]:
    """split_messages as a plain loop of method calls by name (what it replaced)."""
    out: tuple[list[Any], ...] = ([], [], [], [], [])
    for m in messages:
        if m.error() is not None:
            out[4].append(m.error())
            continue
        record = (m.partition(), m.offset(), m.key(), m.value())
        if m.topic() == pending_topic:
            out[2].append(record)
        elif m.partition() in owned:
            out[0].append(record)
        else:
            out[1].append(record)
            if m.partition() in replayed:
                out[3].append(record)
    return out


class _OtherMessage:
    """A message of another class than confluent_kafka's (split_messages reads it by name)."""

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._where = (topic, partition, offset)

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]

    def key(self) -> bytes:
        return b"K"

    def value(self) -> bytes:
        return b"V"


def test_consumed_messages_are_split_by_where_they_go() -> None:
    from confluent_kafka import KafkaError, Message  # noqa: PLC0415

    from engine.fastwire import split_messages  # noqa: PLC0415

    rng = random.Random(5)
    messages: list[Any] = []
    for offset in range(400):
        if rng.random() < 0.05:
            messages.append(Message(error=KafkaError(KafkaError._TRANSPORT)))
            continue
        topic = "pending-orders" if rng.random() < 0.2 else "orders"
        key = rng.choice([b"S1", b"S2", None])
        value = rng.choice([b"\x08\x01", b"", None])
        messages.append(
            Message(topic=topic, partition=rng.randrange(4), offset=offset, key=key, value=value)
        )
    owned, replayed = [0, 2], {3}
    got = split_messages(messages, owned, "pending-orders", replayed)
    assert tuple(got[:4]) == _split_reference(messages, owned, "pending-orders", replayed)[:4]
    assert [e.code() for e in got[4]] == [KafkaError._TRANSPORT] * len(got[4])
    assert all(got) and len(got[4]) > 0  # every kind of message was there
    assert split_messages([], owned, "pending-orders", replayed) == ([], [], [], [], [])
    # messages of two classes: the same split
    mixed = [*messages[:50], _OtherMessage("orders", 3, 999), *messages[50:]]
    assert (
        tuple(split_messages(mixed, owned, "pending-orders", replayed)[:4])
        == (_split_reference(mixed, owned, "pending-orders", replayed)[:4])
    )


def test_a_depth_record_asked_without_a_time_carries_none():
    # engine.service.core writes a book's depth snapshot with encode_depth's default time:
    # mutant encode_depth 1 (`ts_ns: int = 1`) stamped it 1 ns
    from engine.fastwire import encode_depth  # noqa: PLC0415

    update = DepthUpdate(3, [(10, 5)], [(11, 2)], snapshot=True)
    assert encode_depth("S", update, 7) == wire.encode_depth("S", update, 7)


def test_a_consumed_batch_of_one_message_is_split() -> None:
    # mutant split_messages 9 (the class taken from messages[1]: IndexError)
    from confluent_kafka import Message  # noqa: PLC0415

    from engine.fastwire import split_messages  # noqa: PLC0415

    one = [Message(topic="orders", partition=0, offset=3, key=b"K", value=b"V")]
    records, *others = split_messages(one, [0], "pending-orders", set())
    assert records == [(0, 3, b"K", b"V")]
    assert others == [[], [], [], []]


def test_messages_of_two_classes_keep_their_errors() -> None:
    # mutant _split_by_name 8 (an error appended as None)
    from confluent_kafka import KafkaError, Message  # noqa: PLC0415

    from engine.fastwire import split_messages  # noqa: PLC0415

    failed = Message(error=KafkaError(KafkaError._TRANSPORT))
    mixed = [_OtherMessage("orders", 0, 1), failed]
    errors = split_messages(mixed, [0], "pending-orders", set())[4]
    assert [e.code() for e in errors] == [KafkaError._TRANSPORT]
