"""What a restart resumes from, in Redis: each partition's checkpoint, which names per symbol
the snapshot it resumes from. Both snapshots and checkpoints are written only by the
instance that owns the partition (hotshard.registry), atomically with that check, so a
paused or zombie owner can never replace what the new owner recovers from.

- snapshot bytes: `snapshot-data:{SYMBOL}:{SEQ}-{OFFSET}` in Redis, or an S3 object
  (engine.service.store); a location is `redis:KEY` or `s3://bucket/key`.
- `checkpoint:orders:{P}`: JSON (docs/FORMATS.md "Checkpoints"): per book the snapshot
  (location, offset, seq, owner epoch) it resumes from, the fences of symbols leaving or
  gone, what is left of older ones (`gone`), and the symbols the engine expects (a
  shadow's records held on P). A restart
  loads exactly these snapshots, never "the latest snapshot of S" written by whoever:
  there is no global snapshot record (engine.service.core.restore_partition does the
  arithmetic).
"""

import json
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace

import redis

from hotshard import names
from hotshard.reasons import HotshardError, Reason

# ---------------------------------------------------------------------- snapshots


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A stored snapshot: where it is and what it holds."""

    symbol: str
    location: str
    partition: int
    input_offset: int
    seq: int
    size: int
    instance: str = ""
    taken_ms: int = 0
    owner_epoch: int = 0


PARTIAL_TTL_S = 600
"""A snapshot's bytes written aside (`KEY.partial.INSTANCE.TOKEN`) expire by then if the writer
dies before they are kept or dropped."""

_KEEP_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('RENAME', KEYS[2], KEYS[3])
  redis.call('PERSIST', KEYS[3])
  return 1
end
redis.call('DEL', KEYS[2])
return 0
"""


def write_snapshot_data(
    r: redis.Redis, instance: str, partition: int, *, data_key: str = "", data: bytes = b""
) -> bool:
    """Store a snapshot's bytes under `data_key` (without a key only the ownership is
    checked, for one stored in S3): atomically, and only while `instance` owns `partition`
    (a zombie must not write what a new owner may read). False if not.

    The bytes go aside first (a plain SET), then a script renames them
    to `data_key` if `instance` still owns the partition, else drops them: one O(1) step,
    whatever the heartbeat does to the owner key meanwhile (a WATCH on it failed on every
    refresh of its expiry, and gave up after 20). The bytes never pass through Lua: a
    script's arguments are copied into Lua and back, and a script holds Redis for its whole
    run: a 26 MB value on a starved machine passed Redis's busy-script limit and every other
    client got BUSY."""
    owner_key = names.REDIS_PARTITION_OWNER.format(partition)
    if not data_key:
        owner = r.get(owner_key)
        return owner is not None and _text(owner) == instance
    # One key aside per write: a zombie's never meets the owner's, and two writes of the same
    # snapshot at once (a fence snapshot's child and an Unfence's snapshot at the same seq)
    # each rename their own (a shared one was renamed by the first, the second's RENAME failed)
    partial = f"{data_key}.partial.{instance}.{secrets.token_hex(4)}"
    r.set(partial, data, ex=PARTIAL_TTL_S)
    kept = r.eval(_KEEP_IF_OWNER, 3, owner_key, partial, data_key, instance)
    return bool(kept)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# ---------------------------------------------------------------------- checkpoints

SEQ_JUMP_ON_REPLACED_LOG = 1_000_000
"""How far a book's seq jumps when its `orders` log was replaced: past every seq it may
have emitted after its checkpoint (at most one checkpoint interval of events, far below
this), so no seq of the new log repeats one readers saw from the old (they would drop it
as a replay); readers see a Gap instead: the events lost with the old log. A symbol that
existed before the log was replaced but has no snapshot in the checkpoint (a book born
after the last one, or before its first snapshot) starts above the jump too
(Checkpoint.seq_floors); one that never existed before starts at 1."""


class CheckpointError(HotshardError):
    """A checkpoint this build will not resume from (UNSUPPORTED_CHECKPOINT_FORMAT)."""


