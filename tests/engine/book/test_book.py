"""The book, order type by order type and edge by edge."""

from engine.book import add, cancel, replace
from hotshard.domain import OrderType, Side, TimeInForce
from tests.builders import book, resting, statuses, trades, view

BUY, SELL = Side.BUY, Side.SELL
IOC, FOK = TimeInForce.IOC, TimeInForce.FOK
MARKET = OrderType.MARKET


def test_passive_limit_is_accepted_and_rests():
    b = book()
    events = b.apply(add("1", "alice", BUY, 100, 10))
    assert view(events) == [
        {
            "type": "order_status",
            "seq": 1,
            "order_id": "1",
            "user_id": "alice",
            "status": "ACCEPTED",
            "filled": 0,
            "leaves": 10,
        }
    ]
    assert b.depth(5) == ([(100, 10)], [])


def test_crossing_limit_emits_trade_fills_and_statuses_in_order():
    b = book()
    b.apply(add("s1", "alice", SELL, 100, 10))
    events = b.apply(add("b1", "bob", BUY, 100, 4))
    assert [e["type"] for e in view(events)] == [
        "order_status",
        "trade",
        "fill",
        "fill",
        "order_status",
        "order_status",
    ]
    trade, maker_fill, taker_fill = view(events)[1:4]
    assert trade["seq"] == 3 and maker_fill["trade_id"] == taker_fill["trade_id"] == 3
    assert (maker_fill["order_id"], maker_fill["liquidity"]) == ("s1", "MAKER")
    assert (taker_fill["order_id"], taker_fill["liquidity"]) == ("b1", "TAKER")
    assert statuses(events) == [
        ("b1", "ACCEPTED", ""),
        ("s1", "PARTIALLY_FILLED", ""),
        ("b1", "FILLED", ""),
    ]
    assert [e["seq"] for e in view(events)] == [2, 3, 4, 5, 6, 7]


def test_partial_fill_across_levels_walks_best_price_first_then_rests():
    b = book()
    b.apply(add("a1", "alice", SELL, 101, 5))
    b.apply(add("a2", "alice", SELL, 100, 5))
    b.apply(add("a3", "alice", SELL, 102, 5))
    events = b.apply(add("b1", "bob", BUY, 101, 12))
    assert trades(events) == [("a2", "b1", 100, 5), ("a1", "b1", 101, 5)]
    assert statuses(events)[-1] == ("b1", "PARTIALLY_FILLED", "")
    assert view(events)[-1]["leaves"] == 2
    assert b.depth(5) == ([(101, 2)], [(102, 5)])


def test_fifo_within_a_level():
    b = book()
    b.apply(add("first", "alice", SELL, 100, 5))
    b.apply(add("second", "carol", SELL, 100, 5))
    events = b.apply(add("t", "bob", BUY, 100, 7))
    assert trades(events) == [("first", "t", 100, 5), ("second", "t", 100, 2)]


def test_ioc_remainder_is_cancelled_as_expired():
    b = book()
    b.apply(add("s", "alice", SELL, 100, 3))
    events = b.apply(add("t", "bob", BUY, 100, 10, tif=IOC))
    assert trades(events) == [("s", "t", 100, 3)]
    assert statuses(events)[-1] == ("t", "EXPIRED", "IMMEDIATE_OR_CANCEL")
    assert view(events)[-1]["filled"] == 3
    assert b.depth(5) == ([], [])


def test_ioc_that_does_not_cross_expires_without_trading():
    b = book()
    events = b.apply(add("t", "bob", BUY, 100, 10, tif=IOC))
    assert statuses(events) == [("t", "ACCEPTED", ""), ("t", "EXPIRED", "IMMEDIATE_OR_CANCEL")]


