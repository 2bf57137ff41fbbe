"""The order vocabulary shared by every part: actions, sides, types, time in force, status,
and what makes an id (symbol, order id, user id) acceptable.

Plain IntEnums whose numbers equal the enums of proto/hotshard/v1 (0 is "unspecified" there
and never a valid value here). The book's event tuples hold the plain numbers (cheaper to
build on the hot path); codecs turn them back into members to print `.name`.
"""

from enum import IntEnum

MAX_ID_LENGTH = 64
"""Symbols, order ids and user ids are 1 to MAX_ID_LENGTH characters of ID_CHARACTERS."""

ID_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@~-")
"""The safe set: ASCII letters, digits and `. _ : @ ~ -`. Each stands for itself in a URL
path segment, a query value and JSON, and has one Unicode form, so an id that is accepted
can always be fetched and cancelled by it (GET/DELETE /orders/{id})."""

MAX_QUANTITY = (1 << 31) - 1
"""The largest order quantity (lots) a book accepts by default (engine.book.instrument);
the router refuses above it too, so such an order never reaches Kafka."""

MAX_PRICE = (1 << 62) - 1
"""The largest price (ticks) a book's band may reach."""

MAX_TIMESTAMP_NS = (1 << 63) - 1
"""client_ts_ns is an int64 on the wire."""


def is_id(value: str) -> bool:
    """A usable symbol, order id or user id (MAX_ID_LENGTH characters of ID_CHARACTERS). On
    the engine's hot path: the caller checks that it is a str."""
    return 0 < len(value) <= MAX_ID_LENGTH and ID_CHARACTERS.issuperset(value)


class Action(IntEnum):
    ADD = 1
    CANCEL = 2
    REPLACE = 3


class Side(IntEnum):
    BUY = 1
    SELL = 2


class OrderType(IntEnum):
    LIMIT = 1
    MARKET = 2
    STOP = 3
    """A stop (stop-market): waits until the symbol's last trade price reaches its stop
    price (a buy at or above it, a sell at or below it), then trades as a MARKET order."""
    STOP_LIMIT = 4
    """As STOP, but once triggered it is a LIMIT order at its price."""


class TimeInForce(IntEnum):
    GTC = 1
    IOC = 2
    FOK = 3


class Status(IntEnum):
    ACCEPTED = 1
    REJECTED = 2
    PARTIALLY_FILLED = 3
    FILLED = 4
    CANCELLED = 5
    REPLACED = 6
    EXPIRED = 7
    TRIGGERED = 8
    """A pending stop's trigger price was reached: it now trades as a market or limit order."""


class Liquidity(IntEnum):
    MAKER = 1
    TAKER = 2
