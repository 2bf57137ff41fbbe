"""prev_seq on every pushed stream, against a real Redis: the chain per stream, a repeat
(another container's retry) not pushed twice, a push lost on its way showing as a gap."""

import json
from typing import Any

import pytest
import redis

from engine.book import Market, add
from engine.service.core import EngineState
from hotshard.client.frames import StreamTracker
from hotshard.domain import Side
from hotshard.edge.depth import DepthStore
from hotshard.edge.orders import OrderRecords
from hotshard.edge.push import LATENCY_SAMPLES, Pusher, push_latencies_ms
from hotshard.edge.sessions import Sessions
from hotshard.edge.streams import CHAIN_CHUNK, StreamSeqs
from hotshard.edge.streams import calls as calls_of
from hotshard.wire import encode_order

pytestmark = pytest.mark.integration


def test_each_stream_chains_its_own_seqs(r):
    seqs = StreamSeqs(r)
    links = [
        ("ann", "FILL", "AAPL", 4, False),
        ("ann", "FILL", "AAPL", 7, False),
        ("ann", "ORDER_STATUS", "AAPL", 5, False),
        ("ann", "FILL", "MSFT", 2, False),
        ("ben", "FILL", "AAPL", 9, False),
        ("", "TRADE", "AAPL", 3, False),
        ("", "DEPTH", "AAPL", 3, False),
    ]
    assert seqs.chain(links) == [0, 4, 0, 0, 0, 0, 0]
    again = [("ann", "FILL", "AAPL", 7, False), ("ann", "FILL", "AAPL", 11, False)]
    assert seqs.chain(again) == [-1, 7]
    assert seqs.chain([("", "TRADE", "AAPL", 8, False)]) == [3]
    # a depth snapshot may repeat the seq of the change before it; a change may not
    assert seqs.chain([("", "DEPTH", "AAPL", 3, True), ("", "DEPTH", "AAPL", 3, False)]) == [
        3,
        -1,
    ]
    assert r.pttl("push-seq:ann") > 0


def test_the_same_batch_attempt_again_gets_the_same_answer(r):
    """A pipeline re-sent after its connection dropped (redis-py retries it: a Redis
    restart) runs the script twice: its token makes the second run answer as the first."""
    seqs = StreamSeqs(r)
    links = [("ann", "FILL", "AAPL", 4, False), ("ann", "FILL", "AAPL", 7, False)]
    assert seqs.chain(links, token="c1:0:x") == [0, 4]
    assert seqs.chain(links, token="c1:0:x") == [0, 4]
    assert seqs.chain(links, token="c2:0:x") == [-1, -1]  # another container: pushed already
    assert seqs.chain(links) == [-1, -1]
    assert 0 < r.pttl("push-seq-reply:c1:0:x") <= 120_000


def test_a_backlogs_batch_is_chained_in_bounded_script_calls_with_the_same_answers(r):
    """12,000 links (a stream handler catching up on a backlog sends ~124,000): no script
    call holds Redis for more than CHAIN_CHUNK of them (one call for the whole batch ran
    past Redis's 5 s busy-script limit on a loaded machine: every other client got BUSY),
    and the answers are those of one call, across chunk boundaries and on a retry."""
    seqs = StreamSeqs(r)
    links = [(f"u{i % 7}", "ORDER_STATUS", "BIG", i + 1, False) for i in range(12_000)]
    want = [0 if i < 7 else i - 6 for i in range(12_000)]
    before = script_calls(r)
    assert seqs.chain(links, token="big:0") == want
    assert script_calls(r) - before == calls_of(len(links)) == -(-12_000 // CHAIN_CHUNK) > 1
    assert seqs.chain(links, token="big:0") == want  # the same attempt again
    assert seqs.chain(links) == [-1] * 12_000  # pushed already


def script_calls(r: redis.Redis) -> int:
    """Script runs Redis has counted (EVAL and EVALSHA that ran a script)."""
    stats = r.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("eval", "evalsha")
    ) - sum(int(stats.get(f"cmdstat_{c}", {}).get("failed_calls", 0)) for c in ("eval", "evalsha"))


def outputs(orders: list[tuple[int, Any]]) -> list[tuple[str, int, bytes]]:
    state = EngineState(Market(open_listing=True))
    out: list[tuple[str, int, bytes]] = []
    for offset, command in orders:
        record = (0, offset, b"AAPL", encode_order("AAPL", command, received_ts_ns=offset + 1))
        out += [(t, p, v) for t, p, _k, v in state.apply_batch([record]).outputs]
    return out


def test_repeats_are_not_pushed_and_a_lost_push_is_a_gap(r):
    sessions = Sessions(r)
    sessions.connect("c-ann", "ann", 0)
    sessions.subscribe("c-ann", ["AAPL"])
    posted: list[dict[str, Any]] = []
    lose = {"on": False}

    def post(_conn: str, data: bytes) -> bool:
        if not lose["on"]:
            posted.append(json.loads(data))
        return True

    def pusher() -> Pusher:  # a fresh container: its own in-memory guards
        return Pusher(sessions, OrderRecords(r), DepthStore(r), post, StreamSeqs(r))

    first = outputs([(0, add("a-1", "ann", Side.SELL, 100, 5))])
    pusher().handle(first)
    assert {p["type"] for p in posted} == {"ORDER_STATUS", "DEPTH"}
    assert all(p["prev_seq"] == 0 for p in posted)
    assert posted[0]["data"]["ts_ns"] == 1
    count = len(posted)
    stats = pusher().handle(first)  # another container gets the same records again
    assert stats.pushes == 0 and len(posted) == count

    both = outputs(
        [
            (0, add("a-1", "ann", Side.SELL, 100, 5)),
            (1, add("a-2", "ann", Side.SELL, 101, 5)),
            (2, add("b-1", "ben", Side.BUY, 101, 7)),
        ]
    )
    tracker = StreamTracker()
    for push in posted:
        assert tracker.observe(push) is None
    lose["on"] = True  # a-2's ACCEPTED (seq 2) and its depth never reach the client
    pusher().handle([rec for rec in both if rec in outputs_of(both, 1)])
    lose["on"] = False
    before = len(posted)
    pusher().handle([rec for rec in both if rec in outputs_of(both, 2)])
    later = posted[before:]
    gaps = [g for g in (tracker.observe(p) for p in later) if g is not None]
    kinds = {g.kind for g in gaps}
    assert kinds == {"ORDER_STATUS", "DEPTH"}, (gaps, later)
    status_gap = next(g for g in gaps if g.kind == "ORDER_STATUS")
    assert (status_gap.seen, status_gap.prev_seq) == (1, 2)