def test_fok_that_cannot_fill_leaves_no_trace():
    b = book()
    b.apply(add("s", "alice", SELL, 100, 5))
    before = (b.depth(10), b.seq)
    events = b.apply(add("t", "bob", BUY, 100, 6, tif=FOK))
    assert statuses(events) == [("t", "EXPIRED", "FILL_OR_KILL")]
    assert trades(events) == []
    assert b.depth(10) == before[0]
    assert b.seq == before[1] + 1
    # not remembered: the id is free for a real order
    assert statuses(b.apply(add("t", "bob", BUY, 99, 1)))[0] == ("t", "ACCEPTED", "")


def test_fok_that_can_fill_fills_completely_across_levels():
    b = book()
    b.apply(add("s1", "alice", SELL, 100, 5))
    b.apply(add("s2", "alice", SELL, 101, 5))
    events = b.apply(add("t", "bob", BUY, 101, 8, tif=FOK))
    assert trades(events) == [("s1", "t", 100, 5), ("s2", "t", 101, 3)]
    assert statuses(events)[-1] == ("t", "FILLED", "")


def test_market_order_takes_any_price_and_expires_the_rest():
    b = book()
    b.apply(add("s1", "alice", SELL, 100, 5))
    b.apply(add("s2", "alice", SELL, 5000, 5))
    events = b.apply(add("m", "bob", BUY, 0, 12, order_type=MARKET, tif=IOC))
    assert trades(events) == [("s1", "m", 100, 5), ("s2", "m", 5000, 5)]
    assert statuses(events)[-1] == ("m", "EXPIRED", "NO_LIQUIDITY")
    assert b.depth(5) == ([], [])


def test_market_order_on_an_empty_book_expires():
    events = book().apply(add("m", "bob", SELL, 0, 1, order_type=MARKET))
    assert statuses(events) == [("m", "ACCEPTED", ""), ("m", "EXPIRED", "NO_LIQUIDITY")]


def test_post_only_that_would_cross_is_rejected_and_one_that_would_not_rests():
    b = book()
    b.apply(add("s", "alice", SELL, 100, 5))
    crossing = b.apply(add("p1", "bob", BUY, 100, 5, post_only=True))
    assert statuses(crossing) == [("p1", "REJECTED", "POST_ONLY_WOULD_CROSS")]
    resting = b.apply(add("p2", "bob", BUY, 99, 5, post_only=True))
    assert statuses(resting) == [("p2", "ACCEPTED", "")]
    assert b.depth(5) == ([(99, 5)], [(100, 5)])


def test_cancel_removes_the_order_and_reports_what_was_filled():
    b = book()
    b.apply(add("s", "alice", SELL, 100, 10))
    b.apply(add("t", "bob", BUY, 100, 4))
    events = b.apply(cancel("s", "alice"))
    assert view(events)[0] | {"seq": 0} == {
        "type": "order_status",
        "seq": 0,
        "order_id": "s",
        "user_id": "alice",
        "status": "CANCELLED",
        "filled": 4,
        "leaves": 0,
    }
    assert b.depth(5) == ([], [])


def test_cancel_of_unknown_order_is_rejected():
    assert statuses(book().apply(cancel("nope", "alice"))) == [
        ("nope", "REJECTED", "UNKNOWN_ORDER")
    ]


def test_cancel_of_another_users_order_is_unknown_to_them():
    b = book()
    b.apply(add("s", "alice", SELL, 100, 10))
    assert statuses(b.apply(cancel("s", "mallory"))) == [("s", "REJECTED", "UNKNOWN_ORDER")]
    assert b.depth(1) == ([], [(100, 10)])


def test_cancel_of_filled_or_cancelled_order_is_rejected_as_not_open():
    b = book()
    b.apply(add("s", "alice", SELL, 100, 10))
    b.apply(add("t", "bob", BUY, 100, 10))
    assert statuses(b.apply(cancel("s", "alice"))) == [("s", "REJECTED", "ORDER_NOT_OPEN")]
    b.apply(add("r", "alice", SELL, 100, 10))
    b.apply(cancel("r", "alice"))
    assert statuses(b.apply(cancel("r", "alice"))) == [("r", "REJECTED", "ORDER_NOT_OPEN")]


