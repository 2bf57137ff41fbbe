"""STOP, STOP_LIMIT, icebergs and all-or-none orders, rule by rule (docs/FORMATS.md)."""

import pytest

from engine.book import Book, Event, add, cancel, replace, snapshot
from hotshard.domain import OrderType, Side, TimeInForce
from hotshard.v1 import snapshot_pb2
from tests.builders import book, resting, statuses, trades, view

BUY, SELL = Side.BUY, Side.SELL
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
STOP, STOP_LIMIT = OrderType.STOP, OrderType.STOP_LIMIT


def trade_at(b: Book, price: int, qty: int = 1) -> list[Event]:
    """A trade at `price` between two users nobody else uses."""
    b.apply(add(f"ms{price}-{b.seq}", "mm", SELL, price, qty))
    return b.apply(add(f"mb{price}-{b.seq}", "mt", BUY, price, qty))


# ------------------------------------------------------------------ stops


def test_a_buy_stop_waits_for_a_trade_at_or_above_its_stop_price_and_hides_from_depth():
    b = book()
    assert statuses(b.apply(add("s", "u", BUY, 0, 5, order_type=STOP, stop_price=105))) == [
        ("s", "ACCEPTED", "")
    ]
    assert b.depth(5) == ([], [])
    b.apply(add("a", "v", SELL, 106, 10))
    assert statuses(trade_at(b, 104))[-1][1] == "FILLED"  # 104 < 105: still pending
    order = b.open_order("s", "u")
    assert order is not None and order.stop == 105
    events = trade_at(b, 105)
    # the trade at 105, then in the same command: TRIGGERED and the stop's market order
    assert statuses(events)[-3:] == [
        ("s", "TRIGGERED", ""),
        ("a", "PARTIALLY_FILLED", ""),
        ("s", "FILLED", ""),
    ]
    assert trades(events)[-1] == ("a", "s", 106, 5)
    assert b.open_order("s", "u") is None


def test_a_sell_stop_limit_triggers_at_or_below_and_rests_its_remainder():
    b = book()
    trade_at(b, 100)
    b.apply(add("sl", "u", SELL, 97, 10, order_type=STOP_LIMIT, stop_price=98))
    b.apply(add("b", "v", BUY, 97, 4))
    assert b.depth(5) == ([(97, 4)], [])
    events = trade_at(b, 98)
    assert statuses(events)[-3:] == [
        ("sl", "TRIGGERED", ""),
        ("b", "FILLED", ""),
        ("sl", "PARTIALLY_FILLED", ""),
    ]
    assert trades(events)[-1] == ("b", "sl", 97, 4)
    assert b.depth(5) == ([], [(97, 6)])
    assert view(events)[-1]["leaves"] == 6


def test_a_stop_the_last_trade_already_reached_triggers_on_arrival():
    b = book()
    trade_at(b, 100)
    b.apply(add("a", "v", SELL, 101, 3))
    events = b.apply(add("s", "u", BUY, 0, 3, order_type=STOP, stop_price=99))
    assert statuses(events) == [
        ("s", "ACCEPTED", ""),
        ("s", "TRIGGERED", ""),
        ("a", "FILLED", ""),
        ("s", "FILLED", ""),
    ]


def test_without_any_trade_a_stop_waits_whatever_its_price():
    b = book()
    b.apply(add("s", "u", SELL, 0, 3, order_type=STOP, stop_price=1_000))
    order = b.open_order("s", "u")
    assert order is not None and order.stop == 1_000


