"""Rebuilding the routing table from the engines' checkpoints (hotshard.route.plan_rebuild
pure, rebuild_routes against a real Redis)."""

import pytest

from hotshard import recovery, registry, route
from hotshard.recovery import BookEntry, Checkpoint, FenceEntry, GoneEntry


def cp(
    partition: int,
    symbols: tuple[str, ...],
    *,
    fences: dict[str, int] | None = None,
    taken_ms: int = 1,
    instance: str = "e0",
    epoch: int = 0,
) -> Checkpoint:
    books = {s: BookEntry(f"redis:snap:{s}", 10, 5, epoch) for s in symbols}
    fenced = {s: FenceEntry(e, 9, 5) for s, e in (fences or {}).items()}
    return Checkpoint(partition, 10, books, fenced, {}, instance, taken_ms)


def test_every_checkpointed_symbol_routes_to_its_partition_and_owner():
    plan = route.plan_rebuild([cp(0, ("AAPL", "MSFT")), cp(3, ("IBM",))], {0: "e1", 3: "e2"})
    assert [(p.symbol, p.partition, p.instance, p.epoch) for p in plan] == [
        ("AAPL", 0, "e1", 1),
        ("IBM", 3, "e2", 1),
        ("MSFT", 0, "e1", 1),
    ]


def test_without_a_live_owner_the_checkpoints_writer_is_named():
    (only,) = route.plan_rebuild([cp(2, ("X",), instance="writer")], {})
    assert only.instance == "writer"


def test_a_moved_symbol_goes_where_it_is_not_fenced_with_an_epoch_above_the_fence():
    old = cp(0, ("HOT",), fences={"HOT": 4}, taken_ms=9)  # listed and fenced: it left
    new = cp(5, ("HOT",), taken_ms=2)
    (hot,) = route.plan_rebuild([old, new], {0: "a", 5: "b"})
    assert (hot.partition, hot.instance, hot.epoch) == (5, "b", 4)


def test_a_book_keeps_its_owner_epoch():
    (s,) = route.plan_rebuild([cp(1, ("S",), epoch=7)], {})
    assert s.epoch == 7


def test_a_symbol_in_two_unfenced_checkpoints_goes_to_the_later_one():
    (s,) = route.plan_rebuild([cp(1, ("S",), taken_ms=5), cp(2, ("S",), taken_ms=7)], {})
    assert s.partition == 2


@pytest.mark.integration
def test_rebuild_relists_what_an_empty_redis_lost_and_keeps_existing_routes(r):
    registry.claim_partitions(r, "e1", [0, 1], 60_000)
    for checkpoint in (cp(0, ("AAPL", "MSFT"), instance="e1"), cp(1, ("IBM",), instance="e1")):
        assert recovery.write_checkpoint(r, checkpoint)
    route.list_symbol_at(r, "MSFT", 7, "elsewhere")  # a route that exists stays as it is
    written = route.rebuild_routes(r)
    assert sorted(w.symbol for w in written) == ["AAPL", "IBM"]
    assert route.lookup(r, "AAPL") == route.Route("AAPL", 0, "e1", route.ACTIVE, 1)
    msft = route.lookup(r, "MSFT")
    assert msft is not None and msft.partition == 7
    assert route.listed_symbols(r) == ["AAPL", "IBM", "MSFT"]
    assert route.rebuild_routes(r) == []  # again: nothing to do


def test_a_symbol_that_left_every_engine_keeps_its_highest_fence_or_gone_epoch_as_floor():
    left = Checkpoint(0, 10, {}, {"F": FenceEntry(3, 9, 5)}, {}, "e0", 1, {"G": GoneEntry(4, 2)})
    moved = cp(1, ("M",), fences={"M": 2}, taken_ms=2)
    home = cp(2, ("M",), taken_ms=3, epoch=2)
    planned = route.plan_rebuild([left, moved, home], {})
    assert route.plan_epoch_floors([left, moved, home], planned) == {"F": 3, "G": 4}


@pytest.mark.integration
def test_rebuild_restores_the_floor_of_a_symbol_no_engine_holds(r):
    registry.claim_partitions(r, "e1", [0], 60_000)
    gone = Checkpoint(0, 10, {}, {}, {}, "e1", 1, {"GONE": GoneEntry(5, 3)})
    assert recovery.write_checkpoint(r, gone)
    assert route.rebuild_routes(r) == []
    assert route.list_symbol_at(r, "GONE", 0, "e1").epoch == 6  # above its gone entry