def test_replace_lowering_quantity_keeps_time_priority():
    b = book()
    b.apply(add("first", "alice", SELL, 100, 10))
    b.apply(add("second", "carol", SELL, 100, 10))
    events = b.apply(replace("first", "alice", 100, 4))
    assert statuses(events) == [("first", "REPLACED", "")]
    assert view(events)[0]["leaves"] == 4
    assert trades(b.apply(add("t", "bob", BUY, 100, 6))) == [
        ("first", "t", 100, 4),
        ("second", "t", 100, 2),
    ]


def test_replace_raising_quantity_loses_time_priority():
    b = book()
    b.apply(add("first", "alice", SELL, 100, 10))
    b.apply(add("second", "carol", SELL, 100, 10))
    b.apply(replace("first", "alice", 100, 11))
    assert trades(b.apply(add("t", "bob", BUY, 100, 12))) == [
        ("second", "t", 100, 10),
        ("first", "t", 100, 2),
    ]


def test_replace_changing_price_loses_priority_and_may_trade():
    b = book()
    b.apply(add("bid", "bob", BUY, 99, 5))
    b.apply(add("ask", "alice", SELL, 101, 10))
    events = b.apply(replace("ask", "alice", 99, 10))
    assert statuses(events)[0] == ("ask", "REPLACED", "")
    assert trades(events) == [("bid", "ask", 99, 5)]
    assert statuses(events)[-1] == ("ask", "PARTIALLY_FILLED", "")
    assert b.depth(5) == ([], [(99, 5)])


def test_replace_quantity_is_the_new_total_so_leaves_subtract_what_filled():
    b = book()
    b.apply(add("s", "alice", SELL, 100, 10))
    b.apply(add("t", "bob", BUY, 100, 6))
    events = b.apply(replace("s", "alice", 100, 8))
    assert (view(events)[0]["filled"], view(events)[0]["leaves"]) == (6, 2)


def test_replace_to_at_most_the_filled_quantity_ends_the_order():
    b = book()
    b.apply(add("s", "alice", SELL, 100, 10))
    b.apply(add("t", "bob", BUY, 100, 6))
    events = b.apply(replace("s", "alice", 100, 6))
    assert statuses(events) == [("s", "CANCELLED", "REPLACED_TO_ZERO")]
    assert b.depth(5) == ([], [])


def test_post_only_replace_that_would_cross_is_rejected_and_order_is_unchanged():
    b = book()
    b.apply(add("ask", "alice", SELL, 101, 5))
    b.apply(add("bid", "bob", BUY, 99, 5, post_only=True))
    events = b.apply(replace("bid", "bob", 101, 5))
    assert statuses(events) == [("bid", "REJECTED", "POST_ONLY_WOULD_CROSS")]
    assert b.depth(5) == ([(99, 5)], [(101, 5)])


def test_invalid_replace_is_rejected_with_order_unchanged():
    b = book(tick=5)
    b.apply(add("s", "alice", SELL, 100, 10))
    assert statuses(b.apply(replace("s", "alice", 101, 10))) == [
        ("s", "REJECTED", "PRICE_OFF_TICK")
    ]
    assert statuses(b.apply(replace("s", "alice", 100, 0))) == [
        ("s", "REJECTED", "NON_POSITIVE_QUANTITY")
    ]
    assert b.depth(1) == ([], [(100, 10)])


def test_duplicate_order_id_from_the_same_user_is_rejected_never_a_second_order():
    b = book()
    b.apply(add("1", "alice", BUY, 100, 10))
    assert statuses(b.apply(add("1", "alice", BUY, 101, 10))) == [
        ("1", "REJECTED", "DUPLICATE_ORDER_ID")
    ]
    assert b.depth(5) == ([(100, 10)], [])
    # the same id from another user is a different order
    assert statuses(b.apply(add("1", "bob", BUY, 100, 1)))[0] == ("1", "ACCEPTED", "")


