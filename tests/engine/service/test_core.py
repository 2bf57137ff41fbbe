"""The engine's functional core: records in -> the same events the books give, as records."""

import dataclasses
from typing import Any

import pytest

from engine import fastwire
from engine.book import BUILD, Book, Instrument, Market, add, cancel
from engine.book.snapshot import SnapshotInfo, dump, load
from engine.service import core
from engine.service.core import EngineState, Output, Record, restore_partition
from hotshard import recovery, wire
from hotshard.dedupe import SequenceGuard
from hotshard.domain import Side, Status, TimeInForce
from hotshard.events import FILL, STATUS, TRADE, Event
from hotshard.local.flow import Stream, zipf_stream
from hotshard.names import TOPIC_DEPTH, TOPIC_FILLS, TOPIC_ORDER_STATUS, TOPIC_TRADES
from hotshard.reasons import Reason
from hotshard.recovery import BookEntry, Checkpoint, FenceEntry
from hotshard.v1 import events_pb2
from hotshard.wire import decode_depth, encode_order, parse_batch

KINDS = {TOPIC_ORDER_STATUS: STATUS, TOPIC_FILLS: FILL, TOPIC_TRADES: TRADE}


def records(stream: Stream, partitions: int = 2, start: int = 0, epoch: int = 0) -> list[Record]:
    offsets = dict.fromkeys(range(partitions), start)
    out: list[Record] = []
    for symbol, command in stream:
        p = sum(map(ord, symbol)) % partitions
        out.append(
            (p, offsets[p], symbol.encode(), encode_order(symbol, command, route_epoch=epoch))
        )
        offsets[p] += 1
    return out


def collect(outputs: list[Output], guard: SequenceGuard | None = None) -> dict[str, list[Event]]:
    guard = guard or SequenceGuard()
    events: dict[str, list[Event]] = {}
    for topic, partition, key, value in outputs:
        if topic == TOPIC_DEPTH:
            continue
        kind = KINDS[topic]
        batch = parse_batch(kind, value)
        assert key == batch.symbol.encode()
        for event, _ in guard.admit(kind, partition, batch):
            events.setdefault(batch.symbol, []).append(event)
    return {s: sorted(e, key=lambda ev: ev[1]) for s, e in events.items()}


def expected(stream: Stream) -> dict[str, list[Event]]:
    market = Market(open_listing=True)
    out: dict[str, list[Event]] = {}
    for symbol, command in stream:
        out.setdefault(symbol, []).extend(market.apply(symbol, command))
    return out


def test_batches_give_exactly_the_events_of_the_in_process_books():
    stream = zipf_stream(3000, seed=5, symbols=7)
    recs = records(stream)
    state = EngineState(Market(open_listing=True))
    outputs = []
    for start in range(0, len(recs), 250):
        outputs.extend(state.apply_batch(recs[start : start + 250]).outputs)
    assert collect(outputs) == expected(stream)


def test_one_record_per_topic_per_symbol_per_batch():
    stream = [
        ("A", add("1", "u", Side.SELL, 10, 1)),
        ("A", add("2", "v", Side.BUY, 10, 1)),
        ("B", add("3", "u", Side.BUY, 5, 1)),
    ]
    result = EngineState(Market(open_listing=True)).apply_batch(records(stream, partitions=1))
    topics = sorted((t, k) for t, _, k, _ in result.outputs)
    assert topics == sorted(
        [
            (t, s)
            for s in (b"A", b"B")
            for t in (TOPIC_ORDER_STATUS, TOPIC_FILLS, TOPIC_TRADES, TOPIC_DEPTH)
        ]
    )
    assert result.orders == {"A": 2, "B": 1}


def test_garbage_with_a_known_symbol_key_is_rejected_in_that_symbols_sequence():
    state = EngineState(Market(open_listing=True))
    state.apply_batch(records([("A", add("1", "u", Side.BUY, 10, 1))], partitions=1))
    result = state.apply_batch([(0, 1, b"A", b"\xff\xfe garbage")])
    [(event, offset)] = [
        (e, o)
        for t, p, k, v in result.outputs
        if t == TOPIC_ORDER_STATUS
        for e, o in SequenceGuard().admit(STATUS, p, parse_batch(STATUS, v))
    ]
    assert (event[1], event[4], event[5], offset) == (2, Status.REJECTED, Reason.MALFORMED, 1)


