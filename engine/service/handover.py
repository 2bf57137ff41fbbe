"""What the control operations (Snapshot, Restore, Remove) may do with a symbol, decided
without I/O: which book, which partition feeds a restored book and from where, which fence
epoch a Remove sets. engine.service.operations does the I/O around these answers; each
refusal is a ControlError with a reason code (engine.service.errors).
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from engine.book import Book
from engine.book.snapshot import SnapshotError, SnapshotInfo
from engine.service.errors import (
    AlreadyHereError,
    BadRequestError,
    ControlError,
    CorruptSnapshotError,
    NotHereError,
    NotOwnedError,
)
from hotshard.reasons import Reason


def held_book(books: Mapping[str, Book], symbol: str) -> Book:
    """The symbol's book; NotHereError if this engine does not hold it."""
    book = books.get(symbol)
    if book is None:
        raise NotHereError(Reason.UNKNOWN_SYMBOL, f"no book for {symbol}")
    return book


def refuse_held(books: Mapping[str, Book], symbol: str) -> None:
    """A Restore installs a book only where there is none (it would fork the sequence)."""
    if symbol in books:
        raise AlreadyHereError(Reason.SYMBOL_ALREADY_HERE, f"{symbol} is already here")


def unloadable(exc: SnapshotError) -> ControlError:
    """The answer to a snapshot that does not load: damaged bytes or an unknown version."""
    if exc.reason == Reason.CORRUPT_SNAPSHOT:
        return CorruptSnapshotError(exc.reason, exc.detail)
    return BadRequestError(exc.reason, exc.detail)


@dataclass(frozen=True, slots=True)
class RestorePlan:
    """Where a restored book is fed from: `partition`, after offset `applied_through`
    (the last one the book holds). `adopt`: the partition must first be claimed, its
    position set to `from_offset`."""

    partition: int
    applied_through: int
    adopt: bool


def plan_restore(
    symbol: str,
    info: SnapshotInfo,
    *,
    follow: bool,
    partition: int,
    from_offset: int,
    owned: Collection[int],
    position: Mapping[int, int],
) -> RestorePlan:
    """With `follow`, the book is fed from `partition` starting at `from_offset` (a
    partition not owned yet is adopted); without, from its snapshot's partition, which must
    be owned, at the current position (`position`: next offset per owned partition)."""
    if info.symbol != symbol:
        raise BadRequestError(
            Reason.SNAPSHOT_OF_ANOTHER_SYMBOL, f"snapshot is of {info.symbol}, not {symbol}"
        )
    target = partition if follow else info.partition
    if target < 0:
        raise BadRequestError(Reason.NO_PARTITION_TO_FOLLOW, "no partition to follow")
    if follow and target == info.partition and from_offset <= info.input_offset:
        # the snapshot already holds the orders up to its offset: applying them again
        # would emit their events a second time under new sequence numbers
        raise BadRequestError(
            Reason.FOLLOW_OVERLAPS_SNAPSHOT,
            f"follow from {from_offset}: the snapshot already includes offsets up to "
            f"{info.input_offset} of partition {target}",
        )
    adopt = target not in owned
    if adopt and not follow:
        raise NotOwnedError(
            Reason.PARTITION_NOT_OWNED,
            f"partition {target} is not owned here; restore with follow",
        )
    applied = from_offset - 1 if follow else position.get(target, 0) - 1
    return RestorePlan(target, applied, adopt)


def fence_epoch(requested: int, route_epoch: int | None) -> int:
    """The route epoch below which a removed symbol's orders are STALE_ROUTE: the one asked
    for, else one past the route's current epoch (0 when the symbol has no route)."""
    if requested > 0:
        return requested
    return (route_epoch or 0) + 1
