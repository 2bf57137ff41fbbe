"""Properties over random command streams (hypothesis), against the naive reference."""

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.book import Book, Instrument, snapshot
from hotshard.codec import dumps, event_json
from hotshard.commands import Command
from hotshard.domain import Side
from hotshard.events import FILL, STATUS, TRADE, Event
from hotshard.reasons import Reason
from tests.reference.naive_book import NaiveBook

ORDER_IDS = [str(i) for i in range(12)]
MANY_IDS = [str(i) for i in range(60)]  # ids the amends never name: new orders all along
USERS = ["alice", "bob", "carol"]

instruments = st.builds(
    Instrument,
    symbol=st.just("P"),
    tick=st.sampled_from([1, 1, 2]),
    lot=st.sampled_from([1, 1, 5]),
    price_min=st.sampled_from([1, 92]),
    price_max=st.sampled_from([1 << 40, 108]),
    self_trade_prevention=st.booleans(),
    dedup_window=st.sampled_from([0, 3, 100_000]),
    max_quantity=st.sampled_from([(1 << 31) - 1, 20]),
)


PLAIN_MOSTLY = ["limit"] * 8 + ["market", "stop", "stop_limit", "iceberg", "aon"]
STOPS_OFTEN = ["limit"] * 4 + ["market", "iceberg", "aon"] + ["stop", "stop_limit"] * 3


@st.composite
def valid_adds(
    draw: st.DrawFn, kinds: list[str] = PLAIN_MOSTLY, ids: list[str] = ORDER_IDS
) -> Command:
    """Mostly plain limits, some markets, stops, stop-limits, icebergs, all-or-none."""
    kind = draw(st.sampled_from(kinds))
    otype = {"market": 2, "stop": 3, "stop_limit": 4}.get(kind, 1)
    resting_kind = kind in ("iceberg", "aon")
    tif = 1 if resting_kind else draw(st.sampled_from([1, 1, 1, 1, 2, 3]))
    post_only = otype == 1 and draw(st.sampled_from([False, False, False, True]))
    qty = draw(st.sampled_from([5, 10, 15, 20, 30]))
    return (
        1,
        draw(st.sampled_from(ids)),
        draw(st.sampled_from(USERS)),
        draw(st.sampled_from([1, 2])),
        otype,
        tif,
        post_only,
        draw(st.integers(96, 104)),
        qty,
        draw(st.integers(96, 104)) if otype in (3, 4) else 0,
        draw(st.sampled_from([5, 10, qty])) if kind == "iceberg" else 0,
        kind == "aon" or (otype == 4 and tif == 1 and draw(st.booleans())),
    )


invalid_adds = st.tuples(
    st.just(1),
    st.sampled_from(ORDER_IDS),
    st.sampled_from(USERS),
    st.sampled_from([0, 1, 2, 3]),
    st.sampled_from([0, 1, 2, 3, 4, 7]),
    st.sampled_from([0, 1, 2, 3, 4]),
    st.booleans(),
    st.integers(-2, 200),
    st.sampled_from([0, -5, 7, 1, 5]),
    st.sampled_from([0, 0, 100, -1, 7]),
    st.sampled_from([0, 0, 5, -5, 3, 50]),
    st.booleans(),
)
amends = st.tuples(
    st.sampled_from([2, 2, 3, 3, 9]),  # CANCEL, REPLACE, invalid action
    st.sampled_from(ORDER_IDS),
    st.sampled_from(USERS),
    st.just(0),
    st.just(0),
    st.just(0),
    st.just(False),
    st.integers(96, 104),
    st.sampled_from([5, 10, 20, 30, 0, 3]),
    st.just(0),
    st.just(0),
    st.just(False),
)
streams = st.lists(
    st.one_of(valid_adds(), valid_adds(), valid_adds(), valid_adds(), amends, invalid_adds),
    min_size=5,
    max_size=80,
)


stop_streams = st.lists(
    st.one_of(*[valid_adds(STOPS_OFTEN, MANY_IDS)] * 6, amends, invalid_adds),
    min_size=10,
    max_size=120,
)
"""Streams where stops are a third of the orders: they trigger, and cascade, often."""


def run(book: Book, commands: list[Command]) -> list[list[Event]]:
    return [book.apply(c) for c in commands]


