"""The engine registry and partition ownership in Redis: who is alive, where to reach it, and
which instance consumes each partition of `orders`.

Key formats are in hotshard.names (REDIS_*). The engine writes these; the router, the
migration and the local tools read them.

- `engines` set + `engine:{ID}` hash: address (gRPC host:port), partitions ("0,1,2"),
  heartbeat_ms, host, pid; the hash expires unless the engine heartbeats.
- `owner:orders:{P}`: the instance owning partition P (expires unless refreshed), so two
  processes never consume one partition. What an owner may write while it owns a partition
  (snapshot records, checkpoints) is in hotshard.recovery; the routing table in hotshard.route.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import redis

from hotshard import names
from hotshard.clients import text, text_fields

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
    raw = text_fields(r.hgetall(names.REDIS_ENGINE.format(instance)))
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
    for member in sorted(text(m) for m in r.smembers(names.REDIS_ENGINES)):
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
    return None if owner is None else text(owner)


# ---------------------------------------------------------------------- partition homes


def set_homes(r: redis.Redis, instance: str, partitions: Iterable[int]) -> None:
    """Record `instance` as the home of `partitions` (`home:orders:{P}`, no TTL): the engine
    that gets them back when it restarts, including partitions it adopted (Restore with
    follow, Promote) after it started (infra/engine_host.py reads them too)."""
    parts = list(partitions)
    if parts:
        r.mset({names.REDIS_PARTITION_HOME.format(p): instance for p in parts})


def homed_partitions(r: redis.Redis, instance: str) -> list[int]:
    """The partitions whose home is `instance`."""
    prefix = names.REDIS_PARTITION_HOME.format("")
    keys = sorted(text(k) for k in r.scan_iter(match=prefix + "*", count=1000))
    if not keys:
        return []
    homes = r.mget(keys)
    out = []
    for key, home in zip(keys, homes, strict=True):
        suffix = key.removeprefix(prefix)
        if home is not None and text(home) == instance and suffix.isdigit():
            out.append(int(suffix))
    return sorted(out)
