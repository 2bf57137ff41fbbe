"""The functional core of the engine service: consumed records in, output records out.

No I/O, no clock: `EngineState.apply_batch` takes (partition, offset, key, value) tuples
and returns the Kafka records to publish (topic, partition, key, value) plus what the
metrics need. The loop (engine.service.loop) does the consuming, producing, snapshot
storage and gRPC around it. Recovery arithmetic (`restore_partition`) lives here too.

Per consumed batch and per (partition, symbol) touched, the output is one record per topic:
OrderStatusBatch, FillBatch, TradeBatch always (they cover the symbol's seqs
(after_seq, through_seq], see hotshard.dedupe) and a DepthBatch when levels changed
(book.depth_update(): conflated over the batch). Events go to the same partition number
of their topic as the order came from, keyed by symbol.

Migration state (docs/ARCHITECTURE.md "Moving a hot symbol", HANDOVER): every book has an
owner epoch; a record is applied, held, refused STALE_ROUTE or ignored as `_admit` says
(fences, shadows, frozen books, pending replays); shadows (`apply_shadow`) follow a
partition the engine does not own; replays (`apply_pending`) take a symbol's buffered
records from `pending-orders`; held records are applied in order by `drain`.
"""

from dataclasses import dataclass, field

from engine import fastwire
from engine.book import BUILD, Book, Market
from engine.book.snapshot import SnapshotInfo
from engine.service.batch import Touched, emit, gather
from hotshard import wire
from hotshard.events import Event, unsequenced_rejection
from hotshard.names import TOPIC_DEPTH, TOPIC_FILLS, TOPIC_ORDER_STATUS, TOPIC_TRADES
from hotshard.reasons import Reason
from hotshard.recovery import BookEntry, Checkpoint, ExpectEntry, FenceEntry, GoneEntry
from hotshard.v1 import orders_pb2
from hotshard.wire import (
    DecodedOrder,
    encode_handoff,
    encode_unsequenced,
)

# The Kafka records: written and read by hand (engine.fastwire) in the compiled build;
# through the protobuf runtime (the reference: the same bytes, the same reading) when the
# book runs as pure Python, where the hand-written code would be the slower one.
encode_symbol_batch = (
    fastwire.encode_symbol_batch if BUILD == "native" else wire.encode_symbol_batch
)
encode_depth = fastwire.encode_depth if BUILD == "native" else wire.encode_depth
"""Also the periodic top-N snapshot of every book (depth_snapshots), a stall of the loop every
depth_snapshot_interval_s: 100 books of the zipf flow took 1.4-5 ms through the protobuf
runtime, 0.3-0.4 ms written by hand."""
decode_order = fastwire.decode_order if BUILD == "native" else wire.decode_order
decode_plain = fastwire.decode_plain if BUILD == "native" else None
"""The batch loop's reader of well-formed orders (engine.service.batch.gather): None reads
every record through `decode_order`."""

MAX_HELD = 100_000
"""Records held per symbol (waiting for it to become active here); beyond, STALE_ROUTE."""
MAX_FENCES = 10_000
"""Fences of symbols that left (no book) kept per engine; the oldest are buried first."""
MAX_GONE = 10_000
"""Gone entries (what is left of a pruned fence) kept per engine; the oldest are dropped
first and raise their partition's rewind floor."""

APPLY, HOLD, STALE, IGNORE = 0, 1, 2, 3
"""What `_admit` does with a record of an owned partition."""

MAX_EVENTS_PER_RECORD = 4000
"""A record of one symbol's events holds at most this many (~100 bytes each): well under
the broker's 1 MB message limit even when one order sweeps thousands of makers."""

Record = tuple[int, int, bytes | None, bytes | None]
"""A consumed `orders` record: (partition, offset, key, value)."""

Output = tuple[str, int, bytes, bytes]
"""A record to publish: (topic, partition, key, value)."""


@dataclass(slots=True)
class BatchResult:
    outputs: list[Output]
    orders: dict[str, int]
    """Commands applied per symbol (rejections included)."""
    client_ts: dict[str, list[int]]
    """Client timestamps (ns) of the symbol's commands that carried one."""
    last_offsets: dict[int, int]
    """Per partition, the last offset of the batch."""


