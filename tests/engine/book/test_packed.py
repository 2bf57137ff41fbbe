"""engine.book.packed reads the snapshot's packed integer columns in place, as the
array-based decode it replaced did (docs/FORMATS.md): every width, the sign, the runs."""

import re

import pytest

from engine.book.packed import packed_at, packed_count, pick, unpack_ints
from engine.book.snapshot import _pack_i64

COLUMNS = [
    [],
    [0, 0, 0],
    [1000, 1000, 1000, 999, 999, 5, -3, 127, -128],  # width 2 (1000), runs
    [1, -1, 0, 127, -128],  # width 1
    [2**31 - 1, -(2**31), 7],  # width 4 at both ends
    [2**62, -(2**63), 2**63 - 1, 0],  # width 8 at both ends
    list(range(-300, 300, 7)),
]


@pytest.mark.parametrize("values", COLUMNS)
def test_a_packed_column_unpacks_to_its_values(values):
    packed = _pack_i64(values)
    assert unpack_ints(packed) == values
    assert packed_count(packed) == len(values)
    assert [packed_at(packed, k) for k in range(len(values))] == values


def test_equal_neighbours_share_one_int_object():
    out = unpack_ints(_pack_i64([100_000] * 5 + [100_001] * 3))
    assert len({id(v) for v in out}) == 2


NOT_WHOLE = "a packed column is not a whole number of values"


@pytest.mark.parametrize(
    ("packed", "message"),
    [
        (b"", "a packed column of width 0"),
        (bytes((3, 0, 0, 0)), "a packed column of width 3"),
        (bytes((0,)), "a packed column of width 0"),
        (bytes((4, 1, 0, 0)), NOT_WHOLE),
        (bytes((2, 1, 0, 0)), NOT_WHOLE),
    ],
)
def test_what_is_not_a_packed_column_is_refused(packed, message):
    # the message is the CORRUPT_SNAPSHOT detail an operator reads (snapshot.load)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        unpack_ints(packed)


def test_pick_reads_a_table_by_packed_index():
    assert pick(["a", "b", "c"], _pack_i64([2, 0, 1, 1])) == ["c", "a", "b", "b"]
    with pytest.raises(IndexError):
        pick(["a"], _pack_i64([1]))