def test_stops_trigger_in_trigger_order_and_cascade_inside_one_command():
    b = book()
    trade_at(b, 100)
    # a ladder of asks, and buy stops at 101 and 102 (two at 102: time priority)
    for price in (101, 102, 103, 104):
        b.apply(add(f"a{price}", "mm", SELL, price, 2))
    b.apply(add("s102a", "u1", BUY, 0, 2, order_type=STOP, stop_price=102))
    b.apply(add("s101", "u2", BUY, 0, 2, order_type=STOP, stop_price=101))
    b.apply(add("s102b", "u3", BUY, 0, 2, order_type=STOP, stop_price=102))
    b.apply(add("s104", "u4", BUY, 0, 2, order_type=STOP, stop_price=104))
    events = b.apply(add("t", "mt", BUY, 101, 2))  # trades at 101 only
    triggered = [s[0] for s in statuses(events) if s[1] == "TRIGGERED"]
    # 101 elects s101; its trade at 102 elects s102a then s102b; theirs at 103 and 104
    # elect s104, which finds nothing left and expires
    assert triggered == ["s101", "s102a", "s102b", "s104"]
    assert [t[:3] for t in trades(events)] == [
        ("a101", "t", 101),
        ("a102", "s101", 102),
        ("a103", "s102a", 103),
        ("a104", "s102b", 104),
    ]
    assert statuses(events)[-1] == ("s104", "EXPIRED", "NO_LIQUIDITY")
    assert b.stops == 0


def test_at_one_trade_buy_stops_trigger_before_sell_stops():
    b = book()
    b.apply(add("sell", "u1", SELL, 0, 1, order_type=STOP, stop_price=100))
    b.apply(add("buy", "u2", BUY, 0, 1, order_type=STOP, stop_price=100))
    events = trade_at(b, 100)  # the first trade of the symbol reaches both
    assert [s[0] for s in statuses(events) if s[1] == "TRIGGERED"] == ["buy", "sell"]


def test_a_triggered_fok_stop_that_cannot_fill_expires_and_is_remembered():
    b = book()
    b.apply(add("s", "u", BUY, 0, 50, order_type=STOP, tif=FOK, stop_price=100))
    events = trade_at(b, 100)
    assert statuses(events)[-2:] == [("s", "TRIGGERED", ""), ("s", "EXPIRED", "FILL_OR_KILL")]
    assert statuses(b.apply(add("s", "u", BUY, 100, 1)))[0][2] == "DUPLICATE_ORDER_ID"


def test_a_pending_stop_can_be_cancelled_not_replaced():
    b = book()
    b.apply(add("s", "u", BUY, 101, 5, order_type=STOP_LIMIT, stop_price=100))
    assert statuses(b.apply(replace("s", "u", 101, 3))) == [
        ("s", "REJECTED", "STOP_NOT_REPLACEABLE")
    ]
    assert view(b.apply(cancel("s", "u")))[0] | {"seq": 0} == {
        "type": "order_status",
        "seq": 0,
        "order_id": "s",
        "user_id": "u",
        "status": "CANCELLED",
        "filled": 0,
        "leaves": 0,
    }
    assert b.stops == 0
    assert statuses(trade_at(b, 100))[-1][1] == "FILLED"  # nothing triggers


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (add("x", "u", BUY, 0, 5, order_type=STOP), "BAD_STOP_PRICE"),
        (add("x", "u", BUY, 0, 5, order_type=STOP, stop_price=-1), "BAD_STOP_PRICE"),
        (add("x", "u", BUY, 100, 5, stop_price=99), "BAD_STOP_PRICE"),
        (add("x", "u", BUY, 0, 5, order_type=STOP_LIMIT, stop_price=99), "NON_POSITIVE_PRICE"),
        (
            add("x", "u", BUY, 0, 5, order_type=STOP, stop_price=99, post_only=True),
            "POST_ONLY_NOT_ALLOWED",
        ),
        (add("x", "u", BUY, 100, 5, display_quantity=6), "BAD_DISPLAY_QUANTITY"),
        (add("x", "u", BUY, 100, 5, display_quantity=-1), "BAD_DISPLAY_QUANTITY"),
        (add("x", "u", BUY, 100, 5, tif=IOC, display_quantity=2), "DISPLAY_QUANTITY_NOT_ALLOWED"),
        (
            add("x", "u", BUY, 0, 5, order_type=MARKET, display_quantity=2),
            "DISPLAY_QUANTITY_NOT_ALLOWED",
        ),
        (
            add("x", "u", BUY, 100, 5, display_quantity=2, all_or_none=True),
            "DISPLAY_QUANTITY_NOT_ALLOWED",
        ),
        (add("x", "u", BUY, 100, 5, tif=IOC, all_or_none=True), "ALL_OR_NONE_NOT_ALLOWED"),
        (add("x", "u", BUY, 100, 5, tif=FOK, all_or_none=True), "ALL_OR_NONE_NOT_ALLOWED"),
        (add("x", "u", BUY, 0, 5, order_type=MARKET, all_or_none=True), "ALL_OR_NONE_NOT_ALLOWED"),
        (
            add("x", "u", BUY, 0, 5, order_type=STOP, stop_price=9, all_or_none=True),
            "ALL_OR_NONE_NOT_ALLOWED",
        ),
    ],
)
def test_combinations_that_make_no_sense_are_rejected_with_reasons(command, reason):
    b = book()
    assert statuses(b.apply(command)) == [("x", "REJECTED", reason)]
    assert b.depth(5) == ([], []) and b.stops == 0