def test_a_rejection_between_commands_of_one_batch_keeps_every_event_at_its_input_offset():
    state = EngineState(Market(open_listing=True))
    first, later = (
        add("1", "u", Side.SELL, 10, 5),
        [
            add("2", "v", Side.BUY, 10, 2),
            add("3", "v", Side.BUY, 10, 1),
        ],
    )
    batch: list[Record] = [(0, 0, b"A", encode_order("A", first)), (0, 1, b"A", b"\xff junk")]
    batch += [(0, 2 + i, b"A", encode_order("A", c)) for i, c in enumerate(later)]
    result = state.apply_batch(batch)
    book = Book(Instrument("A"))
    expected = [(e, 0) for e in book.apply_all([first])]
    rejected: list[Event] = []
    book.reject("", "", Reason.MALFORMED, rejected)
    expected += [(e, 1) for e in rejected]
    for i, command in enumerate(later):
        expected += [(e, 2 + i) for e in book.apply_all([command])]
    got = [
        (e, offset)
        for t, p, _, v in result.outputs
        if t in KINDS
        for e, offset in SequenceGuard().admit(KINDS[t], p, parse_batch(KINDS[t], v))
    ]
    assert sorted(got) == sorted(expected)


def test_unknown_symbol_and_keyless_garbage_get_unsequenced_rejections():
    state = EngineState(Market({"A": Instrument("A")}))
    result = state.apply_batch(
        [
            (0, 0, b"ZZZ", encode_order("ZZZ", add("1", "u", Side.BUY, 10, 1))),
            (0, 1, None, b"\x00\x01\x02"),
        ]
    )
    got = collect(result.outputs)
    assert [(e[1], e[5]) for e in got["ZZZ"]] == [(0, Reason.UNKNOWN_SYMBOL)]
    assert [(e[1], e[5]) for e in got[""]] == [(0, Reason.MALFORMED)]
    assert state.position == {0: 2}


def test_a_removed_symbol_stays_fenced_whatever_the_epoch_until_restored():
    """A newer epoch must not bring the symbol back as a fresh book: its sequence would
    restart at 1 under numbers consumers have already seen. Only a Restore brings it back."""
    state = EngineState(Market(open_listing=True))
    state.apply_batch(records([("A", add("1", "u", Side.BUY, 10, 1))], partitions=1))
    book = state.remove_book("A", FenceEntry(3, 0, 1, partition=0))
    assert book is not None
    for offset, epoch in ((1, 2), (2, 3), (3, 9)):
        order = encode_order("A", add(str(offset + 1), "u", Side.BUY, 10, 1), route_epoch=epoch)
        out = state.apply_batch([(0, offset, b"A", order)])
        assert [(e[1], e[5]) for e in collect(out.outputs)["A"]] == [(0, Reason.STALE_ROUTE)]
    assert "A" not in state.market.books
    state.add_book(book, 0, 3)
    back = state.apply_batch(
        [(0, 4, b"A", encode_order("A", add("9", "u", Side.BUY, 10, 1), route_epoch=9))]
    )
    assert [(e[1], e[4]) for e in collect(back.outputs)["A"]] == [(2, Status.ACCEPTED)]


def test_junk_for_a_fenced_or_unknown_symbol_is_malformed_and_creates_no_book():
    state = EngineState(Market(open_listing=True))
    state.apply_batch(records([("A", add("1", "u", Side.BUY, 10, 1))], partitions=1))
    state.remove_book("A", FenceEntry(3, 0, 1, partition=0))
    out = state.apply_batch([(0, 1, b"A", b"\xff garbage"), (0, 2, b"B\nC", b"\x00")])
    reasons = {s: [e[5] for e in evs] for s, evs in collect(out.outputs).items()}
    assert reasons == {"A": [Reason.MALFORMED], "": [Reason.MALFORMED]}  # a bad key is no symbol
    assert set(state.market.books) == set()


