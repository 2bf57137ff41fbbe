"""A move-back of a PROMOTED target (SwitchRouting failed after its Promote), through the
real Rollback step (hotshard.migration.steps.rollback) against real engines, with a router
that looked the route up before the move-back and produced to Q afterwards: its orders
reach Q stamped e+1 after the route went back to P.

Before the target was fenced first, the Rollback wrote the PENDING_END marker on Q and the
source replayed Q up to it while the promoted target went on applying Q's e+1 records: the
late ones (after the marker) were applied on the target - a book nobody reads once the
route is back - and never on the source, whose own next orders then took the same seqs
(readers keep one of the two: acknowledged orders vanished, the stream forked). Now the
target is fenced at e+2 before the route goes back: the late orders are refused
STALE_ROUTE (their senders retry on the route as it is), and the source replays Q exactly
through the target's fence offset. HOT's events, read from every partition, equal a
never-moved replay of P through the fence, Q's e+1 records the target applied, then P's
e+2 records; seqs 1..N once.
"""

import json
import time
from typing import Any

import pytest

from engine.book import Market, add
from hotshard import names, registry, route
from hotshard.clients import redis_client
from hotshard.domain import Side, Status
from hotshard.events import STATUS
from hotshard.local.traffic import EventReader, producer
from hotshard.migration import steps
from hotshard.migration.errors import EngineUnavailable, StoreUnavailable
from hotshard.migration.fleet import AutoScalingFleet
from hotshard.migration.markers import Broker
from hotshard.migration.settings import MigrationSettings
from hotshard.names import TOPIC_ORDERS
from hotshard.reasons import Reason
from hotshard.route import ACTIVE, Route
from hotshard.v1 import control_pb2
from hotshard.wire import encode_order
from tests.integration.conftest import PARTITIONS
from tests.integration.helpers import (
    promote_request,
    retry,
    shadow_from_snapshot,
    wait_consumed,
)
from tests.integration.test_move import orders_on
from tests.integration.test_move_back import _end_offset

pytestmark = pytest.mark.integration

P, Q = 0, 3
E = 1  # HOT is listed at epoch 1: the move's is E + 1, the move-back's E + 2


