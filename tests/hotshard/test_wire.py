"""Orders and events on the wire: protobuf records <-> commands and event tuples."""

import pytest

from engine.book import Book, Instrument, add, cancel, replace
from hotshard.domain import OrderType, Side, TimeInForce
from hotshard.events import FILL, STATUS, TRADE, DepthUpdate, Event
from hotshard.reasons import Reason
from hotshard.v1 import events_pb2, orders_pb2
from hotshard.wire import (
    PENDING_BEGIN,
    PENDING_END,
    DecodedOrder,
    Handoff,
    decode_depth,
    decode_depth_stamped,
    decode_order,
    encode_depth,
    encode_handoff,
    encode_order,
    encode_pending_marker,
    encode_symbol_batch,
    encode_unsequenced,
    event_tuple,
    handoff_of,
    parse_batch,
    pending_marker_of,
)


def test_an_encoded_command_decodes_to_the_same_command_epoch_and_timestamp():
    for command in (
        add("o1", "u1", Side.BUY, 100, 5),
        add("o2", "u2", Side.SELL, 0, 5, order_type=OrderType.MARKET, tif=TimeInForce.IOC),
        add("o3", "u1", Side.SELL, 101, 7, post_only=True),
        add("o4", "u1", Side.BUY, 0, 5, order_type=OrderType.STOP, stop_price=105),
        add("o5", "u1", Side.SELL, 99, 5, order_type=OrderType.STOP_LIMIT, stop_price=100),
        add("o6", "u2", Side.SELL, 101, 50, display_quantity=5),
        add("o7", "u2", Side.BUY, 98, 50, all_or_none=True),
        cancel("o1", "u1"),
        replace("o3", "u1", 102, 3),
    ):
        raw = encode_order("ABC", command, route_epoch=4, client_ts_ns=123)
        decoded = decode_order(raw, b"ABC")
        assert (decoded.symbol, decoded.command, decoded.route_epoch, decoded.client_ts_ns) == (
            "ABC",
            command,
            4,
            123,
        )
        assert decoded.reason == Reason.NONE


def test_a_plain_order_encodes_to_the_same_bytes_as_before_the_new_fields():
    raw = encode_order("ABC", add("o1", "u1", Side.BUY, 100, 5))
    fields = {f.name for f, _ in orders_pb2.OrderCommand.FromString(raw).ListFields()}
    assert not fields & {"stop_price", "display_quantity", "all_or_none"}


def test_garbage_bytes_decode_to_malformed_naming_the_key_symbol():
    decoded = decode_order(b"\xff\xff\xff not protobuf", b"ABC")
    assert decoded.command is None
    assert decoded.reason == Reason.MALFORMED
    assert decoded.symbol == "ABC"


def test_missing_symbol_ids_or_action_are_reasons_not_exceptions():
    no_symbol = orders_pb2.OrderCommand(action="ADD", order_id="o", user_id="u").SerializeToString()
    assert decode_order(no_symbol).reason == Reason.MISSING_FIELD
    no_id = orders_pb2.OrderCommand(action="ADD", symbol="S", user_id="u").SerializeToString()
    assert decode_order(no_id).reason == Reason.MISSING_FIELD
    bad_action = orders_pb2.OrderCommand(symbol="S", order_id="o", user_id="u").SerializeToString()
    decoded = decode_order(bad_action)
    assert (decoded.reason, decoded.order_id, decoded.symbol) == (Reason.BAD_ACTION, "o", "S")
    assert decode_order(None).reason == Reason.MISSING_FIELD


def test_negative_quantity_is_left_to_the_book_which_rejects_it_in_sequence():
    decoded = decode_order(encode_order("S", add("o", "u", Side.BUY, 10, -5)))
    assert decoded.command is not None
    book = Book(Instrument("S"))
    [event] = book.apply(decoded.command)
    assert (event[0], event[1], event[5]) == (STATUS, 1, Reason.NON_POSITIVE_QUANTITY)


def test_symbol_batch_carries_every_event_with_its_offset_and_the_seq_range():
    book = Book(Instrument("S"))
    commands = [add("m", "u1", Side.SELL, 100, 5), add("t", "u2", Side.BUY, 100, 5)]
    ends: list[int] = []
    events = book.apply_all(commands, ends)
    records = encode_symbol_batch("S", 0, book.seq, events, ends, [40, 41], book.depth_update(), 41)
    back: list[tuple[Event, int]] = []
    for kind, raw in (
        (STATUS, records.order_status),
        (FILL, records.fills),
        (TRADE, records.trades),
    ):
        batch = parse_batch(kind, raw)
        assert (batch.symbol, batch.after_seq, batch.through_seq) == ("S", 0, book.seq)
        back.extend(event_tuple(kind, msg) for msg in batch.events)
    back.sort(key=lambda pair: pair[0][1])
    assert [event for event, _ in back] == events
    offsets = {event[1]: offset for event, offset in back}
    assert offsets[1] == 40 and all(offsets[s] == 41 for s in range(2, book.seq + 1))
    assert records.depth is not None
    [(symbol, update, offset)] = decode_depth(records.depth)
    assert (symbol, update.seq, update.asks, update.bids, offset) == (
        "S",
        book.seq,
        [(100, 0)],
        [],
        41,
    )


