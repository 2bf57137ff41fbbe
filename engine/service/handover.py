"""What the control operations (Snapshot, Restore, Remove, Follow, Fence, Promote, Unfence)
may do with a symbol, decided without I/O: which book, which partition feeds a restored
book and from where, which fence epoch a Remove sets, whether a Follow or a Promote can be
done as asked, the state hash a move compares. engine.service.operations does the I/O
around these answers; each refusal is a ControlError with a reason code (engine.service.errors).
"""

import hashlib
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
from hotshard.recovery import FenceEntry


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
    rewind_floor: Mapping[int, int] | None = None,
) -> RestorePlan:
    """With `follow`, the book is fed from `partition` starting at `from_offset` (a
    partition not owned yet is adopted); without, from its snapshot's partition, which must
    be owned, at the current position (`position`: next offset per owned partition). A
    follow that rewinds an owned partition to its rewind floor or before is refused: the
    records there of a symbol gone long ago would be read as a new symbol's."""
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
    floor = (rewind_floor or {}).get(target, -1)
    if follow and not adopt and from_offset <= floor < position.get(target, 0):
        raise BadRequestError(
            Reason.REWIND_PAST_GONE,
            f"follow from {from_offset}: partition {target} holds records up to {floor} of "
            "symbols removed here that are no longer remembered",
        )
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


# ---------------------------------------------------------------------- moves


def state_hash(book: Book) -> str:
    """A digest of the book's state as a move compares it (Fence on the source, Promote on
    the target): symbol, seq, last trade price, resting orders and every price level's
    total. O(levels), not O(orders), so a move's pause does not grow with the book; two
    books that applied different input differ here with overwhelming likelihood (their
    seqs already differ unless the same number of events came out)."""
    bids, asks = book.depth(1 << 30)
    text = f"{book.symbol}|{book.seq}|{book.last_price}|{book.resting()}|{bids}|{asks}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


SNAPSHOT_BYTES_PER_ORDER = 40
"""About what one resting or remembered order costs in a snapshot (27.7 MB at 1M orders,
docs/BENCHMARKS.md), to choose Redis or S3 before the bytes exist."""


def snapshot_estimate(book: Book) -> int:
    return 256 + SNAPSHOT_BYTES_PER_ORDER * (book.resting() + book.remembered())


def same_fence(fence: FenceEntry, epoch: int, to_partition: int) -> bool:
    """A Fence asked again: the same answer if it asks for the same move; any other move
    of a fenced symbol is refused (Unfence it first)."""
    if fence.epoch == epoch and fence.to_partition == to_partition:
        return True
    raise NotOwnedError(
        Reason.SYMBOL_FENCED,
        f"already fenced to epoch {fence.epoch}, partition {fence.to_partition}",
    )


def check_fence_request(epoch: int, owner_epoch: int, to_partition: int, home: int) -> None:
    if epoch <= owner_epoch:
        raise BadRequestError(
            Reason.STALE_ROUTE, f"fence epoch {epoch} is not above the owner epoch {owner_epoch}"
        )
    if to_partition < 0 or to_partition == home:
        raise BadRequestError(
            Reason.NO_PARTITION_TO_FOLLOW, f"to_partition {to_partition} is not another partition"
        )


def plan_follow(
    symbol: str,
    info: SnapshotInfo,
    *,
    source: int,
    from_offset: int,
    owned: Collection[int],
    books: Mapping[str, Book],
) -> None:
    """A shadow follows `source` (not owned here) from right after its snapshot."""
    if info.symbol != symbol:
        raise BadRequestError(
            Reason.SNAPSHOT_OF_ANOTHER_SYMBOL, f"snapshot is of {info.symbol}, not {symbol}"
        )
    if symbol in books:
        raise AlreadyHereError(Reason.SYMBOL_ALREADY_HERE, f"{symbol} is already here")
    if source < 0 or source in owned:
        raise BadRequestError(
            Reason.NO_PARTITION_TO_FOLLOW,
            f"partition {source} is owned here: a shadow follows another engine's partition",
        )
    if info.partition == source and from_offset <= info.input_offset:
        raise BadRequestError(
            Reason.FOLLOW_OVERLAPS_SNAPSHOT,
            f"follow from {from_offset}: the snapshot includes offsets up to {info.input_offset}",
        )
    if info.partition == source and from_offset > info.input_offset + 1:
        raise BadRequestError(
            Reason.FOLLOW_GAP,
            f"follow from {from_offset}: offsets {info.input_offset + 1}..{from_offset - 1} "
            "would be missing",
        )


def check_promoted(*, seq: int, state: str, expect_seq: int, expect_hash: str, symbol: str) -> None:
    """A shadow caught up through the fence must be exactly the fenced book."""
    if seq != expect_seq or (expect_hash and state != expect_hash):
        raise NotOwnedError(
            Reason.STATE_MISMATCH,
            f"{symbol}: shadow at seq {seq} hash {state}, the fence says seq {expect_seq} "
            f"hash {expect_hash}",
        )


def refuse_left(fence: FenceEntry | None, owner_epoch: int, symbol: str) -> None:
    """A Promote to an epoch the symbol already left this engine past (a move-back fenced
    and removed the promoted book): a late copy of the move's Promote must not bring the
    book back here, where nothing reads it any more."""
    if fence is not None and fence.epoch > owner_epoch:
        raise NotOwnedError(
            Reason.STALE_ROUTE,
            f"{symbol} left here at epoch {fence.epoch}: no Promote to epoch {owner_epoch}",
        )


def promote_source(*, has_shadow: bool, shadow_past: bool, fallback: str, symbol: str) -> str:
    """Where a Promote takes the book from: 'shadow' (caught up or catching up) or
    'fallback' (the fence snapshot: no shadow, or one that applied records after the
    fence); NOT_FOUND(NO_SHADOW) / SHADOW_PAST_FENCE without a fallback."""
    if has_shadow and not shadow_past:
        return "shadow"
    if fallback:
        return "fallback"
    if has_shadow:
        raise NotOwnedError(
            Reason.SHADOW_PAST_FENCE,
            f"{symbol}: the shadow applied records after the fence; give fallback_location",
        )
    raise NotHereError(Reason.NO_SHADOW, f"no shadow of {symbol} and no fallback_location")