def test_a_symbol_is_matched_from_one_partition_only():
    state = EngineState(Market(open_listing=True))
    first = encode_order("A", add("1", "u", Side.BUY, 10, 1))
    other = encode_order("A", add("2", "u", Side.BUY, 10, 1))
    out = collect(state.apply_batch([(0, 0, b"A", first), (1, 0, b"A", other)]).outputs)["A"]
    assert sorted((e[1], e[2], e[5]) for e in out) == [
        (0, "2", Reason.STALE_ROUTE),
        (1, "1", Reason.NONE),
    ]


def test_a_sweep_too_large_for_one_record_is_cut_into_contiguous_records():
    state = EngineState(Market(open_listing=True))
    resting = [("A", add(str(i), "maker", Side.SELL, 10, 1)) for i in range(3000)]
    guard = SequenceGuard()
    collect(state.apply_batch(records(resting, partitions=1)).outputs, guard)
    sweep = encode_order("A", add("taker", "t", Side.BUY, 10, 3000, tif=TimeInForce.IOC))
    out = state.apply_batch([(0, 3000, b"A", sweep)])
    statuses = [parse_batch(STATUS, v) for t, _, _, v in out.outputs if t == TOPIC_ORDER_STATUS]
    # 12,002 events (ACCEPTED, 3,000 x trade + 2 fills + maker status, FILLED) in pieces
    # of at most 4,000, the taker's one command spanning all of them
    assert [(b.after_seq, b.through_seq) for b in statuses] == [
        (3000, 7000),
        (7000, 11000),
        (11000, 15000),
        (15000, 15002),
    ]
    assert {e.input_offset for b in statuses for e in b.events} == {3000}
    assert all(len(v) < 1_000_000 for _, _, _, v in out.outputs)
    events = collect(out.outputs, guard)["A"]
    assert len(events) == 12_002 and not guard.gaps
    assert {e[0] for e in events} == {1, 2, 3}  # statuses, fills, trades


def test_restart_from_a_checkpoint_continues_exactly_like_an_uninterrupted_run():
    stream = zipf_stream(2000, seed=9, symbols=5)
    recs = records(stream, partitions=1)
    reference = collect(EngineState(Market(open_listing=True)).apply_batch(recs).outputs)

    guard = SequenceGuard()
    crashed = EngineState(Market(open_listing=True))
    seen = collect(crashed.apply_batch(recs[:700]).outputs, guard)
    snaps = {
        s: load(dump(b, input_offset=crashed.applied_offset(s), partition=0))
        for s, b in crashed.market.books.items()
    }
    for s, b in crashed.market.books.items():
        crashed.stored(s, f"mem:{s}", crashed.applied_offset(s), b.seq)
    checkpoint = crashed.checkpoint(0, "e", 0)
    assert set(checkpoint.books) == set(snaps)
    for symbol, events in collect(crashed.apply_batch(recs[700:1100]).outputs, guard).items():
        seen.setdefault(symbol, []).extend(events)  # published, then the process dies

    restarted = EngineState(Market(open_listing=True))
    start = restore_partition(restarted, checkpoint, 0, snaps)
    assert start == 700
    for symbol, events in collect(restarted.apply_batch(recs[start:]).outputs, guard).items():
        seen.setdefault(symbol, []).extend(events)
    assert {s: sorted(e, key=lambda ev: ev[1]) for s, e in seen.items()} == reference
    assert not guard.gaps
    assert guard.dropped > 0


def test_a_book_whose_snapshot_is_ahead_of_the_others_skips_what_it_holds():
    a1, a2 = add("1", "u", Side.BUY, 10, 1), add("2", "u", Side.BUY, 11, 1)
    state = EngineState(Market(open_listing=True))
    state.apply_batch([(0, 0, b"A", encode_order("A", a1)), (0, 1, b"B", encode_order("B", a1))])
    snap_b = load(dump(state.market.books["B"], input_offset=1, partition=0))
    state.stored("B", "mem:B1", 1, 1)
    state.apply_batch([(0, 2, b"A", encode_order("A", a2))])
    snap_a = load(dump(state.market.books["A"], input_offset=2, partition=0))
    state.stored("A", "mem:A2", 2, 2)
    state.apply_batch([(0, 3, b"B", encode_order("B", a2))])  # B changed, not stored again
    checkpoint = state.checkpoint(0, "e", 0)
    # A is clean: through the position; B resumes from its snapshot
    assert checkpoint.books == {
        "A": BookEntry("mem:A2", 3, 2, 0),
        "B": BookEntry("mem:B1", 1, 1, 0),
    }
    fresh = EngineState(Market(open_listing=True))
    start = restore_partition(fresh, checkpoint, 0, {"A": snap_a, "B": snap_b})
    assert start == 2 and fresh.skip == {"A": 3}
    out = fresh.apply_batch(
        [
            (0, 2, b"A", encode_order("A", a2)),
            (0, 3, b"B", encode_order("B", a2)),
            (0, 4, b"A", encode_order("A", cancel("1", "u"))),
        ]
    )
    got = collect(out.outputs)
    assert [(e[1], e[4]) for e in got["A"]] == [(3, Status.CANCELLED)]
    assert [(e[1], e[4]) for e in got["B"]] == [(2, Status.ACCEPTED)]
    assert fresh.skip == {}


