"""engine.service.handover: the decisions of Snapshot, Restore and Remove, without Kafka or
Redis. Each refusal is a typed ControlError with its reason code."""

import pytest

from engine.book import Book, Instrument
from engine.book.snapshot import SnapshotError, SnapshotInfo
from engine.service import handover
from engine.service.errors import (
    AlreadyHereError,
    BadRequestError,
    CorruptSnapshotError,
    NotHereError,
    NotOwnedError,
)
from engine.service.handover import RestorePlan, plan_restore
from hotshard.reasons import Reason

BOOKS = {"HERE": Book(Instrument("HERE"))}


def info(symbol: str = "S", *, partition: int = 0, offset: int = 41) -> SnapshotInfo:
    return SnapshotInfo(symbol, input_offset=offset, partition=partition, seq=9)


def plan(
    snapshot: SnapshotInfo,
    *,
    symbol: str = "S",
    follow: bool = False,
    partition: int = 0,
    from_offset: int = 0,
    owned: tuple[int, ...] = (0,),
    position: dict[int, int] | None = None,
) -> RestorePlan:
    return plan_restore(
        symbol,
        snapshot,
        follow=follow,
        partition=partition,
        from_offset=from_offset,
        owned=owned,
        position=position or {},
    )


def test_only_a_held_symbol_can_be_snapshot_or_removed():
    assert handover.held_book(BOOKS, "HERE") is BOOKS["HERE"]
    with pytest.raises(NotHereError) as refused:
        handover.held_book(BOOKS, "GONE")
    assert refused.value.reason == Reason.UNKNOWN_SYMBOL
    assert NotHereError.status == "NOT_FOUND"


def test_a_restore_never_replaces_a_held_book():
    handover.refuse_held(BOOKS, "NEW")
    with pytest.raises(AlreadyHereError) as refused:
        handover.refuse_held(BOOKS, "HERE")
    assert refused.value.reason == Reason.SYMBOL_ALREADY_HERE
    assert AlreadyHereError.status == "ALREADY_EXISTS"


def test_a_snapshot_that_does_not_load_is_data_loss_or_a_bad_request():
    corrupt = handover.unloadable(SnapshotError(Reason.CORRUPT_SNAPSHOT, "crc"))
    assert isinstance(corrupt, CorruptSnapshotError) and corrupt.status == "DATA_LOSS"
    newer = handover.unloadable(SnapshotError(Reason.UNSUPPORTED_SNAPSHOT_VERSION, "v9"))
    assert isinstance(newer, BadRequestError)
    assert newer.reason == Reason.UNSUPPORTED_SNAPSHOT_VERSION


def test_without_follow_the_book_joins_its_owned_partition_at_the_current_position():
    got = plan(info(partition=2), owned=(2,), position={2: 50})
    assert got == RestorePlan(partition=2, applied_through=49, adopt=False)


def test_without_follow_a_partition_owned_elsewhere_is_refused():
    with pytest.raises(NotOwnedError) as refused:
        plan(info(partition=3), owned=(2,))
    assert refused.value.reason == Reason.PARTITION_NOT_OWNED
    assert NotOwnedError.status == "FAILED_PRECONDITION"


def test_follow_feeds_the_book_from_the_offset_asked_and_adopts_a_partition_not_owned():
    got = plan(info(partition=0), follow=True, partition=5, from_offset=7, owned=(2,))
    assert got == RestorePlan(partition=5, applied_through=6, adopt=True)
    owned = plan(info(partition=0), follow=True, partition=2, owned=(2,))
    assert owned == RestorePlan(partition=2, applied_through=-1, adopt=False)


def test_following_the_snapshots_own_partition_must_start_after_its_offset():
    with pytest.raises(BadRequestError) as refused:
        plan(info(offset=41), follow=True, from_offset=41, position={0: 60})
    assert refused.value.reason == Reason.FOLLOW_OVERLAPS_SNAPSHOT
    got = plan(info(offset=41), follow=True, from_offset=42, position={0: 60})
    assert got.applied_through == 41


def test_a_snapshot_of_another_symbol_or_with_nothing_to_follow_is_a_bad_request():
    with pytest.raises(BadRequestError) as other:
        plan(info(), symbol="T")
    assert other.value.reason == Reason.SNAPSHOT_OF_ANOTHER_SYMBOL
    with pytest.raises(BadRequestError) as nowhere:
        plan(info(partition=-1))
    assert nowhere.value.reason == Reason.NO_PARTITION_TO_FOLLOW


def test_a_remove_fences_at_the_epoch_asked_else_one_past_the_route():
    assert handover.fence_epoch(4, route_epoch=1) == 4
    assert handover.fence_epoch(0, route_epoch=3) == 4
    assert handover.fence_epoch(0, route_epoch=None) == 1