def test_an_iceberg_display_must_be_on_the_lot():
    b = book(lot=5)
    assert statuses(b.apply(add("x", "u", BUY, 100, 20, display_quantity=7)))[0][2] == (
        "BAD_DISPLAY_QUANTITY"
    )


# ------------------------------------------------------------------ icebergs


def test_an_iceberg_shows_its_peak_and_each_refresh_goes_to_the_back_of_its_level():
    b = book()
    b.apply(add("ice", "u", SELL, 100, 10, display_quantity=3))
    b.apply(add("p", "v", SELL, 100, 2))
    assert b.depth(5) == ([], [(100, 5)])
    events = b.apply(add("t1", "w", BUY, 100, 3))  # takes the whole peak
    assert trades(events) == [("ice", "t1", 100, 3)]
    assert b.depth(5) == ([], [(100, 5)])  # p (2) and the new peak (3)
    assert [o for o, _, _ in resting(b)[SELL, 100]] == ["p", "ice"]
    events = b.apply(add("t2", "w", BUY, 100, 4))
    assert trades(events) == [("p", "t2", 100, 2), ("ice", "t2", 100, 2)]
    assert view(events)[-2] | {"seq": 0} == {
        "type": "order_status",
        "seq": 0,
        "order_id": "ice",
        "user_id": "u",
        "status": "PARTIALLY_FILLED",
        "filled": 5,
        "leaves": 5,
    }
    assert b.depth(5) == ([], [(100, 1)])


def test_a_large_taker_meets_each_refreshed_peak_again_within_its_sweep():
    b = book()
    b.apply(add("ice", "u", SELL, 100, 7, display_quantity=2))
    b.apply(add("p", "v", SELL, 100, 1))
    b.apply(add("q", "v", SELL, 101, 5))
    events = b.apply(add("t", "w", BUY, 101, 9))
    assert trades(events) == [
        ("ice", "t", 100, 2),
        ("p", "t", 100, 1),
        ("ice", "t", 100, 2),
        ("ice", "t", 100, 2),
        ("ice", "t", 100, 1),
        ("q", "t", 101, 1),
    ]
    assert b.depth(5) == ([], [(101, 4)])


def test_an_iceberg_taker_trades_its_whole_quantity_and_rests_with_a_peak():
    b = book()
    b.apply(add("a", "v", SELL, 100, 4))
    b.apply(add("ice", "u", BUY, 100, 20, display_quantity=5))
    assert b.depth(5) == ([(100, 5)], [])
    # a replace down keeps its place and trims the peak
    b.apply(replace("ice", "u", 100, 7))  # total 7: 4 filled, 3 left
    assert b.depth(5) == ([(100, 3)], [])
    b.apply(cancel("ice", "u"))
    assert b.depth(5) == ([], [])


# ------------------------------------------------------------------ all-or-none


