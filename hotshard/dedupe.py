"""Exactly-once on the reading side: drop re-emitted events, report lost ones.

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
(hotshard.wire). Per (topic, symbol) the guard remembers how far it has covered:
- through_seq <= covered: the whole record was seen before: dropped;
- after_seq > covered: the records covering (covered, after_seq] are missing: a `Gap`
  is recorded (the events that follow are still delivered);
- otherwise events with seq <= covered are dropped and the rest delivered.
Events no book numbers (seq 0: unreadable input, unknown symbol, stale route) are
de-duplicated on their input offset per (topic, partition): the engine replays a partition
in offset order, so an offset not beyond the last one seen is a repeat.

Depth is state: `DepthGuard.admit` keeps an update only if its seq is beyond the last one
applied for the symbol (a periodic top-N snapshot also at the same seq); its levels are
absolute quantities, so applying a later update after a replay is always correct, and a
snapshot replaces what the reader held.

The guard's state is small (two ints per symbol and topic): a reader that restarts keeps it
with its own committed offsets.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field

from hotshard.events import DepthUpdate, Event
from hotshard.wire import EventBatch, event_tuple


@dataclass(frozen=True, slots=True)
class Gap:
    """Events (after, before) exclusive of both ends never arrived on `kind`'s topic."""

    kind: int
    symbol: str
    after: int
    before: int


@dataclass(slots=True)
class SequenceGuard:
    covered: dict[tuple[int, str], int] = field(default_factory=dict)
    unsequenced: dict[tuple[int, int], int] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    dropped: int = 0

    def admit(self, kind: int, partition: int, batch: EventBatch) -> Iterator[tuple[Event, int]]:
        """The events of one record not seen before, in order, with their input offsets."""
        symbol = batch.symbol
        after, through = batch.after_seq, batch.through_seq
        if through == 0:
            yield from self._admit_unsequenced(kind, partition, batch)
            return
        key = (kind, symbol)
        covered = self.covered.get(key, 0)
        if through <= covered:
            self.dropped += len(batch.events)
            return
        if after > covered:
            self.gaps.append(Gap(kind, symbol, covered, after + 1))
        self.covered[key] = through
        for msg in batch.events:
            if msg.seq <= covered:
                self.dropped += 1
                continue
            yield event_tuple(kind, msg)

    def _admit_unsequenced(
        self, kind: int, partition: int, batch: EventBatch
    ) -> Iterator[tuple[Event, int]]:
        key = (kind, partition)
        last = self.unsequenced.get(key, -1)
        for msg in batch.events:
            if msg.input_offset <= last:
                self.dropped += 1
                continue
            last = msg.input_offset
            yield event_tuple(kind, msg)
        self.unsequenced[key] = last


@dataclass(slots=True)
class DepthGuard:
    applied: dict[str, int] = field(default_factory=dict)
    dropped: int = 0

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
