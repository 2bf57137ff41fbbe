"""What a book refuses to restore from a snapshot (engine.book.snapshot loads through these),
each refusal naming what is wrong, and the edges it still accepts; written against the
mutants mutation testing left alive (docs/MUTATION.md)."""

import re
from typing import Any

import pytest

from engine.book import Book, Instrument, cancel
from hotshard.domain import MAX_PRICE, Side, TimeInForce
from tests.builders import book, statuses, view

BUY, SELL = int(Side.BUY), int(Side.SELL)
GTC, IOC = int(TimeInForce.GTC), int(TimeInForce.IOC)
BIG = Instrument("B", max_quantity=MAX_PRICE)


def orders(*rows: tuple[int, int, int, int, str]) -> Any:
    """Order columns from (side, price, leaves, filled, order_id) rows, user 'u'."""
    return (
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [False for _ in rows],
        [r[4] for r in rows],
        ["u" for _ in rows],
    )


def stops(*rows: tuple[int, int, int, int, int, int, bool, str]) -> Any:
    """Stop columns from (side, stop, price, qty, tif, display, aon, order_id) rows."""
    columns = tuple([r[i] for r in rows] for i in range(8))
    return (*columns, ["u" for _ in rows])


ONE = (BUY, 100, 5, 0, "a")


@pytest.mark.parametrize(
    ("columns", "extras", "message"),
    [
        ((*orders(ONE)[:6], []), None, "order columns differ in length"),
        (orders(ONE), ([1], [1], []), "order extras differ in length from the orders"),
        (orders((3, 100, 5, 0, "a")), None, "order u/a has side 3"),
        (orders((BUY, 100, 0, 0, "a")), None, "order u/a invalid"),
        (orders((BUY, 100, MAX_PRICE + 1, 0, "a")), None, "order u/a invalid"),
        (orders((BUY, 100, 5, -1, "a")), None, "order u/a invalid"),
        (orders((BUY, 100, 5, MAX_PRICE + 1, "a")), None, "order u/a invalid"),
        (orders((BUY, 0, 5, 0, "a")), None, "order u/a invalid"),
        (orders((BUY, 100, 5, 0, "a"), (BUY, 100, 5, 0, "a")), None, "order u/a twice"),
        (
            orders((SELL, 100, 5, 0, "a"), (SELL, 101, 5, 0, "b"), (SELL, 100, 5, 0, "c")),
            None,
            "level 100 split in two",
        ),
        (orders((BUY, 100, 5, 0, "a")), ([-1], [0], [False]), "order u/a invalid"),
        (orders((BUY, 100, 5, 0, "a")), ([MAX_PRICE + 1], [1], [False]), "order u/a invalid"),
        (orders((BUY, 100, 5, 0, "a")), ([2], [1], [True]), "order u/a invalid"),
        (orders((BUY, 100, 5, 0, "a")), ([2], [0], [False]), "order u/a invalid"),
        (orders((BUY, 100, 5, 0, "a")), ([2], [3], [False]), "order u/a invalid"),
    ],
)
def test_orders_that_make_no_sense_are_refused_by_name(columns, extras, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Book(BIG).restore_orders(columns, extras)


def test_orders_at_the_edges_of_the_checks_are_restored():
    b = Book(BIG)
    b.restore_orders(
        orders(
            (BUY, 100, 1, MAX_PRICE, "one"),
            (BUY, 99, MAX_PRICE, 0, "max"),
            (SELL, 105, 4, 0, "ice"),
            (SELL, 106, 4, 0, "aon"),
        ),
        ([0, 0, MAX_PRICE, 0], [0, 0, 4, 3], [False, False, False, True]),
    )
    assert b.depth(5) == ([(100, 1), (99, MAX_PRICE)], [(105, 4)])  # the aon is not shown
    display, peak, aon = b.order_extras()
    assert (display, peak, aon) == ([0, 0, MAX_PRICE, 0], [0, 0, 4, 0], [False, False, False, True])
    # a restored iceberg rests like any other: a cancel takes it off its level
    assert statuses(b.apply(cancel("ice", "u"))) == [("ice", "CANCELLED", "")]
    assert b.depth(5) == ([(100, 1), (99, MAX_PRICE)], [])


def test_a_single_iceberg_is_restored_with_its_peak():
    b = book()
    b.restore_orders(orders((SELL, 100, 10, 0, "ice")), ([4], [2], [False]))
    assert b.depth(5) == ([], [(100, 2)])
    b2 = book()
    b2.restore_orders(orders((SELL, 100, 10, 0, "p")))  # no extras at all: a plain book
    assert b2.depth(5) == ([], [(100, 10)])


STOP = (BUY, 100, 0, 5, GTC, 0, False, "s")


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ((*stops(STOP)[:8], []), "stop columns differ in length"),
        ((*stops(STOP)[:1], [], *stops(STOP)[2:]), "stop columns differ in length"),
        (stops((BUY, 0, 0, 5, GTC, 0, False, "s")), "stop u/s invalid"),
        (stops((BUY, 100, 101, 5, GTC, 0, False, "s")), "stop u/s invalid"),  # off the tick
        (stops((BUY, 100, 0, MAX_PRICE + 1, GTC, 0, False, "s")), "stop u/s invalid"),
        (stops((BUY, 100, 102, 5, GTC, 6, False, "s")), "stop u/s invalid"),  # display > qty
        (stops((BUY, 100, 102, 5, IOC, 0, True, "s")), "stop u/s invalid"),  # aon, not resting
        (stops(STOP, (SELL, 90, 0, 5, GTC, 0, False, "s")), "order u/s twice"),
    ],
)
def test_stops_that_make_no_sense_are_refused_by_name(columns, message):
    b = book(tick=2)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        b.restore_stops(columns)


