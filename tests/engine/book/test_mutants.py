"""Tests written to kill mutants that survived mutation testing (docs/MUTATION.md): each
pins one boundary of the book that no other test held."""

import pytest

from engine.book import Book, Instrument, add, cancel, replace, snapshot
from hotshard.commands import Command
from hotshard.domain import OrderType, Side, Status, TimeInForce
from tests.builders import book, resting, statuses, trades, view
from tests.engine.book.test_reference_streams import check_levels
from tests.reference.naive_book import NaiveBook

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


def test_apply_all_gives_the_events_of_applying_each_command_in_turn():
    # apply_all without `ends` was exercised by no unit test (its arguments could be dropped)
    commands = [
        add("a", "alice", SELL, 100, 10),
        add("b", "bob", BUY, 101, 4),
        replace("a", "alice", 100, 8),
        add("c", "carol", BUY, 100, 9),
    ]
    one_by_one = book()
    expected = [e for c in commands for e in one_by_one.apply(c)]
    assert book().apply_all(commands) == expected
    ends: list[int] = []
    assert book().apply_all(commands, ends) == expected
    assert ends == [1, 7, 8, 14]


def test_a_post_only_iceberg_or_all_or_none_that_would_cross_is_rejected_and_leaves_no_trace():
    for extra in ({"display_quantity": 2}, {"all_or_none": True}):
        b = book()
        b.apply(add("ask", "alice", SELL, 100, 5))
        events = b.apply(add("p", "bob", BUY, 100, 4, post_only=True, **extra))
        assert view(events) == [
            {
                "type": "order_status",
                "seq": 2,
                "order_id": "p",
                "user_id": "bob",
                "status": "REJECTED",
                "reason": "POST_ONLY_WOULD_CROSS",
                "filled": 0,
                "leaves": 0,
            }
        ]
        assert b.depth(5) == ([], [(100, 5)])
        # the id was never taken: the same order at a passive price rests
        assert statuses(b.apply(add("p", "bob", BUY, 99, 4, post_only=True, **extra))) == [
            ("p", "ACCEPTED", "")
        ]


def test_a_depth_update_shows_an_icebergs_peak_and_no_all_or_none_quantity():
    b = book()
    b.apply(add("ice", "alice", SELL, 100, 10, display_quantity=3))
    b.apply(add("aon", "bob", BUY, 90, 5, all_or_none=True))
    b.apply(add("p", "carol", BUY, 90, 2))
    update = b.depth_update()
    assert update is not None
    assert (update.bids, update.asks) == ([(90, 2)], [(100, 3)])


def test_an_iceberg_left_alone_at_its_level_after_a_replace_and_a_cancel_still_trades_by_peak():
    # `_rehide`'s `level.special += 1` -> `= 1`: the level forgot it still held an iceberg
    b = book()
    b.apply(add("ice1", "alice", SELL, 100, 10, display_quantity=2))
    b.apply(add("ice2", "carol", SELL, 100, 10, display_quantity=2))
    assert statuses(b.apply(replace("ice1", "alice", 100, 8))) == [("ice1", "REPLACED", "")]
    b.apply(cancel("ice1", "alice"))
    assert b.depth(5) == ([], [(100, 2)])
    assert trades(b.apply(add("t", "bob", BUY, 100, 5))) == [
        ("ice2", "t", 100, 2),
        ("ice2", "t", 100, 2),
        ("ice2", "t", 100, 1),
    ]


def test_a_level_whose_icebergs_and_all_or_none_orders_left_snapshots_as_a_plain_one():
    # `level.special += 2` in `_hide` / `_rehide`, `-= 1` -> `= 1` / `+= 1` in `_unhide`
    # and `_take_special`: a level kept counting a special order that had left, and the
    # book's snapshot kept their (display, peak, aon) columns
    for leave in ("cancel", "replace then cancel", "filled"):
        b = book()
        b.apply(add("plain", "carol", SELL, 100, 5))
        b.apply(add("ice", "alice", SELL, 100, 2 if leave == "filled" else 4, display_quantity=2))
        b.apply(add("aon", "dave", SELL, 100, 3, all_or_none=True))
        b.apply(add("back", "carol", SELL, 100, 5))
        assert b.order_extras() != ([], [], [])
        if leave == "cancel":
            b.apply_all([cancel("ice", "alice"), cancel("aon", "dave")])
        elif leave == "replace then cancel":  # a lower quantity keeps its place: _rehide
            b.apply_all([replace("ice", "alice", 100, 3), replace("aon", "dave", 100, 2)])
            b.apply_all([cancel("ice", "alice"), cancel("aon", "dave")])
        else:  # matching fills both (the iceberg in one peak), "back" keeps the level
            b.apply(add("t", "bob", BUY, 100, 12))
            assert resting(b)[(SELL, 100)] == [("back", "carol", 3)]
        assert b.order_extras() == ([], [], []), leave