def test_a_batch_without_trades_still_publishes_an_empty_fill_and_trade_range():
    book = Book(Instrument("S"))
    ends: list[int] = []
    events = book.apply_all([add("a", "u", Side.BUY, 10, 1)], ends)
    records = encode_symbol_batch("S", 0, 1, events, ends, [0], None, 0)
    fills = events_pb2.FillBatch.FromString(records.fills)
    assert (len(fills.events), fills.after_seq, fills.through_seq) == (0, 0, 1)
    assert records.depth is None


def test_a_handoff_marker_is_an_empty_record_at_the_final_seq_on_each_sequenced_topic():
    records = encode_handoff("S", 41, partition=3, epoch=7)
    assert records.depth is None
    for kind, raw in (
        (STATUS, records.order_status),
        (FILL, records.fills),
        (TRADE, records.trades),
    ):
        batch = parse_batch(kind, raw)
        assert (batch.symbol, batch.after_seq, batch.through_seq, len(batch.events)) == (
            "S",
            41,
            41,
            0,
        )
        assert handoff_of(batch) == Handoff(3, 7)


def test_records_without_a_handoff_read_as_before():
    book = Book(Instrument("S"))
    ends: list[int] = []
    events = book.apply_all([add("a", "u", Side.BUY, 10, 1)], ends)
    records = encode_symbol_batch("S", 0, 1, events, ends, [0], None, 0)
    for kind, raw in (
        (STATUS, records.order_status),
        (FILL, records.fills),
        (TRADE, records.trades),
    ):
        assert handoff_of(parse_batch(kind, raw)) is None
    rejected = (STATUS, 0, "o", "u", 3, int(Reason.MALFORMED), 0, 0)
    assert handoff_of(parse_batch(STATUS, encode_unsequenced("S", 5, rejected))) is None
    # a marker to partition 0 at epoch 0 is still a marker (the field is present, not zero)
    assert handoff_of(parse_batch(STATUS, encode_handoff("S", 9, 0, 0).order_status)) == Handoff(
        0, 0
    )


# ------------------------------------------------------------------ written against the
# mutants mutation testing left alive (docs/MUTATION.md)


def test_the_routers_receive_time_travels_with_the_order_and_only_when_set():
    raw = encode_order("ABC", add("o", "u", Side.BUY, 100, 5), received_ts_ns=987)
    decoded = decode_order(raw)
    assert (decoded.received_ts_ns, decoded.order_id, decoded.user_id) == (987, "o", "u")
    plain = orders_pb2.OrderCommand.FromString(encode_order("ABC", add("o", "u", Side.BUY, 1, 5)))
    assert "received_ts_ns" not in {f.name for f, _ in plain.ListFields()}
    assert decode_order(encode_order("ABC", add("o", "u", Side.BUY, 1, 5))).received_ts_ns == 0


def test_an_id_no_book_could_use_is_bad_id_naming_what_was_read():
    for order_id, user_id, symbol in (("a b", "u", "S"), ("o", "é", "S"), ("o", "u", "S S")):
        raw = orders_pb2.OrderCommand(
            action="ADD", symbol=symbol, order_id=order_id, user_id=user_id, quantity=1
        ).SerializeToString()
        decoded = decode_order(raw)
        assert (decoded.command, decoded.reason) == (None, Reason.BAD_ID)
        assert (decoded.symbol, decoded.order_id, decoded.user_id) == (symbol, order_id, user_id)
    no_user = orders_pb2.OrderCommand(action="ADD", symbol="S", order_id="o").SerializeToString()
    assert decode_order(no_user).reason == Reason.MISSING_FIELD


def test_a_record_without_a_symbol_names_the_key_and_keeps_what_it_read():
    raw = orders_pb2.OrderCommand(
        action="ADD", order_id="o", user_id="u", route_epoch=3, client_ts_ns=5, received_ts_ns=6
    ).SerializeToString()
    decoded = decode_order(raw, b"KEY")
    assert (decoded.symbol, decoded.reason, decoded.command) == ("KEY", Reason.MISSING_FIELD, None)
    assert (decoded.order_id, decoded.user_id, decoded.route_epoch) == ("o", "u", 3)
    assert (decoded.client_ts_ns, decoded.received_ts_ns) == (5, 6)