def test_after_a_replaced_log_only_symbols_that_existed_start_above_the_jump():
    # before: every book born on the partition after a replaced log started above the
    # partition's seq_base, a symbol that never existed too (readers saw a Gap from 0)
    jump = recovery.SEQ_JUMP_ON_REPLACED_LOG
    old = EngineState(Market(open_listing=True))
    old.log_id = "old"
    old.apply_batch([_order(0, "BORN", "b1")])  # no snapshot of it yet
    checkpoint = old.checkpoint(0, "e", 0).rebased("new", routed=["BORN", "LATE"])
    state = EngineState(Market(open_listing=True))
    assert restore_partition(state, checkpoint, 0, {}) == 0
    out = state.apply_batch(
        [_order(0, "BORN", "b2"), _order(1, "LATE", "l1"), _order(2, "NEW", "n1")]
    )
    seqs = {s: [e[1] for e in events] for s, events in collect(out.outputs).items()}
    assert seqs == {"BORN": [jump + 1], "LATE": [jump + 1], "NEW": [1]}
    # a restart before their first snapshots numbers them the same again
    again = EngineState(Market(open_listing=True))
    restore_partition(again, state.checkpoint(0, "e", 0), 0, {})
    out = again.apply_batch(
        [_order(0, "BORN", "b2"), _order(1, "LATE", "l1"), _order(2, "NEW", "n1")]
    )
    assert {s: [e[1] for e in events] for s, events in collect(out.outputs).items()} == seqs


def test_no_checkpoint_means_consume_from_the_start():
    state = EngineState(Market(open_listing=True))
    assert restore_partition(state, None, 3, {}) == 0
    assert state.position == {3: 0}


def test_a_checkpoint_naming_a_symbol_without_snapshot_is_an_error():
    with pytest.raises(KeyError):
        restore_partition(
            EngineState(Market(open_listing=True)),
            Checkpoint(0, 5, {"A": BookEntry("redis:gone", 5, 1)}),
            0,
            {},
        )


def test_rewind_makes_other_books_skip_what_they_hold():
    state = EngineState(Market(open_listing=True))
    state.apply_batch(
        [(0, i, b"A", encode_order("A", add(str(i), "u", Side.BUY, 10, 1))) for i in range(5)]
    )
    assert state.rewind(0, 2)
    assert state.position[0] == 2 and state.skip == {"A": 4}
    assert not state.rewind(0, 9)
    book = Book(Instrument("B"))
    state.add_book(book, 0, 1)
    assert state.home["B"] == 0


def _order(offset: int, symbol: str, oid: str, epoch: int = 1) -> Record:
    return (
        0,
        offset,
        symbol.encode(),
        encode_order(symbol, add(oid, "u", Side.BUY, 10, 1), route_epoch=epoch),
    )


def _verdicts(state: EngineState, recs: list[Record]) -> list[tuple[str, int, int]]:
    """(order id, seq, reason) of the status events the records give."""
    out = collect(state.apply_batch(recs).outputs)
    return sorted((e[2], e[1], e[5]) for evs in out.values() for e in evs if e[0] == STATUS)


