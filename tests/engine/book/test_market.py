"""The Market: books by symbol within one budget of remembered ended-order ids."""

import pytest

from engine.book import Book, DedupBudget, DedupBudgetError, Instrument, Market, add
from hotshard.domain import Side, TimeInForce
from hotshard.events import SEQ, Event
from hotshard.reasons import Reason

IOC = TimeInForce.IOC


def reason_of(events: list[Event]) -> int:
    return events[0][5]


def test_open_listing_gives_each_new_symbol_the_budgets_window():
    market = Market(open_listing=True, dedup=DedupBudget(ids=100, window=30))
    market.apply("A", add("1", "u", Side.BUY, 10, 1))
    assert market.books["A"].instrument.dedup_window == 30
    assert market.reserved == 30


def test_a_symbol_whose_window_does_not_fit_is_refused_whole_outside_any_sequence():
    market = Market(open_listing=True, dedup=DedupBudget(ids=100, window=40))
    market.apply("A", add("1", "u", Side.BUY, 10, 1))
    market.apply("B", add("1", "u", Side.BUY, 10, 1))
    events = market.apply("C", add("1", "u", Side.BUY, 10, 1))
    assert events[0][SEQ] == 0 and reason_of(events) == Reason.DEDUP_BUDGET_FULL
    assert "C" not in market.books
    market.remove_book("A")
    assert market.apply("C", add("1", "u", Side.BUY, 10, 1))[0][SEQ] == 1


def test_listed_windows_are_reserved_from_the_start_and_must_fit():
    with pytest.raises(DedupBudgetError):
        Market(
            {"A": Instrument("A", dedup_window=60), "B": Instrument("B", dedup_window=50)},
            dedup=DedupBudget(ids=100, window=10),
        )
    market = Market(
        {"A": Instrument("A", dedup_window=60)},
        open_listing=True,
        dedup=DedupBudget(ids=100, window=30),
    )
    market.apply("X", add("1", "u", Side.BUY, 10, 1))
    # A has had no order yet, but its 60 are taken: Y would need 30 of the 10 left
    assert reason_of(market.apply("Y", add("1", "u", Side.BUY, 10, 1))) == Reason.DEDUP_BUDGET_FULL
    assert market.apply("A", add("1", "u", Side.BUY, 10, 1))[0][SEQ] == 1


def test_a_restored_book_must_fit_and_returns_its_window_when_removed():
    market = Market(open_listing=True, dedup=DedupBudget(ids=100, window=10))
    market.apply("A", add("1", "u", Side.BUY, 10, 1))
    with pytest.raises(DedupBudgetError) as refused:
        market.add_book(Book(Instrument("M", dedup_window=95)))
    assert refused.value.reason == Reason.DEDUP_BUDGET_FULL
    market.add_book(Book(Instrument("M", dedup_window=90)))
    assert market.reserved == 100
    market.add_book(Book(Instrument("M", dedup_window=90)))  # replacing itself fits
    market.remove_book("M")
    assert market.reserved == 10


def test_a_books_rejections_do_not_depend_on_its_neighbours():
    """Determinism across placements: the same commands for S give the same events whether
    S shares its process with a busy symbol or not."""
    commands = [add(str(i % 7), "u", Side.BUY, 10, 1, tif=IOC) for i in range(40)]
    alone = Market(open_listing=True, dedup=DedupBudget(ids=30, window=10))
    crowded = Market(open_listing=True, dedup=DedupBudget(ids=30, window=10))
    for i in range(300):
        crowded.apply("BUSY", add(f"b{i}", "v", Side.SELL, 10, 1, tif=IOC))
    here = [alone.apply("S", c) for c in commands]
    there = [crowded.apply("S", c) for c in commands]
    assert here == there
    assert sum(reason_of(e) == Reason.DUPLICATE_ORDER_ID for e in here) > 10
