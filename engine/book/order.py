"""An order the book knows: its identity, where it rests and how much is left.

A native class in the compiled build (fixed-width integer fields, no per-order dict or
boxed ints: ~100 bytes); a `__slots__` class in pure Python.
"""

from typing import final

from mypy_extensions import i64, mypyc_attr


@final
@mypyc_attr(acyclic=True)  # only strs and ints: no cycles, so no GC header or GC traversal
class Order:
    """`leaves == 0` means the order is no longer on the book (filled, cancelled, expired
    or moved by a replace); it may still sit in a level's queue until matching skips it.

    The special types use four more fields, all 0 / False on a plain order: `display` (an
    iceberg's visible size) and `peak` (what is left of its visible part while it rests),
    `aon` (all-or-none: trades only its whole leaves at once), `stop` (the trigger price
    of a pending STOP / STOP_LIMIT; 0 once triggered) with the `tif` it trades with then."""

    __slots__ = (
        "aon",
        "display",
        "filled",
        "leaves",
        "order_id",
        "peak",
        "post_only",
        "price",
        "side",
        "stop",
        "tif",
        "user_id",
    )

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
        self.aon = False
        self.display: i64 = 0
        self.peak: i64 = 0
        self.stop: i64 = 0
        self.tif: i64 = 0

    def __repr__(self) -> str:
        return (
            f"Order({self.order_id!r}, {self.user_id!r}, side={self.side}, "
            f"price={self.price}, leaves={self.leaves}, filled={self.filled})"
        )
