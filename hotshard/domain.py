"""The order vocabulary shared by every part: actions, sides, types, time in force, status.

Plain IntEnums whose numbers equal the enums of proto/hotshard/v1 (0 is "unspecified" there
and never a valid value here). The book stores the members themselves in its event tuples,
so codecs can print `.name` without a lookup.
"""

from enum import IntEnum


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


class Liquidity(IntEnum):
    MAKER = 1
    TAKER = 2
