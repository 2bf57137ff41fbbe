"""A hot symbol moved by hand between two running engines through the control RPCs, in the
order HANDOVER.md gives, for both strategies, on the real broker, Redis and gRPC.

Engine A owns partition 0 (HOT with a few thousand resting orders, and COLD), engine B
owns the spare partition 3 (BEE). While orders keep coming for all three, HOT moves from A
to B. A "client" thread plays the router: it stamps the route epoch it knows and sends to
the route's partition (pending-orders while paused), and it re-sends orders refused
STALE_ROUTE on the new route, as the client library does. Then:
- HOT's events, read from both partitions through one SequenceGuard, equal a never-moved
  replay (engine.book, in-process) of HOT's input as the engines applied it: its records
  on partition 0 through the fence offset, its pending records up to the end marker, then
  its records on partition 3; seqs continue without a gap or a repeat;
- every order sent is answered exactly once in sequence (none lost, none doubled);
- COLD (on A) and BEE (on B) never wait on the move: their order-to-event latency while
  the move runs is measured and bounded.
"""

import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from engine.book import Market, add, cancel
from hotshard.commands import Command
from hotshard.domain import Side, Status
from hotshard.events import STATUS
from hotshard.local.traffic import EventReader, producer
from hotshard.names import TOPIC_ORDERS, TOPIC_PENDING_ORDERS
from hotshard.reasons import Reason
from hotshard.v1 import control_pb2
from hotshard.wire import PENDING_END, decode_order, encode_order, encode_pending_marker
from tests.integration.conftest import PARTITIONS
from tests.integration.helpers import promote_request, retry

pytestmark = pytest.mark.integration

P, Q = 0, 3
RESTING = 3000


@dataclass
class Route:
    topic: str = TOPIC_ORDERS
    partition: int = P
    epoch: int = 1


@dataclass
class Client:
    """Sends orders (HOT, COLD, BEE) as a router would, at a modest steady rate."""

    bootstrap: str
    route: Route = field(default_factory=Route)
    sent: dict[str, list[tuple[str, Command]]] = field(default_factory=dict)
    sent_at: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    prod: Any = None

    def __post_init__(self) -> None:
        self.prod = producer(self.bootstrap, **{"linger.ms": 1})

    def send(self, symbol: str, command: Command) -> None:
        with self.lock:
            if symbol == "HOT":
                topic, partition, epoch = self.route.topic, self.route.partition, self.route.epoch
            else:
                topic, partition, epoch = TOPIC_ORDERS, P if symbol == "COLD" else Q, 1
            value = encode_order(symbol, command, route_epoch=epoch, client_ts_ns=time.time_ns())
            self.prod.produce(topic, value, symbol.encode(), partition)
            self.sent.setdefault(symbol, []).append((symbol, command))
            self.sent_at[command[1]] = time.monotonic()
        self.prod.poll(0)

    def run(self, rate: float = 150.0) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            for symbol in ("HOT", "COLD", "BEE"):
                side = Side.BUY if i % 2 else Side.SELL
                price = 1000 + (i % 7) - 3  # crosses now and then
                self.send(symbol, add(f"{symbol}-t{i}", f"u{i % 5}", side, price, 1 + i % 3))
            if i % 10 == 0:
                self.send("HOT", cancel(f"HOT-r{i}", "maker"))
            time.sleep(1 / rate)
        self.prod.flush(10)


def orders_on(bootstrap: str, topic: str, partition: int, symbol: str) -> list[tuple[int, Any]]:
    """(offset, decoded) of the symbol's records on a topic partition, up to its end: past
    its high watermark (Tansu's: the first offset of the last batch + 1), then on until a
    read finds nothing. Before, three empty reads in a row (1.5 s) ended it wherever it
    stood: a first fetch slower than that read nothing."""
    from confluent_kafka import Consumer, TopicPartition  # noqa: PLC0415

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "move-test-orders",
            "enable.auto.commit": False,
        }
    )
    tp = TopicPartition(topic, partition, 0)
    out = []
    try:
        end = consumer.get_watermark_offsets(tp, timeout=10)[1]
        consumer.assign([tp])
        deadline = time.monotonic() + 60
        at = 0  # the next offset to read
        while True:
            batch = consumer.consume(1000, 0.5)
            if not batch and at >= end:
                break
            assert time.monotonic() < deadline, f"{topic}/{partition}: read to {at}, not {end}"
            for m in batch:
                if m.error() is None:
                    at = max(at, (m.offset() or 0) + 1)
                    decoded = decode_order(m.value(), m.key())
                    if decoded.symbol == symbol:
                        out.append((m.offset() or 0, decoded))
    finally:
        consumer.close()
    return out


def first_statuses(reader: EventReader, symbol: str) -> dict[str, list[tuple[int, int, int]]]:
    """Per order id, the (seq, status, reason) of its order_status events."""
    out: dict[str, list[tuple[int, int, int]]] = {}
    for e in reader.events.get(symbol, []):
        if e[0] == STATUS:
            out.setdefault(e[2], []).append((e[1], e[4], e[5]))
    return out


