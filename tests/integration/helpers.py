"""Shared steps of the integration tests."""

import time
from collections.abc import Callable
from typing import Any

import grpc

from engine.book import Market
from hotshard import route
from hotshard.commands import Command
from hotshard.edge.settings import EdgeSettings
from hotshard.events import Event
from hotshard.local.traffic import partition_of
from hotshard.recovery import Checkpoint, read_checkpoint
from hotshard.v1 import control_pb2
from tests.integration.conftest import PARTITIONS


def place(symbol: str) -> int:
    return partition_of(symbol, PARTITIONS)


def expected_events(stream: list[tuple[str, Command]]) -> tuple[Market, dict[str, list[Event]]]:
    market = Market(open_listing=True)
    out: dict[str, list[Event]] = {}
    for symbol, command in stream:
        out.setdefault(symbol, []).extend(market.apply(symbol, command))
    return market, out


def total(events: dict[str, list[Event]]) -> int:
    return sum(len(v) for v in events.values())


def retry(call: Any, attempts: int = 50) -> Any:
    """A step of the orchestration: retried on UNAVAILABLE / NOT_FOUND while a snapshot is
    being stored (what the ASL's Retry does)."""
    for _ in range(attempts - 1):
        try:
            return call()
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND):
                raise
            time.sleep(0.1)
    return call()


def listed_edge(broker: Any, redis_server: Any, symbols: Any, secret: str) -> Any:
    """The symbols listed in Redis and the local edge's settings against these services."""

    r = redis_server.client()
    for symbol in symbols:
        route.list_symbol(r, symbol)
    return EdgeSettings(
        kafka_brokers=broker.bootstrap, redis_port=redis_server.port, jwt_secret=secret
    )


def wait_consumed(stub: Any, partition: int, offset: int, timeout: float = 30) -> None:
    """Wait until the engine has consumed `partition` up to `offset` (its next offset): a
    Fence sent before then refuses the records it has not consumed yet (STALE_ROUTE, as it
    must), which a test expecting them applied before the fence would take for a loss."""
    deadline = time.monotonic() + timeout
    while True:
        stats = stub.Stats(control_pb2.StatsRequest(), timeout=5)
        at = {p.partition: p.next_offset for p in stats.partitions}
        if at.get(partition, 0) >= offset:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"partition {partition} consumed to {at.get(partition)}, not {offset}"
            )
        time.sleep(0.02)


def wait_checkpoint(
    r: Any, partition: int, done: Callable[[Checkpoint], bool], timeout: float = 20
) -> Checkpoint | None:
    """The partition's checkpoint once `done` holds for it (or the last one read, None if
    none, at the deadline): a periodic checkpoint is written on the engine's own clock,
    later than its interval on a loaded machine."""
    deadline = time.monotonic() + timeout
    checkpoint = read_checkpoint(r, partition)
    while (checkpoint is None or not done(checkpoint)) and time.monotonic() < deadline:
        time.sleep(0.05)
        checkpoint = read_checkpoint(r, partition)
    return checkpoint


def shadow_from_snapshot(src: Any, dst: Any, symbol: str, partition: int) -> Any:
    """Pre-copy's first steps by hand: the source's Snapshot, then the target Follows the
    source's partition from just after it. Returns the SnapshotReply."""
    snap = retry(lambda: src.Snapshot(control_pb2.SnapshotRequest(symbol=symbol), timeout=30))
    follow = control_pb2.FollowRequest(
        symbol=symbol,
        location=snap.location,
        source_partition=partition,
        from_offset=snap.input_offset + 1,
    )
    retry(lambda: dst.Follow(follow, timeout=30))
    return snap


def promote_request(
    symbol: str, fenced: Any, *, epoch: int, partition: int, **extra: Any
) -> control_pb2.PromoteRequest:
    """The target's Promote through the source's fence (a FenceReply) at `epoch`."""
    return control_pb2.PromoteRequest(
        symbol=symbol,
        through_offset=fenced.fence_offset,
        expect_seq=fenced.final_seq,
        expect_hash=fenced.state_hash,
        owner_epoch=epoch,
        partition=partition,
        fallback_location=fenced.location,
        **extra,
    )
