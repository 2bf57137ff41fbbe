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
"""

from dataclasses import dataclass, field

from engine.book import Book, Market
from engine.book.snapshot import SnapshotInfo
from hotshard.commands import Command
from hotshard.events import SEQ, Event, unsequenced_rejection
from hotshard.names import TOPIC_DEPTH, TOPIC_FILLS, TOPIC_ORDER_STATUS, TOPIC_TRADES
from hotshard.reasons import Reason
from hotshard.recovery import Checkpoint
from hotshard.wire import decode_order, encode_depth, encode_symbol_batch, encode_unsequenced

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
class _Touched:
    """One symbol's share of a batch: commands wait here and go to the book in one
    Book.apply_all call (in order; an in-sequence rejection applies what waits first)."""

    book: Book
    after_seq: int
    commands: list[Command] = field(default_factory=list)
    pending_offsets: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    client_ts: list[int] = field(default_factory=list)
    stamps: dict[int, int] = field(default_factory=dict)
    """Input offset -> the order's received_ts_ns (only orders that carry one)."""
    last_offset: int = -1

    def apply_pending(self) -> None:
        if not self.commands:
            return
        base = len(self.events)
        ends: list[int] = []
        self.events.extend(self.book.apply_all(self.commands, ends))
        self.ends.extend([base + e for e in ends] if base else ends)
        self.offsets.extend(self.pending_offsets)
        self.commands = []
        self.pending_offsets = []

    def reject(self, offset: int, order_id: str, user_id: str, reason: Reason) -> None:
        self.apply_pending()
        self.book.reject(order_id, user_id, reason, self.events)
        self.ends.append(len(self.events))
        self.offsets.append(offset)


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
    - `dirty`: symbols changed since their last stored snapshot.
    """

    market: Market
    home: dict[str, int] = field(default_factory=dict)
    position: dict[int, int] = field(default_factory=dict)
    skip: dict[str, int] = field(default_factory=dict)
    fences: dict[str, int] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    _keys: dict[str, bytes] = field(default_factory=dict)

    # ------------------------------------------------------------------ the batch

    def apply_batch(self, records: list[Record]) -> BatchResult:
        market = self.market
        books = market.books
        skip = self.skip
        position = self.position
        touched: dict[tuple[int, str], _Touched] = {}
        unsequenced: list[Output] = []
        last_offsets: dict[int, int] = {}
        for partition, offset, key, value in records:
            last_offsets[partition] = offset
            decoded = decode_order(value, key)
            symbol = decoded.symbol
            if skip and offset <= skip.get(symbol, -1):
                continue
            command = decoded.command
            reason = self._refusal(symbol, partition, command is not None)
            book = None if reason else books.get(symbol)
            if book is None and not reason:
                # only a readable order may list a symbol: junk never creates a book
                book = market.book(symbol) if command is not None else None
                if book is None:
                    reason = Reason.UNKNOWN_SYMBOL if command is not None else decoded.reason
            if book is None:
                event = unsequenced_rejection(decoded.order_id, decoded.user_id, reason)
                unsequenced.append(
                    self._unsequenced(symbol, partition, offset, event, decoded.received_ts_ns)
                )
                continue
            entry = touched.get((partition, symbol))
            if entry is None:
                entry = touched[(partition, symbol)] = _Touched(book, book.seq)
                self.home.setdefault(symbol, partition)
            if command is None:
                entry.reject(offset, decoded.order_id, decoded.user_id, decoded.reason)
            else:
                entry.commands.append(command)
                entry.pending_offsets.append(offset)
            entry.last_offset = offset
            if decoded.received_ts_ns:
                entry.stamps[offset] = decoded.received_ts_ns
            if decoded.client_ts_ns:
                entry.client_ts.append(decoded.client_ts_ns)
        for partition, offset in last_offsets.items():
            position[partition] = offset + 1

        outputs: list[Output] = []
        orders: dict[str, int] = {}
        client_ts: dict[str, list[int]] = {}
        for (partition, symbol), entry in touched.items():
            entry.apply_pending()
            book = entry.book
            key_bytes = self._key(symbol)
            depth = book.depth_update()
            chunks = split_events(entry.events, entry.ends, entry.offsets, MAX_EVENTS_PER_RECORD)
            for i, (events, ends, offsets) in enumerate(chunks):
                out = encode_symbol_batch(
                    symbol,
                    int(events[0][SEQ]) - 1,
                    int(events[-1][SEQ]),
                    events,
                    ends,
                    offsets,
                    depth if i == len(chunks) - 1 else None,
                    entry.last_offset,
                    entry.stamps,
                )
                outputs.append((TOPIC_ORDER_STATUS, partition, key_bytes, out.order_status))
                outputs.append((TOPIC_FILLS, partition, key_bytes, out.fills))
                outputs.append((TOPIC_TRADES, partition, key_bytes, out.trades))
                if out.depth is not None:
                    outputs.append((TOPIC_DEPTH, partition, key_bytes, out.depth))
            orders[symbol] = orders.get(symbol, 0) + len(entry.offsets)
            if entry.client_ts:
                client_ts.setdefault(symbol, []).extend(entry.client_ts)
            self.dirty.add(symbol)
        if skip:
            self._forget_skips()
        outputs.extend(unsequenced)
        return BatchResult(outputs, orders, client_ts, last_offsets)

    def depth_snapshots(self, levels: int) -> list[Output]:
        """A top-`levels` DepthUpdate snapshot of every book, on its home partition."""
        outputs: list[Output] = []
        for symbol, book in sorted(self.market.books.items()):
            partition = self.home.get(symbol)
            if partition is None:
                continue
            value = encode_depth(symbol, book.depth_snapshot(levels), self.applied_offset(symbol))
            outputs.append((TOPIC_DEPTH, partition, self._key(symbol), value))
        return outputs

    def _refusal(self, symbol: str, partition: int, readable: bool) -> Reason:
        """Why an order for `symbol` from `partition` is refused before any book sees it
        (NONE if it is not). A symbol that left this engine is fenced whatever the order's
        epoch: only a Restore brings it back (a fresh book would restart its sequence). A
        symbol is matched from one partition only: its orders arriving on another one were
        routed by a stale table."""
        if not readable:
            return Reason.NONE
        if symbol in self.fences:
            return Reason.STALE_ROUTE
        home = self.home.get(symbol)
        if home is not None and home != partition and symbol in self.market.books:
            return Reason.STALE_ROUTE
        return Reason.NONE

    def _unsequenced(
        self, symbol: str, partition: int, offset: int, event: Event, ts_ns: int = 0
    ) -> Output:
        return (
            TOPIC_ORDER_STATUS,
            partition,
            self._key(symbol),
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
        here = self.position.get(home, 0) - 1 if home is not None else -1
        return max(here, self.skip.get(symbol, -1))

    def symbols_of(self, partition: int) -> list[str]:
        return sorted(s for s, p in self.home.items() if p == partition and s in self.market.books)

    # ------------------------------------------------------------------ changes

    def add_book(self, book: Book, partition: int, applied_through: int) -> None:
        """Hold `book`, fed from `partition` after offset `applied_through`."""
        self.market.add_book(book)
        self.home[book.symbol] = partition
        self.fences.pop(book.symbol, None)
        if applied_through >= self.position.get(partition, 0) - 1:
            self.skip[book.symbol] = applied_through
        else:
            self.skip.pop(book.symbol, None)
        self.dirty.add(book.symbol)

    def rewind(self, partition: int, to_offset: int) -> bool:
        """Consume `partition` again from `to_offset` (a Restore that follows from there):
        every other book of the partition skips what it already holds. False if the
        position is already at or before `to_offset`."""
        here = self.position.get(partition, 0)
        if to_offset >= here:
            return False
        for symbol in self.symbols_of(partition):
            self.skip[symbol] = max(self.skip.get(symbol, -1), here - 1)
        self.position[partition] = to_offset
        return True

    def remove_book(self, symbol: str, fence_epoch: int) -> Book | None:
        book = self.market.remove_book(symbol)
        self.home.pop(symbol, None)
        self.skip.pop(symbol, None)
        self.dirty.discard(symbol)
        self.fences[symbol] = fence_epoch
        return book

    def checkpoint(self, partition: int, instance: str, taken_ms: int) -> Checkpoint:
        """The checkpoint of `partition` as of now; valid once every book of it has a stored
        snapshot at least this new and every event so far is acknowledged."""
        offset = self.position.get(partition, 0) - 1
        symbols = self.symbols_of(partition)
        resume = {s: self.skip[s] for s in symbols if self.skip.get(s, offset) < offset}
        fences = dict(sorted(self.fences.items()))
        return Checkpoint(partition, offset, tuple(symbols), resume, fences, instance, taken_ms)


def split_events(
    events: list[Event], ends: list[int], offsets: list[int], limit: int
) -> list[tuple[list[Event], list[int], list[int]]]:
    """Cut one symbol's events of a batch into pieces of at most `limit` events, each with
    the `ends` and input `offsets` of the commands it holds (a command whose events span
    a cut appears in both pieces). Each piece becomes its own records covering a contiguous
    seq range, so no record outgrows the broker's size limit however far one order sweeps."""
    if len(events) <= limit:
        return [(events, ends, offsets)]
    pieces = []
    command = 0
    for start in range(0, len(events), limit):
        stop = min(start + limit, len(events))
        piece_ends: list[int] = []
        piece_offsets: list[int] = []
        while command < len(ends) and ends[command] <= stop:
            if ends[command] > start:
                piece_ends.append(ends[command] - start)
                piece_offsets.append(offsets[command])
            command += 1
        if command < len(ends) and (not piece_ends or piece_ends[-1] < stop - start):
            piece_ends.append(stop - start)  # the command goes on in the next piece
            piece_offsets.append(offsets[command])
        pieces.append((events[start:stop], piece_ends, piece_offsets))
    return pieces


