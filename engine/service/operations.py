"""The RPC side of the engine: Snapshot, Restore, Remove, Follow, Fence, Promote, Unfence.

Each runs on the gRPC handler's thread: the steps that read or change the state run on the
loop thread (`Engine.call`, between two batches) and ask engine.service.handover what they
may do; the slow parts (fetching, loading, dumping and storing a snapshot) run on the
handler's thread or a worker (`Engine.offload`) while the loop goes on matching. A book is
dumped by a child forked on the loop (engine.service.forked): the child has the book as it
was at the fork, the loop's copy goes on matching, nothing is held. A change that could
not be made durable is answered NotDurableError. Every call is idempotent: the same
request again gets the same answer.
"""

import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TypeVar

from engine.book import Book, DedupBudgetError
from engine.book.snapshot import SnapshotError, SnapshotInfo, load
from engine.service import handover
from engine.service.core import Replay, Shadow
from engine.service.errors import (
    AlreadyHereError,
    BadRequestError,
    ControlError,
    NotDurableError,
    NotHereError,
    NotOwnedError,
    SnapshotMissingError,
)
from engine.service.forked import DumpChild, DumpFailedError, DumpSpec
from engine.service.loop import Engine, SnapshotResult
from hotshard import registry, route
from hotshard.reasons import Reason
from hotshard.recovery import BookEntry, FenceEntry

T = TypeVar("T")

log = logging.getLogger("hotshard.engine")

STEP_TIMEOUT_S = 30.0
"""How long a call waits for a busy symbol, a catch-up or a replay before SHADOW_BEHIND /
NOT_DURABLE (the caller retries: every call is idempotent)."""
POLL_S = 0.002
FENCE_FORK_DELAY_S = 1.0
"""How long after a Fence's reply its fence snapshot's child is forked, unless something
waits for that snapshot first (a Snapshot of the fenced book: stop-and-copy's
TransferSnapshot; a Remove; an Unfence), which forks it at once. A fork holds the whole
process while it copies the page tables (5-240 ms, growing with the books): right after the
reply it held the source's delivery of the events up to the fence and its handoff marker,
which the target's shadow and readers wait for; a pre-copy's Promote never needs it."""
FENCE_SNAPSHOT_ATTEMPTS = 3
"""A fenced book's snapshot child that fails (not its store) is forked again, up to this
many times."""


class _BusyError(Exception):
    """The step cannot be taken yet (a snapshot in progress, a shadow catching up): poll."""


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


@dataclass(frozen=True, slots=True)
class Fenced:
    fence_offset: int
    final_seq: int
    state_hash: str
    owner_epoch: int
    partition: int
    location: str


@dataclass(frozen=True, slots=True)
class Followed:
    seq: int
    next_offset: int


@dataclass(frozen=True, slots=True)
class PromoteRequest:
    symbol: str
    through_offset: int
    expect_seq: int
    expect_hash: str
    owner_epoch: int
    partition: int
    fallback_location: str = ""
    pending: tuple[str, int, int, int] | None = None
    """(topic, partition, from_offset, epoch) of a PendingReplay."""
    wait_durable: bool = False


PendingSpec = tuple[str, int, int, int, int | None]
"""An Unfence's replay: (topic, partition, from_offset, epoch, through_offset or None: up to
the PENDING_END marker)."""


@dataclass(slots=True)
class Promoted:
    seq: int
    replayed: int = 0
    held: int = 0
    location: str = ""
    durable: bool = False


@dataclass(frozen=True, slots=True)
class _Captured:
    """A book as Snapshot captured it on the loop, and the child dumping it."""

    spec: DumpSpec
    seq: int
    state_hash: str
    child: DumpChild


@dataclass(slots=True)
class _Activation:
    """What one promotion / unfence did (kept so the same request gets the same answer)."""

    epoch: int
    partition: int
    held: int
    replay: Replay | None
    location: str = ""
    seq: int = 0