def test_duplicate_of_an_ended_order_is_rejected_within_the_dedup_window():
    b = book(dedup_window=2)
    b.apply(add("1", "alice", BUY, 100, 10, tif=IOC))
    assert statuses(b.apply(add("1", "alice", BUY, 100, 1)))[0][1] == "REJECTED"
    b.apply(add("2", "alice", BUY, 100, 1, tif=IOC))
    b.apply(add("3", "alice", BUY, 100, 1, tif=IOC))
    # "1" has left the window of two ended orders
    assert statuses(b.apply(add("1", "alice", BUY, 100, 1)))[0] == ("1", "ACCEPTED", "")


def test_self_trade_prevention_cancels_the_resting_order():
    b = book(self_trade_prevention=True)
    b.apply(add("own", "alice", SELL, 100, 5))
    b.apply(add("other", "carol", SELL, 100, 5))
    events = b.apply(add("t", "alice", BUY, 100, 5))
    assert statuses(events)[1] == ("own", "CANCELLED", "SELF_TRADE_PREVENTED")
    assert trades(events) == [("other", "t", 100, 5)]


def test_without_self_trade_prevention_a_user_may_trade_with_itself():
    b = book()
    b.apply(add("own", "alice", SELL, 100, 5))
    assert trades(b.apply(add("t", "alice", BUY, 100, 5))) == [("own", "t", 100, 5)]


def test_price_band_tick_and_lot_are_enforced_with_reasons():
    b = book(tick=5, lot=10, price_min=50, price_max=200)
    cases = {
        "off_tick": (add("a", "u", BUY, 101, 10), "PRICE_OFF_TICK"),
        "off_lot": (add("b", "u", BUY, 100, 15), "QUANTITY_OFF_LOT"),
        "below": (add("c", "u", BUY, 45, 10), "PRICE_OUTSIDE_BAND"),
        "above": (add("d", "u", BUY, 205, 10), "PRICE_OUTSIDE_BAND"),
        "zero_qty": (add("e", "u", BUY, 100, 0), "NON_POSITIVE_QUANTITY"),
        "negative_price": (add("f", "u", BUY, -5, 10), "NON_POSITIVE_PRICE"),
    }
    for command, reason in cases.values():
        assert statuses(b.apply(command)) == [(command[1], "REJECTED", reason)]
    assert statuses(b.apply(add("ok", "u", BUY, 200, 20))) == [("ok", "ACCEPTED", "")]


def test_bad_enum_values_are_rejected_not_raised():
    b = book()
    bad_side = (1, "x", "u", 9, 1, 1, False, 100, 1, 0, 0, False)
    bad_type = (1, "y", "u", 1, 9, 1, False, 100, 1, 0, 0, False)
    bad_tif = (1, "z", "u", 1, 1, 9, False, 100, 1, 0, 0, False)
    bad_action = (9, "w", "u", 1, 1, 1, False, 100, 1, 0, 0, False)
    assert statuses(b.apply(bad_side))[0][2] == "BAD_SIDE"
    assert statuses(b.apply(bad_type))[0][2] == "BAD_TYPE"
    assert statuses(b.apply(bad_tif))[0][2] == "BAD_TIME_IN_FORCE"
    assert statuses(b.apply(bad_action))[0][2] == "BAD_ACTION"
    market_post_only = add("m", "u", BUY, 0, 1, order_type=MARKET, post_only=True)
    assert statuses(b.apply(market_post_only))[0][2] == "MARKET_ORDER_NOT_ALLOWED"
    assert b.seq == 5