def test_a_buried_fence_still_refuses_late_orders_and_ignores_records_read_again():
    state = EngineState(Market(open_listing=True))
    state.apply_batch([_order(0, "A", "a0"), _order(1, "K", "k0"), _order(2, "A", "a1")])
    state.remove_book("A", FenceEntry(2, 2, 2, partition=0))
    state.bury("A")
    assert "A" not in state.fences and state.gone["A"][0] == 0
    checkpoint = state.checkpoint(0, "i", 1)
    again = Checkpoint.from_json(checkpoint.to_json())
    assert again.gone == {"A": checkpoint.gone["A"]} and again.fences == {}
    for fresh in (state, EngineState(Market(open_listing=True))):
        if fresh is not state:
            restore_partition(fresh, again, 0, {})
            fresh.position[0] = 3
        # a late order at the old epoch (or any epoch): STALE_ROUTE, no fresh book
        assert _verdicts(fresh, [_order(3, "A", "late", 1), _order(4, "A", "later", 5)]) == [
            ("late", 0, Reason.STALE_ROUTE),
            ("later", 0, Reason.STALE_ROUTE),
        ]
        assert "A" not in fresh.market.books
    assert state.rewind(0, 0)  # A's records up to the fence are read again: ignored
    assert (
        _verdicts(state, [_order(0, "A", "a0"), _order(1, "K", "k0"), _order(2, "A", "a1")]) == []
    )
    assert sorted(state.market.books) == ["K"]
    # so are they by an engine restarted from that checkpoint that reads them again (a
    # crash in the middle of such a rewind)
    restarted = EngineState(Market(open_listing=True))
    restore_partition(restarted, again, 0, {})
    restarted.position[0] = 0
    assert _verdicts(restarted, [_order(0, "A", "a0"), _order(2, "A", "a1")]) == []
    assert "A" not in restarted.market.books


def test_gone_entries_are_bounded_and_the_oldest_raise_the_rewind_floor(monkeypatch):
    monkeypatch.setattr(core, "MAX_GONE", 2)
    state = EngineState(Market(open_listing=True))
    state.apply_batch([_order(i, f"S{i}", f"o{i}") for i in range(4)])
    for i in range(4):
        state.remove_book(f"S{i}", FenceEntry(2, i, 1, partition=0))
        state.bury(f"S{i}")
    assert sorted(state.gone) == ["S2", "S3"] and state.rewind_floor == {0: 1}
    again = Checkpoint.from_json(state.checkpoint(0, "i", 1).to_json())
    assert again.rewind_floor == 1
    fresh = EngineState(Market(open_listing=True))
    restore_partition(fresh, again, 0, {})
    assert fresh.rewind_floor == {0: 1} and sorted(fresh.gone) == ["S2", "S3"]


def test_a_rewind_holds_each_record_once():
    # before: records held for a symbol (an expected one, a frozen book) were held again
    # when a rewind read them a second time, and applied twice when released
    state = EngineState(Market(open_listing=True))
    state.expect["E"] = 1
    state.apply_batch([_order(0, "K", "k0"), _order(1, "E", "e0", 2), _order(2, "E", "e1", 2)])
    assert [r[1] for r in state.held["E"]] == [1, 2]
    assert state.rewind(0, 1)
    state.apply_batch([_order(1, "E", "e0", 2), _order(2, "E", "e1", 2)])
    assert [r[1] for r in state.held["E"]] == [1, 2]


def test_quantities_that_would_overflow_a_level_are_rejected_not_a_crash():
    state = EngineState(Market(open_listing=True))
    huge = [("A", add(user, user, Side.BUY, 10, 1 << 62)) for user in ("u", "v")]
    out = collect(state.apply_batch(records(huge, partitions=1)).outputs)["A"]
    assert [(e[4], e[5]) for e in out] == [(Status.REJECTED, Reason.VALUE_OUT_OF_RANGE)] * 2


def test_depth_snapshots_give_every_book_its_top_levels_on_its_partition():
    state = EngineState(Market(open_listing=True))
    flow = [
        ("A", add("1", "u", Side.BUY, 10, 1)),
        ("A", add("2", "u", Side.BUY, 9, 2)),
        ("A", add("3", "v", Side.SELL, 12, 3)),
        ("B", add("4", "u", Side.SELL, 50, 1)),
    ]
    recs = records(flow, partitions=2)
    state.apply_batch(recs)
    outputs = state.depth_snapshots(levels=1)
    assert [(t, p) for t, p, _, _ in outputs] == [
        (TOPIC_DEPTH, next(p for p, _, k, _ in recs if k == b"A")),
        (TOPIC_DEPTH, next(p for p, _, k, _ in recs if k == b"B")),
    ]
    ((symbol, update, offset),) = decode_depth(outputs[0][3])
    assert (symbol, update.snapshot, update.seq) == ("A", True, 3)
    assert (update.bids, update.asks, offset) == ([(10, 1)], [(12, 3)], 2)


