"""Many books in one process, keyed by symbol."""

from collections.abc import Iterator, Mapping

from engine.book.book import Book
from engine.book.instrument import Instrument
from hotshard.commands import Command
from hotshard.events import Event, unsequenced_rejection
from hotshard.reasons import Reason


class Market:
    """The books of a process. With `open_listing` every symbol is accepted on first use
    with the default instrument (tick 1, lot 1, no band); otherwise only `instruments`."""

    def __init__(
        self, instruments: Mapping[str, Instrument] | None = None, *, open_listing: bool = False
    ) -> None:
        self.instruments = dict(instruments or {})
        self.open_listing = open_listing
        self.books: dict[str, Book] = {}

    def book(self, symbol: str) -> Book | None:
        """The symbol's book, created on first use; None if the symbol is not listed."""
        book = self.books.get(symbol)
        if book is not None:
            return book
        instrument = self.instruments.get(symbol)
        if instrument is None:
            if not self.open_listing or not symbol:
                return None
            instrument = Instrument(symbol)
        book = self.books[symbol] = Book(instrument)
        return book

    def apply(self, symbol: str, command: Command) -> list[Event]:
        """Apply a command to its symbol's book. An unlisted symbol gets a REJECTED event
        with seq 0: it belongs to no book's sequence."""
        book = self.book(symbol)
        if book is None:
            return [unsequenced_rejection(command[1], command[2], Reason.UNKNOWN_SYMBOL)]
        return book.apply(command)

    def add_book(self, book: Book) -> None:
        self.books[book.symbol] = book
        self.instruments[book.symbol] = book.instrument

    def remove_book(self, symbol: str) -> Book | None:
        self.instruments.pop(symbol, None)
        return self.books.pop(symbol, None)

    def __iter__(self) -> Iterator[Book]:
        return iter(self.books.values())
