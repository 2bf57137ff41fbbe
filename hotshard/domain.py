"""The order vocabulary shared by every part: actions, sides, types, time in force, status,
and what makes an id (symbol, order id, user id) acceptable.

Plain IntEnums whose numbers equal the enums of proto/hotshard/v1 (0 is "unspecified" there
and never a valid value here). The book's event tuples hold the plain numbers (cheaper to
build on the hot path); codecs turn them back into members to print `.name`.
"""

from enum import IntEnum

MAX_ID_LENGTH = 64
"""Symbols, order ids and user ids are 1 to MAX_ID_LENGTH printable characters."""


def is_id(value: str) -> bool:
    """A usable symbol, order id or user id (MAX_ID_LENGTH). On the engine's hot path: the
    caller checks that it is a str."""
    return 0 < len(value) <= MAX_ID_LENGTH and value.isprintable()


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
