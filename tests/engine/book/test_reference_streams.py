"""The book against the naive reference on fixed command streams: the properties'
comparison (test_properties) on a few hundred seeded streams, so every run checks the same
mixes of icebergs, all-or-none orders, stops, self-trade prevention and bands in about a
second (mutation testing runs these, not the hypothesis properties; docs/MUTATION.md)."""

import random

import pytest

from engine.book import Book, Instrument, snapshot
from hotshard.commands import Command
from tests.reference.naive_book import NaiveBook

SEEDS = 10
USERS = ["alice", "bob", "carol"]
INSTRUMENTS = [
    Instrument("P"),
    Instrument("P", self_trade_prevention=True, dedup_window=20),
    Instrument("P", tick=2, lot=5, price_min=92, price_max=108, dedup_window=3),
    Instrument("P", self_trade_prevention=True, max_quantity=20, dedup_window=0),
]
NAMES = ["plain", "stp-window20", "tick2-lot5-band-window3", "stp-max20-no-window"]


def valid_add(rng: random.Random, ids: int) -> Command:
    kind = rng.choice(["limit"] * 4 + ["market", "iceberg", "aon", "stop", "stop_limit"])
    otype = {"market": 2, "stop": 3, "stop_limit": 4}.get(kind, 1)
    resting_kind = kind in ("iceberg", "aon")
    tif = 1 if resting_kind else rng.choice([1, 1, 1, 2, 3])
    qty = rng.choice([5, 10, 15, 20, 30])
    return (
        1,
        str(rng.randrange(ids)),
        rng.choice(USERS),
        rng.choice([1, 2]),
        otype,
        tif,
        otype == 1 and rng.random() < 0.2,
        rng.randint(96, 104),
        qty,
        rng.randint(96, 104) if otype in (3, 4) else 0,
        rng.choice([5, 10, qty]) if kind == "iceberg" else 0,
        kind == "aon" or (otype == 4 and tif == 1 and rng.random() < 0.5),
    )


def amend(rng: random.Random, ids: int) -> Command:
    return (
        rng.choice([2, 3, 3]),
        str(rng.randrange(ids)),
        rng.choice(USERS),
        0,
        0,
        0,
        False,
        rng.randint(96, 104),
        rng.choice([5, 10, 20, 30, 0, 3]),
        0,
        0,
        False,
    )


def invalid_add(rng: random.Random, ids: int) -> Command:
    return (
        rng.choice([1, 1, 9]),
        str(rng.randrange(ids)),
        rng.choice(USERS),
        rng.choice([0, 1, 2, 3]),
        rng.choice([0, 1, 2, 3, 4, 7]),
        rng.choice([0, 1, 2, 3, 4]),
        rng.random() < 0.5,
        rng.randint(-2, 200),
        rng.choice([0, -5, 7, 1, 5, 25]),
        rng.choice([0, 0, 100, -1, 7, 98]),
        rng.choice([0, 0, 5, -5, 3, 50]),
        rng.random() < 0.5,
    )


def check_levels(book: Book) -> None:
    """Each level's counters agree with its live orders: live count (Book.resting), total,
    hidden (an iceberg's leaves beyond its peak, an all-or-none order's leaves) and the
    number of icebergs and all-or-none orders (what makes a snapshot carry their columns)."""
    for levels in (book.bids, book.asks):
        for level in levels.values():
            live = level.live_orders()
            special = hidden = 0
            for o in live:
                ext = o.ext
                if ext is not None and (ext.display or ext.aon):
                    special += 1
                    hidden += o.leaves - ext.peak if ext.display else o.leaves
            counters = (level.live(), level.total, level.hidden, level.special)
            assert counters == (len(live), sum(o.leaves for o in live), hidden, special)


def stream(seed: int, length: int = 100) -> list[Command]:
    rng = random.Random(seed)
    ids = rng.choice([12, 60])  # few ids: amends find their orders; many: fresh orders
    makers = [valid_add] * 6 + [amend, amend, invalid_add]
    return [rng.choice(makers)(rng, ids) for _ in range(length)]


@pytest.mark.parametrize("instrument", INSTRUMENTS, ids=NAMES)
def test_fixed_streams_match_the_naive_reference_event_for_event(instrument):
    for seed in range(SEEDS):
        fast, naive = Book(instrument), NaiveBook(instrument)
        for i, command in enumerate(stream(seed)):
            assert fast.apply(command) == naive.apply(command), (seed, i, command)
            assert fast.depth(20) == naive.depth(20), (seed, i, command)
            check_levels(fast)
        assert fast.stops == len(naive.pending)
        assert fast.resting() == len(naive.resting)


@pytest.mark.parametrize("instrument", INSTRUMENTS[:3], ids=NAMES[:3])
def test_fixed_streams_continue_identically_from_a_snapshot_at_any_cut(instrument):
    for seed in range(15):
        commands = stream(1000 + seed, 80)
        cut = seed * 5
        original = Book(instrument)
        for command in commands[:cut]:
            original.apply(command)
        restored, info = snapshot.load(snapshot.dump(original, input_offset=cut))
        assert info.seq == original.seq
        rest = commands[cut:]
        assert [restored.apply(c) for c in rest] == [original.apply(c) for c in rest]
        assert restored.depth(50) == original.depth(50)
        ended = [(o.user_id, o.order_id, o.filled) for o in original.ended_orders()]
        assert [(o.user_id, o.order_id, o.filled) for o in restored.ended_orders()] == ended
