"""Tests written to kill mutants that survived mutation testing (docs/MUTATION.md): each
pins one boundary of the book that no other test held."""

from engine.book import add, replace
from hotshard.domain import OrderType, Side
from tests.builders import book, resting, statuses, trades

BUY, SELL = Side.BUY, Side.SELL


def test_a_replace_that_changes_nothing_keeps_time_priority():
    # `leaves <= order.leaves` -> `<`: an unchanged replace would requeue behind "second"
    b = book()
    b.apply(add("first", "alice", SELL, 100, 10))
    b.apply(add("second", "carol", SELL, 100, 10))
    assert statuses(b.apply(replace("first", "alice", 100, 10))) == [("first", "REPLACED", "")]
    assert resting(b)[(SELL, 100)] == [("first", "alice", 10), ("second", "carol", 10)]
    assert trades(b.apply(add("t", "bob", BUY, 100, 10))) == [("first", "t", 100, 10)]


def test_a_replace_after_a_partial_fill_to_the_same_total_keeps_time_priority():
    b = book()
    b.apply(add("first", "alice", SELL, 100, 10))
    b.apply(add("second", "carol", SELL, 100, 10))
    b.apply(add("t1", "bob", BUY, 100, 4))  # first: 4 filled, 6 leaves
    assert statuses(b.apply(replace("first", "alice", 100, 10))) == [("first", "REPLACED", "")]
    assert resting(b)[(SELL, 100)][0] == ("first", "alice", 6)


def test_the_price_band_includes_both_of_its_bounds():
    # `price > self.price_max` -> `>=` (and `price < self.price_min` -> `<=`)
    b = book(price_min=50, price_max=200)
    for order_id, price in (("lo", 50), ("hi", 200)):
        assert statuses(b.apply(add(order_id, "u", BUY, price, 1))) == [(order_id, "ACCEPTED", "")]
    for order_id, price in (("below", 49), ("above", 201)):
        assert statuses(b.apply(add(order_id, "u", BUY, price, 1))) == [
            (order_id, "REJECTED", "PRICE_OUTSIDE_BAND")
        ]
    # a replace to either bound is inside the band too
    assert statuses(b.apply(replace("lo", "u", 200, 1))) == [("lo", "REPLACED", "")]
    assert statuses(b.apply(replace("hi", "u", 50, 1))) == [("hi", "REPLACED", "")]


def test_a_stop_limit_at_the_bands_bounds_is_accepted():
    b = book(price_min=50, price_max=200)
    events = b.apply(add("s", "u", BUY, 200, 1, order_type=OrderType.STOP_LIMIT, stop_price=200))
    assert statuses(events) == [("s", "ACCEPTED", "")]


def test_the_largest_quantity_is_accepted_and_one_more_is_out_of_range():
    b = book(max_quantity=1000)
    assert statuses(b.apply(add("max", "u", BUY, 10, 1000))) == [("max", "ACCEPTED", "")]
    assert statuses(b.apply(add("over", "u", BUY, 10, 1001))) == [
        ("over", "REJECTED", "VALUE_OUT_OF_RANGE")
    ]