def test_depth_snapshots_are_the_reference_bytes_written_by_the_build_s_own_writer():
    # the periodic snapshot of every book is a stall of the loop: the compiled build writes
    # it by hand (engine.fastwire), with the protobuf runtime's exact bytes
    state = EngineState(Market(open_listing=True))
    recs = records([(s, c) for s, c in zipf_stream(2_000, seed=5, symbols=4)], partitions=2)
    state.apply_batch(recs)
    outputs = state.depth_snapshots(levels=5)
    assert len(outputs) == 4
    for _, _, key, value in outputs:
        symbol = key.decode()
        book = state.market.books[symbol]
        offset = state.applied_offset(symbol)
        assert value == wire.encode_depth(symbol, book.depth_snapshot(5), offset)
    assert core.encode_depth is (fastwire.encode_depth if BUILD == "native" else wire.encode_depth)


def test_events_carry_the_receive_time_stamped_on_their_order_never_a_clock():
    orders = [
        add("s-1", "ann", Side.SELL, 100, 5),
        add("b-1", "ben", Side.BUY, 100, 2),
    ]
    records: list[Record] = [
        (0, i, b"AAPL", encode_order("AAPL", c, received_ts_ns=1_000 + i))
        for i, c in enumerate(orders)
    ]
    first = EngineState(Market(open_listing=True)).apply_batch(records).outputs
    again = EngineState(Market(open_listing=True)).apply_batch(records).outputs
    assert first == again  # byte-identical: the time comes from the input
    kinds: dict[str, Any] = {
        "order_status": events_pb2.OrderStatusBatch,
        "fills": events_pb2.FillBatch,
        "trades": events_pb2.TradeBatch,
        "depth": events_pb2.DepthBatch,
    }
    stamps: dict[str, set[tuple[int, int]]] = {}
    for topic, _p, _k, value in first:
        for ev in kinds[topic].FromString(value).events:
            stamps.setdefault(topic, set()).add((ev.input_offset, ev.ts_ns))
    for topic in ("order_status", "fills", "trades"):
        assert all(ts == 1_000 + offset for offset, ts in stamps[topic]), topic
    assert stamps["depth"] == {(1, 1_001)}  # the batch's last order
    unstamped: list[Record] = [(0, 0, b"AAPL", encode_order("AAPL", orders[0]))]
    (status, *_rest) = EngineState(Market(open_listing=True)).apply_batch(unstamped).outputs
    assert all(ev.ts_ns == 0 for ev in events_pb2.OrderStatusBatch.FromString(status[3]).events)


@pytest.mark.parametrize("moving", [False, True])
def test_reading_orders_without_a_decoded_order_changes_no_record(monkeypatch, moving):
    """The batch loop (engine.service.batch.gather) reads a well-formed order straight into
    its command (engine.fastwire.decode_plain) and builds a DecodedOrder only for a record
    it hands to admission; reading every record through decode_order gives the same output
    records, byte for byte: junk, a lower route epoch, stamps, and (`moving`) a move under
    way elsewhere, so that no record takes the plain path."""
    from engine import fastwire  # noqa: PLC0415

    stream = zipf_stream(3000, seed=11, symbols=9)
    recs = records(stream, epoch=2)
    for i in range(0, len(recs), 97):
        p, offset, key, _ = recs[i]
        symbol, command = stream[i]
        recs[i] = (p, offset, key, encode_order(symbol, command, route_epoch=1))  # stale
    for i in range(5, len(recs), 89):
        p, offset, key, _ = recs[i]
        recs[i] = (p, offset, key, b"\x08\x01\xff junk")
    for i in range(7, len(recs), 13):
        p, offset, key, _ = recs[i]
        symbol, command = stream[i]
        value = encode_order(symbol, command, route_epoch=2, client_ts_ns=i, received_ts_ns=i * 3)
        recs[i] = (p, offset, key, value)

    def run(decode_plain: Any) -> list[Output]:
        monkeypatch.setattr(core, "decode_plain", decode_plain)
        state = EngineState(Market(open_listing=True))
        if moving:
            state.expect["ELSEWHERE"] = 1
        outputs: list[Output] = []
        for start in range(0, len(recs), 250):
            outputs.extend(state.apply_batch(recs[start : start + 250]).outputs)
        return outputs

    plain = run(fastwire.decode_plain)
    assert len(plain) > 100
    assert plain == run(None)