def restore_partition(
    state: EngineState,
    checkpoint: Checkpoint | None,
    partition: int,
    books: dict[str, tuple[Book, SnapshotInfo]],
) -> int:
    """Install a partition's books from its checkpoint and their latest snapshots; returns
    the offset to consume from.

    A symbol's book includes its orders through max(snapshot offset, checkpoint offset)
    (it was not re-snapshotted only if it had no orders since), or through `resume[symbol]`
    for a symbol restored to follow from earlier. Consuming starts after the smallest of
    these; symbols further ahead skip what they already hold.
    """
    if checkpoint is None:
        state.position[partition] = 0
        return 0
    base = checkpoint.offset
    through: dict[str, int] = {}
    for symbol in checkpoint.symbols:
        loaded = books.get(symbol)
        if loaded is None:
            raise KeyError(f"checkpoint of partition {partition} names {symbol!r}: no snapshot")
        book, info = loaded
        if symbol in checkpoint.resume:
            through[symbol] = checkpoint.resume[symbol]
        else:
            own = info.input_offset if info.partition == partition else -1
            through[symbol] = max(own, base)
        state.market.add_book(book)
        state.home[symbol] = partition
    start = min([base, *through.values()]) + 1
    state.position[partition] = start
    for symbol, last in through.items():
        if last >= start:
            state.skip[symbol] = last
    state.fences.update(checkpoint.fences)
    return start