def outputs_of(records: list[tuple[str, int, bytes]], batch: int) -> list[tuple[str, int, bytes]]:
    """The records of the `batch`-th order (0-based) in outputs() of several orders: each
    order is its own batch, so its records are the next group of 3 or 4."""
    groups: list[list[tuple[str, int, bytes]]] = []
    for rec in records:
        if rec[0] == "order_status" or not groups:
            groups.append([])
        groups[-1].append(rec)
    return groups[batch]


def test_push_latency_samples_are_bounded_and_never_negative():
    assert push_latencies_ms([], 10) == []
    assert push_latencies_ms([90, 100, 120], 110) == [20.0, 10.0, 0.0]
    many = push_latencies_ms(list(range(1000)), 1000)
    assert len(many) <= LATENCY_SAMPLES and many[0] == 1000.0 and min(many) > 0


def test_a_batch_retried_after_redis_failed_it_is_pushed_whole(r):
    """Redis goes away after the batch's pipeline ran (its stream seqs moved) but before
    its posts: the event source's retry must push every event, with the same prev_seqs,
    not drop them as pushed already (they would be gaps for every reader)."""
    sessions = Sessions(r)
    sessions.connect("c-ann", "ann", 0)
    sessions.subscribe("c-ann", ["AAPL"])
    posted: list[dict[str, Any]] = []

    def post(_conn: str, data: bytes) -> bool:
        posted.append(json.loads(data))
        return True

    pusher = Pusher(sessions, OrderRecords(r), DepthStore(r), post, StreamSeqs(r))
    pusher.handle(outputs([(0, add("a-1", "ann", Side.SELL, 100, 5))]))
    before = len(posted)
    batch = outputs(
        [
            (0, add("a-1", "ann", Side.SELL, 100, 5)),
            (1, add("a-2", "ann", Side.SELL, 101, 5)),
        ]
    )[len(outputs([(0, add("a-1", "ann", Side.SELL, 100, 5))])) :]
    # (the connections are looked up in the batch's own pipeline: the first Redis call
    # after it is the connections' push modes)
    batching = sessions.batching
    failures = {"left": 1}

    def flaky(*args: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise redis.ConnectionError("restarting")
        return batching(*args)

    sessions.batching = flaky  # type: ignore[method-assign,assignment]
    with pytest.raises(redis.ConnectionError):
        pusher.handle(batch)
    assert len(posted) == before
    stats = pusher.handle(batch)  # the retry
    later = posted[before:]
    assert stats.pushes == len(later) and {p["type"] for p in later} == {"ORDER_STATUS", "DEPTH"}
    status = next(p for p in later if p["type"] == "ORDER_STATUS")
    assert (status["data"]["seq"], status["prev_seq"]) == (2, 1)
    # once it succeeded, the same records again are repeats (another delivery)
    assert pusher.handle(batch).pushes == 0


def test_a_batch_costs_one_redis_round_trip_with_its_connections_looked_up(r, monkeypatch):
    from hotshard import rawpipe  # noqa: PLC0415

    sessions = Sessions(r)
    sessions.connect("c-ann", "ann", 0)
    sessions.connect("c-ben", "ben", 0)
    sessions.connect("c-sub", "sub", 0)
    sessions.subscribe("c-sub", ["AAPL"])
    posted: list[tuple[str, str]] = []

    def post(conn: str, data: bytes) -> bool:
        posted.append((conn, json.loads(data)["type"]))
        return True

    records = OrderRecords(r)
    pusher = Pusher(sessions, records, DepthStore(r), post, StreamSeqs(r))
    both = outputs(
        [
            (0, add("a-1", "ann", Side.SELL, 100, 5)),
            (1, add("b-1", "ben", Side.BUY, 100, 7)),
        ]
    )
    pusher.handle(outputs_of(both, 0))  # connection modes cached
    for script in (records._status, records._fill):  # no NOSCRIPT retry to count
        r.script_load(script.script)
    sends: list[int] = []
    real = rawpipe.RawPipeline._send

    def counted(self: Any, commands: Any) -> Any:
        sends.append(len(commands))
        return real(self, commands)

    monkeypatch.setattr(rawpipe.RawPipeline, "_send", counted)
    posted.clear()
    stats = pusher.handle(outputs_of(both, 1))
    assert len(sends) == 1, sends  # writes, chain and connection lookups in one
    kinds = {(conn, kind) for conn, kind in posted}
    assert {("c-ann", "FILL"), ("c-ben", "FILL"), ("c-sub", "TRADE")} <= kinds, posted
    assert ("c-ben", "ORDER_STATUS") in kinds and stats.gone == 0