Restored = tuple[Book, SnapshotInfo]


def _fenced_after_its_checkpoint() -> tuple[EngineState, Restored, Checkpoint, int]:
    """A's book with its snapshot in the last checkpoint (offset 0), then two more orders:
    (state, that snapshot loaded, that checkpoint, the book's seq now, where a Fence puts it)."""
    state = EngineState(Market(open_listing=True))
    state.apply_batch([_order(0, "A", "1")])
    snap = load(dump(state.market.books["A"], input_offset=0, partition=0))
    state.stored("A", "mem:A0", 0, 1)
    last = state.checkpoint(0, "e", 0)
    state.apply_batch([_order(1, "A", "2"), _order(2, "A", "3")])
    return state, snap, last, state.market.books["A"].seq


def test_a_restart_through_a_fence_publishes_its_handoff_marker_again_after_its_events():
    # a Fence adds its fence to the last durable checkpoint without waiting for its events
    # and marker to be delivered: a restart replays the book to the fence and owes them
    _, snap, last, final = _fenced_after_its_checkpoint()
    fence = FenceEntry(2, 2, final, 5, "", 1, 0, "")
    checkpoint = dataclasses.replace(last, fences={"A": fence})

    restarted = EngineState(Market(open_listing=True))
    assert restore_partition(restarted, checkpoint, 0, {"A": snap}) == 1
    assert restarted.handoffs_owed == {"A"} and restarted.owed_handoffs() == []
    replayed = restarted.apply_batch([_order(1, "A", "2")]).outputs
    assert restarted.owed_handoffs() == [] and replayed
    restarted.apply_batch([_order(2, "A", "3"), _order(3, "A", "late")])
    markers = restarted.owed_handoffs()
    assert [(topic, partition) for topic, partition, _, _ in markers] == [
        (TOPIC_ORDER_STATUS, 0),
        (TOPIC_FILLS, 0),
        (TOPIC_TRADES, 0),
    ]
    marker = events_pb2.OrderStatusBatch.FromString(markers[0][3])
    assert (marker.after_seq, marker.through_seq) == (final, final)
    assert (marker.handoff.partition, marker.handoff.epoch) == (5, 2)
    assert restarted.market.books["A"].seq == final
    assert restarted.owed_handoffs() == [] and not restarted.handoffs_owed  # once


def test_a_restart_owes_the_fence_snapshot_its_checkpoint_does_not_name():
    # the fence snapshot's fork comes a while after the Fence's reply: an engine that died
    # before storing it comes back with the fence and the book's older snapshot, and stores
    # the fence snapshot itself once the book is back at its fence (a Promote's fallback
    # polls its location); before, nothing did unless a Snapshot or a Remove asked
    state, snap, last, final = _fenced_after_its_checkpoint()
    fence = FenceEntry(2, 2, final, 5, "mem:fence", 1, 0, "")
    owing = dataclasses.replace(last, fences={"A": fence})
    stored = dataclasses.replace(
        last, books={"A": BookEntry("mem:fence", 2, final, 1)}, fences={"A": fence}
    )

    restarted = EngineState(Market(open_listing=True))
    restore_partition(restarted, owing, 0, {"A": snap})
    assert restarted.fence_snapshots_owed == {"A"} and restarted.fence_snapshots_due() == []
    restarted.apply_batch([_order(1, "A", "2")])
    assert restarted.fence_snapshots_due() == []
    restarted.apply_batch([_order(2, "A", "3")])
    assert restarted.fence_snapshots_due() == ["A"]
    assert restarted.fence_snapshots_due() == [] and not restarted.fence_snapshots_owed  # once

    again = EngineState(Market(open_listing=True))
    restore_partition(again, stored, 0, {"A": load(dump(state.market.books["A"]))})
    assert not again.fence_snapshots_owed  # its checkpoint names the fence snapshot
