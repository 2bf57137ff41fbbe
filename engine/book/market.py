"""Many books in one process, keyed by symbol, within one budget of remembered order ids.

Duplicate protection for ended orders (a reused order_id is rejected while the book still
remembers the id) is the second line of defence: the router's idempotency on (user_id,
order_id) is the first. It costs memory per remembered id (~165 bytes with the id
strings, `python -m bench.memory`), so a process bounds the total: `DedupBudget.ids`.

How the budget is shared, and why this way: a symbol's events must be a function of its
own commands alone, the same after a restart, a replay, or a migration to an engine whose
other symbols differ. So no symbol's memory may depend on its neighbours: the budget is
shared by admission, not by eviction. Each book remembers at most its own window of ended
ids (its instrument's `dedup_window`, fixed when the book is created and carried in its
snapshot), reserves that window from the budget when it joins the Market (created on
first use, listed at start, or restored by a migration) and returns it when removed. A
book that does not fit is refused whole, before it exists: its orders get
DEDUP_BUDGET_FULL outside any sequence (seq 0, like UNKNOWN_SYMBOL: a placement decision,
to be retried on another engine), a restore raises DedupBudgetError, and a listing whose
windows exceed the budget fails at start. A global LRU over all symbols would instead make
S's rejections depend on how busy its neighbours were, and change when S moves.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from engine.book.book import Book
from engine.book.instrument import DEFAULT_DEDUP_WINDOW, Instrument
from hotshard.commands import Command
from hotshard.events import Event, unsequenced_rejection
from hotshard.reasons import HotshardError, Reason

DEFAULT_DEDUP_IDS = 1_000_000


class DedupBudgetError(HotshardError):
    """A book's dedup window does not fit in what is left of the Market's budget."""


@dataclass(frozen=True, slots=True)
class DedupBudget:
    ids: int = DEFAULT_DEDUP_IDS
    """The most ended-order ids all books of the process may remember together."""
    window: int = DEFAULT_DEDUP_WINDOW
    """The window of a symbol listed on first use (open listing); a listed instrument
    carries its own."""

    def __post_init__(self) -> None:
        if not 0 <= self.window <= self.ids:
            raise ValueError(f"need 0 <= window <= ids, got window={self.window} ids={self.ids}")


class Market:
    """The books of a process. With `open_listing` every symbol is accepted on first use
    with the default instrument (tick 1, lot 1, no band, `dedup.window`); otherwise only
    `instruments`."""

    def __init__(
        self,
        instruments: Mapping[str, Instrument] | None = None,
        *,
        open_listing: bool = False,
        dedup: DedupBudget | None = None,
    ) -> None:
        self.instruments = dict(instruments or {})
        self.open_listing = open_listing
        self.dedup = dedup or DedupBudget()
        self.books: dict[str, Book] = {}
        self.reserved = sum(i.dedup_window for i in self.instruments.values())
        """The windows of every symbol in `instruments` (listed, or open-listed on first
        use): <= dedup.ids. A listed symbol's window is reserved from the start, so no
        open-listed symbol can take it."""
        if self.reserved > self.dedup.ids:
            raise DedupBudgetError(
                Reason.DEDUP_BUDGET_FULL,
                f"the listed symbols' dedup windows add up to {self.reserved:,} ids, "
                f"the budget is {self.dedup.ids:,}",
            )

    def book(self, symbol: str) -> Book | None:
        """The symbol's book, created on first use; None if the symbol is not listed or its
        window does not fit in the budget (`refusal` says which)."""
        book = self.books.get(symbol)
        if book is not None:
            return book
        instrument = self.instruments.get(symbol)
        if instrument is None:
            if self.refusal(symbol):
                return None
            instrument = self.instruments[symbol] = Instrument(
                symbol, dedup_window=self.dedup.window
            )
            self.reserved += instrument.dedup_window
        book = self.books[symbol] = Book(instrument)
        return book

    def refusal(self, symbol: str) -> Reason:
        """Why `book(symbol)` gives no book (NONE if it gives one)."""
        if symbol in self.instruments:
            return Reason.NONE
        if not self.open_listing or not symbol:
            return Reason.UNKNOWN_SYMBOL
        if self.reserved + self.dedup.window > self.dedup.ids:
            return Reason.DEDUP_BUDGET_FULL
        return Reason.NONE

    def apply(self, symbol: str, command: Command) -> list[Event]:
        """Apply a command to its symbol's book. A symbol with no book here gets a REJECTED
        event with seq 0: it belongs to no book's sequence."""
        book = self.book(symbol)
        if book is None:
            return [unsequenced_rejection(command[1], command[2], self.refusal(symbol))]
        return book.apply(command)

    def add_book(self, book: Book) -> None:
        """Host a restored book (in place of any book or listing of its symbol);
        DedupBudgetError if its window does not fit."""
        listed = self.instruments.get(book.symbol)
        free = self.dedup.ids - self.reserved + (listed.dedup_window if listed else 0)
        if book.dedup_window > free:
            raise DedupBudgetError(
                Reason.DEDUP_BUDGET_FULL,
                f"{book.symbol} remembers up to {book.dedup_window:,} ended orders, "
                f"{free:,} of the budget's {self.dedup.ids:,} are free",
            )
        self.remove_book(book.symbol)
        self.books[book.symbol] = book
        self.instruments[book.symbol] = book.instrument
        self.reserved += book.dedup_window

    def remove_book(self, symbol: str) -> Book | None:
        """Stop hosting the symbol (its listing too) and return its window to the budget."""
        instrument = self.instruments.pop(symbol, None)
        if instrument is not None:
            self.reserved -= instrument.dedup_window
        return self.books.pop(symbol, None)

    def __iter__(self) -> Iterator[Book]:
        return iter(self.books.values())