@dataclass(slots=True)
class Shadow:
    """A book following `source` (a partition of `orders` not owned here) without
    publishing: it holds every record of its symbol there before `next_offset`."""

    book: Book
    source: int
    next_offset: int
    epoch: int
    from_offset: int
    location: str
    read: int = 0
    """The next offset of `source` read (any symbol)."""
    last_applied: int = -1
    stop: int = -1
    """Set by Promote: nothing after this offset is applied (-1: not yet known)."""
    snapshot_seq: int = 0
    waiting: list[tuple[float, int, DecodedOrder]] = field(default_factory=list)
    """The symbol's records read but not applied yet: (read at, offset, record), oldest
    first. While the fence offset is unknown a record waits `hold_s` (apply_shadow): the
    records the source refuses after its Fence (orders routed before the switch that land
    after the fence) arrive just before the Promote that says where the fence is, and a
    shadow that had applied one of them could not be promoted (SHADOW_PAST_FENCE: the
    fallback snapshot, seconds on a big book). Once `stop` is known, nothing waits."""

    def __post_init__(self) -> None:
        self.read = max(self.read, self.next_offset)
        self.last_applied = max(self.last_applied, self.next_offset - 1)


@dataclass(slots=True)
class Replay:
    """A symbol's buffered records on `topic` `partition` from `from_offset`, route epoch
    `epoch`, up to the PENDING_END marker for (symbol, epoch), or through offset `through`
    when it is set (a move-back: what the target applied before its fence); applied as they
    are read. `then`: the replays that follow it, in order, before the held records."""

    symbol: str
    topic: str
    partition: int
    from_offset: int
    epoch: int
    next_offset: int = 0
    replayed: int = 0
    done: bool = False
    through: int | None = None
    then: tuple["Replay", ...] = ()

    def __post_init__(self) -> None:
        self.next_offset = max(self.next_offset, self.from_offset)
        self.reached_through()

    def reached_through(self) -> None:
        if self.through is not None and self.next_offset > self.through:
            self.done = True  # read through its last offset (or nothing to read at all)

    def chain(self) -> list["Replay"]:
        return [self, *self.then]