def test_depth_update_conflates_changed_levels_best_first_with_zero_for_gone():
    b = book()
    b.apply(add("b1", "u", BUY, 99, 5))
    b.apply(add("b2", "u", BUY, 98, 5))
    b.apply(add("a1", "v", SELL, 101, 5))
    first = b.depth_update()
    assert first is not None
    assert (first.bids, first.asks, first.seq) == ([(99, 5), (98, 5)], [(101, 5)], 3)
    assert b.depth_update() is None
    b.apply(cancel("b1", "u"))
    b.apply(add("b3", "u", BUY, 98, 1))
    update = b.depth_update()
    assert update is not None and (update.bids, update.asks) == ([(99, 0), (98, 6)], [])


def test_bbo_reports_best_levels_or_none():
    b = book()
    assert b.bbo() == (None, None)
    b.apply(add("b1", "u", BUY, 99, 5))
    b.apply(add("b2", "u", BUY, 99, 2))
    b.apply(add("a1", "v", SELL, 103, 5))
    assert b.bbo() == ((99, 7), (103, 5))


def test_many_cancels_in_one_level_keep_queue_bounded():
    b = book()
    for i in range(1000):
        b.apply(add(str(i), "u", BUY, 100, 1))
    for i in range(999):
        b.apply(cancel(str(i), "u"))
    assert len(b.bids[100].orders) < 100
    assert resting(b) == {(BUY, 100): [("999", "u", 1)]}


def test_quantity_above_the_instrument_maximum_is_out_of_range():
    b = book(max_quantity=1000)
    assert statuses(b.apply(add("big", "u", BUY, 100, 1001))) == [
        ("big", "REJECTED", "VALUE_OUT_OF_RANGE")
    ]
    b.apply(add("ok", "u", BUY, 100, 1000))
    assert statuses(b.apply(replace("ok", "u", 100, 5000))) == [
        ("ok", "REJECTED", "VALUE_OUT_OF_RANGE")
    ]


def test_an_id_two_users_share_stays_each_users_own_after_the_first_holder_ends():
    b = book(dedup_window=0)
    b.apply(add("7", "alice", BUY, 100, 1))
    b.apply(add("7", "bob", BUY, 99, 1))
    b.apply(cancel("7", "alice"))  # alice's "7" is forgotten at once (window 0)
    assert statuses(b.apply(add("7", "bob", BUY, 98, 1))) == [
        ("7", "REJECTED", "DUPLICATE_ORDER_ID")
    ]
    assert statuses(b.apply(add("7", "carol", BUY, 97, 1)))[0] == ("7", "ACCEPTED", "")
    assert statuses(b.apply(cancel("7", "bob"))) == [("7", "CANCELLED", "")]
    assert statuses(b.apply(cancel("7", "carol"))) == [("7", "CANCELLED", "")]
    assert statuses(b.apply(add("7", "bob", BUY, 98, 1)))[0] == ("7", "ACCEPTED", "")
    assert b.depth(5) == ([(98, 1)], [])


def test_values_beyond_64_bits_are_rejected_with_reasons_not_raised():
    b = book(tick=5)
    huge = 5 << 70  # on the tick, so the band is what it breaks
    assert statuses(b.apply(add("p", "u", BUY, huge, 1))) == [
        ("p", "REJECTED", "PRICE_OUTSIDE_BAND")
    ]
    assert statuses(b.apply(add("q", "u", BUY, 100, huge))) == [
        ("q", "REJECTED", "VALUE_OUT_OF_RANGE")
    ]
    assert statuses(b.apply(add("m", "u", SELL, -huge, 5, order_type=MARKET)))[0][1] == "ACCEPTED"
    b.apply(add("r", "u", BUY, 100, 5))
    assert statuses(b.apply(replace("r", "u", huge + 1, 5))) == [
        ("r", "REJECTED", "PRICE_OFF_TICK")
    ]
    assert statuses(b.apply(replace("r", "u", 100, -huge))) == [
        ("r", "REJECTED", "NON_POSITIVE_QUANTITY")
    ]
