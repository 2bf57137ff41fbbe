"""kill -9 during a pre-copy move, on the real broker, Redis and gRPC: of the source after
the fence, of the target while it shadows, of the target after the promotion. Each engine
restarts from its own checkpoint (never another owner's snapshot) and the symbol ends in
the same state: its events, read across both partitions, equal a never-moved replay of its
input as applied (partition 0 through the fence, then partition 3), seqs 1..N once."""

import signal
import time
from typing import Any

import pytest

from engine.book import Market, add
from hotshard.commands import Command
from hotshard.domain import Side, Status
from hotshard.local.traffic import EventReader, producer
from hotshard.names import TOPIC_ORDERS
from hotshard.reasons import Reason
from hotshard.v1 import control_pb2
from hotshard.wire import encode_order
from tests.integration.conftest import PARTITIONS
from tests.integration.helpers import promote_request, retry
from tests.integration.test_move import orders_on

pytestmark = pytest.mark.integration

P, Q = 0, 3
EXTRA = ("--snapshot-interval-s", "1", "--batch-size", "200")


def send(prod: Any, partition: int, epoch: int, commands: list[Command]) -> None:
    for command in commands:
        prod.produce(
            TOPIC_ORDERS, encode_order("HOT", command, route_epoch=epoch), b"HOT", partition
        )
    prod.flush(10)


def orders(prefix: str, n: int) -> list[Command]:
    return [
        add(f"{prefix}{i}", f"u{i % 3}", Side.BUY if i % 2 else Side.SELL, 1000 + (i % 9) - 4, 2)
        for i in range(n)
    ]


def hot_stats(stub: Any) -> Any:
    return stub.Stats(control_pb2.StatsRequest(), timeout=10)


@pytest.mark.parametrize("case", ["source-after-fence", "target-shadowing", "target-after-promote"])
def test_kill_9_during_a_move_recovers_the_same_state(broker, engines, case):
    a = engines(str(P), "a", *EXTRA)
    b = engines(str(Q), "b", *EXTRA)
    prod = producer(broker.bootstrap)
    resting = [
        add(
            f"r{i}",
            "maker",
            Side.BUY if i % 2 else Side.SELL,
            990 - i % 50 if i % 2 else 1010 + i % 50,
            3,
        )
        for i in range(800)
    ]
    send(prod, P, 1, resting)
    reader = EventReader(broker.bootstrap, PARTITIONS)
    assert reader.read_until(lambda r: len(r.events.get("HOT", [])) >= len(resting), timeout=60)

    snap = a.stub().Snapshot(control_pb2.SnapshotRequest(symbol="HOT"), timeout=30)
    b.stub().Follow(
        control_pb2.FollowRequest(
            symbol="HOT",
            location=snap.location,
            source_partition=P,
            from_offset=snap.input_offset + 1,
        ),
        timeout=30,
    )
    send(prod, P, 1, orders("p", 40))  # the shadow follows these
    if case == "target-shadowing":
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            shadows = hot_stats(b.stub()).shadows
            if shadows and shadows[0].lag == 0 and shadows[0].next_offset > snap.input_offset + 40:
                break
            time.sleep(0.05)
        b.process.stop(signal.SIGKILL)
        b = engines(str(Q), "b", *EXTRA)
        assert list(hot_stats(b.stub()).shadows) == []  # shadows are not restored...
    send(prod, Q, 2, orders("q", 20))  # the route switched: held on B (...but expected)
    fenced = a.stub().Fence(
        control_pb2.FenceRequest(symbol="HOT", epoch=2, to_partition=Q), timeout=30
    )
    if case == "source-after-fence":
        time.sleep(0.3)
        a.process.stop(signal.SIGKILL)
        send(prod, P, 1, orders("late", 3))  # in flight with the old route: STALE_ROUTE
        a = engines(str(P), "a", *EXTRA)
        stats = hot_stats(a.stub())
        [fence] = stats.fences
        assert (fence.symbol, fence.epoch, fence.fence_offset, fence.final_seq) == (
            "HOT",
            2,
            fenced.fence_offset,
            fenced.final_seq,
        )
        [book] = [s for s in stats.symbols if s.symbol == "HOT"]
        assert book.seq == fenced.final_seq  # its own snapshot, not the target's
    request = promote_request("HOT", fenced, epoch=2, partition=Q, wait_durable=True)
    promoted = retry(lambda: b.stub().Promote(request, timeout=60))
    assert promoted.durable
    send(prod, Q, 2, orders("after", 20))
    if case == "target-after-promote":
        time.sleep(0.3)
        b.process.stop(signal.SIGKILL)
        send(prod, Q, 2, orders("down", 10))  # while it is down
        b = engines(str(Q), "b", *EXTRA)
        again = retry(lambda: b.stub().Promote(request, timeout=60))  # a retried step
        assert again.durable and again.location
    retry(lambda: a.stub().Remove(control_pb2.RemoveRequest(symbol="HOT"), timeout=30))
    send(prod, Q, 2, orders("end", 5))

    applied = [
        d
        for o, d in orders_on(broker.bootstrap, TOPIC_ORDERS, P, "HOT")
        if o <= fenced.fence_offset
    ]
    applied += [d for _, d in orders_on(broker.bootstrap, TOPIC_ORDERS, Q, "HOT")]
    market = Market(open_listing=True)
    expected = [e for d in applied if d.command for e in market.apply("HOT", d.command)]
    assert reader.read_until(
        lambda r: sum(1 for e in r.events.get("HOT", []) if e[1] > 0) >= len(expected), timeout=60
    )
    reader.poll(0.5)
    got = [e for e in reader.sorted_events("HOT") if e[1] > 0]
    assert not reader.guard.gaps
    assert got == expected
    [hot] = [s for s in hot_stats(b.stub()).symbols if s.symbol == "HOT"]
    assert (hot.seq, hot.owner_epoch, hot.partition) == (expected[-1][1], 2, Q)
    late = [e for e in reader.events.get("HOT", []) if e[0] == 1 and e[2].startswith("late")]
    assert all((e[1], e[4], e[5]) == (0, Status.REJECTED, Reason.STALE_ROUTE) for e in late)
    if case == "source-after-fence":
        assert {e[2] for e in late} == {"late0", "late1", "late2"}
    reader.close()
