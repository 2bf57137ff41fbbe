"""The ring of remembered ended orders (engine.book.ended) against a plain list of the last
`window` ended orders: what it finds, what it lists, through every wrap of its arena, its
table's growth and deletions."""

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.book.ended import EndedOrders, id_hash

# ids of every length the book accepts: empty, one character, long, non-ASCII
IDS = st.text(alphabet="ab1é\u4e2d\U0001f600", min_size=0, max_size=70)
USERS = st.sampled_from(["", "u", "alice", "\u4e2d" * 40])


def reference_find(held: list[tuple[str, str, int]], order_id: str, user_id: str) -> int:
    return next((i for i, (o, u, _) in enumerate(held) if o == order_id and u == user_id), -1)


@settings(max_examples=300, deadline=None)
@given(
    window=st.sampled_from([1, 2, 3, 7, 40]),
    steps=st.lists(st.tuples(IDS, USERS, st.integers(0, 1 << 40)), max_size=300),
)
def test_it_remembers_exactly_the_last_window_of_ended_orders(
    window: int, steps: list[tuple[str, str, int]]
) -> None:
    check_against_the_reference(window, steps)


def check_against_the_reference(window: int, steps: list[tuple[str, str, int]]) -> None:
    ended = EndedOrders(window)
    held: list[tuple[str, str, int]] = []  # oldest first
    for order_id, user_id, filled in steps:
        at = reference_find(held, order_id, user_id)
        slot = ended.find(order_id, user_id)
        assert (slot >= 0) == (at >= 0)
        if at >= 0:
            assert ended.filled[slot] == held[at][2]
            continue  # the book never ends an order whose id it still remembers
        ended.add(order_id, user_id, filled)
        held = [*held, (order_id, user_id, filled)][-window:]
        order_ids, user_ids, filled_column = ended.columns()
        assert list(zip(order_ids, user_ids, filled_column, strict=True)) == held
        assert ended.count() == len(held)
    for order_id, user_id, filled in held:
        assert ended.filled[ended.find(order_id, user_id)] == filled


def test_ids_that_differ_only_by_user_or_length_are_told_apart() -> None:
    ended = EndedOrders(10)
    ended.add("7", "u1", 3)
    assert ended.find("7", "u2") == -1
    assert ended.find("7", "u") == -1
    assert ended.find("71", "u1") == -1
    assert ended.find("7", "u1") >= 0


def test_a_window_of_0_remembers_nothing() -> None:
    ended = EndedOrders(0)
    ended.add("a", "u", 1)
    assert ended.count() == 0
    assert ended.find("a", "u") == -1


def test_many_orders_through_a_large_window() -> None:
    ended = EndedOrders(5000)
    for i in range(20_000):
        ended.add(str(i), f"u{i % 7}", i)
    assert ended.count() == 5000
    assert ended.find("14999", "u5") == -1  # forgotten
    assert ended.filled[ended.find("15000", f"u{15000 % 7}")] == 15000
    assert ended.columns()[0] == [str(i) for i in range(15_000, 20_000)]


def seeded_steps(seed: int, count: int) -> list[tuple[str, str, int]]:
    """`count` ended orders of a seeded stream: ids of the alphabet above, from a small
    pool (so ids come back: found, or forgotten and ended again) or new and long (the
    arena wraps and grows), users as above."""
    rng = random.Random(seed)
    alphabet = "ab1\u00e9\u4e2d\U0001f600"
    users = ["", "u", "alice", "\u4e2d" * 40]
    pool = ["".join(rng.choices(alphabet, k=rng.randrange(0, 4))) for _ in range(12)]
    steps = []
    for _ in range(count):
        if rng.random() < 0.4:
            order_id = rng.choice(pool)
        else:
            order_id = "".join(rng.choices(alphabet, k=rng.choice((1, 5, 20, 70))))
        steps.append((order_id, rng.choice(users), rng.randrange(1 << 40)))
    return steps


