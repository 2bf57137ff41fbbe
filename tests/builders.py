"""Builders for tests: books, commands and readable views of events."""

from typing import Any

from engine.book import Book, Instrument, add, snapshot
from hotshard.codec import event_json
from hotshard.domain import Side
from hotshard.events import Event

SYMBOL = "TEST"


def book(**rules: Any) -> Book:
    return Book(Instrument(SYMBOL, **rules))


def big_book(symbol: str, orders: int) -> Book:
    """A book of `orders` resting orders of 7 users over 40 levels a side, none crossing."""
    book = Book(Instrument(symbol))
    book.apply_all(
        [
            add(
                f"r{i}",
                f"u{i % 7}",
                Side.BUY if i % 2 else Side.SELL,
                100 - i % 40 if i % 2 else 101 + i % 40,
                5,
            )
            for i in range(orders)
        ]
    )
    return book


def view(events: list[Event]) -> list[dict[str, Any]]:
    """Events as client JSON without the symbol: what a reader of a test wants to see."""
    out = []
    for event in events:
        shown = event_json(SYMBOL, event)
        del shown["symbol"]
        out.append(shown)
    return out


def statuses(events: list[Event]) -> list[tuple[str, str, str]]:
    """(order_id, status, reason) of each order_status, in order."""
    return [
        (e["order_id"], e["status"], e.get("reason", ""))
        for e in view(events)
        if e["type"] == "order_status"
    ]


def trades(events: list[Event]) -> list[tuple[str, str, int, int]]:
    """(maker_order_id, taker_order_id, price, quantity) of each trade."""
    return [
        (e["maker_order_id"], e["taker_order_id"], e["price"], e["quantity"])
        for e in view(events)
        if e["type"] == "trade"
    ]


def resting(b: Book) -> dict[tuple[Side, int], list[tuple[str, str, int]]]:
    """(order_id, user_id, leaves) of the live orders per (side, price), each list in time
    priority, as the book's snapshot lists them (one dump, whatever the book's size)."""
    sides, prices, leaves_, _filled, _post_only, order_ids, user_ids = snapshot.load(
        snapshot.dump(b)
    )[0].order_columns()
    out: dict[tuple[Side, int], list[tuple[str, str, int]]] = {}
    for side, price, order_id, user_id, leaves in zip(
        sides, prices, order_ids, user_ids, leaves_, strict=True
    ):
        out.setdefault((Side(side), price), []).append((order_id, user_id, leaves))
    return out
