"""A symbol removed from an engine stays refused there after its fence is pruned, across a
restart and a rewind (real Tansu, redis-server, gRPC; the engine in the test's process, open
listing). Before: once `--fence-retain-s` had passed, nothing was left of the fence, so
(1) a late order routed by a stale table started a fresh book of the symbol on its old
owner, and (2) a follow-Restore rewinding the partition past the fence read the symbol's
old records again as a new symbol's: a second book, its events published again."""

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from engine.book import Book, Instrument, add
from engine.book.snapshot import dump
from engine.service import core
from hotshard import recovery, route
from hotshard.domain import Side, Status
from hotshard.local.traffic import EventReader, produce_orders, producer
from hotshard.reasons import Reason
from hotshard.v1 import control_pb2
from tests.integration.conftest import PARTITIONS
from tests.integration.inprocess import InProcessEngine, engine_in_process

pytestmark = pytest.mark.integration

FAST = {"snapshot_interval_s": 0.2, "fence_retain_s": 0.3}


def wait(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def buried(running: InProcessEngine, symbol: str) -> bool:
    """The symbol's fence was pruned (it has left Stats)."""
    stats = running.stub.Stats(control_pb2.StatsRequest(), timeout=5)
    return symbol not in [f.symbol for f in stats.fences]


def books(running: InProcessEngine) -> list[str]:
    state = running.engine.state
    return running.on_loop(lambda: sorted(state.market.books))


def statuses(reader: EventReader, symbol: str, order_id: str) -> list[tuple[int, int, int]]:
    """(seq, status, reason) of the order's status events read so far."""
    return [(e[1], e[4], e[5]) for e in reader.events.get(symbol, []) if e[2] == order_id]


@pytest.fixture
def reader(broker: Any) -> Iterator[EventReader]:
    reader = EventReader(broker.bootstrap, PARTITIONS)
    yield reader
    reader.close()


def remove(running: InProcessEngine, reader: EventReader, prod: Any) -> None:
    """GONE (three orders at route epoch 1) and KEEP on partition 0; GONE removed at fence
    epoch 2."""
    orders = [
        (s, add(f"{s}-{i}", "u", Side.BUY, 10 + i, 1)) for i in range(3) for s in ("GONE", "KEEP")
    ]
    produce_orders(prod, orders, lambda s: 0, route_epoch=1)
    prod.flush(10)
    assert reader.read_until(lambda rd: len(rd.events.get("GONE", [])) >= 3, timeout=30)
    request = control_pb2.RemoveRequest(symbol="GONE", fence_epoch=2)
    running.stub.Remove(request, timeout=30)


def remove_and_bury(running: InProcessEngine, reader: EventReader, prod: Any) -> None:
    """`remove`, and GONE's fence pruned."""
    remove(running, reader, prod)
    wait("GONE's fence to be pruned", lambda: buried(running, "GONE"))


def late_order(prod: Any, reader: EventReader, order_id: str) -> list[tuple[int, int, int]]:
    """A GONE order routed by a table as it was before the move (epoch 1), then a KEEP one
    to know it was consumed; the late order's status events."""
    produce_orders(
        prod, [("GONE", add(order_id, "u", Side.SELL, 9, 1))], lambda s: 0, route_epoch=1
    )
    produce_orders(
        prod, [("KEEP", add(f"after-{order_id}", "u", Side.BUY, 11, 1))], lambda s: 0, route_epoch=1
    )
    prod.flush(10)
    assert reader.read_until(lambda rd: bool(statuses(rd, "KEEP", f"after-{order_id}")), timeout=30)
    reader.poll(0.2)
    return statuses(reader, "GONE", order_id)


def test_a_late_order_for_a_symbol_whose_fence_was_pruned_is_stale_route_never_a_fresh_book(
    broker, redis_server, reader
):
    prod = producer(broker.bootstrap)
    try:
        with engine_in_process(broker, redis_server, "0", "gone", **FAST) as running:
            remove_and_bury(running, reader, prod)
            assert late_order(prod, reader, "late-1") == [(0, Status.REJECTED, Reason.STALE_ROUTE)]
            assert books(running) == ["KEEP"]
            wait(
                "a checkpoint that keeps only GONE's gone entry",
                lambda: _gone_in_checkpoint(redis_server),
            )
        # durable: a restart from that checkpoint still refuses it
        with engine_in_process(broker, redis_server, "0", "gone", **FAST) as running:
            assert late_order(prod, reader, "late-2") == [(0, Status.REJECTED, Reason.STALE_ROUTE)]
            assert books(running) == ["KEEP"]
            assert not running.failure
    finally:
        prod.flush(10)
        prod.close()


def test_a_symbol_delisted_and_listed_again_takes_its_orders_where_its_book_is(
    broker, redis_server, reader
):
    """Before, a listing again restarted at route epoch 1: below the owner epoch of the
    book still on the engine (2), which refused every order of it STALE_ROUTE for good.
    Now the routing table lists it above every epoch it had, and the book goes on (its
    seqs continue). A symbol removed from the partition stays refused there (its gone
    entry: a fresh book would number its events from 1 again, dropped by readers)."""
    prod = producer(broker.bootstrap)
    r = redis_server.client()
    try:
        with engine_in_process(broker, redis_server, "0", "relist", **FAST) as running:
            listed = route.list_symbol_at(r, "LIVE", 0, "relist")
            moved = route.move(r, listed, 0, "relist")  # its book is owned at epoch 2
            remove_and_bury(running, reader, prod)
            first = add("live-0", "u", Side.BUY, 10, 1)
            produce_orders(prod, [("LIVE", first)], lambda s: 0, route_epoch=moved.epoch)
            prod.flush(10)
            assert reader.read_until(lambda rd: bool(statuses(rd, "LIVE", "live-0")), timeout=30)
            for symbol in ("LIVE", "GONE"):
                route.delist(r, symbol)
            again = {s: route.list_symbol_at(r, s, 0, "relist") for s in ("LIVE", "GONE")}
            assert again["LIVE"].epoch > moved.epoch
            for symbol, found in again.items():
                order = add(f"{symbol}-again", "u", Side.SELL, 20, 1)
                produce_orders(prod, [(symbol, order)], lambda s: 0, route_epoch=found.epoch)
            prod.flush(10)
            assert reader.read_until(
                lambda rd: (
                    bool(statuses(rd, "LIVE", "LIVE-again"))
                    and bool(statuses(rd, "GONE", "GONE-again"))
                ),
                timeout=30,
            )
            assert statuses(reader, "LIVE", "LIVE-again") == [(2, Status.ACCEPTED, 0)]
            assert statuses(reader, "GONE", "GONE-again") == [
                (0, Status.REJECTED, Reason.STALE_ROUTE)
            ]
            assert books(running) == ["KEEP", "LIVE"]
            assert not running.failure
    finally:
        r.close()
        prod.flush(10)
        prod.close()


def _gone_in_checkpoint(redis_server: Any) -> bool:
    r = redis_server.client()
    try:
        checkpoint = recovery.read_checkpoint(r, 0)
    finally:
        r.close()
    if checkpoint is None or "GONE" in checkpoint.fences or "GONE" not in checkpoint.gone:
        return False
    left = checkpoint.gone["GONE"]
    return left.epoch == 2 and left.offset >= 4  # GONE's last record is offset 4


def restore_following_from_the_start(running: InProcessEngine) -> Any:
    book = Book(Instrument("RST"))
    book.apply(add("r0", "u", Side.BUY, 50, 1))
    request = control_pb2.RestoreRequest(
        symbol="RST",
        snapshot=dump(book, input_offset=-1, partition=-1),
        follow=True,
        partition=0,
        from_offset=0,
    )
    return running.stub.Restore(request, timeout=30)


def test_a_rewind_past_a_pruned_fence_applies_nothing_of_the_gone_symbol_again(
    broker, redis_server, reader
):
    prod = producer(broker.bootstrap)
    try:
        with engine_in_process(broker, redis_server, "0", "rewind", **FAST) as running:
            remove_and_bury(running, reader, prod)
            assert restore_following_from_the_start(running).seq == 1
            # partition 0 is read again from 0: GONE's three orders among them
            assert late_order(prod, reader, "late") == [(0, Status.REJECTED, Reason.STALE_ROUTE)]
            assert books(running) == ["KEEP", "RST"]  # no second book of GONE
            for i in range(3):  # and its orders answered once, as accepted then
                assert statuses(reader, "GONE", f"GONE-{i}") == [(i + 1, Status.ACCEPTED, 0)]
            assert not running.failure
    finally:
        prod.flush(10)
        prod.close()


def test_a_rewind_past_a_gone_symbol_no_longer_remembered_is_refused(
    broker, redis_server, reader, monkeypatch
):
    monkeypatch.setattr(core, "MAX_GONE", 0)  # every gone entry is dropped at once
    prod = producer(broker.bootstrap)
    try:
        with engine_in_process(broker, redis_server, "0", "floor", **FAST) as running:
            remove(running, reader, prod)
            state = running.engine.state
            wait(
                "GONE forgotten",
                lambda: running.on_loop(lambda: state.rewind_floor.get(0, -1) >= 4),
            )
            with pytest.raises(grpc.RpcError) as caught:
                restore_following_from_the_start(running)
            err: Any = caught.value
            reason = dict(err.trailing_metadata() or ()).get("reason")
            assert (err.code(), reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REWIND_PAST_GONE")
            assert books(running) == ["KEEP"]
    finally:
        prod.flush(10)
        prod.close()