@settings(max_examples=300, deadline=None)
@given(instruments, streams)
def test_events_and_depth_match_the_naive_reference(instrument, commands):
    fast, naive = Book(instrument), NaiveBook(instrument)
    for command in commands:
        assert fast.apply(command) == naive.apply(command), command
        assert fast.depth(20) == naive.depth(20)


@settings(max_examples=300, deadline=None)
@given(instruments, stop_streams)
def test_stop_cascades_match_the_naive_reference(instrument, commands):
    fast, naive = Book(instrument), NaiveBook(instrument)
    for command in commands:
        assert fast.apply(command) == naive.apply(command), command
        assert fast.depth(20) == naive.depth(20)
    assert fast.stops == len(naive.pending)


@settings(max_examples=200, deadline=None)
@given(instruments, st.one_of(streams, stop_streams))
def test_book_is_never_crossed_at_rest(instrument, commands):
    book = Book(instrument)
    for command in commands:
        book.apply(command)
        bid, ask = book.bbo()
        assert bid is None or ask is None or bid[0] < ask[0]


@settings(max_examples=200, deadline=None)
@given(instruments, streams)
def test_quantity_is_conserved_as_a_consumer_sees_it(instrument, commands):
    """Every order's fills add up to its reported filled; every trade's two fills match;
    what the statuses say is resting is exactly what the book shows (less the hidden part of
    icebergs and all-or-none orders; pending stops nowhere); and no order ever
    holds more than it was accepted or replaced with (the rest was cancelled or expired)."""
    book = Book(instrument)
    fills: dict[tuple[str, str], int] = defaultdict(int)
    last: dict[tuple[str, str], tuple[int, int, int]] = {}  # status, filled, leaves
    quantity: dict[tuple[str, str], int] = {}
    for command in commands:
        events = book.apply(command)
        trade_fills: dict[int, list[int]] = defaultdict(list)
        for event in events:
            if event[0] == FILL:
                fills[event[3], event[2]] += event[5]
                trade_fills[event[7]].append(event[5])
            elif event[0] == TRADE:
                trade_fills.setdefault(event[7], [])
            elif event[0] == STATUS and event[4] != 2:  # a REJECTED answers a request
                key = (event[3], event[2])
                last[key] = (event[4], event[6], event[7])
                if event[4] == 1 or event[5] == Reason.FILL_OR_KILL:
                    # a new order (ids are reusable past the window): ACCEPTED, or a FOK
                    # killed before it was ever accepted
                    fills[key] = 0
                if event[4] in (1, 6):  # ACCEPTED, REPLACED: the order's new total
                    quantity[key] = event[6] + event[7]
        for parts in trade_fills.values():
            assert len(parts) == 2 and parts[0] == parts[1]
    resting: dict[tuple[int, int], int] = defaultdict(int)
    for key, (_status, filled, leaves) in last.items():
        assert fills[key] == filled, key
        assert filled + leaves <= quantity.get(key, 0)
        if leaves:
            order = book.open_order(key[1], key[0])
            assert order is not None and order.leaves == leaves
            if order.stop:  # a pending stop is on no level
                continue
            # depth shows an iceberg's peak and no all-or-none order
            shown = 0 if order.aon else order.peak if order.display else leaves
            assert 0 <= shown <= leaves
            if shown:
                resting[order.side, order.price] += shown
    for side in (Side.BUY, Side.SELL):
        levels = book.depth(1000)[0 if side == Side.BUY else 1]
        assert dict(levels) == {p: q for (s, p), q in resting.items() if s == side}


@settings(max_examples=100, deadline=None)
@given(instruments, streams)
def test_event_stream_is_deterministic_byte_for_byte(instrument, commands):
    def text() -> str:
        book = Book(instrument)
        return "\n".join(dumps(event_json("P", e)) for es in run(book, commands) for e in es)

    assert text() == text()


@settings(max_examples=200, deadline=None)
@given(instruments, st.one_of(streams, stop_streams), st.integers(0, 120))
def test_snapshot_restore_at_any_point_continues_identically(instrument, commands, cut):
    cut = min(cut, len(commands))
    original = Book(instrument)
    run(original, commands[:cut])
    data = snapshot.dump(original, input_offset=cut)
    restored, info = snapshot.load(data)
    assert info.input_offset == cut and info.seq == original.seq
    assert snapshot.dump(restored, input_offset=cut) == data
    assert run(restored, commands[cut:]) == run(original, commands[cut:])
    assert restored.depth(50) == original.depth(50)
