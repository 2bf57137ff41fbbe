"""A book restored from a version 3 snapshot matches before its order index is built
(engine.book.index `defer` / `build`): whenever the slices run, every answer is the one of
the same book indexed at load. Before: `snapshot.load` indexed every order first (~0.3 s
of CPU for a million, on the restart's critical path)."""

import zlib
from collections.abc import Callable

import pytest

from engine.book import Book, Command, Instrument, add, cancel, snapshot
from engine.book.snapshot import SnapshotError
from hotshard.domain import Side
from hotshard.reasons import Reason
from hotshard.v1 import snapshot_pb2
from tests.builders import big_book
from tests.engine.book.digest import streams

STREAMS = ["mixed", "mixed-stp", "special", "special-stp", "short-hot"]
AFTER = 6_000
"""Commands applied after the restore (the streams' second halves, cut)."""


def halves(name: str) -> tuple[Book, list[Command]]:
    instrument, commands = streams()[name]
    book = Book(instrument)
    cut = len(commands) // 2
    book.apply_all(commands[:cut])
    return book, commands[cut : cut + AFTER]


@pytest.mark.parametrize("name", STREAMS)
@pytest.mark.parametrize("every", [0, 1, 7])
def test_a_book_restored_before_its_index_is_built_answers_as_if_it_were(name, every):
    """`every`: index a slice of 3 orders every `every` commands (0: never)."""
    book, rest = halves(name)
    data = snapshot.dump(book, input_offset=7)
    eager, _ = snapshot.load(data, index_later=False)
    lazy, _ = snapshot.load(data)
    assert eager.unindexed() == 0
    assert lazy.unindexed() == len(book.order_columns()[0]) > 0
    for i, command in enumerate(rest):
        assert lazy.apply(command) == eager.apply(command), (i, command)
        if every and i % every == 0:
            lazy.build_index(3)
        if i % 1500 == 0:
            assert lazy.depth_update() == eager.depth_update()
            assert snapshot.dump(lazy) == snapshot.dump(eager)
    assert snapshot.dump(lazy) == snapshot.dump(eager)
    assert (lazy.depth(1000), lazy.resting(), lazy.seq) == (
        eager.depth(1000),
        eager.resting(),
        eager.seq,
    )


def test_building_the_whole_index_leaves_nothing_unindexed_and_the_same_book():
    book = big_book("A", 5_000)
    lazy, _ = snapshot.load(snapshot.dump(book))
    assert lazy.unindexed() == 5_000
    slices = 0
    while lazy.build_index(1_000):
        slices += 1
    assert (slices, lazy.unindexed()) == (4, 0)
    assert not lazy.build_index(1_000)
    assert snapshot.dump(lazy) == snapshot.dump(book)


def corrupt(data: bytes, change: Callable[[snapshot_pb2.BookState], None]) -> bytes:
    """The snapshot with its state changed by `change` (checksum recomputed: a wrong
    writer, not an accident)."""
    envelope = snapshot_pb2.Snapshot.FromString(data)
    state = snapshot_pb2.BookState.FromString(envelope.state)
    change(state)
    envelope.state = state.SerializeToString()
    envelope.crc32 = zlib.crc32(envelope.state)
    return envelope.SerializeToString()


def packed(values: list[int], width: int = 4) -> bytes:
    """`values` packed as the snapshot's integers in `width` bytes each (a value too big
    for it keeps its low bytes: what a wrong writer could do)."""
    return bytes((width,)) + b"".join(
        (v % (1 << (8 * width))).to_bytes(width, "little") for v in values
    )


def ranks(state: snapshot_pb2.BookState) -> list[int]:
    raw = state.order_rank_le
    width = raw[0]
    return [
        int.from_bytes(raw[1 + i : 1 + i + width], "little", signed=True)
        for i in range(0, len(raw) - 1, width)
    ]


@pytest.mark.parametrize(
    ("why", "detail"),
    [
        ("swapped", "rank 4 is out of order"),
        ("repeated", "rank 6 is out of order"),
        ("short", "49 ranks for 50 orders"),
        ("past the end", "rank 0 is not a position of an order"),
    ],
)
def test_a_rank_that_is_not_the_orders_by_id_is_refused_at_load(why, detail):
    data = snapshot.dump(big_book("A", 50))

    def change(state: snapshot_pb2.BookState) -> None:
        rank = ranks(state)
        if why == "swapped":
            rank[3], rank[4] = rank[4], rank[3]
        elif why == "repeated":
            rank[5] = rank[6]
        elif why == "short":
            rank.pop()
        else:
            rank[0] = len(rank)
        state.order_rank_le = packed(rank)

    with pytest.raises(SnapshotError) as caught:
        snapshot.load(corrupt(data, change))
    assert (caught.value.reason, caught.value.detail) == (Reason.CORRUPT_SNAPSHOT, detail)
    snapshot.load(corrupt(data, change), index_later=False)  # the rank is not read then


