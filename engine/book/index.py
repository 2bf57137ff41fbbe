"""Orders by (user_id, order_id): one dict by order_id, and a small one for clashes.

Order ids are the clients' and unique per user, so almost every id is held by one user:
`by_id` maps it to that user's order; when another user's order has the same id, that one
goes to `clashes` by (user_id, order_id).
"""

from typing import cast, final

from engine.book.order import Order


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
    __slots__ = ("by_id", "clashes")

    def __init__(self) -> None:
        self.by_id: dict[str, Order] = _hashed_dict()
        self.clashes: dict[tuple[str, str], Order] = {}

    def __len__(self) -> int:
        return len(self.by_id) + len(self.clashes)

    def get(self, order_id: str, user_id: str) -> Order | None:
        order = self.by_id.get(order_id)
        if order is not None and order.user_id == user_id:
            return order
        if self.clashes:
            return self.clashes.get((user_id, order_id))
        return None

    def insert(self, order: Order) -> bool:
        """Index `order`; False (and nothing changes) if its (user_id, order_id) is already
        here. One hash lookup both checks and inserts."""
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
        by_id = self.by_id
        known = by_id.pop(order.order_id, None)
        if known is not order:  # `order` is a clash: put the holder of the id back
            if known is not None:
                by_id[order.order_id] = known
            del self.clashes[(order.user_id, order.order_id)]

    def swap(self, old: Order, new: Order) -> None:
        """Put `new` where `old` is (same user and id)."""
        if self.by_id.get(old.order_id) is old:
            self.by_id[old.order_id] = new
        else:
            self.clashes[(old.user_id, old.order_id)] = new