@pytest.mark.parametrize("window", [1, 2, 3, 7, 40, 100])
def test_it_remembers_the_last_window_on_seeded_streams(window: int) -> None:
    # the property above on fixed streams, in ~1 s: what `make mutate` runs against the
    # ring's mutants (the hypothesis property took ~65 s a mutant there, docs/MUTATION.md)
    for seed in range(4):
        check_against_the_reference(window, seeded_steps(seed * 10 + window, 400))


def colliding_ids(length: int) -> tuple[str, str]:
    """Two ids of `length` digits whose 32-bit hashes (this process's seed) are equal: a
    birthday search, ~80,000 ids on average."""
    seen: dict[int, str] = {}
    for n in itertools.count():
        order_id = str(n).zfill(length)
        h = id_hash(order_id)
        if h in seen:
            return seen[h], order_id
        seen[h] = order_id
    raise AssertionError("unreachable")


def test_ids_whose_hashes_collide_are_told_apart() -> None:
    # _holds compares the ids only when the 32-bit hashes agree: mutant
    # EndedOrders._holds 15 (an order id's character that differs -> True) took the
    # second id of a colliding pair for the first
    first, second = colliding_ids(12)
    ended = EndedOrders(4)
    ended.add(first, "u", 3)
    assert ended.find(second, "u") == -1
    ended.add(second, "u", 4)
    assert ended.filled[ended.find(first, "u")] == 3
    assert ended.filled[ended.find(second, "u")] == 4


def test_an_order_with_empty_ids_ended_first() -> None:
    # mutant __init__ 21 (`head = None`): the first ended order, if its ids take no code
    # points, is written where `head` says before the arena ever grew
    ended = EndedOrders(2)
    ended.add("", "", 1)
    ended.add("a", "u", 2)
    assert ended.columns() == (["", "a"], ["", "u"], [1, 2])
    assert ended.filled[ended.find("", "")] == 1


def test_ids_that_fill_the_arena_exactly_when_nothing_is_held() -> None:
    # mutant _space 6: with nothing held (the one held order's ids are empty) ids as long
    # as the arena went at 1, not 0, and past its end
    ended = EndedOrders(1)
    ended.add("a", "u", 1)  # the arena's first size: 256 code points
    ended.add("", "", 2)
    ended.add("o" * 128, "u" * 128, 3)
    assert ended.columns() == (["o" * 128], ["u" * 128], [3])


def test_ids_that_end_where_the_oldest_held_ids_start() -> None:
    """The arena of 256 code points: A at 0-99, B (empty ids) at 100, C at 100-199; D
    (100, forgetting A) fits only at 0 and ends where B and C start; E (forgetting B)
    finds `head` at the oldest held slot's start with every code point between held."""
    # mutant _space 12 (the wrap writes at 1, not 0: D's last code point over C's
    # first) and _space 8 (`head >= tail`: E written at head, over C)
    ended = EndedOrders(3)
    steps = [
        ("a" * 50, "A" * 50, 1),
        ("", "", 2),
        ("c" * 50, "C" * 50, 3),
        ("d" * 50, "D" * 50, 4),
        ("e" * 5, "E" * 5, 5),
    ]
    held: list[tuple[str, str, int]] = []
    for order_id, user_id, filled in steps:
        ended.add(order_id, user_id, filled)
        held = [*held, (order_id, user_id, filled)][-3:]
        assert list(zip(*ended.columns(), strict=True)) == held
        for o, u, f in held:
            assert ended.filled[ended.find(o, u)] == f


def test_the_arena_stays_within_what_the_window_holds() -> None:
    # mutants add 47, 48, 50 (what a forgotten order's ids free miscounted: `used -=` ->
    # `+=`, the two lengths subtracted, `>> 33`): `used` only grows, and the next growth of
    # the arena (longer ids) sized it from every order ever ended, not the window's
    window = 10
    ended = EndedOrders(window)
    for n in range(20_000):
        ended.add(str(n % 10), "u", n)  # 2 code points each
        ended.find(str(n % 10), "u")
    for n in range(window):
        ended.add(f"{n:064d}", "u" * 64, n)  # 128 each: the arena must grow
    # a growth takes the smallest power of two >= twice the held code points and need
    assert len(ended.arena) <= max(256, 4 * window * 128)
    assert ended.columns()[0] == [f"{n:064d}" for n in range(window)]