@pytest.mark.parametrize("strategy", ["pre-copy", "stop-and-copy"])
def test_move_a_hot_symbol_between_running_engines(broker, engines, strategy):
    extra = ("--snapshot-interval-s", "2", "--batch-size", "500", "--poll-timeout-ms", "5")
    a = engines(str(P), "a", *extra)
    b = engines(str(Q), "b", *extra)
    src, dst = a.stub(), b.stub()
    client = Client(broker.bootstrap)
    for i in range(RESTING):  # a deep book: buys below 990, sells above 1010
        side = Side.BUY if i % 2 else Side.SELL
        price = 990 - i % 200 if side == Side.BUY else 1010 + i % 200
        client.send("HOT", add(f"HOT-r{i}", "maker", side, price, 5))
    client.send("COLD", add("COLD-0", "x", Side.BUY, 1, 1))
    client.send("BEE", add("BEE-0", "x", Side.BUY, 1, 1))
    client.prod.flush(10)

    reader = EventReader(broker.bootstrap, PARTITIONS)
    received: dict[str, float] = {}

    def note(event: Any, _offset: int) -> None:
        received.setdefault(event[2], time.monotonic())

    reading = threading.Event()

    def read() -> None:
        while not reading.is_set():
            reader.poll(0.05, on_status=note)

    assert reader.read_until(lambda r: len(r.events.get("HOT", [])) >= RESTING, timeout=60)
    reader_thread = threading.Thread(target=read, daemon=True)
    reader_thread.start()
    traffic = threading.Thread(target=client.run, daemon=True)
    traffic.start()
    time.sleep(1.5)

    began = time.monotonic()
    if strategy == "pre-copy":
        snap = src.Snapshot(control_pb2.SnapshotRequest(symbol="HOT"), timeout=30)
        assert not snap.snapshot and snap.location
        followed = dst.Follow(
            control_pb2.FollowRequest(
                symbol="HOT",
                location=snap.location,
                source_partition=P,
                from_offset=snap.input_offset + 1,
            ),
            timeout=30,
        )
        assert followed.seq == snap.seq
        deadline = time.monotonic() + 30
        while True:
            [shadow] = dst.Stats(control_pb2.StatsRequest(), timeout=5).shadows
            if shadow.lag <= 5 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert shadow.symbol == "HOT" and shadow.source_partition == P
        switched = time.monotonic()
        with client.lock:
            client.route = Route(TOPIC_ORDERS, Q, 2)
        fenced = src.Fence(
            control_pb2.FenceRequest(symbol="HOT", epoch=2, to_partition=Q), timeout=30
        )
        again = src.Fence(
            control_pb2.FenceRequest(symbol="HOT", epoch=2, to_partition=Q), timeout=30
        )
        assert again == fenced  # idempotent
        pending = None
    else:
        switched = time.monotonic()
        with client.lock:  # PauseRouting: HOT's orders go to pending-orders, stamped e+1
            client.route = Route(TOPIC_PENDING_ORDERS, P, 2)
        fenced = src.Fence(
            control_pb2.FenceRequest(symbol="HOT", epoch=2, to_partition=Q), timeout=30
        )
        # Snapshot of a fenced book: the fence snapshot, with its size (hotshard migrate's
        # "snapshot N bytes" of a stop-and-copy move)
        snap = src.Snapshot(control_pb2.SnapshotRequest(symbol="HOT"), timeout=30)
        assert (snap.location, snap.seq) == (fenced.location, fenced.final_seq)
        assert snap.size_bytes > RESTING
        followed = retry(
            lambda: dst.Follow(
                control_pb2.FollowRequest(
                    symbol="HOT",
                    location=fenced.location,
                    source_partition=P,
                    from_offset=fenced.fence_offset + 1,
                ),
                timeout=30,
            )
        )
        assert followed.seq == fenced.final_seq
        time.sleep(0.3)  # the pause: pending orders pile up
        with client.lock:  # SwitchRouting, then the end marker
            client.route = Route(TOPIC_ORDERS, Q, 2)
            client.prod.produce(
                TOPIC_PENDING_ORDERS, encode_pending_marker("HOT", 2, PENDING_END), b"HOT", P
            )
            client.prod.flush(10)
        pending = control_pb2.PendingReplay(
            topic=TOPIC_PENDING_ORDERS, partition=P, from_offset=0, epoch=2
        )
    stats = src.Stats(control_pb2.StatsRequest(), timeout=5)
    assert [(f.symbol, f.epoch, f.to_partition) for f in stats.fences] == [("HOT", 2, Q)]
    request = promote_request("HOT", fenced, epoch=2, partition=Q, pending=pending)
    promoted = dst.Promote(request, timeout=60)
    resumed = time.monotonic()
    request.wait_durable = True
    durable = retry(lambda: dst.Promote(request, timeout=60))
    assert durable.durable and durable.location and durable.seq >= promoted.seq
    removed = retry(lambda: src.Remove(control_pb2.RemoveRequest(symbol="HOT"), timeout=30))
    assert (removed.seq, removed.input_offset) == (fenced.final_seq, fenced.fence_offset)
    done = time.monotonic()
    time.sleep(1.0)
    client.stop.set()
    traffic.join(20)

    # The client retries what the source refused STALE_ROUTE, on the new route.
    deadline = time.monotonic() + 20
    answered = first_statuses(reader, "HOT")
    while time.monotonic() < deadline:
        answered = first_statuses(reader, "HOT")
        if all(c[1] in answered for _, c in client.sent["HOT"]):
            break
        time.sleep(0.2)
    stale = [
        c
        for _, c in client.sent["HOT"]
        if answered.get(c[1])
        and all(a[0] == 0 and a[2] == Reason.STALE_ROUTE for a in answered[c[1]])
    ]
    for command in stale:
        client.send("HOT", command)
    client.prod.flush(10)

    # HOT's input as applied: p through the fence, pending up to the marker, then q.
    applied = [
        d
        for o, d in orders_on(broker.bootstrap, TOPIC_ORDERS, P, "HOT")
        if o <= fenced.fence_offset
    ]
    if strategy == "stop-and-copy":
        for _, d in orders_on(broker.bootstrap, TOPIC_PENDING_ORDERS, P, "HOT"):
            if d.marker == PENDING_END and d.route_epoch == 2:
                break
            if d.route_epoch == 2 and not d.marker:
                applied.append(d)
    applied += [d for _, d in orders_on(broker.bootstrap, TOPIC_ORDERS, Q, "HOT")]
    market = Market(open_listing=True)
    expected = []
    for d in applied:
        assert d.command is not None
        expected.extend(market.apply("HOT", d.command))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the reader thread reads meanwhile
        if sum(1 for e in list(reader.events.get("HOT", [])) if e[1] > 0) >= len(expected):
            break
        time.sleep(0.2)
    time.sleep(0.5)
    reading.set()
    reader_thread.join(10)

    got = [e for e in reader.sorted_events("HOT") if e[1] > 0]
    assert not reader.guard.gaps, reader.guard.gaps[:5]
    if got != expected:
        bad = next(i for i, (g, e) in enumerate(zip(got, expected, strict=False)) if g != e)
        oid = got[bad][2]
        for topic, part in ((TOPIC_ORDERS, P), (TOPIC_PENDING_ORDERS, P), (TOPIC_ORDERS, Q)):
            for o, d in orders_on(broker.bootstrap, topic, part, "HOT"):
                if d.order_id == oid or d.marker:
                    print("DEBUG", topic, part, o, d.route_epoch, d.marker, d.order_id)
        print("DEBUG fence", fenced.fence_offset, "answers", first_statuses(reader, "HOT")[oid])
    assert got == expected  # seqs 1..N once, equal to a never-moved replay
    assert got[-1][1] == len(got)
    # none lost, none doubled: each order answered once in sequence
    answered = first_statuses(reader, "HOT")
    sent_ids = {c[1] for _, c in client.sent["HOT"]}
    in_seq = {oid: [a for a in v if a[0] > 0] for oid, v in answered.items()}
    missing = [oid for oid in sent_ids if not in_seq.get(oid)]
    assert not missing, missing[:10]
    firsts = {oid: v[0] for oid, v in in_seq.items()}
    assert all(f[1] in (Status.ACCEPTED, Status.REJECTED) for f in firsts.values())
    assert sum(1 for v in in_seq.values() for a in v if a[1] == Status.ACCEPTED) == len(
        [oid for oid, v in in_seq.items() if v[0][1] == Status.ACCEPTED]
    )

    # Other symbols did not wait: their order-to-first-event latency during the move.
    def latencies(symbol: str, lo: float, hi: float) -> list[float]:
        return [
            (received[oid] - at) * 1000
            for oid, at in client.sent_at.items()
            if oid.startswith(symbol) and lo <= at <= hi and oid in received
        ]

    during = {s: latencies(s, began, done) for s in ("COLD", "BEE")}
    before = {s: latencies(s, 0, began) for s in ("COLD", "BEE")}
    pause_ms = (resumed - switched) * 1000
    print(
        f"{strategy}: move {1000 * (done - began):.0f} ms, pause (switch -> promoted) "
        f"{pause_ms:.0f} ms, resting {RESTING}, HOT events {len(got)}, retried stale "
        f"{len(stale)}, held {durable.held}, replayed {durable.replayed}"
    )
    for s in ("COLD", "BEE"):
        assert during[s], s
        print(
            f"  {s}: latency before p50 {statistics.median(before[s]):.1f} ms; during the move "
            f"p50 {statistics.median(during[s]):.1f} max {max(during[s]):.1f} ms "
            f"({len(during[s])} orders)"
        )
        assert max(during[s]) < 1500, (s, max(during[s]))
    reader.close()
