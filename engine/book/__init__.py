"""The pure, deterministic order book: commands in, events out, no I/O and no clock."""

from engine.book.book import Book
from engine.book.instrument import Instrument
from engine.book.market import Market
from hotshard.commands import Command, add, cancel, replace
from hotshard.events import DepthUpdate, Event, EventKind

__all__ = [
    "Book",
    "Command",
    "DepthUpdate",
    "Event",
    "EventKind",
    "Instrument",
    "Market",
    "add",
    "cancel",
    "replace",
]