@dataclass(slots=True)
class Operations:
    engine: Engine
    step_timeout_s: float = STEP_TIMEOUT_S
    _jobs: dict[str, "Future[int]"] = field(default_factory=dict)
    """Fence snapshots being stored (or stored) by symbol; each answers its size in bytes."""
    """Off-loop fence snapshots in progress or done, per symbol."""
    _forks: dict[str, Callable[[], None]] = field(default_factory=dict)
    """Fence snapshots whose child is not forked yet (FENCE_FORK_DELAY_S), per symbol: the
    call that forks it (`_fork_now`)."""
    _activations: dict[str, _Activation] = field(default_factory=dict)
    _unfinished: dict[str, FenceEntry] = field(default_factory=dict)
    """Fences set whose checkpoint is not written yet (or whose snapshot is not started):
    the same Fence again finishes them before it answers."""

    def __post_init__(self) -> None:
        self.engine.on_fence_snapshot_owed = self._store_owed

    # ------------------------------------------------------------------ helpers

    def _loop(self, fn: Callable[[], T]) -> T:
        return self.engine.call(fn, self.step_timeout_s)

    @staticmethod
    def _timed(fn: Callable[[], T], timing: dict[str, float]) -> Callable[[], T]:
        """`fn`, adding the loop thread's CPU seconds it takes to timing["loop_cpu"]."""

        def run() -> T:
            began = time.thread_time()
            try:
                return fn()
            finally:
                timing["loop_cpu"] = timing.get("loop_cpu", 0.0) + time.thread_time() - began

        return run

    def _until(self, fn: Callable[[], T], why: Reason, what: str) -> T:
        """Run `fn` on the loop until it stops raising _BusyError."""
        deadline = time.monotonic() + self.step_timeout_s
        while True:
            try:
                return self._loop(fn)
            except _BusyError:
                if time.monotonic() > deadline:
                    raise NotDurableError(why, what) from None  # UNAVAILABLE: retry
                time.sleep(POLL_S)

    def _flushed(self) -> None:
        if not self.engine.flush():
            raise NotDurableError(Reason.NOT_DURABLE, "events not yet delivered; retry")

    def _durable(self, only: int | None = None, timing: dict[str, float] | None = None) -> None:
        """On the loop: flush, then write the owned partitions' checkpoints (`only`: that
        partition's); `timing` gets the seconds of each ("flush", "checkpoint")."""
        began = time.perf_counter()
        self._flushed()
        flushed = time.perf_counter()
        if not self.engine.write_checkpoints(only):
            raise NotDurableError(Reason.NOT_DURABLE, "not checkpointed; retry")
        if timing is not None:
            timing["flush"] = flushed - began
            timing["checkpoint"] = time.perf_counter() - flushed

    def _fetch(self, location: str, *, wait_s: float = 0.0) -> tuple[Book, SnapshotInfo]:
        """Fetch and load a snapshot (handler thread); `wait_s`: one being stored now."""
        return _decoded(self._fetch_data(location, wait_s=wait_s))

    def _fetch_data(self, location: str, *, wait_s: float = 0.0) -> bytes:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return self.engine.store.fetch(location)
            except SnapshotMissingError as exc:
                if time.monotonic() >= deadline:
                    raise NotHereError(exc.reason, exc.detail) from exc
                time.sleep(0.02)

    def _wait_job(self, symbol: str, *, failed_ok: bool = False) -> int:
        """Wait for the symbol's fence snapshot to be stored; its size (0: no job here, e.g.
        the fence was restored from a checkpoint after a restart). A job that failed (its
        store met a restarting Redis, say) is let go of, so the caller's retry stores the
        snapshot again instead of being answered the same failure for good; `failed_ok`:
        such a job answers 0 (an Unfence needs no fence snapshot, only none stored later)."""
        job = self._jobs.get(symbol)
        if job is None:
            return 0
        if symbol in self._forks:  # waited for: forked now, not FENCE_FORK_DELAY_S after
            self._loop(lambda: self._fork_now(symbol))
        try:
            return job.result(self.step_timeout_s)
        except TimeoutError as exc:
            raise NotDurableError(Reason.NOT_DURABLE, "fence snapshot not stored yet") from exc
        except Exception as exc:
            self._loop(lambda: self._forget_job(symbol, job))
            if failed_ok:
                log.warning("fence snapshot failed", extra={"symbol": symbol, "error": str(exc)})
                return 0
            if isinstance(exc, ControlError):
                raise
            raise NotDurableError(Reason.NOT_DURABLE, f"fence snapshot failed: {exc}") from exc

    def _fork_now(self, symbol: str, start: Callable[[], None] | None = None) -> None:
        """On the loop: fork the symbol's fence snapshot child if it is not forked yet
        (`start`: only if it is still that one's, not a later fence's)."""
        waiting = self._forks.get(symbol)
        if waiting is not None and (start is None or waiting is start):
            del self._forks[symbol]
            waiting()

    def _store_owed(self, symbol: str) -> None:
        """On the loop: a fenced book restored from a checkpoint naming no fence snapshot
        (the engine died before storing it), now back at its fence: store it now (a
        Promote's fallback polls its location; before, only a Snapshot or a Remove asked
        here stored it)."""
        state = self.engine.state
        fence = state.fences.get(symbol)
        book = state.market.books.get(symbol)
        snap = state.snaps.get(symbol)
        if symbol in self._jobs or fence is None or book is None:
            return
        if snap is not None and snap.location == fence.location:
            return
        log.info("fence snapshot owed", extra={"symbol": symbol, "seq": fence.seq})
        self._store_fence_snapshot(symbol, book, fence)

    def _forget_job(self, symbol: str, job: "Future[int]") -> None:
        """On the loop: drop a finished job (not one a retry started since)."""
        if self._jobs.get(symbol) is job:
            del self._jobs[symbol]

    def _publish_depth(self, symbol: str) -> None:
        """First thing after a symbol becomes active here: its whole top of book, so a
        reader's DepthGuard drops levels it kept from before the move."""
        engine = self.engine
        book = engine.state.market.books[symbol]
        book.depth_update()  # levels a shadow touched: the snapshot below covers them
        engine._publish(engine.state.depth_snapshots(engine.settings.depth_levels, [symbol]))

    # ------------------------------------------------------------------ Snapshot

    def snapshot(self, symbol: str) -> SnapshotResult:
        """Store a snapshot of the book as it is now: a child forked on the loop dumps it
        (engine.service.forked) while the book goes on matching, and this thread stores
        what the child wrote. A fenced book's answer is its fence snapshot."""
        self.engine.moving()
        engine = self.engine
        state = engine.state

        def capture() -> _Captured | FenceEntry:
            book = handover.held_book(state.market.books, symbol)
            fence = state.fences.get(symbol)
            if fence is not None:
                snap = state.snaps.get(symbol)
                if symbol not in self._jobs and (snap is None or snap.location != fence.location):
                    # restarted before its fence snapshot was stored: store it again once
                    # the book is back at the fence
                    if not state.through_fence(symbol):
                        raise _BusyError
                    self._store_fence_snapshot(symbol, book, fence)
                return fence
            if symbol in state.frozen or symbol in state.replays:
                raise _BusyError  # being restored, or ahead of its partition's offsets
            self._flushed()  # a snapshot is stored only once its events are out
            engine.hold_checkpoints()  # a pre-copy's: its Fence comes next
            spec = DumpSpec(
                book, state.applied_offset(symbol), state.home[symbol], state.epoch.get(symbol, 0)
            )
            try:
                child = engine.fork_dump([spec])
            except OSError as exc:
                raise NotDurableError(Reason.NOT_DURABLE, f"cannot fork: {exc}") from exc
            log.info(
                "snapshot",
                extra={"symbol": symbol, "seq": book.seq, "fork_ms": round(child.fork_s * 1e3, 1)},
            )
            return _Captured(spec, book.seq, handover.state_hash(book), child)

        taken = self._until(capture, Reason.NOT_DURABLE, f"{symbol} is busy")
        if isinstance(taken, FenceEntry):
            size = self._wait_job(symbol)
            return SnapshotResult(
                taken.partition,
                taken.offset,
                taken.location,
                taken.seq,
                taken.owner_epoch,
                size,
                taken.state_hash,
            )
        spec = taken.spec
        try:
            data = taken.child.read_all()[symbol]
        except DumpFailedError as exc:
            raise NotDurableError(exc.reason, exc.detail) from exc
        record = engine.store.put(
            symbol,
            data,
            partition=spec.partition,
            input_offset=spec.input_offset,
            seq=taken.seq,
            owner_epoch=spec.owner_epoch,
        )

        def keep() -> None:
            if state.market.books.get(symbol) is spec.book:  # not removed (and back) since
                # the live book's own snapshot, its events out before it was taken: a Fence
                # next (pre-copy's) names it in its checkpoint without a flush
                engine.stored(symbol, record.location, spec.input_offset, taken.seq, continues=True)

        self._loop(keep)
        return SnapshotResult(
            spec.partition,
            spec.input_offset,
            record.location,
            taken.seq,
            spec.owner_epoch,
            len(data),
            taken.state_hash,
        )

    # ------------------------------------------------------------------ Fence

    def fence(
        self,
        symbol: str,
        epoch: int,
        to_partition: int,
        *,
        after_reply: Callable[[Callable[[], None]], None] | None = None,
    ) -> Fenced:
        """Stop applying the symbol at its current position f; its snapshot at f is stored
        off the loop (its location is in the answer at once). With `after_reply` (the gRPC
        handler's: it runs what it is given once the reply is sent) the snapshot's fork
        starts only then: forking holds the loop for the whole process's page tables
        (100-240 ms at 2 million orders), which must not delay the answer the move's pause
        waits for."""
        self.engine.moving()
        engine = self.engine
        state = engine.state
        asked, asked_at = time.perf_counter(), time.time()
        timing: dict[str, float] = {}
        deferred: list[Callable[[], None]] = []

        def finish(book: Book, entry: FenceEntry) -> None:
            # The fence durable in the home partition's checkpoint (a restart then applies
            # the symbol's records only through f), added to the last one written: no
            # flush first (a broker round trip for every event in flight on the engine,
            # 100-180 ms measured with a big book's backlog going out); the events up to
            # the fence and the handoff marker are delivered after the reply, or published
            # again by a restart. The other partitions' checkpoints hold nothing of this
            # symbol; they are written by the next periodic checkpoint.
            began = time.perf_counter()
            written = engine.write_fence_checkpoint(entry.partition, symbol)
            if written is None:  # its book is in no checkpoint yet: flush, write it now
                self._durable(entry.partition, timing)
            elif not written:
                raise NotDurableError(Reason.NOT_DURABLE, "not checkpointed; retry")
            else:
                timing["checkpoint"] = time.perf_counter() - began
            start = self._store_fence_snapshot(
                symbol, book, entry, deferred=after_reply is not None
            )
            if start is not None:
                deferred.append(start)
            del self._unfinished[symbol]

        def do() -> tuple[Fenced, bool]:
            timing["queued"] = time.perf_counter() - asked
            book = handover.held_book(state.market.books, symbol)
            fence = state.fences.get(symbol)
            if fence is not None and handover.same_fence(fence, epoch, to_partition):
                if self._unfinished.get(symbol) is fence:
                    finish(book, fence)  # an earlier attempt could not make it durable
                    return _fenced(fence), True
                return _fenced(fence), False
            if symbol in state.frozen or symbol in state.replays or state.held.get(symbol):
                raise _BusyError
            engine.cancel_periodic(symbol)  # the fence snapshot supersedes it
            home = state.home[symbol]
            owner = state.epoch.get(symbol, 0)
            handover.check_fence_request(epoch, owner, to_partition, home)
            entry = self._fence_entry(symbol, book, epoch, to_partition)
            state.fence(symbol, entry)
            engine._publish(state.handoff(symbol, home, book.seq, to_partition, epoch))
            self._unfinished[symbol] = entry
            finish(book, entry)
            return _fenced(entry), True

        fenced, new = self._until(self._timed(do, timing), Reason.NOT_DURABLE, f"{symbol} is busy")
        engine.release_checkpoints()
        if after_reply is not None:
            for start in deferred:
                # FENCE_FORK_DELAY_S after the reply, unless waited for first (_wait_job)
                fork = functools.partial(self._fork_now, symbol, start)
                after_reply(
                    functools.partial(
                        engine.post, functools.partial(engine.later, FENCE_FORK_DELAY_S, fork)
                    )
                )
        if new:
            log.info(
                "fence",
                extra={
                    "symbol": symbol,
                    "offset": fenced.fence_offset,
                    "ms": round((time.perf_counter() - asked) * 1e3, 1),
                    "at_ms": round(asked_at * 1e3, 1),
                    **{f"{k}_ms": round(v * 1e3, 1) for k, v in timing.items()},
                },
            )
        return fenced

    def _fence_entry(self, symbol: str, book: Book, epoch: int, to_partition: int) -> FenceEntry:
        """The fence of the symbol's book where it is now (its applied offset), with the
        location its snapshot will be stored at (Fence's, and Remove's of an active book)."""
        engine = self.engine
        state = engine.state
        offset = state.applied_offset(symbol)
        location = engine.store.location_for(
            symbol, seq=book.seq, input_offset=offset, estimate=handover.snapshot_estimate(book)
        )
        owner, home = state.epoch.get(symbol, 0), state.home[symbol]
        return FenceEntry(
            epoch, offset, book.seq, to_partition, location, owner, home, handover.state_hash(book)
        )

    def _store_fence_snapshot(
        self, symbol: str, book: Book, entry: FenceEntry, *, deferred: bool = False
    ) -> Callable[[], None] | None:
        """On the loop: the fenced (unchanging) book is dumped by a child forked on the
        loop's next turn and stored from a worker; the job answers its size. `deferred`:
        the fork is not scheduled; the caller runs what this returns on the loop later
        (after the Fence's reply is sent)."""
        engine = self.engine
        job: Future[int] = Future()
        job.set_running_or_notify_cancel()
        self._jobs[symbol] = job
        spec = DumpSpec(book, entry.offset, entry.partition, entry.owner_epoch, fenced=True)

        def begin(attempt: int) -> None:
            if engine.state.fences.get(symbol) is not entry:
                # unfenced (or removed) before its fork: the book is no longer the fence's
                job.set_exception(DumpFailedError(Reason.NOT_DURABLE, f"{symbol} not fenced"))
                return
            try:
                child = engine.fork_dump([spec])
            except OSError as exc:
                dump_failed(attempt, exc)
                return
            log.info(
                "fence snapshot",
                extra={"symbol": symbol, "seq": entry.seq, "fork_ms": round(child.fork_s * 1e3, 1)},
            )
            engine.offload(lambda: store(child), lambda done: then(attempt, done))

        def store(child: DumpChild) -> int:
            data = child.read_all()[symbol]
            engine.store.put(
                symbol,
                data,
                partition=entry.partition,
                input_offset=entry.offset,
                seq=entry.seq,
                owner_epoch=entry.owner_epoch,
                location=entry.location,
            )
            return len(data)

        def dump_failed(attempt: int, error: BaseException) -> None:
            if attempt < FENCE_SNAPSHOT_ATTEMPTS and engine.state.market.books.get(symbol) is book:
                log.warning("fence snapshot child failed", extra={"error": str(error)})
                engine.next_turn(lambda: begin(attempt + 1))  # the fenced book is unchanged
            else:
                job.set_exception(error)

        def then(attempt: int, done: "Future[int]") -> None:
            error = done.exception()
            if isinstance(error, DumpFailedError):
                dump_failed(attempt, error)
                return
            if error is not None:  # the store's: the caller's retry stores it again
                job.set_exception(error)
                return
            if engine.state.market.books.get(symbol) is book:
                engine.stored(symbol, entry.location, entry.offset, entry.seq)
                if engine.flush():
                    engine.write_checkpoints()
            job.set_result(done.result())

        if deferred:
            start = functools.partial(begin, 1)
            self._forks[symbol] = start
            return start
        self._forks.pop(symbol, None)
        engine.next_turn(lambda: begin(1))
        return None

    # ------------------------------------------------------------------ Follow

    def follow(self, symbol: str, location: str, source: int, from_offset: int) -> Followed:
        """Restore the symbol as a shadow of partition `source` from `from_offset`."""
        self.engine.moving()
        engine = self.engine
        state = engine.state

        def same() -> Followed | None:
            shadow = state.shadows.get(symbol)
            if shadow is not None:
                if (shadow.location, shadow.source, shadow.from_offset) == (
                    location,
                    source,
                    from_offset,
                ):
                    return Followed(shadow.snapshot_seq, shadow.next_offset)
                raise AlreadyHereError(
                    Reason.SYMBOL_ALREADY_HERE, f"{symbol} is shadowed here from elsewhere"
                )
            handover.refuse_held(state.market.books, symbol)
            return None

        answer = self._loop(same)
        if answer is not None:
            return answer
        book, info = self._fetch(location)

        def install() -> Followed:
            again = same()
            if again is not None:
                return again
            handover.plan_follow(
                symbol,
                info,
                source=source,
                from_offset=from_offset,
                owned=engine.partitions,
                books=state.market.books,
            )
            state.shadows[symbol] = Shadow(
                book,
                source,
                from_offset,
                info.owner_epoch,
                from_offset,
                location,
                # a fence snapshot (stop-and-copy): its source applies nothing after it
                stop=info.input_offset if info.fenced and info.partition == source else -1,
                snapshot_seq=info.seq,
            )
            state.expect[symbol] = max(state.expect.get(symbol, 0), info.owner_epoch)
            engine.reassign_if_needed()
            engine.hold_checkpoints()  # its Promote comes next
            try:
                self._durable()
            except NotDurableError:
                state.shadows.pop(symbol, None)
                state.expect.pop(symbol, None)
                engine.reassign_if_needed()
                raise
            return Followed(info.seq, from_offset)

        return self._loop(install)

    # ------------------------------------------------------------------ Promote

    def promote(self, req: PromoteRequest) -> Promoted:
        """Make the shadow (or the fallback snapshot) the owner of the symbol here."""
        self.engine.moving()
        engine = self.engine
        state = engine.state
        symbol = req.symbol
        f = req.through_offset
        asked, asked_at = time.perf_counter(), time.time()
        timing: dict[str, float] = {}

        def begin() -> str:
            timing["queued"] = time.perf_counter() - asked
            if self._is_promoted(req):
                return "done"
            book = state.market.books.get(symbol)
            if (
                book is not None
                and symbol not in state.shadows
                and state.home.get(symbol) == req.partition
                and state.epoch.get(symbol) == req.owner_epoch
            ):
                # promoted before this engine restarted: the same answer (durable once its
                # checkpoint names a snapshot, i.e. it is no longer expected)
                snap = state.snaps.get(symbol)
                location = snap.location if snap is not None else ""
                self._activations[symbol] = _Activation(
                    req.owner_epoch,
                    req.partition,
                    0,
                    None,
                    "" if symbol in state.expect else location,
                )
                return "done"
            handover.refuse_left(state.fences.get(symbol), req.owner_epoch, symbol)
            if req.partition not in engine.partitions:
                raise NotOwnedError(
                    Reason.PARTITION_NOT_OWNED, f"partition {req.partition} is not owned here"
                )
            handover.refuse_held(state.market.books, symbol)
            shadow = state.shadows.get(symbol)
            source = handover.promote_source(
                has_shadow=shadow is not None,
                shadow_past=shadow is not None and shadow.last_applied > f,
                fallback=req.fallback_location,
                symbol=symbol,
            )
            if source == "shadow" and shadow is not None:
                shadow.stop = f
                state.release_shadows(time.monotonic(), 0.0)  # what waited, through f
            return source

        def activate() -> None:
            if self._is_promoted(req):
                return
            shadow = state.shadows[symbol]
            if shadow.read <= f:
                raise _BusyError  # still catching up on the source partition
            state.release_shadows(time.monotonic(), 0.0)
            book = shadow.book
            handover.check_promoted(
                seq=book.seq,
                state=handover.state_hash(book),
                expect_seq=req.expect_seq,
                expect_hash=req.expect_hash,
                symbol=symbol,
            )
            try:
                state.market.add_book(book)
            except DedupBudgetError as exc:
                raise NotOwnedError(exc.reason, exc.detail) from exc
            del state.shadows[symbol]
            q = req.partition
            held = state.held.get(symbol) or []
            first = held[0][1] if held and held[0][0] == q else state.position.get(q, 0)
            state.home[symbol] = q
            state.epoch[symbol] = req.owner_epoch
            state.fences.pop(symbol, None)
            state.gone.pop(symbol, None)
            state.skip.pop(symbol, None)
            state.snaps[symbol] = BookEntry("", first - 1, book.seq, req.owner_epoch)
            state.dirty.add(symbol)
            pending = () if req.pending is None else ((*req.pending, None),)
            self._start(symbol, req.owner_epoch, q, len(held), pending)

        def settle() -> tuple[bool, Promoted | None]:
            """Activate, and (not waiting for durability) the answer, in one loop turn."""
            activate()
            return True, None if req.wait_durable else self._answer(symbol)

        def opening() -> tuple[str, bool, Promoted | None]:
            # begin, and if the shadow is through f already (usual: it follows the source
            # partition closely), activate and answer in the same loop turn: each turn a
            # call waits for is a batch or a poll timeout of every symbol here
            source = begin()
            if source == "fallback":
                return source, False, None
            try:
                return (source, *settle())
            except _BusyError:
                return source, False, None

        began = time.perf_counter()
        source, settled, answer = self._loop(self._timed(opening, timing))
        if source == "fallback":
            book, info = self._fetch(req.fallback_location, wait_s=self.step_timeout_s)
            if info.symbol != symbol or info.input_offset > f:
                raise BadRequestError(
                    Reason.SNAPSHOT_OF_ANOTHER_SYMBOL,
                    f"fallback is {info.symbol} at offset {info.input_offset}, not {symbol} "
                    f"through {f}",
                )

            def install() -> None:
                if self._is_promoted(req):
                    return
                state.shadows[symbol] = Shadow(
                    book,
                    info.partition,
                    info.input_offset + 1,
                    info.owner_epoch,
                    info.input_offset + 1,
                    req.fallback_location,
                    stop=f,
                    snapshot_seq=info.seq,
                )
                state.expect[symbol] = max(state.expect.get(symbol, 0), info.owner_epoch)
                engine.reassign_if_needed()

            self._loop(install)

        if not settled:
            settled, answer = self._until(
                self._timed(settle, timing),
                Reason.SHADOW_BEHIND,
                f"{symbol}: shadow not through {f} yet",
            )
        timing["catch_up"] = time.perf_counter() - began
        engine.release_checkpoints()
        if req.wait_durable:
            return self._make_durable(symbol)
        if answer is None:  # not reached: settle answers unless waiting for durability
            answer = self._loop(lambda: self._answer(symbol))
        log.info(
            "promote",
            extra={
                "symbol": symbol,
                "through": f,
                "source": source,
                "ms": round((time.perf_counter() - asked) * 1e3, 1),
                "at_ms": round(asked_at * 1e3, 1),  # wall clock: the caller's send compares
                **{f"{k}_ms": round(v * 1e3, 1) for k, v in timing.items()},
            },
        )
        return answer

    def _is_promoted(self, req: PromoteRequest) -> bool:
        done = self._activations.get(req.symbol)
        state = self.engine.state
        return (
            done is not None
            and (done.epoch, done.partition) == (req.owner_epoch, req.partition)
            and req.symbol in state.market.books
            and state.home.get(req.symbol) == req.partition
        )

    def _start(
        self,
        symbol: str,
        epoch: int,
        partition: int,
        held: int,
        pending: tuple[PendingSpec, ...],
    ) -> None:
        """On the loop: the symbol is active here: depth first, then its pending replays in
        order (if any; its held records wait for the last one's end), then its held records."""
        engine = self.engine
        state = engine.state
        self._publish_depth(symbol)
        replay = None
        if pending:
            chain = [
                Replay(symbol, topic, part, start, epoch, through=through)
                for topic, part, start, epoch, through in pending
            ]
            replay = chain[0]
            replay.then = tuple(chain[1:])
            state.replays[symbol] = replay
        if state.replay_done(symbol):  # none, or nothing to read (a replay through an
            engine._apply(state.drain(symbol))  # offset before its start)
        engine.reassign_if_needed()
        self._activations[symbol] = _Activation(epoch, partition, held, replay)

    def _answer(self, symbol: str) -> Promoted:
        state = self.engine.state
        done = self._activations[symbol]
        book = state.market.books[symbol]
        replayed = sum(r.replayed for r in done.replay.chain()) if done.replay else 0
        return Promoted(book.seq, replayed, done.held, done.location, bool(done.location))

    def _make_durable(self, symbol: str) -> Promoted:
        """Wait for the replay and the held records, then store a snapshot and checkpoint."""
        engine = self.engine
        state = engine.state

        def settled() -> Promoted | None:
            done = self._activations[symbol]
            if done.location:
                return self._answer(symbol)
            if symbol in state.replays or state.held.get(symbol):
                raise _BusyError
            return None

        answer = self._until(settled, Reason.NOT_DURABLE, f"{symbol}: replay not finished")
        if answer is not None:
            return answer
        result = self.snapshot(symbol)

        def record() -> Promoted:
            state.expect.pop(symbol, None)
            self._durable()
            done = self._activations[symbol]
            done.location = result.location
            return self._answer(symbol)

        return self._loop(record)

    # ------------------------------------------------------------------ Unfence

    def unfence(
        self,
        symbol: str,
        owner_epoch: int,
        pending: tuple[str, int, int, int] | None,
        then: tuple[PendingSpec, ...] = (),
    ) -> Promoted:
        """Roll a move back: the fenced book applies what it held, after `pending`'s records
        and then each of `then`'s (a move-back: the target partition's, through the target's
        fence)."""
        self.engine.moving()
        replays = (() if pending is None else ((*pending, None),)) + then
        engine = self.engine
        state = engine.state
        self._wait_job(symbol, failed_ok=True)

        def lift() -> bool:
            handover.held_book(state.market.books, symbol)
            state.epoch[symbol] = max(state.epoch.get(symbol, 0), owner_epoch)
            if symbol not in state.fences:
                # not fenced: this Unfence again (answered as the first), else a no-op
                done = self._activations.get(symbol)
                return done is not None and done.epoch == owner_epoch
            if not state.through_fence(symbol):
                raise _BusyError  # restarted: its records up to the fence come first
            state.fences.pop(symbol)
            self._unfinished.pop(symbol, None)  # the fence is lifted: nothing to finish
            held = len(state.held.get(symbol) or [])
            self._start(symbol, owner_epoch, state.home[symbol], held, replays)
            return True

        if self._until(lift, Reason.NOT_DURABLE, f"{symbol}: not back through its fence"):
            return self._make_durable(symbol)
        return self._loop(lambda: Promoted(state.market.books[symbol].seq))

    # ------------------------------------------------------------------ Remove

    def remove(self, symbol: str, fence_epoch: int) -> Removed:
        """Drop the symbol without dumping on the loop: a shadow is just dropped; a book is
        fenced first (an active one at `fence_epoch`, else one past the route's), its fence
        snapshot stored off the loop, and only then is the book dropped and the answer given:
        the location it names always holds the final snapshot (a failed store leaves the
        book here, fenced, for a retry)."""
        engine = self.engine
        state = engine.state

        def begin() -> tuple[Removed | None, FenceEntry | None]:
            shadow = state.shadows.get(symbol)
            if shadow is not None:
                del state.shadows[symbol]
                state.expect.pop(symbol, None)
                engine._publish(state.reject_held(symbol))
                engine.reassign_if_needed()
                self._durable()
                return Removed(shadow.book.seq, shadow.next_offset - 1, "", 0), None
            fence = state.fences.get(symbol)
            book = state.market.books.get(symbol)
            if book is None:
                if fence is not None and fence.location:
                    return _removed(fence), None  # removed before: the same answer
                raise NotHereError(Reason.UNKNOWN_SYMBOL, f"no book for {symbol}")
            if fence is not None:
                snap = state.snaps.get(symbol)
                if symbol not in self._jobs and (snap is None or snap.location != fence.location):
                    # restarted before its fence snapshot was stored: store it again once
                    # the book is back at the fence
                    if not state.through_fence(symbol):
                        raise _BusyError
                    self._store_fence_snapshot(symbol, book, fence)
                return None, fence
            if symbol in state.frozen or symbol in state.replays or state.held.get(symbol):
                raise _BusyError
            engine.cancel_periodic(symbol)
            self._flushed()
            current = route.last_epoch(engine.redis, symbol) if fence_epoch <= 0 else None
            epoch = handover.fence_epoch(fence_epoch, current)
            entry = self._fence_entry(symbol, book, epoch, -1)
            state.fence(symbol, entry)
            try:
                self._durable()
            except NotDurableError:
                state.fences.pop(symbol, None)  # not fenced after all: it goes on
                raise
            self._store_fence_snapshot(symbol, book, entry)
            return None, entry

        removed, fence = self._until(begin, Reason.NOT_DURABLE, f"{symbol} is busy")
        if removed is not None:
            return removed
        assert fence is not None
        self._wait_job(symbol)  # a failed store: a retry stores it again

        def finish() -> Removed:
            book = state.market.books.get(symbol)
            if book is None or state.fences.get(symbol) != fence:
                return _removed(fence)  # a concurrent Remove finished it
            engine._publish(state.reject_held(symbol))
            state.remove_book(symbol, fence)
            self._durable()
            engine.metrics.forget(symbol)
            self._activations.pop(symbol, None)
            self._jobs.pop(symbol, None)
            self._unfinished.pop(symbol, None)
            return _removed(fence)

        return self._loop(finish)

    # ------------------------------------------------------------------ Restore

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
        its snapshot's partition at the current position (handover.plan_restore). The same
        Restore again (same snapshot, book unchanged) answers as the first did."""
        self.engine.moving()
        engine = self.engine
        state = engine.state
        if data is None:
            data = self._fetch_data(location)
        book, info = _decoded(data)  # here, on the handler's thread: never on the loop
        target = partition if follow else info.partition

        def install() -> tuple[Restored | None, int, int]:
            if symbol in state.frozen:
                raise _BusyError  # a Restore of it (or a snapshot) in progress: its answer
            here = state.market.books.get(symbol)
            if here is not None and here.seq == info.seq and state.home.get(symbol) == target:
                snap = state.snaps.get(symbol)
                answer = Restored(here.seq, snap.offset if snap else state.applied_offset(symbol))
                return answer, 0, 0
            handover.refuse_held(state.market.books, symbol)
            plan = handover.plan_restore(
                symbol,
                info,
                follow=follow,
                partition=partition,
                from_offset=from_offset,
                owned=engine.partitions,
                position=state.position,
                rewind_floor=state.rewind_floor,
            )
            if plan.adopt:
                self._adopt(plan.partition, from_offset)
            rewound = follow and state.rewind(plan.partition, from_offset)
            state.add_book(book, plan.partition, plan.applied_through, epoch=info.owner_epoch)
            state.frozen.add(symbol)  # its records wait until its snapshot is stored
            state.restoring.add(symbol)
            if rewound:
                engine.assign()
            return None, plan.partition, plan.applied_through

        done, home, applied = self._until(install, Reason.NOT_DURABLE, f"{symbol} is busy")
        if done is not None:
            return done
        stored = ""
        try:
            # the bytes restored are the book as installed (frozen meanwhile): stored as they
            # are, under this engine's own key, so the checkpoint names a snapshot it owns
            stored = engine.store.put(
                symbol,
                data,
                partition=home,
                input_offset=applied,
                seq=info.seq,
                owner_epoch=info.owner_epoch,
            ).location
        finally:
            location_stored = stored

            def finish() -> Restored:
                state.frozen.discard(symbol)
                state.restoring.discard(symbol)
                if location_stored:
                    engine.stored(symbol, location_stored, applied, info.seq)
                if not location_stored or not (engine.flush() and engine.write_checkpoints()):
                    # not durable here: give the book back rather than report a restore that
                    # a crash would undo (the caller retries or rolls back)
                    engine._publish(state.reject_held(symbol))
                    state.remove_book(symbol, None)
                    raise NotDurableError(Reason.NOT_DURABLE, "restore not checkpointed; retry")
                engine._apply(state.drain(symbol))
                return Restored(info.seq, applied)

            answer = self._loop(finish)
        return answer

    def _adopt(self, partition: int, from_offset: int) -> None:
        """Take over `partition` to follow it from `from_offset` (it stays this engine's
        home: a restart reclaims it)."""
        engine = self.engine
        s = engine.settings
        taken = registry.claim_partitions(
            engine.redis, s.instance, [partition], int(s.ownership_ttl_s * 1000)
        )
        if taken:
            raise NotOwnedError(
                Reason.PARTITION_OWNED_ELSEWHERE, f"partition {partition} is owned elsewhere"
            )
        registry.set_homes(engine.redis, s.instance, [partition])
        engine.partitions = sorted({*engine.partitions, partition})
        engine.state.position[partition] = max(from_offset, 0)
        engine.assign()
        engine.register()


def _decoded(data: bytes) -> tuple[Book, SnapshotInfo]:
    try:
        return load(data)
    except SnapshotError as exc:
        raise handover.unloadable(exc) from exc


def _fenced(fence: FenceEntry) -> Fenced:
    return Fenced(
        fence.offset,
        fence.seq,
        fence.state_hash,
        fence.owner_epoch,
        fence.partition,
        fence.location,
    )


def _removed(fence: FenceEntry) -> Removed:
    return Removed(fence.seq, fence.offset, fence.location, fence.epoch)
