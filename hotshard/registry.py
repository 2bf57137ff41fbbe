"""The Redis side of ownership: routing table, engine registry, snapshot records, checkpoints.

Key formats are in hotshard.names (REDIS_*). Writes that belong together are atomic
(MULTI/EXEC pipelines or Lua). The engine writes its registry entry, partition ownership,
snapshot records and checkpoints; the router and migration own `route:{SYMBOL}` (the
functions here are the one way to read and write it).

- `route:{SYMBOL}` hash: partition, instance, status (ACTIVE | MIGRATING), epoch.
- `engines` set + `engine:{ID}` hash: address (gRPC host:port), partitions ("0,1,2"),
  heartbeat_ms, host, pid; the hash expires unless the engine heartbeats.
- `owner:orders:{P}`: the instance owning partition P (expires unless refreshed), so two
  processes never consume one partition.
- `snapshot:{SYMBOL}` hash: location (redis:KEY or s3://bucket/key), partition,
  input_offset, seq, size, instance, taken_ms: the symbol's latest snapshot.
- `checkpoint:orders:{P}`: JSON {offset, symbols, resume, fences}: a restart of the
  partition's owner loads each listed symbol's latest snapshot and resumes consuming after
  `offset` (see engine.service.recovery).
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from hotshard import names

ACTIVE = "ACTIVE"
MIGRATING = "MIGRATING"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


# ---------------------------------------------------------------------- routing table


@dataclass(frozen=True, slots=True)
class Route:
    symbol: str
    partition: int
    instance: str
    status: str = ACTIVE
    epoch: int = 0


def read_route(r: redis.Redis, symbol: str) -> Route | None:
    raw = _fields(r.hgetall(names.REDIS_ROUTE.format(symbol)))
    if not raw:
        return None
    return Route(
        symbol,
        int(raw.get("partition", -1)),
        raw.get("instance", ""),
        raw.get("status", ACTIVE),
        int(raw.get("epoch", 0)),
    )


def write_route(r: redis.Redis, route: Route) -> None:
    r.hset(
        names.REDIS_ROUTE.format(route.symbol),
        mapping={
            "partition": route.partition,
            "instance": route.instance,
            "status": route.status,
            "epoch": route.epoch,
        },
    )


# ---------------------------------------------------------------------- engine registry


@dataclass(frozen=True, slots=True)
class EngineRecord:
    instance: str
    address: str
    partitions: tuple[int, ...]
    heartbeat_ms: int
    host: str = ""
    pid: int = 0


def register_engine(r: redis.Redis, record: EngineRecord, ttl_ms: int) -> None:
    key = names.REDIS_ENGINE.format(record.instance)
    with r.pipeline(transaction=True) as pipe:
        pipe.hset(
            key,
            mapping={
                "address": record.address,
                "partitions": ",".join(str(p) for p in record.partitions),
                "heartbeat_ms": record.heartbeat_ms,
                "host": record.host,
                "pid": record.pid,
            },
        )
        pipe.pexpire(key, ttl_ms)
        pipe.sadd(names.REDIS_ENGINES, record.instance)
        pipe.execute()


def read_engine(r: redis.Redis, instance: str) -> EngineRecord | None:
    raw = _fields(r.hgetall(names.REDIS_ENGINE.format(instance)))
    if not raw:
        return None
    parts = tuple(int(p) for p in raw.get("partitions", "").split(",") if p)
    return EngineRecord(
        instance,
        raw.get("address", ""),
        parts,
        int(raw.get("heartbeat_ms", 0)),
        raw.get("host", ""),
        int(raw.get("pid", 0)),
    )


def live_engines(r: redis.Redis) -> list[EngineRecord]:
    out = []
    for member in sorted(_text(m) for m in r.smembers(names.REDIS_ENGINES)):
        record = read_engine(r, member)
        if record is not None:
            out.append(record)
    return out


def deregister_engine(r: redis.Redis, instance: str, partitions: Iterable[int]) -> None:
    with r.pipeline(transaction=True) as pipe:
        pipe.delete(names.REDIS_ENGINE.format(instance))
        pipe.srem(names.REDIS_ENGINES, instance)
        pipe.execute()
    release_partitions(r, instance, partitions)


# Claim each partition unless a different instance holds it; refresh our own claims.
_CLAIM = """
local taken = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == false or owner == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(taken, i - 1)
  end
end
return taken
"""

_RELEASE = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key); n = n + 1 end
end
return n
"""


def claim_partitions(
    r: redis.Redis, instance: str, partitions: Iterable[int], ttl_ms: int
) -> list[int]:
    """Take or refresh ownership of `partitions`; returns those another instance owns
    (not taken). Atomic over all of them."""
    parts = list(partitions)
    if not parts:
        return []
    keys = [names.REDIS_PARTITION_OWNER.format(p) for p in parts]
    taken = r.eval(_CLAIM, len(keys), *keys, instance, ttl_ms)
    return [parts[int(i)] for i in taken]


def release_partitions(r: redis.Redis, instance: str, partitions: Iterable[int]) -> None:
    keys = [names.REDIS_PARTITION_OWNER.format(p) for p in partitions]
    if keys:
        r.eval(_RELEASE, len(keys), *keys, instance)


def partition_owner(r: redis.Redis, partition: int) -> str | None:
    owner = r.get(names.REDIS_PARTITION_OWNER.format(partition))
    return None if owner is None else _text(owner)


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
    raw = _fields(r.hgetall(names.REDIS_SNAPSHOT.format(symbol)))
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
