"""The pure, deterministic order book: commands in, events out, no I/O and no clock."""

from engine.book import book as _book
from engine.book.book import Book
from engine.book.instrument import Instrument
from engine.book.market import DedupBudget, DedupBudgetError, Market
from hotshard.commands import Command, add, cancel, replace
from hotshard.events import DepthUpdate, Event, EventKind

BUILD = "python" if _book.__file__.endswith(".py") else "native"
"""Which build of the book this process runs: the compiled one or the pure-Python source
(engine.native says how it is chosen)."""

__all__ = [
    "BUILD",
    "Book",
    "Command",
    "DedupBudget",
    "DedupBudgetError",
    "DepthUpdate",
    "Event",
    "EventKind",
    "Instrument",
    "Market",
    "add",
    "cancel",
    "replace",
]
