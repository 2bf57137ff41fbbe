"""A price level: the FIFO queue of orders resting at one price on one side."""

from typing import final

from mypy_extensions import i64

from engine.book.order import Order

# A queue whose consumed head or dead entries pass half its length (plus this slack) is
# compacted: memory stays bounded while popping and cancelling stay amortised O(1).
COMPACT_SLACK: i64 = 32


@final
class Level:
    """`orders[head:]` is the queue, oldest first. `total` is the live quantity: a level
    exists while it is > 0. A cancelled order stays queued with leaves 0 (counted in
    `dead`) until matching skips it or the queue is compacted, so cancel is O(1); matching
    consumes from `head` instead of shifting the list. `dirty` marks a level changed since
    the book's last depth update.

    `hidden` is the part of `total` depth does not show (icebergs' quantity beyond their
    visible peak, all-or-none orders' whole leaves) and `special` counts the live iceberg
    and all-or-none orders queued: while it is 0, matching takes the plain fast loop."""

    __slots__ = ("dead", "dirty", "head", "hidden", "orders", "price", "side", "special", "total")

    def __init__(self, price: i64, side: i64) -> None:
        self.price = price
        self.side = side
        self.total: i64 = 0
        self.dead: i64 = 0
        self.hidden: i64 = 0
        self.special: i64 = 0
        self.head: i64 = 0
        self.dirty = False
        self.orders: list[Order] = []

    def live(self) -> i64:
        return len(self.orders) - self.head - self.dead

    def live_orders(self) -> list[Order]:
        orders = self.orders
        return [orders[i] for i in range(self.head, len(orders)) if orders[i].leaves]

    def compact(self) -> None:
        self.orders = self.live_orders()
        self.head = 0
        self.dead = 0

    def drop_head(self) -> None:
        """Forget the consumed head once it is most of the list."""
        head = self.head
        if head > COMPACT_SLACK and head + head > len(self.orders):
            del self.orders[:head]
            self.head = 0