def test_stops_at_the_edges_of_the_checks_are_restored():
    b = Book(BIG)
    b.restore_stops(
        stops(
            (BUY, 100, 0, MAX_PRICE, GTC, 0, False, "big"),
            (SELL, 90, 88, 6, GTC, 3, False, "ice"),  # a stop-limit iceberg
            (SELL, 89, 88, 6, GTC, 0, True, "aon"),
        )
    )
    assert [o.order_id for o in b.pending_stops()] == ["big", "ice", "aon"]
    assert b.stop_columns()[5:7] == ([0, 3, 0], [False, False, True])


def test_ended_orders_that_make_no_sense_are_refused_by_name():
    for ids, users, filled, message in (
        (["a"], ["u", "v"], [0], "ended-order columns differ in length"),
        (["a", "b", "c", "d"], ["u"] * 4, [0] * 4, "4 ended orders, the window is 3"),
        (["a"], ["u"], [-1], "ended order u/a invalid"),
        (["a"], ["u"], [MAX_PRICE + 1], "ended order u/a invalid"),
        (["a", "a"], ["u", "u"], [0, 0], "order u/a twice"),
        (["live"], ["u"], [0], "order u/live twice"),
    ):
        b = book(dedup_window=3)
        b.restore_orders(orders((BUY, 100, 5, 0, "live")))
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            b.restore_ended(ids, users, filled)


def test_restored_ended_orders_fill_the_window_and_answer_as_ended():
    b = book(dedup_window=3)
    b.restore_ended(["a", "b", "c"], ["u", "u", "v"], [0, 7, MAX_PRICE])  # exactly full
    assert view(b.apply(cancel("b", "u"))) == [
        {
            "type": "order_status",
            "seq": 1,
            "order_id": "b",
            "user_id": "u",
            "status": "REJECTED",
            "reason": "ORDER_NOT_OPEN",
            "filled": 7,
            "leaves": 0,
        }
    ]
    assert statuses(b.apply(cancel("a", "v"))) == [("a", "REJECTED", "UNKNOWN_ORDER")]


def test_ended_orders_read_back_with_their_ids_and_filled_and_no_leaves():
    """An ended order has nothing left: `ended_orders` builds it with leaves 0 (mutants
    `ended_orders` 2 and 16 built it with None or 1)."""
    b = book(dedup_window=3)
    b.restore_ended(["a", "b"], ["u", "v"], [0, 7])
    assert [(o.order_id, o.user_id, o.filled, o.leaves) for o in b.ended_orders()] == [
        ("a", "u", 0, 0),
        ("b", "v", 7, 0),
    ]


def test_marked_prices_are_in_the_next_depth_update_on_their_side():
    b = book()
    b.restore_orders(orders((BUY, 100, 5, 0, "b"), (SELL, 105, 3, 0, "s")))
    b.depth_update()  # what restoring the orders marked
    b.mark_dirty(BUY, 100)
    b.mark_dirty(SELL, 105)
    b.mark_dirty(BUY, 98)  # no level there any more: a level gone
    b.mark_dirty(SELL, 107)
    update = b.depth_update()
    assert update is not None
    assert (update.bids, update.asks) == ([(100, 5), (98, 0)], [(105, 3), (107, 0)])
    assert b.depth_update() is None


def test_a_depth_snapshot_is_the_top_of_each_side_at_the_books_seq():
    b = book()
    b.restore_orders(orders((BUY, 100, 5, 0, "b1"), (BUY, 99, 2, 0, "b2"), (SELL, 105, 3, 0, "s")))
    b.apply(cancel("none", "u"))  # seq 1
    snap = b.depth_snapshot(1)
    assert (snap.seq, snap.bids, snap.asks, snap.snapshot) == (1, [(100, 5)], [(105, 3)], True)
