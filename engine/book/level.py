"""A price level: the FIFO queue of orders resting at one price."""

from collections import deque

from engine.book.order import LEAVES, Order


class Level:
    """`total` is the live quantity: a level exists while it is > 0. A cancelled order stays
    in `orders` with leaves 0 (counted in `dead`) until matching pops it or the queue is
    compacted, so cancel is O(1)."""

    __slots__ = ("dead", "orders", "price", "total")

    def __init__(self, price: int) -> None:
        self.price = price
        self.total = 0
        self.dead = 0
        self.orders: deque[Order] = deque()

    def live(self) -> int:
        return len(self.orders) - self.dead

    def compact(self) -> None:
        self.orders = deque(o for o in self.orders if o[LEAVES])
        self.dead = 0
