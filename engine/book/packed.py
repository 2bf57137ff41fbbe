"""The snapshot's packed integer columns, read in place (docs/FORMATS.md: one byte, the
width 1, 2, 4 or 8, then little-endian signed values of that width).

Compiled with the book: a column of a million values is read without an array, and its
list holds one int object per run of equal values, not one per value (a level's orders
share their price). After a restart every int object and page of memory the load makes is
on the way back to matching (a million prices as separate objects: ~8,000 fresh pages).
"""

from typing import cast

from mypy_extensions import i64


def packed_count(packed: bytes) -> i64:
    """How many values `packed` holds; ValueError if it is not a packed column."""
    width: i64 = packed[0] if len(packed) else 0
    if width != 1 and width != 2 and width != 4 and width != 8:  # noqa: PLR1714
        raise ValueError(f"a packed column of width {width}")
    if (len(packed) - 1) % width:
        raise ValueError("a packed column is not a whole number of values")
    return (len(packed) - 1) // width


def packed_at(packed: bytes, k: i64) -> i64:
    """Value `k` of `packed` (a column `packed_count` accepted; k below its count)."""
    width: i64 = packed[0]
    at: i64 = 1 + k * width
    value: i64 = packed[at + width - 1]
    if value >= 128:  # the sign is the top byte's
        value -= 256
    for b in range(width - 2, -1, -1):
        value = (value << 8) | packed[at + b]
    return value


def unpack_ints(packed: bytes) -> list[int]:
    """Every value of `packed`, equal neighbours sharing one int object."""
    count = packed_count(packed)
    out: list[object] = []
    box: object = 0
    last: i64 = 0
    for k in range(count):
        value = packed_at(packed, k)
        if value != last or k == 0:
            box = value
            last = value
        out.append(box)
    return cast(list[int], out)


def pick(table: list[str], packed: bytes) -> list[str]:
    """`table[i]` for each value i of `packed` (IndexError: one past the table)."""
    count = packed_count(packed)
    return [table[packed_at(packed, k)] for k in range(count)]
