"""A pre-copy move rolled back after its switch (a move-back): HOT moved from engine A
(partition P) to engine B (partition Q), B was killed -9 before it applied what was routed
to Q, and the Rollback moved the route back to A at the next epoch, wrote the PENDING_END
marker on `orders` Q and unfenced A with a replay of Q from where the move began (what
hotshard.migration.steps.rollback does for plan.rollback_plan's "move-back").

HOT's events, read from every partition, must equal a never-moved replay of its input as A
applied it: P through the fence, Q's epoch e+1 records up to the marker, then P's records
at e+2 (held by the fenced book until the replay met its marker); seqs 1..N without a gap.

Before 3c5a18d ('move-back replay') A took Q's records for a shadow's and ignored them: the
replay never met its marker and every later HOT order waited behind it for good.
"""

import signal
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from engine.book import Market, add
from hotshard.domain import Side
from hotshard.local.traffic import EventReader, producer
from hotshard.names import TOPIC_ORDERS
from hotshard.v1 import control_pb2
from hotshard.wire import PENDING_END, encode_order, encode_pending_marker
from tests.integration.conftest import PARTITIONS
from tests.integration.helpers import (
    promote_request,
    retry,
    shadow_from_snapshot,
    wait_consumed,
)
from tests.integration.test_move import orders_on

pytestmark = pytest.mark.integration

P, Q = 0, 3
E = 1  # the route's epoch before the move: the move's is E + 1, the move-back's E + 2


def _end_offset(bootstrap: str, topic: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "move-back-watermark"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)[1])
    finally:
        consumer.close()


def test_a_move_back_replays_the_targets_partition_as_if_it_never_moved(broker, engines):
    extra = ("--snapshot-interval-s", "2", "--poll-timeout-ms", "5")
    a = engines(str(P), "a", *extra)
    b = engines(str(Q), "b", *extra)
    src, dst = a.stub(), b.stub()
    prod = producer(broker.bootstrap, **{"linger.ms": 1})
    n = iter(range(10**6))

    def send(partition: int, epoch: int, count: int, symbol: str = "HOT") -> None:
        for _ in range(count):
            i = next(n)
            side = Side.BUY if i % 2 else Side.SELL
            command = add(f"{symbol}-{i}", f"u{i % 5}", side, 1000 + i % 7 - 3, 1 + i % 3)
            value = encode_order(symbol, command, route_epoch=epoch)
            prod.produce(TOPIC_ORDERS, value, symbol.encode(), partition)
        prod.flush(10)

    send(P, E, 200)
    send(Q, E, 20, symbol="BEE")  # Q is not empty: the replay starts where the move began
    shadow_from_snapshot(src, dst, "HOT", P)
    send(P, E, 100)  # the shadow follows these
    wait_consumed(src, P, 300)  # all 300 applied before the fence (the expected replay's)
    target_from = _end_offset(broker.bootstrap, TOPIC_ORDERS, Q)  # SwitchRouting's record
    fenced = src.Fence(
        control_pb2.FenceRequest(symbol="HOT", epoch=E + 1, to_partition=Q), timeout=30
    )
    promote = promote_request("HOT", fenced, epoch=E + 1, partition=Q)
    retry(lambda: dst.Promote(promote, timeout=60))
    b.process.stop(signal.SIGKILL)  # the target dies after the switch
    send(Q, E + 1, 150)  # routed to the dead target: nobody applied them
    send(Q, E + 1, 5, symbol="BEE")
    # The Rollback: route back to A at E + 2, the end marker on Q, then A's Unfence.
    prod.produce(TOPIC_ORDERS, encode_pending_marker("HOT", E + 1, PENDING_END), b"HOT", Q)
    prod.flush(10)
    send(P, E + 2, 80)  # held by A's fenced book until the replay met its marker
    pending = control_pb2.PendingReplay(
        topic=TOPIC_ORDERS, partition=Q, from_offset=target_from, epoch=E + 1
    )
    unfence = control_pb2.UnfenceRequest(symbol="HOT", owner_epoch=E + 2, pending=pending)
    unfenced = retry(lambda: src.Unfence(unfence, timeout=60), attempts=2)
    assert unfenced.replayed == 150 and unfenced.held <= 80
    send(P, E + 2, 50)

    applied = [d for _, d in orders_on(broker.bootstrap, TOPIC_ORDERS, P, "HOT")]
    before = [d for d in applied if d.route_epoch == E]
    assert len(before) == 300 and all(d.route_epoch in (E, E + 2) for d in applied)
    on_q = orders_on(broker.bootstrap, TOPIC_ORDERS, Q, "HOT")
    moved = [d for o, d in on_q if o >= target_from and not d.marker]
    assert len(moved) == 150
    inputs = before + moved + [d for d in applied if d.route_epoch == E + 2]
    market = Market(open_listing=True)
    expected = [e for d in inputs if d.command is not None for e in market.apply("HOT", d.command)]

    reader = EventReader(broker.bootstrap, PARTITIONS)
    try:
        reader.read_until(
            lambda r: sum(1 for e in r.events.get("HOT", []) if e[1] > 0) >= len(expected), 30
        )
        time.sleep(0.5)
        reader.poll(0.5)
        got = [e for e in reader.sorted_events("HOT") if e[1] > 0]
        assert not reader.guard.gaps, reader.guard.gaps[:5]
        held, waiting = reader.guard.held, reader.guard.pending()
    finally:
        reader.close()
    if len(got) != len(expected):
        # which side fell short: the engine (its seq, what it still holds) or the reader
        hot = list(src.Stats(control_pb2.StatsRequest(), timeout=10).symbols)
        pytest.fail(
            f"{len(got)} events read, {len(expected)} expected; engine: {hot}; reader held "
            f"{held} records: {waiting}"
        )
    assert got == expected  # seqs 1..N once, equal to a never-moved replay
    assert [e[1] for e in got] == list(range(1, len(got) + 1))