@dataclass(slots=True)
class EngineState:
    """Everything the engine knows, apart from I/O handles.

    - `home`: partition each symbol's orders come from (its snapshots are tagged with it).
    - `position`: per owned partition, the next offset to consume.
    - `skip`: symbols whose book is already ahead of the partition's position (after a
      restart from snapshots of different ages, or a Restore that follows from an earlier
      offset): their orders at offsets <= skip[symbol] are already in the book.
    - `fences`: symbols that left this engine and the route epoch below which their orders
      are rejected with STALE_ROUTE.
    - `gone`: what is left of the fence of a removed symbol once no checkpoint needs it
      (partition, offset, epoch): its records through the offset are ignored, later ones
      refused STALE_ROUTE; never a fresh book (bounded: MAX_GONE, `rewind_floor`).
    - `dirty`: symbols changed since their last stored snapshot.
    """

    market: Market
    home: dict[str, int] = field(default_factory=dict)
    position: dict[int, int] = field(default_factory=dict)
    skip: dict[str, int] = field(default_factory=dict)
    fences: dict[str, FenceEntry] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    epoch: dict[str, int] = field(default_factory=dict)
    """Owner epoch per book: its records with a lower route epoch are STALE_ROUTE."""
    snaps: dict[str, BookEntry] = field(default_factory=dict)
    """Per book, the last durable snapshot (what a checkpoint names while it is dirty);
    location "" for a book born from its records after `offset` (none stored yet)."""
    held: dict[str, list[Record]] = field(default_factory=dict)
    """Records waiting, in order, for the symbol to become active (or unfrozen) here."""
    frozen: set[str] = field(default_factory=set)
    """Books being snapshotted off the loop: their records are held meanwhile."""
    shadows: dict[str, "Shadow"] = field(default_factory=dict)
    expect: dict[str, int] = field(default_factory=dict)
    """Symbols expected here (shadowed, or before a restart): records on owned partitions
    with a route epoch above this are held, lower ones STALE_ROUTE."""
    replays: dict[str, "Replay"] = field(default_factory=dict)
    restoring: set[str] = field(default_factory=set)
    """Books a Restore installed whose snapshot is not stored yet: a checkpoint leaves them
    out and goes no further than their offset (a crash now is a crash before the Restore)."""
    gone: dict[str, tuple[int, GoneEntry]] = field(default_factory=dict)
    """Removed symbols whose fence was pruned: (partition, what is left of the fence)."""
    rewind_floor: dict[int, int] = field(default_factory=dict)
    """Per partition, the last offset of a gone symbol no longer remembered: a rewind to it
    or before would read its records as a new symbol's (refused, REWIND_PAST_GONE)."""
    log_id: str = ""
    """The identity (topic id) of the `orders` log `position` counts in ("" unknown)."""
    seq_floor: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Symbols with no book yet that may have had events readers saw (Checkpoint.seq_floors,
    and books a checkpoint names without a snapshot): (partition, the seq a book born for
    it numbers after). A symbol not here starts at 1."""
    handoffs_owed: set[str] = field(default_factory=set)
    """Fenced books restored from a checkpoint: their handoff marker is published again once
    the book is through its fence (a Fence's checkpoint does not wait for the marker's
    delivery, so a restart cannot know it was delivered)."""
    fence_snapshots_owed: set[str] = field(default_factory=set)
    """Fenced books restored from a checkpoint that names no fence snapshot of theirs (the
    engine died before storing it: its fork comes a while after the Fence's reply): stored
    once the book is back at its fence (`fence_snapshots_due`), for a Promote's fallback or a
    Remove that asks for it."""
    _keys: dict[str, bytes] = field(default_factory=dict)

    # ------------------------------------------------------------------ the batch

    def apply_batch(self, records: list[Record], *, advance: bool = True) -> BatchResult:
        """Apply consumed records of owned partitions. `advance=False`: records consumed
        earlier and held (`drain`), the positions stay."""
        market = self.market
        books = market.books
        skip = self.skip
        position = self.position
        touched: dict[tuple[int, str], Touched] = {}
        unsequenced: list[Output] = []
        last_offsets: dict[int, int] = {}
        # No move under way here (no fences, held records, frozen books, replays or expected
        # symbols): a record of its book's home partition at or above the book's epoch is
        # what `_admit` would APPLY, so it is applied without asking (the general way costs
        # ~1 us per order interpreted). Nothing a batch does starts a move.
        plain = not (self.fences or self.held or self.frozen or self.replays or self.expect)
        gather(
            records,
            decode_order,
            decode_plain,
            books,
            self.home,
            self.epoch,
            skip,
            plain,
            lambda record, decoded: self._place(record, decoded, unsequenced),
            touched,
            last_offsets,
        )
        if advance:
            for partition, offset in last_offsets.items():
                position[partition] = offset + 1
        result = self._emit(touched)
        if skip:
            self._forget_skips()
        result.outputs.extend(unsequenced)
        result.last_offsets = last_offsets
        return result

    def _place(
        self, record: Record, decoded: wire.DecodedOrder, unsequenced: list[Output]
    ) -> Book | None:
        """The book a record of an owned partition is applied to, as `_admit` decides;
        None if it is not applied now (held, ignored, or refused outside any sequence:
        then its rejection is in `unsequenced`)."""
        books = self.market.books
        partition, offset, _, _ = record
        symbol = decoded.symbol
        command = decoded.command
        verdict = self._admit(symbol, partition, offset, decoded.route_epoch)
        reason = Reason.STALE_ROUTE
        if verdict == HOLD:
            if self._hold(symbol, record):
                return None
            verdict, reason = STALE, Reason.HELD_FULL
        if verdict == IGNORE:
            return None
        if verdict == STALE:
            if command is None and symbol not in books:
                reason = decoded.reason  # junk is junk, whoever owns its symbol
            event = unsequenced_rejection(decoded.order_id, decoded.user_id, reason)
            unsequenced.append(
                self._unsequenced(symbol, partition, offset, event, decoded.received_ts_ns)
            )
            return None
        book = books.get(symbol)
        if book is None:
            # only a readable order may list a symbol: junk never creates a book
            market = self.market
            book = market.book(symbol) if command is not None else None
            if book is None:
                reason = market.refusal(symbol) if command is not None else decoded.reason
                event = unsequenced_rejection(decoded.order_id, decoded.user_id, reason)
                unsequenced.append(
                    self._unsequenced(symbol, partition, offset, event, decoded.received_ts_ns)
                )
                return None
            if self.seq_floor:
                floor = self.seq_floor.pop(symbol, None)
                if floor is not None:
                    book.seq = max(book.seq, floor[1])
            self.home[symbol] = partition
            self.epoch[symbol] = decoded.route_epoch
            # seq: what the book is born at, so a restart before its first snapshot
            # numbers its events the same again
            self.snaps[symbol] = BookEntry("", offset - 1, book.seq, decoded.route_epoch)
        return book

    def _emit(self, touched: dict[tuple[int, str], Touched]) -> BatchResult:
        outputs, orders, client_ts = emit(
            touched, encode_symbol_batch, self._keys, self.dirty, MAX_EVENTS_PER_RECORD
        )
        return BatchResult(outputs, orders, client_ts, {})

    def _admit(self, symbol: str, partition: int, offset: int, epoch: int) -> int:
        """APPLY, HOLD, STALE (REJECTED STALE_ROUTE outside any sequence) or IGNORE a record
        of an owned partition (see the class docstring and HANDOVER's engine rules)."""
        book = self.market.books.get(symbol)
        fence = self.fences.get(symbol)
        if book is not None and fence is not None and self.home.get(symbol) == partition:
            if offset <= fence.offset:
                return APPLY  # before the fence: it was applied (a rewind, a restart)
            return HOLD if epoch >= fence.epoch else STALE
        held = self.held.get(symbol)
        if held and held[0][0] == partition:
            return HOLD  # keep the order: once one is held, the rest wait behind it
        if book is not None:
            if self.home.get(symbol) != partition:
                return STALE  # a symbol is matched from one partition only
            if symbol in self.frozen or symbol in self.replays:
                return HOLD
            return STALE if epoch < self.epoch.get(symbol, 0) else APPLY
        expected = self.expect.get(symbol)
        if expected is not None:
            return HOLD if epoch > expected else STALE
        if fence is not None:
            if partition == fence.partition and offset <= fence.offset:
                return IGNORE  # it was applied before the symbol left
            return STALE
        if self.gone:
            buried = self.gone.get(symbol)
            if buried is not None:
                gone_from, left = buried
                return IGNORE if partition == gone_from and offset <= left.offset else STALE
        return APPLY

    def _hold(self, symbol: str, record: Record) -> bool:
        held = self.held.setdefault(symbol, [])
        if len(held) >= MAX_HELD:
            return False
        held.append(record)
        return True

    def drain(self, symbol: str) -> BatchResult:
        """Apply the symbol's held records in order (it became active, or unfrozen)."""
        records = self.held.pop(symbol, [])
        if not records:
            return BatchResult([], {}, {}, {})
        return self.apply_batch(records, advance=False)

    def reject_held(self, symbol: str) -> list[Output]:
        """Refuse the symbol's held records STALE_ROUTE (its move was called off): their
        senders retry on the route as it is now."""
        outputs = []
        for partition, offset, key, value in self.held.pop(symbol, []):
            decoded = decode_order(value, key)
            event = unsequenced_rejection(decoded.order_id, decoded.user_id, Reason.STALE_ROUTE)
            outputs.append(self._unsequenced(symbol, partition, offset, event))
        return outputs

    # ------------------------------------------------------------------ shadows, replays

    def apply_shadow(self, records: list[Record], now: float = 0.0, hold_s: float = 0.0) -> None:
        """Records of partitions this engine does not own, read for its shadows: each
        shadow applies its symbol's records (as its owner would: lower route epochs than
        the owner's are refused there, so they change nothing here) and publishes nothing.
        While a shadow's fence offset is unknown its records wait `hold_s` after `now`
        (Shadow.waiting); `release_shadows` applies them."""
        shadows = self.shadows
        for record in records:
            partition, offset, key, value = record
            decoded = decode_order(value, key)
            for shadow in shadows.values():
                if shadow.source == partition and offset >= shadow.read:
                    shadow.read = offset + 1
            shadow_of = shadows.get(decoded.symbol)
            if shadow_of is None or shadow_of.source != partition:
                continue
            waiting = shadow_of.waiting
            if offset < (waiting[-1][1] + 1 if waiting else shadow_of.next_offset):
                continue  # read again
            waiting.append((now, offset, decoded))
        self.release_shadows(now, hold_s)

    def release_shadows(self, now: float, hold_s: float) -> None:
        """Apply the shadows' records that waited `hold_s` since `now` - each was read, and
        all of them up to a known fence offset; drop the ones after it."""
        for shadow in self.shadows.values():
            waiting = shadow.waiting
            due = 0
            while due < len(waiting) and (shadow.stop >= 0 or waiting[due][0] <= now - hold_s):
                due += 1
            if not due:
                continue
            for _, offset, decoded in waiting[:due]:
                _shadow_apply(shadow, offset, decoded)
            del waiting[:due]

    def apply_pending(self, topic: str, records: list[Record]) -> BatchResult:
        """Records of `topic` (pending-orders) read for replays: each replay applies its
        symbol's records of its epoch, publishing on the book's home partition, until the
        PENDING_END marker of (symbol, epoch)."""
        touched: dict[tuple[int, str], Touched] = {}
        for record in records:
            partition, offset, key, value = record
            decoded = decode_order(value, key)
            for replay in self.replays.values():
                if replay.topic != topic or replay.partition != partition or replay.done:
                    continue
                if offset < replay.next_offset:
                    continue
                if replay.through is not None and offset > replay.through:
                    replay.done = True
                    continue
                replay.next_offset = offset + 1
                replay.reached_through()
                if decoded.symbol != replay.symbol or decoded.route_epoch != replay.epoch:
                    continue
                if decoded.marker == orders_pb2.PENDING_END:
                    replay.done = True
                    continue
                if decoded.marker:
                    continue
                book = self.market.books.get(replay.symbol)
                if book is None:
                    continue
                home = self.home[replay.symbol]
                entry = touched.get((home, replay.symbol))
                if entry is None:
                    entry = touched[(home, replay.symbol)] = Touched(book, book.seq)
                replay.replayed += 1
                if decoded.command is None:
                    entry.reject(offset, decoded.order_id, decoded.user_id, decoded.reason)
                else:
                    entry.add(offset, decoded.command)
                entry.last_offset = offset
                if decoded.received_ts_ns:
                    entry.stamps[offset] = decoded.received_ts_ns
                if decoded.client_ts_ns:
                    entry.client_ts.append(decoded.client_ts_ns)
        return self._emit(touched)

    def replay_done(self, symbol: str) -> bool:
        """The symbol's replay met its end: the next one of its chain (Replay.then) not done
        yet takes its place. True when none is left: its held records follow."""
        replay = self.replays.get(symbol)
        if replay is None:
            return True
        while replay.done:
            if not replay.then:
                del self.replays[symbol]
                return True
            following = replay.then[0]
            following.then = replay.then[1:]
            self.replays[symbol] = replay = following
        return False

    def shadow_partitions(self) -> dict[int, int]:
        """Per followed partition, the offset to read it from."""
        out: dict[int, int] = {}
        for shadow in self.shadows.values():
            out[shadow.source] = min(out.get(shadow.source, shadow.read), shadow.read)
        return out

    def pending_partitions(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for replay in self.replays.values():
            if not replay.done:
                key = (replay.topic, replay.partition)
                out[key] = min(out.get(key, replay.next_offset), replay.next_offset)
        return out

    # ------------------------------------------------------------------ output helpers

    def depth_snapshots(self, levels: int, symbols: list[str] | None = None) -> list[Output]:
        """A top-`levels` DepthUpdate snapshot of every book (or of `symbols`), on its home
        partition; fenced books have none (their new owner's replace them)."""
        outputs: list[Output] = []
        books = self.market.books
        for symbol in sorted(books) if symbols is None else symbols:
            book = books.get(symbol)
            partition = self.home.get(symbol)
            if book is None or partition is None or symbol in self.fences:
                continue
            value = encode_depth(symbol, book.depth_snapshot(levels), self.applied_offset(symbol))
            outputs.append((TOPIC_DEPTH, partition, self._key(symbol), value))
        return outputs

    def owed_handoffs(self) -> list[Output]:
        """The handoff markers owed by restored fenced books now through their fence (a
        marker published twice is harmless: a reader drops it as seen); a fence lifted or
        a book removed meanwhile owes nothing."""
        out: list[Output] = []
        for symbol in sorted(self.handoffs_owed):
            fence = self.fences.get(symbol)
            if fence is None or symbol not in self.market.books:
                self.handoffs_owed.discard(symbol)
            elif self.through_fence(symbol):
                self.handoffs_owed.discard(symbol)
                home = self.home.get(symbol, fence.partition)
                out += self.handoff(symbol, home, fence.seq, fence.to_partition, fence.epoch)
        return out

    def fence_snapshots_due(self) -> list[str]:
        """The fenced books owing their fence snapshot (`fence_snapshots_owed`) that are
        now through their fence; a fence lifted or a book removed meanwhile owes nothing."""
        due: list[str] = []
        for symbol in sorted(self.fence_snapshots_owed):
            if symbol not in self.fences or symbol not in self.market.books:
                self.fence_snapshots_owed.discard(symbol)
            elif self.through_fence(symbol):
                self.fence_snapshots_owed.discard(symbol)
                due.append(symbol)
        return due

    def handoff(
        self, symbol: str, partition: int, final_seq: int, to: int, epoch: int
    ) -> list[Output]:
        """The handoff marker records of a symbol leaving `partition` at `final_seq`."""
        out = encode_handoff(symbol, final_seq, to, epoch)
        key = self._key(symbol)
        return [
            (TOPIC_ORDER_STATUS, partition, key, out.order_status),
            (TOPIC_FILLS, partition, key, out.fills),
            (TOPIC_TRADES, partition, key, out.trades),
        ]

    def _unsequenced(
        self, symbol: str, partition: int, offset: int, event: Event, ts_ns: int = 0
    ) -> Output:
        key = self._keys.get(symbol) or symbol.encode()  # junk symbols are not cached
        return (
            TOPIC_ORDER_STATUS,
            partition,
            key,
            encode_unsequenced(symbol, offset, event, ts_ns),
        )

    def _key(self, symbol: str) -> bytes:
        key = self._keys.get(symbol)
        if key is None:
            key = self._keys[symbol] = symbol.encode()
        return key

    def _forget_skips(self) -> None:
        """A skip ends once its partition's position has passed it."""
        for symbol, through in list(self.skip.items()):
            home = self.home.get(symbol)
            if home is None or self.position.get(home, 0) > through:
                del self.skip[symbol]

    # ------------------------------------------------------------------ queries

    def applied_offset(self, symbol: str) -> int:
        """The last offset of the symbol's partition that its book includes (-1: none)."""
        home = self.home.get(symbol)
        if home is None:
            return -1
        here = max(self.position.get(home, 0) - 1, self.skip.get(symbol, -1))
        fence = self.fences.get(symbol)
        if fence is not None and symbol in self.market.books:
            return min(fence.offset, here)
        held = self.held.get(symbol)
        if held and held[0][0] == home:
            return held[0][1] - 1
        return here

    def through_fence(self, symbol: str) -> bool:
        """A fenced book holds everything up to its fence (after a restart it applies its
        records up to the fence again first)."""
        fence = self.fences.get(symbol)
        home = self.home.get(symbol)
        if fence is None or home is None:
            return True
        return max(self.position.get(home, 0) - 1, self.skip.get(symbol, -1)) >= fence.offset

    def symbols_of(self, partition: int) -> list[str]:
        return sorted(s for s, p in self.home.items() if p == partition and s in self.market.books)

    def active(self, symbol: str) -> bool:
        """Held here, not fenced, not replaying: its orders are matched as they come."""
        return (
            symbol in self.market.books
            and symbol not in self.fences
            and symbol not in self.replays
            and symbol not in self.frozen
            and not self.held.get(symbol)
        )

    # ------------------------------------------------------------------ changes

    def add_book(
        self,
        book: Book,
        partition: int,
        applied_through: int,
        *,
        epoch: int = 0,
        location: str = "",
    ) -> None:
        """Hold `book`, fed from `partition` after offset `applied_through`; `location`:
        the stored snapshot it equals ("" none)."""
        self.market.add_book(book)
        symbol = book.symbol
        self.home[symbol] = partition
        self.seq_floor.pop(symbol, None)  # it numbers on from its own seq
        self.fences.pop(symbol, None)
        self.gone.pop(symbol, None)
        self.expect.pop(symbol, None)
        self.epoch[symbol] = epoch
        self.snaps[symbol] = BookEntry(location, applied_through, book.seq, epoch)
        if applied_through >= self.position.get(partition, 0) - 1:
            self.skip[symbol] = applied_through
        else:
            self.skip.pop(symbol, None)
        if location:
            self.dirty.discard(symbol)
        else:
            self.dirty.add(symbol)

    def stored(self, symbol: str, location: str, offset: int, seq: int) -> str:
        """A snapshot of the book at `offset` (seq `seq`) is durable at `location`: the next
        checkpoint names it. Returns the location it replaces ("" none), to retire once a
        checkpoint no longer names it."""
        if symbol not in self.market.books:
            return ""
        previous = self.snaps.get(symbol)
        self.snaps[symbol] = BookEntry(location, offset, seq, self.epoch.get(symbol, 0))
        if self.market.books[symbol].seq == seq and symbol not in self.fences:
            self.dirty.discard(symbol)
        if previous is not None and previous.location != location:
            return previous.location
        return ""

    def rewind(self, partition: int, to_offset: int) -> bool:
        """Consume `partition` again from `to_offset` (a Restore that follows from there):
        every other book of the partition skips what it already holds. False if the
        position is already at or before `to_offset`."""
        here = self.position.get(partition, 0)
        if to_offset >= here:
            return False
        for symbol in self.symbols_of(partition):
            self.skip[symbol] = max(self.skip.get(symbol, -1), self.applied_offset(symbol))
        for symbol, held in list(self.held.items()):
            # records held from `to_offset` on are read again, and held again in order
            kept = [r for r in held if r[0] != partition or r[1] < to_offset]
            if kept:
                self.held[symbol] = kept
            else:
                del self.held[symbol]
        self.position[partition] = to_offset
        return True

    def fence(self, symbol: str, entry: FenceEntry) -> None:
        self.fences.pop(symbol, None)
        self.fences[symbol] = entry
        self._bound_fences()

    def remove_book(self, symbol: str, fence: FenceEntry | None) -> Book | None:
        """Drop the symbol's book (and anything held for it); `fence` stays, so its later
        records are STALE_ROUTE (and earlier ones, replayed, ignored)."""
        book = self.market.remove_book(symbol)
        self.home.pop(symbol, None)
        self.skip.pop(symbol, None)
        self.dirty.discard(symbol)
        self.epoch.pop(symbol, None)
        self.snaps.pop(symbol, None)
        self.held.pop(symbol, None)
        self.frozen.discard(symbol)
        self.restoring.discard(symbol)
        self.replays.pop(symbol, None)
        self._keys.pop(symbol, None)
        if fence is not None:
            self.fence(symbol, fence)
        else:
            self.fences.pop(symbol, None)
        return book

    def prunable_fences(self, resume: dict[int, int]) -> list[str]:
        """Fences of symbols gone from here (removed: no book) that no checkpoint needs any
        more: their partition's checkpoint resumes after the fence's offset (`resume`: per
        partition, the first offset a restart consumes), so no restart reads a record of
        theirs that the fence would have to ignore. A fence whose book is still here (a
        move under way) is never one; an Unfence or a Promote drops its fence itself."""
        return [
            symbol
            for symbol, fence in self.fences.items()
            if symbol not in self.market.books and fence.offset < resume.get(fence.partition, -1)
        ]

    def _bound_fences(self) -> None:
        """At most MAX_FENCES fences of symbols with no book here: the oldest are buried
        first (only a gone entry is left of them)."""
        gone = [s for s in self.fences if s not in self.market.books]
        for symbol in gone[: max(0, len(gone) - MAX_FENCES)]:
            self.bury(symbol)

    def bury(self, symbol: str) -> None:
        """Drop the fence of a removed symbol, keeping only what refuses its late records
        and ignores its records read again (`gone`); at most MAX_GONE are kept, the oldest
        dropped first, each raising its partition's rewind floor to its offset."""
        fence = self.fences.pop(symbol)
        self.gone.pop(symbol, None)
        self.gone[symbol] = (fence.partition, GoneEntry(fence.epoch, fence.offset))
        for old in list(self.gone)[: max(0, len(self.gone) - MAX_GONE)]:
            partition, left = self.gone.pop(old)
            self.rewind_floor[partition] = max(self.rewind_floor.get(partition, -1), left.offset)

    def checkpoint(self, partition: int, instance: str, taken_ms: int) -> Checkpoint:
        """The checkpoint of `partition` as of now; valid once every event so far is
        acknowledged. A clean book (unchanged since its snapshot) resumes after its applied
        offset; a changed, fenced, frozen or holding one from its last durable snapshot."""
        offset = self.position.get(partition, 0) - 1
        books: dict[str, BookEntry] = {}
        expect: dict[str, ExpectEntry] = {}
        for symbol in self.symbols_of(partition):
            snap = self.snaps[symbol]
            epoch = self.epoch.get(symbol, 0)
            if symbol in self.restoring:
                offset = min(offset, snap.offset)
                continue
            if not snap.location and symbol in self.expect:
                # promoted here, no snapshot stored yet: a restart still expects it (its
                # records since `offset` are held again until a Promote from the fallback)
                expect[symbol] = ExpectEntry(self.expect[symbol], snap.offset + 1)
                continue
            moving = symbol in self.fences or symbol in self.frozen or symbol in self.replays
            if symbol in self.dirty or moving or self.held.get(symbol) or not snap.location:
                books[symbol] = BookEntry(snap.location, snap.offset, snap.seq, epoch)
            else:
                through = self.applied_offset(symbol)
                books[symbol] = BookEntry(snap.location, max(through, snap.offset), snap.seq, epoch)
        fences = {s: f for s, f in self.fences.items() if f.partition == partition}
        for symbol, epoch in self.expect.items():
            if symbol in self.market.books:
                continue
            held = self.held.get(symbol)
            first = held[0][1] if held and held[0][0] == partition else -1
            expect[symbol] = ExpectEntry(epoch, first)
        gone = {s: left for s, (p, left) in self.gone.items() if p == partition}
        floor = self.rewind_floor.get(partition, -1)
        return Checkpoint(
            partition,
            offset,
            books,
            fences,
            expect,
            instance,
            taken_ms,
            gone,
            floor,
            self.log_id,
            {s: seq for s, (p, seq) in self.seq_floor.items() if p == partition},
        )


def _reborn_fenced(state: EngineState, symbol: str, partition: int, entry: BookEntry) -> None:
    """A fenced book with no snapshot stored yet (its fence snapshot was still being stored
    when the engine died): it is born again empty, so its records up to the fence apply
    again (with no book, the fence would ignore them and the book would be lost)."""
    book = state.market.book(symbol)
    if book is None:
        return
    book.seq = max(book.seq, entry.seq)
    state.home[symbol] = partition
    state.epoch[symbol] = entry.epoch
    state.snaps[symbol] = entry


def restore_partition(
    state: EngineState,
    checkpoint: Checkpoint | None,
    partition: int,
    books: dict[str, tuple[Book, SnapshotInfo]],
) -> int:
    """Install a partition's books from the snapshots its checkpoint names; returns the
    offset to consume from (Checkpoint.resume_offset). A book whose entry is ahead of that
    skips what it already holds; one with no snapshot yet (location "") is born again from
    its records. Fences and expected symbols come back as they were."""
    if checkpoint is None:
        state.position[partition] = 0
        return 0
    start = checkpoint.resume_offset()
    for symbol, floor in checkpoint.seq_floors.items():
        state.seq_floor[symbol] = (partition, floor)
    for symbol, entry in sorted(checkpoint.books.items()):
        if not entry.location:
            if symbol in checkpoint.fences:
                _reborn_fenced(state, symbol, partition, entry)
            elif entry.seq:  # born again from its records, numbered as the first time
                state.seq_floor[symbol] = (partition, entry.seq)
            continue
        loaded = books.get(symbol)
        if loaded is None:
            raise KeyError(f"checkpoint of partition {partition} names {symbol!r}: no snapshot")
        book, _info = loaded
        state.market.add_book(book)
        state.home[symbol] = partition
        state.epoch[symbol] = entry.epoch
        state.snaps[symbol] = entry
        if entry.offset >= start:
            state.skip[symbol] = entry.offset
    for symbol, fence in checkpoint.fences.items():
        state.fences[symbol] = fence
        if symbol in state.market.books:
            state.handoffs_owed.add(symbol)
            snap = state.snaps.get(symbol)
            if snap is None or snap.location != fence.location:
                state.fence_snapshots_owed.add(symbol)
    for symbol, left in checkpoint.gone.items():
        if symbol not in state.market.books and symbol not in state.fences:
            state.gone[symbol] = (partition, left)
    if checkpoint.rewind_floor >= 0:
        state.rewind_floor[partition] = checkpoint.rewind_floor
    for symbol, expected in checkpoint.expect.items():
        if symbol not in state.market.books:
            state.expect[symbol] = max(state.expect.get(symbol, 0), expected.epoch)
    state.position[partition] = start
    return start


def _shadow_apply(shadow: Shadow, offset: int, decoded: DecodedOrder) -> None:
    """One record of the shadow's symbol, in offset order (the owner's rules: see
    EngineState.apply_shadow)."""
    if offset < shadow.next_offset or (shadow.stop >= 0 and offset > shadow.stop):
        return
    shadow.next_offset = offset + 1
    if decoded.route_epoch < shadow.epoch:
        return
    shadow.last_applied = offset
    book = shadow.book
    if decoded.command is None:
        book.reject(decoded.order_id, decoded.user_id, decoded.reason, [])
    else:
        book.apply(decoded.command)
