"""Client JSON in, events out: every bad field gets a reason code, never an exception."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotshard.codec import InvalidOrderError, decode_order, decode_order_json, event_json
from hotshard.domain import Action, OrderType, Side, TimeInForce
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
