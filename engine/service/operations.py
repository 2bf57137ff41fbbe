"""The RPC side of the engine: Snapshot, Restore and Remove, run on the loop thread (through
`Engine.call`, between two batches) by engine.service.control.

Each one asks engine.service.handover what it may do, then does the I/O: fetching and
storing snapshots, claiming a partition, checkpointing. A change that could not be made
durable is undone and answered NotDurableError, so a caller never sees a change that a
crash would take back.
"""

from dataclasses import dataclass

from engine.book.snapshot import SnapshotError, load
from engine.service import handover
from engine.service.errors import NotDurableError, NotHereError, NotOwnedError, SnapshotMissingError
from engine.service.loop import Engine, SnapshotResult
from hotshard import registry, route
from hotshard.reasons import Reason


@dataclass(frozen=True, slots=True)
class Restored:
    seq: int
    applied_through: int
    """The last offset of its partition the book holds; it is fed from the next one."""


@dataclass(frozen=True, slots=True)
class Removed:
    seq: int
    input_offset: int
    location: str
    """Where its final snapshot is (what a Restore elsewhere takes)."""
    fence_epoch: int


@dataclass(slots=True)
class Operations:
    engine: Engine

    def snapshot(self, symbol: str) -> SnapshotResult:
        handover.held_book(self.engine.state.market.books, symbol)
        self._flushed()
        return self.engine.store_snapshot(symbol)

    def restore(
        self,
        symbol: str,
        *,
        data: bytes | None,
        location: str,
        follow: bool,
        partition: int,
        from_offset: int,
    ) -> Restored:
        """Install a book from a snapshot (its bytes, or `location` to fetch them from).
        With `follow`, it is fed from `partition` starting at `from_offset`; without, from
        its snapshot's partition at the current position (handover.plan_restore)."""
        engine = self.engine
        state = engine.state
        handover.refuse_held(state.market.books, symbol)
        if data is None:
            try:
                data = engine.store.fetch(location)
            except SnapshotMissingError as exc:
                raise NotHereError(exc.reason, exc.detail) from exc
        try:
            book, info = load(data)
        except SnapshotError as exc:
            raise handover.unloadable(exc) from exc
        plan = handover.plan_restore(
            symbol,
            info,
            follow=follow,
            partition=partition,
            from_offset=from_offset,
            owned=engine.partitions,
            position=state.position,
        )
        if plan.adopt:
            self._adopt(plan.partition, from_offset)
        rewound = follow and state.rewind(plan.partition, from_offset)
        state.add_book(book, plan.partition, plan.applied_through)
        if rewound:
            engine.assign()
        if not engine.checkpoint_all("restore"):
            # not durable here: give the book back rather than report a restore that a
            # crash would undo (the caller retries or rolls back)
            state.remove_book(symbol, 0)
            raise NotDurableError(Reason.NOT_DURABLE, "restore not checkpointed; retry")
        return Restored(book.seq, plan.applied_through)

    def remove(self, symbol: str, fence_epoch: int) -> Removed:
        """Drop the symbol after a final snapshot; its later orders get STALE_ROUTE below
        the fence epoch (handover.fence_epoch) until it is restored somewhere."""
        engine = self.engine
        state = engine.state
        handover.held_book(state.market.books, symbol)
        self._flushed()
        final = engine.store_snapshot(symbol)
        current = route.lookup(engine.redis, symbol) if fence_epoch <= 0 else None
        fence_epoch = handover.fence_epoch(fence_epoch, current.epoch if current else None)
        home = state.home.get(symbol, -1)
        applied = state.applied_offset(symbol)
        book = state.remove_book(symbol, fence_epoch)
        if not engine.checkpoint_all("remove"):
            # a crash now would restart with the symbol still listed here: keep it, and
            # let the caller retry the Remove
            if book is not None:
                state.add_book(book, home, applied)
            raise NotDurableError(Reason.NOT_DURABLE, "remove not checkpointed; retry")
        engine.metrics.forget(symbol)
        return Removed(final.seq, final.input_offset, final.location, fence_epoch)

    def _flushed(self) -> None:
        if not self.engine.flush():
            raise NotDurableError(Reason.NOT_DURABLE, "events not yet delivered; retry")

    def _adopt(self, partition: int, from_offset: int) -> None:
        """Take over `partition` to follow it from `from_offset`."""
        engine = self.engine
        s = engine.settings
        taken = registry.claim_partitions(
            engine.redis, s.instance, [partition], int(s.ownership_ttl_s * 1000)
        )
        if taken:
            raise NotOwnedError(
                Reason.PARTITION_OWNED_ELSEWHERE, f"partition {partition} is owned elsewhere"
            )
        engine.partitions = sorted({*engine.partitions, partition})
        engine.state.position[partition] = max(from_offset, 0)
        engine.assign()
        engine.register()