@dataclass(frozen=True, slots=True)
class BookEntry:
    """A book of the partition resumes from the snapshot at `location`, which includes every
    record of the symbol on the partition through `offset` (the symbol had no records after
    the snapshot's own offset up to `offset`), at sequence `seq`, owned at route `epoch`."""

    location: str
    offset: int
    seq: int
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class FenceEntry:
    """A symbol fenced on the partition at `offset` (its last applied record) and final seq
    `seq`, moving to route `epoch` on `to_partition`: its later records with a lower route
    epoch are STALE_ROUTE. `location`: the snapshot at `offset` once stored ("" before).
    The book may still be here (listed in `books`, for a rollback) or gone (removed)."""

    epoch: int
    offset: int
    seq: int
    to_partition: int = -1
    location: str = ""
    owner_epoch: int = 0
    partition: int = -1
    state_hash: str = ""


@dataclass(frozen=True, slots=True)
class GoneEntry:
    """What is left of a removed symbol's fence once no checkpoint needs the rest: it
    was applied on the partition through `offset` (a rewind or restart reading those
    records again ignores them) and left for route `epoch`; its later records are
    STALE_ROUTE, never a fresh book. In JSON a pair `[epoch, offset]`."""

    epoch: int
    offset: int


@dataclass(frozen=True, slots=True)
class ExpectEntry:
    """A symbol the engine expects to own (it shadows it, or did before a restart): its
    records on the partition with a route epoch above `epoch` are held, from `from_offset`
    (-1: none held yet), until a Promote."""

    epoch: int
    from_offset: int = -1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Partition `partition` has been consumed through `offset`; every event of it is
    acknowledged by the broker. Each book in `books` resumes from the snapshot its entry
    names; consuming restarts after the smallest of `offset`, the books' offsets and the
    first held record of each expected symbol (books further ahead skip what they hold)."""

    partition: int
    offset: int
    books: dict[str, BookEntry] = field(default_factory=dict)
    fences: dict[str, FenceEntry] = field(default_factory=dict)
    expect: dict[str, ExpectEntry] = field(default_factory=dict)
    instance: str = ""
    taken_ms: int = 0
    gone: dict[str, GoneEntry] = field(default_factory=dict)
    rewind_floor: int = -1
    """The last offset of a gone symbol the engine no longer remembers (its entry was
    dropped to bound `gone`): no follow-Restore may rewind the partition to it or before."""
    log_id: str = ""
    """The identity of the `orders` log the offsets are positions in (its topic id; "":
    unknown, a checkpoint written before log identities or on a broker without topic ids).
    A broker that lost its data comes back with a topic of another id whose offsets start
    at 0 again: the same numbers, other records."""
    seq_floors: dict[str, int] = field(default_factory=dict)
    """Symbols of the partition with no book yet that may have had events on a replaced
    log, which readers saw: a book born for one numbers its events after its floor (its
    entry's `seq` then carries the floor). Set by `rebased`; a symbol not named here (nor
    in `books`) is new and starts at 1."""

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted(self.books))

    def resume_offset(self) -> int:
        """The first offset a restart consumes."""
        starts = [self.offset, *(b.offset for b in self.books.values())]
        starts += [e.from_offset - 1 for e in self.expect.values() if e.from_offset >= 0]
        return min(starts) + 1

    def to_json(self) -> str:
        return json.dumps(
            {
                "partition": self.partition,
                "offset": self.offset,
                "books": {s: asdict(b) for s, b in self.books.items()},
                "fences": {s: asdict(f) for s, f in self.fences.items()},
                "expect": {s: asdict(e) for s, e in self.expect.items()},
                "gone": {s: [g.epoch, g.offset] for s, g in self.gone.items()},
                "rewind_floor": self.rewind_floor,
                "instance": self.instance,
                "taken_ms": self.taken_ms,
                "log_id": self.log_id,
                "seq_floors": self.seq_floors,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> "Checkpoint":
        raw = json.loads(text)
        if "books" not in raw and raw.get("symbols"):
            # Not migrated: such a checkpoint names no snapshot, only symbols, and the one
            # record it resolved them by (`snapshot:{S}`) may hold another owner's snapshot,
            # the very defect owner epochs fix. docs/FORMATS.md "Checkpoints" says what to do.
            raise CheckpointError(
                Reason.UNSUPPORTED_CHECKPOINT_FORMAT,
                "a checkpoint without per-symbol snapshots (written before owner epochs): "
                "it would load whatever snapshot of a symbol was written last",
            )
        books = {str(k): BookEntry(**v) for k, v in raw.get("books", {}).items()}
        legacy_base = int(raw.get("seq_base", 0))  # one floor for every book, f0a8a11's
        if legacy_base:
            books = {
                s: b if b.location else replace(b, seq=max(b.seq, legacy_base))
                for s, b in books.items()
            }
        return cls(
            int(raw["partition"]),
            int(raw["offset"]),
            books,
            {
                str(k): FenceEntry(**v) if isinstance(v, dict) else FenceEntry(int(v), -1, 0)
                for k, v in raw.get("fences", {}).items()
            },
            {str(k): ExpectEntry(**v) for k, v in raw.get("expect", {}).items()},
            str(raw.get("instance", "")),
            int(raw.get("taken_ms", 0)),
            {str(k): GoneEntry(int(v[0]), int(v[1])) for k, v in raw.get("gone", {}).items()},
            int(raw.get("rewind_floor", -1)),
            str(raw.get("log_id", "")),
            {str(k): int(v) for k, v in raw.get("seq_floors", {}).items()},
        )

    def rebased(self, log_id: str, routed: Iterable[str] = ()) -> "Checkpoint":
        """This checkpoint moved to a replaced log `log_id` (nothing of its old log is in
        it): the same books, fences, expected and gone symbols, consumed from offset 0. The
        records of the old log after `offset` are lost with it (the caller reports them).
        A symbol that existed before (a book with no snapshot here, a floor already, or one
        of `routed`: the symbols the routing table sends to the partition, which covers a
        book born after the checkpoint) starts above the jump when its book is born; the
        caller jumps the books it restores from snapshots."""
        floors = {s: f + SEQ_JUMP_ON_REPLACED_LOG for s, f in self.seq_floors.items()}
        for symbol in routed:
            if symbol not in self.books and symbol not in self.fences:
                floors.setdefault(symbol, SEQ_JUMP_ON_REPLACED_LOG)
        return replace(
            self,
            offset=-1,
            books={
                s: replace(b, offset=-1)
                if b.location
                else replace(b, offset=-1, seq=b.seq + SEQ_JUMP_ON_REPLACED_LOG)
                for s, b in self.books.items()
            },
            fences={s: replace(f, offset=-1) for s, f in self.fences.items()},
            expect={s: replace(e, from_offset=-1) for s, e in self.expect.items()},
            gone={s: replace(g, offset=-1) for s, g in self.gone.items()},
            rewind_floor=-1,
            log_id=log_id,
            seq_floors=floors,
        )


_WRITE_CHECKPOINT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""


def write_checkpoint(r: redis.Redis, checkpoint: Checkpoint) -> bool:
    """Write the partition's checkpoint only while `checkpoint.instance` owns the
    partition (atomically): a paused or zombie owner must not overwrite the checkpoint of
    the instance that took over. False if it no longer owns it."""
    written = r.eval(
        _WRITE_CHECKPOINT,
        2,
        names.REDIS_PARTITION_OWNER.format(checkpoint.partition),
        names.REDIS_CHECKPOINT.format(checkpoint.partition),
        checkpoint.instance,
        checkpoint.to_json(),
    )
    return bool(written)


def read_checkpoint(r: redis.Redis, partition: int) -> Checkpoint | None:
    raw = r.get(names.REDIS_CHECKPOINT.format(partition))
    return None if raw is None else Checkpoint.from_json(raw)
