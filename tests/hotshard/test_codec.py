"""Client JSON in, events out: every bad field gets a reason code, never an exception."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotshard.codec import (
    MAX_VALUE,
    InvalidOrderError,
    decode_order,
    decode_order_json,
    depth_update_json,
    dumps,
    event_json,
)
from hotshard.commands import replace
from hotshard.domain import Action, OrderType, Side, TimeInForce
from hotshard.events import DepthUpdate
from hotshard.reasons import Reason

GOOD = {
    "action": "ADD",
    "symbol": "AAPL",
    "order_id": "o-1",
    "user_id": "alice",
    "side": "BUY",
    "price": 100,
    "quantity": 5,
}


def test_minimal_add_takes_the_usual_defaults():
    request = decode_order(GOOD)
    assert request.symbol == "AAPL"
    assert request.command == (
        Action.ADD,
        "o-1",
        "alice",
        Side.BUY,
        OrderType.LIMIT,
        TimeInForce.GTC,
        False,
        100,
        5,
        0,
        0,
        False,
    )


def test_the_new_types_fields_are_read_and_default_to_a_plain_order():
    stop = decode_order(GOOD | {"type": "stop", "price": 0, "stop_price": 99}).command
    assert (stop[4], stop[7], stop[9:]) == (OrderType.STOP, 0, (99, 0, False))
    no_price = decode_order(
        {k: v for k, v in GOOD.items() if k != "price"} | {"type": "STOP"} | {"stop_price": 9}
    )
    assert no_price.command[7] == 0
    limit = decode_order(GOOD | {"type": "STOP_LIMIT", "stop_price": 98}).command
    assert (limit[4], limit[7], limit[9]) == (OrderType.STOP_LIMIT, 100, 98)
    ice = decode_order(GOOD | {"display_quantity": 2, "all_or_none": False}).command
    assert ice[9:] == (0, 2, False)
    assert decode_order(GOOD | {"all_or_none": True}).command[9:] == (0, 0, True)


def test_enum_names_are_case_insensitive_and_ids_may_be_integers():
    request = decode_order(GOOD | {"side": "sell", "tif": "ioc", "order_id": 7, "user_id": 9})
    assert request.command[1:6] == ("7", "9", Side.SELL, OrderType.LIMIT, TimeInForce.IOC)


def test_market_order_needs_no_price():
    request = decode_order(GOOD | {"type": "MARKET"} if False else {**GOOD, "type": "MARKET"})
    assert request.command[4] == OrderType.MARKET
    no_price = {k: v for k, v in GOOD.items() if k != "price"} | {"type": "MARKET"}
    assert decode_order(no_price).command[7] == 0


def test_cancel_needs_only_ids():
    request = decode_order({"action": "CANCEL", "symbol": "A", "order_id": "1", "user_id": "u"})
    assert request.command[0] == Action.CANCEL


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"side": "UP"}, Reason.BAD_SIDE),
        ({"side": None}, Reason.MISSING_FIELD),
        ({"type": "TRAILING_STOP"}, Reason.BAD_TYPE),
        ({"type": "STOP"}, Reason.MISSING_FIELD),  # no stop_price
        ({"type": "stop_limit", "stop_price": "99"}, Reason.MALFORMED),
        ({"stop_price": 1 << 70}, Reason.VALUE_OUT_OF_RANGE),
        ({"display_quantity": 2.5}, Reason.MALFORMED),
        ({"all_or_none": 1}, Reason.MALFORMED),
        ({"tif": "DAY"}, Reason.BAD_TIME_IN_FORCE),
        ({"action": "AMEND"}, Reason.BAD_ACTION),
        ({"price": 1.5}, Reason.MALFORMED),
        ({"price": "100"}, Reason.MALFORMED),
        ({"quantity": True}, Reason.MALFORMED),
        ({"quantity": 1 << 70}, Reason.VALUE_OUT_OF_RANGE),
        ({"post_only": "yes"}, Reason.MALFORMED),
        ({"symbol": ""}, Reason.BAD_ID),
        ({"order_id": "x" * 65}, Reason.BAD_ID),
        ({"user_id": None}, Reason.MISSING_FIELD),
    ],
)
def test_each_bad_field_is_rejected_with_its_reason_and_what_could_be_read(change, reason):
    order = {k: v for k, v in (GOOD | change).items() if v is not None}
    with pytest.raises(InvalidOrderError) as caught:
        decode_order(order)
    assert caught.value.reason == reason
    if "symbol" not in change:
        assert caught.value.symbol == "AAPL"


def test_not_json_and_not_an_object_are_malformed():
    for text in ("{", "[1, 2]", '"order"', "\xff"):
        with pytest.raises(InvalidOrderError) as caught:
            decode_order_json(text)
        assert caught.value.reason == Reason.MALFORMED


@settings(deadline=None)  # a loaded machine must not fail it (nor "kill" a mutant)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_any_json_value_decodes_or_is_rejected_with_a_reason(value):
    try:
        decode_order(value)
    except InvalidOrderError as bad:
        assert isinstance(bad.reason, Reason)


@settings(deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*sorted(GOOD), "type", "tif", "post_only"]),
        st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.floats(),
    )
)
def test_any_mix_of_known_fields_decodes_or_is_rejected_with_a_reason(fields):
    try:
        decode_order(GOOD | fields)
    except InvalidOrderError as bad:
        assert isinstance(bad.reason, Reason)


def test_events_render_with_names_and_stable_bytes():
    status = (1, 3, "o", "u", 2, int(Reason.DUPLICATE_ORDER_ID), 0, 0)
    shown = event_json("AAPL", status)
    assert shown["status"] == "REJECTED" and shown["reason"] == "DUPLICATE_ORDER_ID"
    fill = (2, 4, "o", "u", 100, 5, 1, 3)
    assert event_json("AAPL", fill)["liquidity"] == "MAKER"
    trade = (3, 3, "m", "t", 100, 5, 2, 3)
    assert json.dumps(event_json("AAPL", trade)) == json.dumps(event_json("AAPL", trade))
    assert event_json("AAPL", trade)["taker_side"] == "SELL"


# ------------------------------------------------------------------ what a client reads
# (written against the mutants mutation testing left alive, docs/MUTATION.md)


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"symbol": None}, "symbol is required: 1-64 printable characters"),
        ({"order_id": "a b"}, "order_id is required: 1-64 printable characters"),
        ({"user_id": ""}, "user_id is required: 1-64 printable characters"),
        ({"side": None}, "side is required"),
        ({"side": "UP"}, "side must be one of BUY|SELL"),
        ({"type": 1}, "type must be one of LIMIT|MARKET|STOP|STOP_LIMIT"),
        ({"tif": "DAY"}, "tif must be one of GTC|IOC|FOK"),
        ({"action": "AMEND"}, "action must be one of ADD|CANCEL|REPLACE"),
        ({"post_only": 1}, "post_only must be true or false"),
        ({"all_or_none": "no"}, "all_or_none must be true or false"),
        ({"price": None}, "price is required"),
        ({"quantity": 2.0}, "quantity must be an integer (ticks or lots)"),
        ({"stop_price": -(1 << 62)}, "stop_price is out of range"),
    ],
)
def test_each_rejection_says_which_field_and_what_it_must_be(change, detail):
    order = {k: v for k, v in (GOOD | change).items() if v is not None}
    with pytest.raises(InvalidOrderError) as caught:
        decode_order(order)
    assert caught.value.detail == detail


def test_a_rejection_names_the_order_as_far_as_it_could_be_read():
    with pytest.raises(InvalidOrderError) as caught:
        decode_order(GOOD | {"side": "UP"})
    assert (caught.value.symbol, caught.value.order_id, caught.value.user_id) == (
        "AAPL",
        "o-1",
        "alice",
    )
    with pytest.raises(InvalidOrderError) as caught:
        decode_order(GOOD | {"user_id": True})  # not an id: rejected, the rest still named
    assert caught.value.reason == Reason.BAD_ID
    assert (caught.value.symbol, caught.value.order_id, caught.value.user_id) == (
        "AAPL",
        "o-1",
        "",
    )
    with pytest.raises(InvalidOrderError) as caught:
        decode_order_json(b"{")
    assert caught.value.detail.startswith("not JSON: ")


def test_integers_are_accepted_up_to_the_range_bound_inclusive():
    for value in (MAX_VALUE, -MAX_VALUE):
        assert decode_order(GOOD | {"price": value}).command[7] == value
    for value in (MAX_VALUE + 1, -MAX_VALUE - 1):
        with pytest.raises(InvalidOrderError) as caught:
            decode_order(GOOD | {"price": value})
        assert caught.value.reason == Reason.VALUE_OUT_OF_RANGE


def test_replace_reads_its_price_and_quantity_and_nothing_else():
    request = decode_order(GOOD | {"action": "replace", "price": 101, "quantity": 3})
    assert request.command == replace("o-1", "alice", 101, 3)
    for missing in ("price", "quantity"):
        order = {k: v for k, v in GOOD.items() if k != missing} | {"action": "REPLACE"}
        with pytest.raises(InvalidOrderError) as caught:
            decode_order(order)
        assert caught.value.reason == Reason.MISSING_FIELD


def test_a_stop_price_given_to_a_limit_order_is_read_so_the_book_can_refuse_it():
    assert decode_order(GOOD | {"stop_price": 7}).command[9] == 7


def test_events_render_exactly_as_docs_formats_shows_them():
    status = (1, 3, "o", "u", 2, int(Reason.DUPLICATE_ORDER_ID), 0, 0)
    assert event_json("AAPL", status) == {
        "type": "order_status",
        "symbol": "AAPL",
        "seq": 3,
        "order_id": "o",
        "user_id": "u",
        "status": "REJECTED",
        "reason": "DUPLICATE_ORDER_ID",
        "filled": 0,
        "leaves": 0,
    }
    accepted = event_json("AAPL", (1, 4, "o", "u", 1, 0, 2, 3))
    assert "reason" not in accepted and (accepted["filled"], accepted["leaves"]) == (2, 3)
    assert event_json("AAPL", (2, 5, "o", "u", 100, 5, 2, 4)) == {
        "type": "fill",
        "symbol": "AAPL",
        "seq": 5,
        "order_id": "o",
        "user_id": "u",
        "price": 100,
        "quantity": 5,
        "liquidity": "TAKER",
        "trade_id": 4,
    }
    assert event_json("AAPL", (3, 4, "m", "t", 100, 5, 1, 4)) == {
        "type": "trade",
        "symbol": "AAPL",
        "seq": 4,
        "price": 100,
        "quantity": 5,
        "maker_order_id": "m",
        "taker_order_id": "t",
        "taker_side": "BUY",
    }
    with pytest.raises(ValueError, match="unknown event kind 9"):
        event_json("AAPL", (9, 1, "o", "u", 0, 0, 0, 0))


def test_depth_renders_levels_as_pairs_and_says_when_it_is_a_snapshot():
    update = DepthUpdate(7, [(101, 5), (100, 0)], [(102, 3)])
    assert depth_update_json("AAPL", update) == {
        "type": "depth",
        "symbol": "AAPL",
        "seq": 7,
        "bids": [[101, 5], [100, 0]],
        "asks": [[102, 3]],
    }
    snap = depth_update_json("AAPL", DepthUpdate(8, [], [(102, 3)], snapshot=True))
    assert snap["snapshot"] is True and snap["bids"] == []


def test_dumps_is_compact_and_keeps_non_ascii_text_as_is():
    assert dumps({"a": 1, "b": [1, 2], "id": "é✓"}) == '{"a":1,"b":[1,2],"id":"é✓"}'


def test_a_json_text_decodes_to_the_same_request_as_its_object():
    assert decode_order_json(json.dumps(GOOD)) == decode_order(GOOD)
    assert decode_order_json(json.dumps(GOOD).encode()) == decode_order(GOOD)


def test_an_order_without_an_action_is_an_add_and_post_only_is_kept():
    no_action = {k: v for k, v in GOOD.items() if k != "action"} | {"post_only": True}
    command = decode_order(no_action).command
    assert (command[0], command[6]) == (Action.ADD, True)


def test_a_cancel_and_a_replace_keep_their_symbol_and_ids():
    ids = {"symbol": "MSFT", "order_id": "o-9", "user_id": "bob"}
    cancel = decode_order({"action": "CANCEL", **ids})
    assert (cancel.symbol, cancel.command[1:3]) == ("MSFT", ("o-9", "bob"))
    change = decode_order({"action": "REPLACE", **ids, "price": 5, "quantity": 1})
    assert (change.symbol, change.command[1:3]) == ("MSFT", ("o-9", "bob"))


def test_a_price_given_to_a_market_or_stop_order_is_read_and_checked():
    for order_type in ("MARKET", "STOP"):
        order = GOOD | {"type": order_type, "price": 7, "stop_price": 9}
        assert decode_order(order).command[7] == 7
        with pytest.raises(InvalidOrderError) as caught:
            decode_order(order | {"price": "7"})
        assert caught.value.reason == Reason.MALFORMED


def test_what_a_client_reads_when_the_order_is_not_an_object_or_its_side_is_null():
    with pytest.raises(InvalidOrderError) as caught:
        decode_order(["AAPL"])
    error = caught.value
    assert (error.reason, error.detail) == (Reason.MALFORMED, "an order must be a JSON object")
    assert (error.symbol, error.order_id, error.user_id) == ("", "", "")  # nothing could be read
    with pytest.raises(InvalidOrderError) as caught:
        decode_order(GOOD | {"side": None})  # present but null: still missing
    assert (caught.value.reason, caught.value.detail) == (Reason.MISSING_FIELD, "side is required")
