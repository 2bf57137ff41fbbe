"""What a restart resumes from, in Redis: each symbol's latest snapshot record and each
partition's checkpoint. Both are written only by the instance that owns the partition
(hotshard.registry), atomically with that check, so a paused or zombie owner can never
replace what the new owner recovers from.

- `snapshot:{SYMBOL}` hash: location (redis:KEY or s3://bucket/key), partition,
  input_offset, seq, size, instance, taken_ms: the symbol's latest snapshot (the bytes are
  stored by engine.service.store).
- `checkpoint:orders:{P}`: JSON {offset, symbols, resume, fences}: a restart of the
  partition's owner loads each listed symbol's latest snapshot and resumes consuming after
  `offset` (engine.service.core.restore_partition does the arithmetic).
"""

import json
from dataclasses import dataclass, field

import redis

from hotshard import names
from hotshard.clients import text_fields

# ---------------------------------------------------------------------- snapshots


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    symbol: str
    location: str
    partition: int
    input_offset: int
    seq: int
    size: int
    instance: str = ""
    taken_ms: int = 0


# KEYS: owner of the record's partition, the record[, the data]. ARGV: instance, data,
# then the record's field/value pairs.
_WRITE_SNAPSHOT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if #KEYS == 3 then redis.call('SET', KEYS[3], ARGV[2]) end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
return 1
"""


def write_snapshot_record(
    r: redis.Redis, record: SnapshotRecord, *, data_key: str = "", data: bytes = b""
) -> bool:
    """Record the symbol's latest snapshot; with `data_key`, store the bytes in Redis too
    (small snapshots). Atomic, and only while `record.instance` owns the record's partition
    (a zombie must not replace the snapshot a new owner recovers from). False if not."""
    fields = {
        "location": record.location,
        "partition": record.partition,
        "input_offset": record.input_offset,
        "seq": record.seq,
        "size": record.size,
        "instance": record.instance,
        "taken_ms": record.taken_ms,
    }
    keys = [
        names.REDIS_PARTITION_OWNER.format(record.partition),
        names.REDIS_SNAPSHOT.format(record.symbol),
    ]
    if data_key:
        keys.append(data_key)
    pairs = [str(v) for item in fields.items() for v in item]
    return bool(r.eval(_WRITE_SNAPSHOT, len(keys), *keys, record.instance, data, *pairs))


def read_snapshot_record(r: redis.Redis, symbol: str) -> SnapshotRecord | None:
    raw = text_fields(r.hgetall(names.REDIS_SNAPSHOT.format(symbol)))
    if not raw:
        return None
    return SnapshotRecord(
        symbol,
        raw["location"],
        int(raw.get("partition", -1)),
        int(raw.get("input_offset", -1)),
        int(raw.get("seq", 0)),
        int(raw.get("size", 0)),
        raw.get("instance", ""),
        int(raw.get("taken_ms", 0)),
    )


# ---------------------------------------------------------------------- checkpoints


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Partition `partition` is covered through `offset`: every symbol in `symbols` has a
    snapshot (snapshot:{SYMBOL}) whose state includes every order of the symbol up to
    `offset`, and every event of those orders was acknowledged by the broker. `resume`
    names symbols restored to follow from an earlier offset (their last applied offset);
    `fences` the symbols that left the partition and the route epoch below which their
    orders are STALE_ROUTE."""

    partition: int
    offset: int
    symbols: tuple[str, ...] = ()
    resume: dict[str, int] = field(default_factory=dict)
    fences: dict[str, int] = field(default_factory=dict)
    instance: str = ""
    taken_ms: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "partition": self.partition,
                "offset": self.offset,
                "symbols": list(self.symbols),
                "resume": self.resume,
                "fences": self.fences,
                "instance": self.instance,
                "taken_ms": self.taken_ms,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> "Checkpoint":
        raw = json.loads(text)
        return cls(
            int(raw["partition"]),
            int(raw["offset"]),
            tuple(raw.get("symbols", ())),
            {str(k): int(v) for k, v in raw.get("resume", {}).items()},
            {str(k): int(v) for k, v in raw.get("fences", {}).items()},
            str(raw.get("instance", "")),
            int(raw.get("taken_ms", 0)),
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