def test_a_key_that_is_not_an_id_is_not_taken_for_a_symbol():
    for key in (b"\xff\xfe", b"A B", b"", None):
        assert decode_order(b"\xff\xff not protobuf", key).symbol == ""


def test_cancel_and_replace_carry_only_their_own_fields():
    raw = orders_pb2.OrderCommand(
        action="CANCEL", symbol="S", order_id="o", user_id="u", side="BUY", price=5, quantity=9
    ).SerializeToString()
    assert decode_order(raw).command == cancel("o", "u")
    raw = orders_pb2.OrderCommand(
        action="REPLACE",
        symbol="S",
        order_id="o",
        user_id="u",
        side="SELL",
        price=5,
        quantity=9,
        stop_price=4,
        display_quantity=2,
        all_or_none=True,
    ).SerializeToString()
    assert decode_order(raw).command == replace("o", "u", 5, 9)


def test_pending_markers_are_control_records_not_orders():
    raw = encode_pending_marker("S", 7, PENDING_BEGIN)
    assert pending_marker_of(raw) == ("S", 7, PENDING_BEGIN)
    assert pending_marker_of(encode_pending_marker("S", 8)) == ("S", 8, PENDING_END)
    decoded = decode_order(raw)
    assert (decoded.command, decoded.reason, decoded.marker) == (None, Reason.MALFORMED, 1)
    assert (decoded.symbol, decoded.route_epoch, decoded.client_ts_ns) == ("S", 7, 0)
    assert pending_marker_of(encode_order("S", add("o", "u", Side.BUY, 1, 1))) is None
    assert pending_marker_of(b"\xff\xff not protobuf") is None


def test_every_event_of_a_batch_names_its_symbol_and_carries_its_receive_time():
    book = Book(Instrument("S"))
    commands = [add("m", "u1", Side.SELL, 100, 5), add("t", "u2", Side.BUY, 100, 2)]
    ends: list[int] = []
    events = book.apply_all(commands, ends)
    depth = book.depth_update()
    records = encode_symbol_batch(
        "S", 0, book.seq, events, ends, [40, 41], depth, 41, stamps={40: 1000, 41: 2000}
    )
    statuses = events_pb2.OrderStatusBatch.FromString(records.order_status).events
    fills = events_pb2.FillBatch.FromString(records.fills).events
    [trade] = events_pb2.TradeBatch.FromString(records.trades).events
    assert [(s.symbol, s.input_offset, s.ts_ns) for s in statuses] == [
        ("S", 40, 1000),
        ("S", 41, 2000),
        ("S", 41, 2000),
        ("S", 41, 2000),
    ]
    assert [(f.symbol, f.ts_ns, f.trade_id) for f in fills] == [("S", 2000, 3), ("S", 2000, 3)]
    assert (trade.symbol, trade.ts_ns, trade.seq) == ("S", 2000, 3)
    assert records.depth is not None
    [(_, update, offset, ts)] = decode_depth_stamped(records.depth)
    assert (update.bids, update.asks, offset, ts) == ([], [(100, 3)], 41, 2000)
    # without stamps (or for an offset they lack) no event carries a time
    bare = encode_symbol_batch("S", 0, book.seq, events, ends, [40, 41], depth, 41, {40: 5})
    assert [s.ts_ns for s in events_pb2.OrderStatusBatch.FromString(bare.order_status).events] == [
        5,
        0,
        0,
        0,
    ]
    assert bare.depth is not None and decode_depth_stamped(bare.depth)[0][3] == 0


def test_a_depth_snapshot_stays_a_snapshot_on_the_wire():
    raw = encode_depth("S", DepthUpdate(9, [(99, 4)], [(101, 2)], snapshot=True), 12, 77)
    [(symbol, update, offset, ts)] = decode_depth_stamped(raw)
    assert (symbol, update, offset, ts) == (
        "S",
        DepthUpdate(9, [(99, 4)], [(101, 2)], True),
        12,
        77,
    )
    assert events_pb2.DepthBatch.FromString(raw).symbol == "S"


def test_an_unsequenced_status_carries_everything_a_client_is_told():
    event = (STATUS, 0, "o", "u", 2, int(Reason.UNKNOWN_SYMBOL), 3, 4)
    batch = events_pb2.OrderStatusBatch.FromString(encode_unsequenced("S", 17, event, ts_ns=55))
    assert batch.symbol == "S"
    [status] = batch.events
    assert (status.symbol, status.seq, status.input_offset, status.ts_ns) == ("S", 0, 17, 55)
    assert event_tuple(STATUS, status) == (event, 17)