def test_a_fill_or_kill_counts_an_icebergs_last_peak_as_what_is_left_not_its_display():
    # `_level_fill`'s refreshed peak `display if display < leaves else leaves` -> display:
    # 3 left as peaks of 2 and 1 looked like 2 + 2, so a FOK of 4 was let through to fill 3
    b = book()
    b.apply(add("ice", "alice", SELL, 100, 3, display_quantity=2))
    events = b.apply(add("fok", "bob", BUY, 100, 4, tif=TimeInForce.FOK))
    assert trades(events) == []
    assert statuses(events) == [("fok", "EXPIRED", "FILL_OR_KILL")]
    events = b.apply(add("fok3", "bob", BUY, 100, 3, tif=TimeInForce.FOK))
    assert [t[3] for t in trades(events)] == [2, 1]


def test_matching_steps_over_cancelled_orders_in_the_middle_of_a_level_in_time_priority():
    # `_take`'s `head += 1` past a cancelled slot -> `head = 1` (looped) / `head -= 1`
    # (wrapped round to the back of the level)
    b = book()
    for order_id in ("a", "b", "c", "d"):
        b.apply(add(order_id, "alice", SELL, 100, 1))
    b.apply(cancel("a", "alice"))  # a cancelled slot at the head of the level
    assert trades(b.apply(add("t1", "bob", BUY, 100, 1))) == [("b", "t1", 100, 1)]
    b.apply(cancel("c", "alice"))  # and one behind the consumed head
    b.apply(add("e", "alice", SELL, 100, 1))
    assert trades(b.apply(add("t2", "bob", BUY, 100, 1))) == [("d", "t2", 100, 1)]
    assert trades(b.apply(add("t3", "bob", BUY, 100, 1))) == [("e", "t3", 100, 1)]


def test_a_replace_that_crosses_after_a_partial_fill_reports_the_whole_filled_quantity():
    # `_take`'s `taker.filled += ...` -> `=`: the requeued order forgot its earlier fill
    b = book()
    b.apply(add("buy", "alice", BUY, 100, 10))
    b.apply(add("s1", "carol", SELL, 100, 4))
    b.apply(add("s2", "carol", SELL, 102, 6))
    events = b.apply(replace("buy", "alice", 102, 10))
    assert [(e[2], e[4], e[6], e[7]) for e in events if e[0] == 1 and e[2] == "buy"] == [
        ("buy", Status.REPLACED, 4, 6),
        ("buy", Status.FILLED, 10, 0),
    ]


def test_an_all_or_none_order_replaced_to_a_crossing_price_trades_only_if_it_fills_whole():
    # `_requeue`'s all-or-none check: `aon = None`, and each argument of its `_can_fill`
    b = book()
    b.apply(add("s", "carol", SELL, 102, 3))
    b.apply(add("aon", "alice", BUY, 100, 5, all_or_none=True))
    events = b.apply(replace("aon", "alice", 102, 5))
    assert trades(events) == [] and statuses(events) == [("aon", "REPLACED", "")]
    b.apply(add("s2", "carol", SELL, 103, 5))
    events = b.apply(replace("aon", "alice", 103, 5))
    assert trades(events) == [("s", "aon", 102, 3), ("s2", "aon", 103, 2)]
    # under self-trade prevention its own orders do not count towards filling it
    b = book(self_trade_prevention=True)
    b.apply(add("own", "alice", SELL, 102, 5))
    b.apply(add("s", "carol", SELL, 102, 3))
    b.apply(add("aon", "alice", BUY, 100, 5, all_or_none=True))
    assert trades(b.apply(replace("aon", "alice", 102, 5))) == []
    assert resting(b)[(SELL, 102)] == [("own", "alice", 5), ("s", "carol", 3)]


def test_a_fill_or_kill_under_self_trade_prevention_passes_an_icebergs_refreshed_slot():
    # `_take_special` leaves a refreshed iceberg's old slot dead with `leaves = 0` (mutated
    # to None): once the level holds no special order, the self-trade-prevention count of a
    # FOK walks that slot too
    b = book(self_trade_prevention=True)
    b.apply(add("aon", "dave", SELL, 100, 10, all_or_none=True))
    b.apply(add("ice", "alice", SELL, 100, 4, display_quantity=2))
    b.apply(add("p", "carol", SELL, 100, 5))
    assert trades(b.apply(add("t", "bob", BUY, 100, 2))) == [("ice", "t", 100, 2)]  # skips aon
    b.apply_all([cancel("aon", "dave"), cancel("ice", "alice")])
    events = b.apply(add("fok", "bob", BUY, 100, 5, tif=TimeInForce.FOK))
    assert trades(events) == [("p", "fok", 100, 5)]


def test_a_stop_limit_restored_from_a_snapshot_is_not_post_only_once_it_rests():
    # `restore_stops`' Order(..., post_only False) -> True: the restored stop, triggered and
    # resting, refused a replace to a crossing price as POST_ONLY_WOULD_CROSS
    original = book()
    original.apply(
        add("stop", "alice", BUY, 101, 5, order_type=OrderType.STOP_LIMIT, stop_price=101)
    )
    b, _ = snapshot.load(snapshot.dump(original, input_offset=1))
    b.apply_all([add("s", "carol", SELL, 101, 1), add("b", "dave", BUY, 101, 1)])  # triggers
    assert resting(b)[(BUY, 101)] == [("stop", "alice", 5)]
    b.apply(add("s2", "carol", SELL, 103, 5))
    events = b.apply(replace("stop", "alice", 103, 5))
    assert trades(events) == [("s2", "stop", 103, 5)]


