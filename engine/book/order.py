"""An order the book knows: its identity, where it rests and how much is left.

A native class in the compiled build (fixed-width integer fields, no per-order dict or
boxed ints: ~100 bytes); a `__slots__` class in pure Python.
"""

from typing import final

from mypy_extensions import i64, mypyc_attr


@final
@mypyc_attr(acyclic=True)
class Special:
    """What only a stop, an iceberg or an all-or-none order has: `display` (an iceberg's
    visible size) and `peak` (what is left of its visible part while it rests), `aon`
    (trades only its whole leaves at once), `stop` (the trigger price of a pending STOP /
    STOP_LIMIT; 0 once triggered) with the `tif` it trades with then. Kept apart so that a
    plain order pays one pointer for them."""

    __slots__ = ("aon", "display", "peak", "stop", "tif")

    def __init__(self, display: i64, aon: bool, stop: i64, tif: i64) -> None:
        self.display = display
        self.aon = aon
        self.stop = stop
        self.tif = tif
        self.peak: i64 = 0


@final
@mypyc_attr(acyclic=True)  # only strs, ints and a Special: no cycles, so no GC header
class Order:
    """`leaves == 0` means the order is no longer on the book (filled, cancelled, expired
    or moved by a replace); it may still sit in a level's queue until matching skips it.

    `ext` is None for a plain order; a pending stop, a resting iceberg or all-or-none order
    has one (a triggered stop that is neither drops it). The read-only properties below
    give its fields, 0 / False for a plain order."""

    __slots__ = ("ext", "filled", "leaves", "order_id", "post_only", "price", "side", "user_id")

    def __init__(
        self,
        leaves: i64,
        filled: i64,
        order_id: str,
        user_id: str,
        side: i64,
        price: i64,
        post_only: bool,
    ) -> None:
        self.leaves = leaves
        self.filled = filled
        self.order_id = order_id
        self.user_id = user_id
        self.side = side
        self.price = price
        self.post_only = post_only
        self.ext: Special | None = None

    @property
    def display(self) -> i64:
        ext = self.ext
        return ext.display if ext is not None else 0

    @property
    def peak(self) -> i64:
        ext = self.ext
        return ext.peak if ext is not None else 0

    @property
    def aon(self) -> bool:
        ext = self.ext
        return ext.aon if ext is not None else False

    @property
    def stop(self) -> i64:
        ext = self.ext
        return ext.stop if ext is not None else 0

    @property
    def tif(self) -> i64:
        ext = self.ext
        return ext.tif if ext is not None else 0

    def __repr__(self) -> str:
        return (
            f"Order({self.order_id!r}, {self.user_id!r}, side={self.side}, "
            f"price={self.price}, leaves={self.leaves}, filled={self.filled})"
        )
