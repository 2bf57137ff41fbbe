"""A price level: the FIFO queue of orders resting at one price."""

from collections import deque

from engine.book.order import LEAVES, Order


class Level:
    """`total` and `count` cover live orders only. Cancelled orders stay in `orders` with
    leaves 0 until matching pops them or the queue is compacted, so cancel is O(1)."""

    __slots__ = ("count", "orders", "price", "total")

    def __init__(self, price: int) -> None:
        self.price = price
        self.total = 0
        self.count = 0
        self.orders: deque[Order] = deque()

    def compact(self) -> None:
        self.orders = deque(o for o in self.orders if o[LEAVES])