def test_orders_with_empty_ids_restore_before_their_index_is_built():
    """The book takes any id (the engine's decoders refuse an empty one, the book does
    not), so its rank check must: an empty id sorts first, at rank 0."""
    book = Book(Instrument("A"))
    book.apply_all(
        [
            add("", "u1", Side.BUY, 100, 5),
            add("x", "u2", Side.BUY, 99, 5),
            add("", "u2", Side.BUY, 98, 5),
        ]
    )
    lazy, _ = snapshot.load(snapshot.dump(book))
    assert lazy.unindexed() == 3
    assert lazy.apply(cancel("", "u2")) == book.apply(cancel("", "u2"))
    assert snapshot.dump(lazy) == snapshot.dump(book)


@pytest.mark.parametrize("width", [2, 4, 8])
def test_a_rank_packed_wider_than_it_needs_restores_the_same_book(width):
    """The rank is read in place from its packed bytes (engine.book.packed): any
    width the snapshot's integers use, the sign in the top byte."""
    book = big_book("A", 300)  # positions up to 299: 2 bytes would do
    wide = corrupt(
        snapshot.dump(book),
        lambda state: setattr(state, "order_rank_le", packed(ranks(state), width)),
    )
    lazy, _ = snapshot.load(wide)
    eager, _ = snapshot.load(wide, index_later=False)
    assert lazy.unindexed() == 300
    for i in range(0, 300, 7):  # each cancel finds its order by bisection in the rank
        command = cancel(f"r{i}", f"u{i % 7}")
        assert lazy.apply(command) == eager.apply(command)
    assert snapshot.dump(lazy) == snapshot.dump(eager)


@pytest.mark.parametrize("width", [1, 3])
def test_a_rank_whose_positions_do_not_fit_its_width_is_refused(width):
    """Width 1: positions 128-299 wrap to negative values; width 3: not a width the
    snapshot's integers use."""
    book = big_book("A", 300)
    bad = corrupt(
        snapshot.dump(book),
        lambda state: setattr(state, "order_rank_le", packed(ranks(state), width)),
    )
    with pytest.raises(SnapshotError) as caught:
        snapshot.load(bad)
    assert caught.value.reason == Reason.CORRUPT_SNAPSHOT


def test_one_user_holding_an_id_twice_is_refused_with_a_rank_as_without():
    book = big_book("A", 50)
    data = snapshot.dump(book)

    def twice(state: snapshot_pb2.BookState) -> None:
        ids = state.order_ids_nul.decode().split("\0")
        assert state.user_index_le[0] == 1  # 7 users: one byte each
        users = list(state.user_index_le[1:])
        same = next(j for j in range(1, len(users)) if users[j] == users[0])
        ids[same] = ids[0]
        state.order_ids_nul = "\0".join(ids).encode()
        state.order_rank_le = packed(sorted(range(len(ids)), key=ids.__getitem__))

    bad = corrupt(data, twice)
    for later in (True, False):
        with pytest.raises(SnapshotError, match="twice"):
            snapshot.load(bad, index_later=later)


def test_a_version_2_snapshot_has_no_rank_and_is_indexed_at_load():
    book = big_book("A", 100)

    def as_version_2(state: snapshot_pb2.BookState) -> None:
        state.ClearField("order_rank_le")

    envelope = snapshot_pb2.Snapshot.FromString(corrupt(snapshot.dump(book), as_version_2))
    envelope.format_version = 2
    restored, _ = snapshot.load(envelope.SerializeToString())
    assert restored.unindexed() == 0
    assert snapshot.dump(restored) == snapshot.dump(book)


def test_orders_restored_with_a_rank_into_a_book_that_has_some_are_refused():
    """A rank restore only fills an empty book: one whose orders are not indexed yet (an
    earlier rank restore) or indexed (an ADD) refuses it by name (mutants `restore_orders`
    4-7: the guard's `or` as `and`, its message changed)."""
    columns = ([int(Side.BUY)], [100], [5], [0], [False], ["a"], ["u"])
    unindexed = Book(Instrument("A"))
    unindexed.restore_orders(columns, rank=packed([0]))
    assert unindexed.unindexed() == 1
    added = Book(Instrument("A"))
    added.apply(add("b", "u", Side.BUY, 99, 5))
    assert added.unindexed() == 0
    for book in (unindexed, added):
        with pytest.raises(ValueError, match=r"^orders restored into a book that has some$"):
            book.restore_orders(columns, rank=packed([0]))
