"""An order the book knows: its identity, where it rests and how much is left.

A list, not an object: building a 7-slot list costs a quarter of a slots instance's
__init__, and the book builds one per accepted order. Fields by position:
"""

from typing import Any

LEAVES, FILLED_QTY, ORDER_ID, USER_ID, SIDE, PRICE, POST_ONLY = range(7)

Order = list[Any]
"""[leaves, filled, order_id, user_id, side, price, post_only]. `leaves == 0` means the
order has ended (filled, cancelled, expired); it may still sit in a level's queue until
matching skips it."""
