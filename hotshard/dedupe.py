"""Exactly-once on the reading side: drop re-emitted events, report lost ones, and follow a
symbol across partitions.

The engine publishes at least once: after a crash it replays `orders` from its last
snapshot and publishes the events of the replayed range again, with the SAME per-symbol
sequence numbers (the book is deterministic). Kafka transactions cannot be the guard (the
local broker shows aborted records to read_committed readers), so every reader of fills,
trades or order_status passes records through a `SequenceGuard`:

    guard = SequenceGuard()
    for msg in consumer.consume(500, 0.1):
        batch = parse_batch(kind_of_topic, msg.value())
        for event, input_offset in guard.admit(kind_of_topic, msg.partition(), batch):
            handle(event)
    assert not guard.gaps        # or alert: a record was lost

Each record covers one symbol's sequence numbers (after_seq, through_seq] on its topic
(hotshard.wire). A symbol that moves from partition p to partition q ends on p with a
handoff marker (after_seq = through_seq = F, `handoff.partition` = q); a reader of both
may see q's first records (after_seq = F) before p's last ones. Per (topic, symbol) the
guard keeps how far it has covered and the partition it expects the next record from: the
partition of the last record it delivered, or none after a marker (the stream left that
partition, and only a contiguous record shows where it went on: a move rolled back and
retried to q puts records on q beyond F while p still owes (F, F'], so a record on q
beyond F proves nothing):
- through_seq <= covered: seen before (a replay, or a replayed marker): dropped; except a
  marker at exactly `covered`, which only clears the expected partition;
- after_seq <= covered < through_seq: the events beyond `covered` are delivered, whatever
  partition the record comes from (a rolled-back move continues on p, and just works);
- after_seq > covered from another partition than the expected one (or after a marker):
  the record is HELD, never dropped; held records are released in seq order as soon as
  they are contiguous;
- after_seq > covered from the expected partition: Kafka keeps one partition's order, so
  the missing records cannot come later from there: a `Gap` is recorded and the record
  delivered (first any held record ordered before it, with a Gap before each hole);
- nothing known of the symbol yet and after_seq > 0: a Gap from 0 and delivered, as a
  reader that joins mid-stream must; a reader that reads every partition from its start
  passes `from_start=True`, and such a record is held (its history may be on another
  partition) - losing a symbol's very first record then shows only at the hold bound;
- at most `max_held` records are held: a record that would be one too many makes its own
  symbol stop waiting (its lowest held record is delivered after a Gap), so memory stays
  bounded and `admit` only ever yields events of the record's own topic and symbol.
`held` and `pending()` show what is waiting.
A hole the guard found after events it delivered (`holes`: the missing seqs, as ranges) is
filled if its events come later after all: an engine that stops because a record of its was
acknowledged but maybe not written (engine.service.loop.on_delivery) publishes it again
from its checkpoint, after records beyond it were delivered, so the copy covers seqs below
`covered`: its events in a hole are delivered then (late, out of seq order, once), its
whole range leaves the hole (a record holds all of its topic's events of its range; the
other seqs are other kinds'), and a Gap with nothing left missing is taken off `gaps`
(`healed` counts the late events). A hole from 0 (a reader that joined mid-stream) is never
filled: what came before it was another reader's. At most MAX_HOLES ranges are kept (the
oldest key's go first; their Gaps stay).
Events no book numbers (seq 0: unreadable input, unknown symbol, stale route) are
de-duplicated on their input offset per (topic, partition): the engine replays a partition
in offset order, so an offset not beyond the last one seen is a repeat.

Depth is state: `DepthGuard.admit` keeps an update only if its seq is beyond the last one
applied for the symbol (a periodic top-N snapshot also at the same seq); its levels are
absolute quantities, so applying a later update after a replay is always correct, and a
snapshot replaces what the reader held.

The guard's state is small (two ints per symbol and topic, plus what is held): a reader
that restarts keeps it with its own committed offsets. Held records live only in memory: a
reader that commits offsets must not commit past a held record's (or must keep the held
records too), or a restart loses them.
"""

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hotshard.events import DepthUpdate, Event
from hotshard.wire import EventBatch, event_tuple, handoff_of

AWAY = -1
"""The expected partition after a handoff marker: no partition's records are contiguous
by position any more, only by seq."""
MAX_HELD = 10_000
"""Records one guard holds at most (each is one parsed record, at most a few thousand events)."""
MAX_HOLES = 10_000
"""Ranges of missing seqs one guard remembers at most, to fill if their events come late."""

