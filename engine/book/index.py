"""Orders by (user_id, order_id): one dict by order_id, and a small one for clashes.

Order ids are the clients' and unique per user, so almost every id is held by one user:
`by_id` maps it to that user's order; when another user's order has the same id, that one
goes to `clashes` by (user_id, order_id).

A book restored from a snapshot that carries its orders' rank by id (format version 3)
need not index a million orders before it matches again (`defer`): until `build` has
indexed them all, a slice at a time (the engine's loop, between batches), every use of an
id first indexes the restored orders holding it (found by bisection in the rank: `_fault`),
so each answer is the one the fully built index would give, whenever the slices run.
"""

from typing import cast, final

from mypy_extensions import i64

from engine.book.order import Order
from engine.book.packed import packed_at


def _hashed_dict() -> dict[str, Order]:
    """An empty dict whose table keeps each key's hash beside it. CPython gives a dict of
    only exact-str keys a compact table without the hashes, so every probe reads the key
    string itself: in an index of a million order ids that is one more cache miss per
    probe (~25% of an insert, measured). One other key, added and removed, switches the
    table to the general layout for good; the dict then holds only str keys again."""
    table: dict[object, Order] = {0: Order(0, 0, "", "", 0, 0, False)}
    del table[0]
    return cast(dict[str, Order], table)


@final
class OrderIndex:
    __slots__ = ("_built", "_faulted", "_ids", "_orders", "_rank", "by_id", "clashes")

    def __init__(self) -> None:
        self.by_id: dict[str, Order] = _hashed_dict()
        self.clashes: dict[tuple[str, str], Order] = {}
        # Restored orders not all indexed yet (see the module docstring): `_orders[:_built]`
        # are indexed, and so are the later ones whose id is in `_faulted`. `_ids[i]` is
        # `_orders[i].order_id`; `_rank` their positions sorted by id (ties by position),
        # packed as a snapshot's integers (engine.book.packed).
        self._orders: list[Order] = []
        self._ids: list[str] = []
        self._rank: bytes = b""
        self._built: i64 = 0
        self._faulted: set[str] = set()

    def __len__(self) -> int:
        self.build(len(self._orders))
        return len(self.by_id) + len(self.clashes)

    def defer(self, orders: list[Order], ids: list[str], rank: bytes) -> None:
        """Hold restored `orders` to index later (the index was empty). The caller has
        checked that `ids` are theirs and `rank` orders them by id, ties by position, and
        that no user holds an id twice among them."""
        self._orders = orders
        self._ids = ids
        self._rank = rank
        self._built = 0
        self._faulted = set()

    def unindexed(self) -> i64:
        """How many restored orders `build` has yet to pass (0: all indexed)."""
        return len(self._orders) - self._built

    def build(self, limit: i64) -> bool:
        """Index up to `limit` more restored orders; True while some are left."""
        orders = self._orders
        count: i64 = len(orders)
        if not count:
            return False
        end: i64 = min(count, self._built + limit)
        faulted = self._faulted
        for i in range(self._built, end):
            order = orders[i]
            if faulted and order.order_id in faulted:
                continue  # indexed when its id was first used
            self._put(order)
        self._built = end
        if end < count:
            return True
        self._orders = []
        self._ids = []
        self._rank = b""
        self._built = 0
        self._faulted = set()
        return False

    def _fault(self, order_id: str) -> None:
        """Index now the restored orders not built yet that hold `order_id` (in position
        order, as a full build would have), once."""
        if order_id in self._faulted:
            return
        ids = self._ids
        rank = self._rank
        count: i64 = len(ids)
        lo: i64 = 0
        hi: i64 = count
        while lo < hi:
            mid = (lo + hi) >> 1
            if ids[packed_at(rank, mid)] < order_id:
                lo = mid + 1
            else:
                hi = mid
        built = self._built
        found = False
        while lo < count:
            position = packed_at(rank, lo)
            if ids[position] != order_id:
                break
            if position >= built:
                self._put(self._orders[position])
                found = True
            lo += 1
        if found:
            self._faulted.add(order_id)

    def get(self, order_id: str, user_id: str) -> Order | None:
        if self._orders:
            self._fault(order_id)
        order = self.by_id.get(order_id)
        if order is not None and order.user_id == user_id:
            return order
        if self.clashes:
            return self.clashes.get((user_id, order_id))
        return None

    def insert(self, order: Order) -> bool:
        """Index `order`; False (and nothing changes) if its (user_id, order_id) is already
        here. One hash lookup both checks and inserts."""
        if self._orders:
            self._fault(order.order_id)
        return self._put(order)

    def _put(self, order: Order) -> bool:
        known = self.by_id.setdefault(order.order_id, order)
        if known is order:
            if self.clashes and (order.user_id, order.order_id) in self.clashes:
                # the id's former holder is gone but this user's clash remains
                del self.by_id[order.order_id]
                return False
            return True
        if known.user_id == order.user_id:
            return False
        return self.clashes.setdefault((order.user_id, order.order_id), order) is order

    def remove(self, order: Order) -> None:
        """Drop `order`, which is here."""
        if self._orders:
            self._fault(order.order_id)
        by_id = self.by_id
        known = by_id.pop(order.order_id, None)
        if known is not order:  # `order` is a clash: put the holder of the id back
            if known is not None:
                by_id[order.order_id] = known
            del self.clashes[(order.user_id, order.order_id)]

    def swap(self, old: Order, new: Order) -> None:
        """Put `new` where `old` is (same user and id)."""
        if self._orders:
            self._fault(old.order_id)
        if self.by_id.get(old.order_id) is old:
            self.by_id[old.order_id] = new
        else:
            self.clashes[(old.user_id, old.order_id)] = new