def test_an_all_or_none_maker_is_passed_by_a_taker_too_small_and_filled_by_one_large_enough():
    b = book()
    b.apply(add("aon", "u", SELL, 100, 10, all_or_none=True))
    b.apply(add("p", "v", SELL, 100, 3))
    assert b.depth(5) == ([], [(100, 3)])  # not shown
    events = b.apply(add("small", "w", BUY, 100, 5))
    assert trades(events) == [("p", "small", 100, 3)]
    assert b.depth(5) == ([(100, 2)], [])  # the rest of small rests, the aon still there
    events = b.apply(add("big", "x", SELL, 99, 1))  # a seller trades with small first
    events = b.apply(add("large", "y", BUY, 100, 12))
    assert trades(events) == [("aon", "large", 100, 10)]
    assert b.depth(5) == ([(100, 3)], [])


def test_an_all_or_none_taker_trades_only_if_it_fills_completely_else_rests_whole():
    b = book()
    b.apply(add("a", "v", SELL, 100, 4))
    events = b.apply(add("aon", "u", BUY, 100, 5, all_or_none=True))
    assert statuses(events) == [("aon", "ACCEPTED", "")] and trades(events) == []
    assert b.depth(5) == ([], [(100, 4)])
    b.apply(add("b", "v", SELL, 100, 1))
    # a new sell of 2 meets the resting aon (5 > 2: passed) and nothing else
    assert trades(b.apply(add("c", "w", SELL, 100, 2))) == []
    b.apply(cancel("aon", "u"))
    events = b.apply(add("aon2", "u", BUY, 100, 7, all_or_none=True))
    assert [t[2:] for t in trades(events)] == [(100, 4), (100, 1), (100, 2)]
    assert statuses(events)[-1] == ("aon2", "FILLED", "")


def test_fok_counts_what_matching_would_really_take():
    b = book()
    b.apply(add("ice", "u", SELL, 100, 4, display_quantity=1))
    b.apply(add("aon", "v", SELL, 100, 5, all_or_none=True))
    # 7: peak 1 (6 left), the aon fits (1 left), the refreshed peak: filled
    events = b.apply(add("f", "w", BUY, 100, 7, tif=FOK))
    assert statuses(events)[-1] == ("f", "FILLED", "")
    b2 = book()
    b2.apply(add("aon", "v", SELL, 100, 5, all_or_none=True))
    b2.apply(add("p", "u", SELL, 100, 2))
    assert statuses(b2.apply(add("f", "w", BUY, 100, 4, tif=FOK))) == [
        ("f", "EXPIRED", "FILL_OR_KILL")
    ]


# ------------------------------------------------------------------ snapshots


def test_snapshots_carry_pending_stops_icebergs_and_all_or_none_orders():
    b = book()
    trade_at(b, 100)
    b.apply(add("ice", "u", SELL, 102, 10, display_quantity=3))
    b.apply(add("t", "w", BUY, 102, 2))  # peak 1 of 3 left
    b.apply(add("aon", "v", BUY, 98, 5, all_or_none=True))
    b.apply(add("s1", "x", BUY, 0, 4, order_type=STOP, stop_price=105))
    b.apply(add("s2", "x", SELL, 97, 4, order_type=STOP_LIMIT, tif=IOC, stop_price=99))
    data = snapshot.dump(b)
    restored, _ = snapshot.load(data)
    assert snapshot.dump(restored) == data
    assert restored.depth(5) == b.depth(5) == ([], [(102, 1)])
    follow = [
        add("t2", "w", BUY, 102, 1),
        add("sell", "y", SELL, 98, 6),
        cancel("s2", "x"),
        add("t3", "w", BUY, 102, 9),
    ]
    assert [restored.apply(c) for c in follow] == [b.apply(c) for c in follow]


def test_a_plain_books_snapshot_has_none_of_the_new_fields():
    b = book()
    b.apply(add("a", "u", BUY, 100, 5))
    state = snapshot_pb2.BookState.FromString(
        snapshot_pb2.Snapshot.FromString(snapshot.dump(b)).state
    )
    assert not state.display and not state.all_or_none and not state.stop_side