def test_a_move_back_fences_the_promoted_target_so_late_orders_are_refused_not_lost(
    broker, engines, redis_server
):
    extra = ("--snapshot-interval-s", "2", "--poll-timeout-ms", "5")
    a = engines(str(P), "a", *extra)
    b = engines(str(Q), "b", *extra)
    src, dst = a.stub(), b.stub()
    settings = MigrationSettings(kafka_brokers=broker.bootstrap, redis_port=redis_server.port)
    r = redis_client(settings)
    prod = producer(broker.bootstrap, **{"linger.ms": 1})
    n = iter(range(10**6))
    ends: dict[int, int] = {}  # partition -> the next offset after the last record delivered

    def delivered(err: Any, msg: Any) -> None:
        if err is None:
            ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    def send(partition: int, epoch: int, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            i = next(n)
            side = Side.BUY if i % 2 else Side.SELL
            command = add(f"HOT-{i}", f"u{i % 5}", side, 1000 + i % 7 - 3, 1 + i % 3)
            prod.produce(
                TOPIC_ORDERS,
                encode_order("HOT", command, route_epoch=epoch),
                b"HOT",
                partition,
                on_delivery=delivered,
            )
            ids.append(f"HOT-{i}")
        assert prod.flush(10) == 0
        return ids

    listed = route.list_symbol_at(r, "HOT", P, "a")
    assert listed.epoch == E
    send(P, E, 200)
    shadow_from_snapshot(src, dst, "HOT", P)
    send(P, E, 100)  # the shadow follows these
    wait_consumed(src, P, 300)  # all 300 applied before the fence (the expected replay's)
    # SwitchRouting up to its Promote (then the task raised: the Rollback runs)
    target_from = _end_offset(broker.bootstrap, TOPIC_ORDERS, Q)
    r.set(names.REDIS_MOVE.format("HOT", E + 1), json.dumps({"target_from": target_from}))
    route.move(r, Route("HOT", P, "a", ACTIVE, E), Q, "b")
    fenced = src.Fence(
        control_pb2.FenceRequest(symbol="HOT", epoch=E + 1, to_partition=Q), timeout=30
    )
    promote = promote_request("HOT", fenced, epoch=E + 1, partition=Q)
    retry(lambda: dst.Promote(promote, timeout=60))
    moved = send(Q, E + 1, 100)  # routed to the promoted target: it applies them
    wait_consumed(dst, Q, ends[Q])  # all 100 before the Rollback fences it (the expected's)

    late: list[str] = []

    def stale_router(point: str) -> None:
        """Once the route is back on P: orders a router routed by the route it read
        before (Q, e+1), then P's at e+2 (held by A's fence until its Unfence)."""
        if point != "Rollback:routed" or late:
            return
        assert route.lookup(r, "HOT") == Route("HOT", P, "a", ACTIVE, E + 2)
        late.extend(send(Q, E + 1, 40))
        time.sleep(2.0)  # the target reads them (a promoted one still applying would)
        send(P, E + 2, 30)

    ctx = steps.Context(
        settings,
        r,
        AutoScalingFleet(r, spare=(), asg_name=""),
        Broker({"bootstrap.servers": broker.bootstrap}),
        "exec-HOT",
        fault=stale_router,
    )
    state: dict[str, Any] = {
        "migration": {
            "symbol": "HOT",
            "strategy": "pre-copy",
            "source": {"instance": "a", "address": a.address, "partition": P},
            "epoch": E,
            "execution": "exec-HOT",
        },
        "target": {"instance": "b", "address": b.address, "partition": Q, "scaled_out": False},
        "error": {"Error": "InjectedFault"},
    }
    assert registry.read_engine(r, "b") is not None
    for attempt in range(20):  # the ASL's Retry on the transient errors
        try:
            result = steps.rollback(ctx, state)
            break
        except (EngineUnavailable, StoreUnavailable):
            if attempt == 19:
                raise
            time.sleep(0.5)
    ctx.close()
    assert result["route"] == "move-back" and late, result
    assert route.lookup(r, "HOT") == Route("HOT", P, "a", ACTIVE, E + 2)
    send(P, E + 2, 30)

    applied = [d for _, d in orders_on(broker.bootstrap, TOPIC_ORDERS, P, "HOT")]
    on_q = [d for o, d in orders_on(broker.bootstrap, TOPIC_ORDERS, Q, "HOT") if o >= target_from]
    assert [d.order_id for d in on_q if d.command is not None] == moved + late
    inputs = (
        [d for d in applied if d.route_epoch == E]
        + [d for d in on_q if d.command is not None and d.order_id in set(moved)]
        + [d for d in applied if d.route_epoch == E + 2]
    )
    market = Market(open_listing=True)
    expected = [e for d in inputs if d.command is not None for e in market.apply("HOT", d.command)]

    reader = EventReader(broker.bootstrap, PARTITIONS)
    try:
        reader.read_until(
            lambda rd: sum(1 for e in rd.events.get("HOT", []) if e[1] > 0) >= len(expected), 30
        )
        time.sleep(1.0)
        reader.poll(0.5)
        got = [e for e in reader.sorted_events("HOT") if e[1] > 0]
        refused = {
            e[2]
            for e in reader.events.get("HOT", [])
            if e[0] == STATUS
            and e[1] == 0
            and e[4] == Status.REJECTED
            and e[5] == Reason.STALE_ROUTE
        }
        assert not reader.guard.gaps, reader.guard.gaps[:5]
    finally:
        reader.close()
    assert [e[1] for e in got] == list(range(1, len(got) + 1))
    assert len(got) == len(expected)
    assert got == expected  # seqs 1..N once, equal to a never-moved replay
    # Each late order was refused (its sender retries on the route as it is now), or took
    # effect where readers see it: none applied on a book nobody reads, acked and lost.
    seen = {e[2] for e in got if e[0] == STATUS}
    lost = [oid for oid in late if oid not in refused and oid not in seen]
    assert not lost, f"{len(lost)} of {len(late)} late orders neither refused nor seen: {lost[:5]}"
    assert refused == set(late)  # refused by the fenced target (nothing applied them)
