"""Events the book emits: tuples of eight fields with a leading kind tag.

Each field's position is the contract (codecs in hotshard turn them into JSON/protobuf):

    STATUS: (STATUS, seq, order_id, user_id, status, reason, filled, leaves)
    FILL:   (FILL,   seq, order_id, user_id, price, quantity, liquidity, trade_id)
    TRADE:  (TRADE,  seq, maker_order_id, taker_order_id, price, quantity, taker_side, trade_id)

`seq` is the book's per-symbol sequence number: every event takes the next one, so a
consumer sees 1, 2, 3, ... with no gap. A trade's id is its own seq; its two fills follow it
and name it. Depth is state, not an event: a DepthUpdate carries the levels changed since
the last one and the seq it is consistent with, and takes no number of its own.
"""

from dataclasses import dataclass
from enum import IntEnum

from hotshard.domain import Status
from hotshard.reasons import Reason


class EventKind(IntEnum):
    STATUS = 1
    FILL = 2
    TRADE = 3


STATUS, FILL, TRADE = int(EventKind.STATUS), int(EventKind.FILL), int(EventKind.TRADE)

Event = tuple[int, int, str, str, int, int, int, int]

KIND, SEQ = 0, 1
# STATUS fields
ORDER_ID, USER_ID, STATUS_CODE, REASON, FILLED, LEAVES = 2, 3, 4, 5, 6, 7
# FILL fields (ORDER_ID, USER_ID as above)
PRICE, QUANTITY, LIQUIDITY, TRADE_ID = 4, 5, 6, 7
# TRADE fields (PRICE, QUANTITY, TRADE_ID as above)
MAKER_ORDER_ID, TAKER_ORDER_ID, TAKER_SIDE = 2, 3, 6

Level = tuple[int, int]
"""(price, total quantity); quantity 0 in a DepthUpdate means the level is gone."""


# Not frozen: the book makes one per symbol and consumed batch, and a frozen dataclass's
# __init__ sets each field through object.__setattr__ (~570 ns here against ~150).
@dataclass(slots=True)
class DepthUpdate:
    seq: int
    bids: list[Level]
    asks: list[Level]
    snapshot: bool = False
    """False: the levels changed (0 = gone), to merge. True: the whole top N of each side,
    to replace what a reader holds (the engine publishes one per symbol periodically, so a
    reader that starts late or lost updates converges)."""


def unsequenced_rejection(order_id: str, user_id: str, reason: Reason) -> Event:
    """REJECTED outside any book's sequence (seq 0): for input whose symbol is not listed
    or cannot be read, so no book can number it."""
    return (STATUS, 0, order_id, user_id, int(Status.REJECTED), int(reason), 0, 0)