def test_the_lowest_price_is_one_tick_and_zero_is_refused():
    # `_check_price`'s `price <= 0` -> `<= 1`
    b = book()
    assert statuses(b.apply(add("one", "u", BUY, 1, 1))) == [("one", "ACCEPTED", "")]
    assert statuses(b.apply(add("zero", "u", BUY, 0, 1)))[0][1] == "REJECTED"


def test_matching_a_level_with_special_orders_keeps_its_count_of_resting_orders():
    # `_take_special`'s dead-slot bookkeeping (`level.dead -= 1` -> `+= 1` past a cancelled
    # head, `level.dead += 1` -> `= 1` for a self-trade cancel behind it): Book.resting() is
    # the levels' slots less their consumed head and dead ones
    b = book()
    b.apply_all(
        [add("a", "carol", SELL, 100, 1), add("ice", "alice", SELL, 100, 4, display_quantity=2)]
    )
    b.apply(cancel("a", "carol"))  # a dead slot at the head of a special level
    b.apply(add("t", "bob", BUY, 100, 1))
    assert b.resting() == len(b.live_orders()) == 1
    b = book(self_trade_prevention=True)
    b.apply(add("aon", "carol", SELL, 100, 10, all_or_none=True))
    b.apply_all([add("x", "dave", SELL, 100, 1), add("own", "bob", SELL, 100, 2)])
    b.apply(add("ice", "alice", SELL, 100, 4, display_quantity=2))
    b.apply(cancel("x", "dave"))  # dead behind the head, then bob's own cancelled behind it
    b.apply(add("t", "bob", BUY, 100, 2))
    assert b.resting() == len(b.live_orders()) == 2


def _head_moved_on(case: str) -> list[Command]:
    """A level with an iceberg (so matching takes `_take_special`) whose first two orders an
    earlier taker consumed (its head is slot 2), then one more taker that meets, at that
    head: a cancelled order, its own order under self-trade prevention, an order it fills,
    an all-or-none order too big for it (skipped, the next one trades), or the iceberg's
    used-up peak (refreshed to the back)."""
    head = [add("p1", "carol", SELL, 100, 1), add("p2", "carol", SELL, 100, 1)]
    ice = add("ice", "alice", SELL, 100, 10, display_quantity=2)
    tail = add("tail", "carol", SELL, 100, 3)
    eat = add("t0", "dave", BUY, 100, 2)
    if case == "refreshed":
        return [*head, ice, tail, eat, add("t1", "bob", BUY, 100, 2), add("t2", "zed", BUY, 100, 5)]
    if case == "all-or-none":  # skipped at the head (too big for t1), the next one trades
        aon = add("aon", "erin", SELL, 100, 10, all_or_none=True)
        y = add("y", "erin", SELL, 100, 2)
        t1 = add("t1", "bob", BUY, 100, 2)
        return [*head, aon, y, ice, tail, eat, t1, add("t2", "zed", BUY, 100, 12)]
    x = {
        "cancelled": add("x", "erin", SELL, 100, 5),
        "self-trade": add("x", "bob", SELL, 100, 5),
        "filled": add("x", "erin", SELL, 100, 1),
    }[case]
    taker = add("t1", "bob", BUY, 100, 2 if case == "filled" else 1)
    middle = [cancel("x", "erin")] if case == "cancelled" else []
    return [*head, x, ice, tail, eat, *middle, taker, add("t2", "zed", BUY, 100, 5)]


@pytest.mark.parametrize("case", ["cancelled", "self-trade", "filled", "all-or-none", "refreshed"])
def test_a_special_level_whose_head_moved_on_matches_and_counts_like_the_reference(
    case: str,
) -> None:
    # `_take_special`'s steps with the head already past slot 0 (the open survivors of the
    # book's run, docs/MUTATION.md): `head += 1` -> `head = 1` / `+= 2` and `i += 1` ->
    # `i += 2` in each branch, `level.dead -= 1` -> `-= 2` / `= 1` past a dead head, the
    # all-or-none skip's `i += 1` -> `+= 2` / `= 1` (loops). Event for event and depth for
    # depth against the naive reference, and every level's counters against its live
    # orders after each command. (`i = 1` after a self-trade cancel, a fill or a refresh is
    # equivalent: it walks again only consumed slots and all-or-none orders it skipped,
    # which it skips again, rem having only shrunk.)
    fast = Book(Instrument("P", self_trade_prevention=True))
    naive = NaiveBook(Instrument("P", self_trade_prevention=True))
    for i, command in enumerate(_head_moved_on(case)):
        assert fast.apply(command) == naive.apply(command), (case, i, command)
        assert fast.depth(20) == naive.depth(20), (case, i, command)
        check_levels(fast)
    assert fast.resting() == len(fast.live_orders())
    restored, _ = snapshot.load(snapshot.dump(fast))
    assert [o.order_id for o in restored.live_orders()] == [o.order_id for o in fast.live_orders()]