Key = tuple[int, str]
_Hold = tuple[int, int, int, int, EventBatch]
"""(after_seq, through_seq, arrival, partition, record): heap order is seq order, then
arrival (unique, so records are never compared)."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Events (after, before) exclusive of both ends never arrived on `kind`'s topic."""

    kind: int
    symbol: str
    after: int
    before: int


@dataclass(slots=True)
class SequenceGuard:
    max_held: int = MAX_HELD
    from_start: bool = False
    covered: dict[Key, int] = field(default_factory=dict)
    expected: dict[Key, int] = field(default_factory=dict)
    unsequenced: dict[tuple[int, int], int] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    holes: dict[Key, list[list[Any]]] = field(default_factory=dict)
    """Per key, the seqs of its Gaps not covered by a record since: [first, last, Gap]."""
    healed: int = 0
    """Events delivered late into a hole."""
    dropped: int = 0
    held: int = 0
    """Records held back, waiting for the records before them."""
    _held: dict[Key, list[_Hold]] = field(default_factory=dict)
    _arrivals: int = 0

    def save(self) -> tuple[Any, ...]:
        """The guard's state, to `restore` if the batch it admitted could not be handled
        (a retry of the batch must admit the same events again)."""
        return (
            dict(self.covered),
            dict(self.expected),
            dict(self.unsequenced),
            list(self.gaps),
            {k: [list(r) for r in v] for k, v in self.holes.items()},
            self.healed,
            self.dropped,
            self.held,
            {k: list(v) for k, v in self._held.items()},
            self._arrivals,
        )

    def restore(self, state: tuple[Any, ...]) -> None:
        covered, expected, unsequenced, gaps, holes, healed, dropped, held, holds, arrivals = state
        self.covered, self.expected, self.unsequenced = covered, expected, unsequenced
        self.gaps[:], self.holes, self.healed = gaps, holes, healed
        self.dropped, self.held, self._held, self._arrivals = dropped, held, holds, arrivals

    def pending(self) -> dict[Key, list[tuple[int, int, int]]]:
        """Per (kind, symbol) with held records: their (after_seq, through_seq, partition)
        in seq order."""
        return {
            key: [(a, t, p) for a, t, _, p, _ in sorted(heap)] for key, heap in self._held.items()
        }

    def admit(self, kind: int, partition: int, batch: EventBatch) -> Iterator[tuple[Event, int]]:
        """The events not seen before, in seq order, with their input offsets: this record's
        and those of held records it made contiguous."""
        for msg in self.admit_messages(kind, partition, batch):
            yield event_tuple(kind, msg)

    def admit_messages(self, kind: int, partition: int, batch: EventBatch) -> Iterator[Any]:
        """As `admit`, the protobuf events themselves (for fields beyond the book's tuple,
        such as ts_ns)."""
        after, through = batch.after_seq, batch.through_seq
        if through == 0:
            yield from self._admit_unsequenced(kind, partition, batch)
            return
        key = (kind, batch.symbol)
        covered = self.covered.get(key, 0)
        if not after <= covered < through:
            yield from self._admit_other(key, partition, batch, covered, after, through)
            return
        # the hot path: the next record of the symbol (a marker never takes it: after == through)
        self.covered[key] = through
        self.expected[key] = partition
        yield from self._beyond(key, batch, covered)
        if self._held and key in self._held:
            yield from self._drain(key, None)

    def _admit_other(
        self, key: Key, partition: int, batch: EventBatch, covered: int, after: int, through: int
    ) -> Iterator[Any]:
        """A repeat, a marker, or a record beyond what is covered."""
        if after <= covered:  # through <= covered: a repeat, or a marker at `covered`
            yield from self._take(key, partition, batch, covered)
            if key in self._held:
                yield from self._drain(key, None)
            return
        hold: _Hold = (after, through, self._arrivals, partition, batch)
        self._arrivals += 1
        heap = self._held.setdefault(key, [])
        heapq.heappush(heap, hold)
        self.held += 1
        expected = self.expected.get(key)
        if expected == partition or (expected is None and not self.from_start):
            yield from self._drain(key, hold)
        elif self.held > self.max_held:  # one too many: this symbol stops waiting
            yield from self._drain(key, heap[0])

    def _drain(self, key: Key, upto: _Hold | None) -> Iterator[Any]:
        """Release `key`'s held records that can go, in seq order: contiguous ones, ones
        from the expected partition (after a Gap), and every one ordered up to `upto`."""
        heap = self._held[key]
        while heap:
            first = heap[0]
            after, _, _, partition, batch = first
            covered = self.covered.get(key, 0)
            if (
                after > covered
                and partition != self.expected.get(key)
                and (upto is None or first > upto)
            ):
                break
            heapq.heappop(heap)
            self.held -= 1
            yield from self._take(key, partition, batch, covered)
        if not heap:
            del self._held[key]

    def _take(self, key: Key, partition: int, batch: EventBatch, covered: int) -> Iterator[Any]:
        """Deliver one record against `covered`: drop it as a repeat, follow a marker, or
        deliver its new events (after a Gap if it starts beyond `covered`)."""
        after, through = batch.after_seq, batch.through_seq
        handoff = handoff_of(batch)
        if through < covered or (through == covered and handoff is None):
            yield from self._late(key, batch)
            return
        kind, symbol = key
        if after > covered:
            gap = Gap(kind, symbol, covered, after + 1)
            self.gaps.append(gap)
            if covered > 0:  # a hole from 0 is a reader joining mid-stream: never filled
                self._open(key, gap)
        self.covered[key] = through
        self.expected[key] = partition if handoff is None else AWAY
        yield from self._beyond(key, batch, covered)

    def _beyond(self, key: Key, batch: EventBatch, covered: int) -> Iterator[Any]:
        """The record's events beyond `covered`, and those below it that fill a hole."""
        if key in self.holes and batch.after_seq < covered:
            yield from self._fill(key, batch, covered)
            return
        for msg in batch.events:
            if msg.seq > covered:
                yield msg
            else:
                self.dropped += 1

    def _late(self, key: Key, batch: EventBatch) -> Iterator[Any]:
        """A record wholly at or below `covered`: a repeat, except the events of a hole."""
        if key not in self.holes:
            self.dropped += len(batch.events)
            return
        yield from self._fill(key, batch, self.covered.get(key, 0))

    def _fill(self, key: Key, batch: EventBatch, covered: int) -> Iterator[Any]:
        """A record reaching below `covered` into the key's holes: its events in them are
        delivered, and its whole range (after, through] leaves the holes - the record is
        all its topic has there (the other seqs are other kinds' events). A Gap none of
        whose seqs is still missing is taken off `gaps`."""
        first, last = batch.after_seq + 1, min(batch.through_seq, covered)
        holes = self.holes[key]
        hit = [h for h in holes if h[0] <= last and h[1] >= first]
        for msg in batch.events:
            seq = msg.seq
            if seq > covered:
                yield msg
            elif any(h[0] <= seq <= h[1] for h in hit):
                self.healed += 1
                yield msg
            else:
                self.dropped += 1
        if not hit:
            return
        kept: list[list[Any]] = []
        for h in holes:
            if h[0] > last or h[1] < first:
                kept.append(h)
                continue
            if h[0] < first:
                kept.append([h[0], first - 1, h[2]])
            if h[1] > last:
                kept.append([last + 1, h[1], h[2]])
        if kept:
            self.holes[key] = kept
        else:
            del self.holes[key]
        closed = {id(h[2]) for h in hit} - {id(h[2]) for h in kept}
        if closed:
            self.gaps[:] = [g for g in self.gaps if id(g) not in closed]
        self._bound_holes()

    def _open(self, key: Key, gap: Gap) -> None:
        self.holes.setdefault(key, []).append([gap.after + 1, gap.before - 1, gap])
        self._bound_holes()

    def _bound_holes(self) -> None:
        """At most MAX_HOLES ranges: the oldest key's go first (their Gaps stay reported)."""
        total = sum(len(v) for v in self.holes.values())
        while total > MAX_HOLES:
            total -= len(self.holes.pop(next(iter(self.holes))))

    def _admit_unsequenced(self, kind: int, partition: int, batch: EventBatch) -> Iterator[Any]:
        key = (kind, partition)
        last = self.unsequenced.get(key, -1)
        for msg in batch.events:
            if msg.input_offset <= last:
                self.dropped += 1
                continue
            last = msg.input_offset
            yield msg
        self.unsequenced[key] = last


@dataclass(slots=True)
class DepthGuard:
    applied: dict[str, int] = field(default_factory=dict)
    dropped: int = 0

    def save(self) -> tuple[dict[str, int], int]:
        return dict(self.applied), self.dropped

    def restore(self, state: tuple[dict[str, int], int]) -> None:
        self.applied, self.dropped = state

    def admit(self, symbol: str, update: DepthUpdate) -> bool:
        """True if the update is newer than what was applied for the symbol (then it is
        recorded as applied)."""
        applied = self.applied.get(symbol, 0)
        # a snapshot at the seq already applied agrees with it; a change does not repeat
        if update.seq < applied or (update.seq == applied and not update.snapshot):
            self.dropped += 1
            return False
        self.applied[symbol] = update.seq
        return True