def test_parse_batch_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown event kind 7"):
        parse_batch(7, b"")


def test_an_order_encoded_without_an_epoch_or_timestamps_reads_them_as_zero():
    decoded = decode_order(encode_order("S", add("o", "u", Side.BUY, 1, 1)))
    assert (decoded.route_epoch, decoded.client_ts_ns, decoded.received_ts_ns) == (0, 0, 0)
    event = (STATUS, 0, "o", "u", 2, int(Reason.UNKNOWN_SYMBOL), 0, 0)
    [status] = events_pb2.OrderStatusBatch.FromString(encode_unsequenced("S", 1, event)).events
    assert status.ts_ns == 0


def test_unreadable_or_empty_records_carry_nothing_but_their_reason():
    assert decode_order(b"\xff\xff\xff not protobuf", b"ABC") == DecodedOrder(
        "ABC", None, 0, 0, Reason.MALFORMED
    )
    for empty in (None, b""):
        assert decode_order(empty) == DecodedOrder("", None, 0, 0, Reason.MISSING_FIELD)


def test_a_refused_record_keeps_its_epoch_and_times_for_the_rejection_it_causes():
    raw = orders_pb2.OrderCommand(
        action="ADD",
        symbol="S",
        order_id="a b",
        user_id="u",
        route_epoch=3,
        client_ts_ns=5,
        received_ts_ns=6,
    ).SerializeToString()
    decoded = decode_order(raw)
    assert decoded == DecodedOrder("S", None, 3, 5, Reason.BAD_ID, "a b", "u", 6)


def test_an_unknown_action_keeps_the_ids_epoch_and_times_for_its_rejection():
    raw = orders_pb2.OrderCommand(
        symbol="S", order_id="o", user_id="u", route_epoch=3, client_ts_ns=5, received_ts_ns=6
    ).SerializeToString()
    assert decode_order(raw) == DecodedOrder("S", None, 3, 5, Reason.BAD_ACTION, "o", "u", 6)


def test_a_batch_after_earlier_ones_states_its_seq_range_and_depth_carries_no_time_unasked():
    book = Book(Instrument("S"))
    ends: list[int] = []
    events = book.apply_all([add("a", "u", Side.BUY, 10, 1)], ends)
    records = encode_symbol_batch("S", 7, 8, events, ends, [0], None, 0)
    for kind, raw in (
        (STATUS, records.order_status),
        (FILL, records.fills),
        (TRADE, records.trades),
    ):
        batch = parse_batch(kind, raw)
        assert (batch.after_seq, batch.through_seq) == (7, 8)
    raw = encode_depth("S", DepthUpdate(1, [(10, 1)], []), 0)
    assert decode_depth_stamped(raw)[0][3] == 0


def test_a_rejection_in_a_batch_keeps_its_reason_and_nothing_is_stamped_unasked():
    book = Book(Instrument("S"))
    ends: list[int] = []
    commands = [add("m", "u", Side.SELL, 100, 5), add("bad", "u", Side.BUY, 100, -1)]
    events = book.apply_all(commands, ends)
    depth = book.depth_update()
    assert depth is not None
    no_stamps: tuple[dict[int, int] | None, ...] = (None, {})
    for stamps in no_stamps:  # no receive times: no event and no depth update has one
        records = encode_symbol_batch("S", 0, book.seq, events, ends, [3, 4], depth, 4, stamps)
        statuses = events_pb2.OrderStatusBatch.FromString(records.order_status).events
        assert [event_tuple(STATUS, s) for s in statuses] == [
            (event, offset) for event, offset in zip(events, [3, 4], strict=True)
        ]
        assert int(statuses[1].reason) == Reason.NON_POSITIVE_QUANTITY
        assert [s.ts_ns for s in statuses] == [0, 0]
        assert records.depth is not None and decode_depth_stamped(records.depth)[0][3] == 0


def test_a_batch_whose_offsets_and_ends_disagree_is_refused_not_cut_short():
    book = Book(Instrument("S"))
    ends: list[int] = []
    events = book.apply_all([add("a", "u", Side.BUY, 10, 1), add("b", "u", Side.BUY, 9, 1)], ends)
    with pytest.raises(ValueError, match="zip"):
        encode_symbol_batch("S", 0, 2, events, ends, [0], None, 0)  # one offset, two commands
    with pytest.raises(ValueError, match="zip"):
        encode_symbol_batch("S", 0, 2, events, ends[:1], [0, 1], None, 0)
