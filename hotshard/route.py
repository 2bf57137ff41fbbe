"""The routing table: `route:{SYMBOL}` maps a symbol to a partition of `orders`, the
instance owning it, a status (ACTIVE | MIGRATING) and an epoch. This module is its one home:
the `Route` record, reading it (one round trip, one parser), listing a symbol where load is
lowest, and the moves of a migration (pause, switch, roll back), each one atomic Lua script.

The epoch grows by one each time the symbol's partition changes; the router stamps every
order with the epoch it saw, so an engine that gave the symbol away rejects late orders with
STALE_ROUTE. Epochs are never reused, across a delisting too: `route-epochs` keeps a
delisted symbol's floor and a listing again starts above it (a book of it still on an
engine, at the owner epoch of its last route, takes the new route's orders). Alongside:
`routes` (set of listed symbols) and `route-load` (hash partition -> symbols routed there),
kept in step by the same scripts.

Every transition is a compare-and-set on the epoch (and status) the caller last read: two
migrations of one symbol, or a listing racing a listing, cannot both win; the loser gets
`RouteConflictError` with the route as it now is.

    ACTIVE  --begin_migration-->  MIGRATING  --switch-->  ACTIVE (new partition, epoch + 1)
                                  MIGRATING  --abort--->  ACTIVE (same partition and epoch)
    ACTIVE  --move-->  ACTIVE (new partition, epoch + 1; pre-copy, no pause)
"""

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from hotshard import names, recovery, registry
from hotshard.clients import text, text_fields
from hotshard.reasons import HotshardError, Reason

ACTIVE = "ACTIVE"
MIGRATING = "MIGRATING"


@dataclass(frozen=True, slots=True)
class Route:
    symbol: str
    partition: int
    instance: str
    status: str = ACTIVE
    epoch: int = 0


class RouteError(HotshardError):
    """A routing-table operation that cannot be done."""


class RouteConflictError(RouteError):
    """The route is not what the caller expected (another writer won); `current` is what it
    is now (None: not listed)."""

    def __init__(self, detail: str, current: Route | None) -> None:
        super().__init__(Reason.STALE_ROUTE, detail)
        self.current = current


class NoEngineError(RouteError):
    """No live engine owns a partition a symbol could be listed on."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.UNKNOWN_SYMBOL, detail)


# KEYS: route, routes, route-load, route-epochs. ARGV: symbol, partition, instance.
# Creates the route (epoch 1, or one above a delisted symbol's floor) unless it exists;
# returns the route's fields either way.
_LIST = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local floor = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0')
  redis.call('HSET', KEYS[1], 'partition', ARGV[2], 'instance', ARGV[3],
             'status', 'ACTIVE', 'epoch', floor + 1)
  redis.call('HDEL', KEYS[4], ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: route, route-load. ARGV: expected status, expected epoch, new status, new partition
# ('' keeps it), new instance, epoch increment. Returns {1, fields} or {0, fields}.
_MOVE = """
local cur = redis.call('HGETALL', KEYS[1])
if #cur == 0 then return {0, cur} end
local status = redis.call('HGET', KEYS[1], 'status')
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if status ~= ARGV[1] or epoch ~= ARGV[2] then return {0, cur} end
if ARGV[4] ~= '' then
  local old = redis.call('HGET', KEYS[1], 'partition')
  if old ~= ARGV[4] then
    redis.call('HINCRBY', KEYS[2], old, -1)
    redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
  end
  redis.call('HSET', KEYS[1], 'partition', ARGV[4], 'instance', ARGV[5])
end
redis.call('HSET', KEYS[1], 'status', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'epoch', tonumber(ARGV[6]))
return {1, redis.call('HGETALL', KEYS[1])}
"""

# KEYS: route, routes, route-load, route-epochs. ARGV: symbol.
# The floor kept is the route's epoch + 1: a Remove fences one past the route's epoch.
_DELIST = """
local partition = redis.call('HGET', KEYS[1], 'partition')
if not partition then return 0 end
local floor = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0') + 1
local kept = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0')
redis.call('HSET', KEYS[4], ARGV[1], math.max(floor, kept))
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], partition, -1)
return 1
"""


def parse_route(symbol: str, raw: Mapping[Any, Any]) -> Route | None:
    """A Route from the hash's fields as Redis returns them (None: no route)."""
    if not raw:
        return None
    fields = text_fields(raw)
    return Route(
        symbol,
        int(fields.get("partition", -1)),
        fields.get("instance", ""),
        fields.get("status", ACTIVE),
        int(fields.get("epoch", 0)),
    )


def route_from_fields(symbol: str, flat: list[Any]) -> Route | None:
    """A Route from HGETALL's flat [field, value, ...] reply (as Lua returns it)."""
    return parse_route(symbol, dict(zip(flat[::2], flat[1::2], strict=False)))


def destination(found: Route) -> tuple[str, int]:
    """(topic, epoch) an order routed by `found` is produced with: ACTIVE -> `orders` at the
    route's epoch; MIGRATING -> `pending-orders` at epoch + 1, the epoch the move takes (the
    engine that replays the buffer owns the symbol at that epoch)."""
    if found.status == MIGRATING:
        return names.TOPIC_PENDING_ORDERS, found.epoch + 1
    return names.TOPIC_ORDERS, found.epoch


PENDING_END_WAIT_S = 5.0
"""How long a router waits for the PENDING_END marker's offset once the migration announced
it (it writes the marker right after: milliseconds, unless the task died in between)."""


class PendingEndUnknownError(TimeoutError):
    """The marker's offset did not come in time: whether the record is replayed is unknown
    (the router answers NOT_DELIVERED, the outcome in doubt, never a refusal)."""


def pending_verdict(raw: bytes | str | None, offset: int) -> bool | None:
    """From `pending-end:{S}:{E}` (absent, `topic/partition/` while the marker is being
    written, `topic/partition/offset` after): True when a record at `offset` is after the
    marker (nobody replays it), False when before (replayed), None while it cannot be told.
    hotshard.migration sets the key before it writes the marker, so a record acknowledged
    before the key existed is before the marker."""
    if raw is None:
        return False
    marker = text(raw).rpartition("/")[2]
    if not marker.isdigit():
        return None
    return offset > int(marker)


def pending_ended(
    r: redis.Redis,
    symbol: str,
    epoch: int,
    offset: int,
    *,
    wait_s: float = PENDING_END_WAIT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Whether a record produced to pending-orders at `offset` for (symbol, epoch) is after
    the migration's PENDING_END marker (so nobody replays it). While the marker is being
    written its offset is waited for: refusing then would turn away a record that is before
    the marker, which the move replays (a refused order taking effect). PendingEndUnknownError
    after `wait_s`."""
    key = names.REDIS_PENDING_END.format(symbol, epoch)
    deadline = time.monotonic() + wait_s
    delay = 0.001
    while True:
        verdict = pending_verdict(r.get(key), offset)
        if verdict is not None:
            return verdict
        if time.monotonic() > deadline:
            raise PendingEndUnknownError(
                f"{symbol}: the move's PENDING_END offset did not come within {wait_s:.1f} s"
            )
        sleep(delay)
        delay = min(delay * 2, 0.02)


def lookup(r: redis.Redis, symbol: str) -> Route | None:
    """The symbol's route: one round trip (HGETALL)."""
    return parse_route(symbol, r.hgetall(names.REDIS_ROUTE.format(symbol)))


def last_epoch(r: redis.Redis, symbol: str) -> int | None:
    """The symbol's route epoch, or for a delisted one the last it had (its floor - 1);
    None: never listed (or its floor lost with Redis and not rebuilt)."""
    found = lookup(r, symbol)
    if found is not None:
        return found.epoch
    floor = r.hget(names.REDIS_ROUTE_EPOCHS, symbol)
    return None if floor is None else int(text(floor)) - 1


def partition_loads(r: redis.Redis) -> dict[int, int]:
    """Symbols routed to each partition that has any."""
    raw = r.hgetall(names.REDIS_ROUTE_LOAD)
    return {int(text(k)): int(text(v)) for k, v in raw.items()}


def owners(r: redis.Redis) -> set[str]:
    """Every engine instance a listed symbol's route names (live or not)."""
    symbols = listed_symbols(r)
    with r.pipeline(transaction=False) as pipe:
        for symbol in symbols:
            pipe.hget(names.REDIS_ROUTE.format(symbol), "instance")
        found = pipe.execute()
    return {text(v) for v in found if v}


def partition_owners(r: redis.Redis) -> dict[int, str]:
    """Partition -> instance, from the live engines in the registry; spare partitions
    (`spare-partitions`: the warm pool's, for migration targets) are left out."""
    spare = {int(text(p)) for p in r.smembers(names.REDIS_SPARE_PARTITIONS)}
    owners: dict[int, str] = {}
    for engine in registry.live_engines(r):
        for partition in engine.partitions:
            if partition not in spare:
                owners.setdefault(partition, engine.instance)
    return owners


def choose_partition(owners: Mapping[int, str], loads: Mapping[int, float]) -> int:
    """The owned partition with the lowest load (ties: the lowest number)."""
    if not owners:
        raise NoEngineError("no live engine owns a partition of orders")
    return min(owners, key=lambda p: (loads.get(p, 0), p))


def list_symbol(r: redis.Redis, symbol: str, *, loads: Mapping[int, float] | None = None) -> Route:
    """Route `symbol` to the least-loaded partition owned by a live engine; returns the route
    (an existing one unchanged: listing is idempotent and a concurrent listing wins once).
    `loads` (partition -> load, e.g. orders/s from the engines' Stats) replaces the default
    measure, the number of symbols already routed to each partition."""
    owners = partition_owners(r)
    partition = choose_partition(owners, partition_loads(r) if loads is None else loads)
    return list_symbol_at(r, symbol, partition, owners[partition])


def list_symbol_at(r: redis.Redis, symbol: str, partition: int, instance: str) -> Route:
    """Route `symbol` to a given partition (idempotent like `list_symbol`)."""
    flat = r.eval(
        _LIST,
        4,
        names.REDIS_ROUTE.format(symbol),
        names.REDIS_ROUTES,
        names.REDIS_ROUTE_LOAD,
        names.REDIS_ROUTE_EPOCHS,
        symbol,
        partition,
        instance,
    )
    route = route_from_fields(symbol, flat)
    assert route is not None
    return route


def listed_symbols(r: redis.Redis) -> list[str]:
    return sorted(text(m) for m in r.smembers(names.REDIS_ROUTES))


def symbols_routed_to(r: redis.Redis, partition: int) -> list[str]:
    """The listed symbols whose route names `partition` (one SMEMBERS, one pipeline)."""
    symbols = listed_symbols(r)
    with r.pipeline(transaction=False) as pipe:
        for symbol in symbols:
            pipe.hget(names.REDIS_ROUTE.format(symbol), "partition")
        found = pipe.execute()
    return [s for s, p in zip(symbols, found, strict=True) if p and int(text(p)) == partition]


def delist(r: redis.Redis, symbol: str) -> bool:
    """Remove the symbol's route; False if it was not listed. Its epochs are not reused:
    a listing again starts above every epoch it had and above the fence a Remove puts
    (one past the route's), see `_LIST`."""
    done = r.eval(
        _DELIST,
        4,
        names.REDIS_ROUTE.format(symbol),
        names.REDIS_ROUTES,
        names.REDIS_ROUTE_LOAD,
        names.REDIS_ROUTE_EPOCHS,
        symbol,
    )
    return bool(done)


Note = tuple[str, str, int]
"""(key, value, ttl_s): a key to SET NX in the same round trip as a route change, before
it (`move` and `switch`)."""


def _move(
    r: redis.Redis,
    expected: Route,
    *,
    status: str,
    partition: int | None = None,
    instance: str = "",
    epoch_step: int = 0,
) -> Route:
    return _noted_move(
        r, expected, status=status, partition=partition, instance=instance, epoch_step=epoch_step
    )[0]


def _noted_move(
    r: redis.Redis,
    expected: Route,
    *,
    status: str,
    partition: int | None = None,
    instance: str = "",
    epoch_step: int = 0,
    note: Note | None = None,
) -> tuple[Route, bytes | None]:
    """The route change, and with `note` first SET NX its key then GET it back, all in one
    round trip (a pipeline: Redis runs one connection's commands in order, so the key is
    there before the route changes); the note's value as stored (an earlier attempt's, if
    it had set one) is returned."""
    args = (
        names.REDIS_ROUTE.format(expected.symbol),
        names.REDIS_ROUTE_LOAD,
        expected.status,
        expected.epoch,
        status,
        "" if partition is None else partition,
        instance,
        epoch_step,
    )
    stored = None
    if note is None:
        ok, flat = r.eval(_MOVE, 2, *args)
    else:
        key, value, ttl_s = note
        pipe = r.pipeline(transaction=False)
        pipe.set(key, value, nx=True, ex=ttl_s)
        pipe.get(key)
        pipe.eval(_MOVE, 2, *args)
        _, stored, (ok, flat) = pipe.execute()
    route = route_from_fields(expected.symbol, flat)
    if not ok:
        raise RouteConflictError(
            f"{expected.symbol}: expected {expected.status} at epoch {expected.epoch}, "
            f"found {route}",
            route,
        )
    assert route is not None
    return route, stored


def begin_migration(r: redis.Redis, expected: Route) -> Route:
    """ACTIVE -> MIGRATING at the same epoch: from now on the router sends the symbol's
    orders to `pending-orders` (same partition number), to be replayed after the switch."""
    if expected.status != ACTIVE:
        raise RouteConflictError(f"{expected.symbol} is {expected.status}", expected)
    return _move(r, expected, status=MIGRATING)


def switch(r: redis.Redis, expected: Route, partition: int, instance: str) -> Route:
    """MIGRATING -> ACTIVE on `partition` owned by `instance`, epoch + 1."""
    if expected.status != MIGRATING:
        raise RouteConflictError(f"{expected.symbol} is {expected.status}", expected)
    return _move(r, expected, status=ACTIVE, partition=partition, instance=instance, epoch_step=1)


def noted_switch(
    r: redis.Redis, expected: Route, partition: int, instance: str, note: Note
) -> tuple[Route, bytes | None]:
    """`move` (from ACTIVE) or `switch` (from MIGRATING), `note` SET NX before it in the same
    round trip; also the note's value as stored. The migration's SwitchRouting: the
    record a move-back needs is in Redis before the route changes, at one round trip."""
    if expected.status not in (ACTIVE, MIGRATING):
        raise RouteConflictError(f"{expected.symbol} is {expected.status}", expected)
    return _noted_move(
        r,
        expected,
        status=ACTIVE,
        partition=partition,
        instance=instance,
        epoch_step=1,
        note=note,
    )


def move(r: redis.Redis, expected: Route, partition: int, instance: str) -> Route:
    """ACTIVE -> ACTIVE on `partition` owned by `instance`, epoch + 1, with no pause: the
    pre-copy switch (the target already holds the book as a shadow), and a rollback that
    routes a symbol back after its route had moved."""
    if expected.status != ACTIVE:
        raise RouteConflictError(f"{expected.symbol} is {expected.status}", expected)
    return _move(r, expected, status=ACTIVE, partition=partition, instance=instance, epoch_step=1)


def abort_migration(r: redis.Redis, expected: Route) -> Route:
    """MIGRATING -> ACTIVE where it was, same epoch (the rollback path)."""
    if expected.status != MIGRATING:
        raise RouteConflictError(f"{expected.symbol} is {expected.status}", expected)
    return _move(r, expected, status=ACTIVE)


# ---------------------------------------------------------------------- rebuild


@dataclass(frozen=True, slots=True)
class RebuiltRoute:
    symbol: str
    partition: int
    instance: str
    epoch: int


def plan_rebuild(
    checkpoints: Iterable[recovery.Checkpoint], owners: Mapping[int, str]
) -> list[RebuiltRoute]:
    """The routes the engines' checkpoints imply (pure): every book a partition's
    checkpoint lists routes to that partition, owned by the partition's live owner (else
    the instance that wrote the checkpoint), ACTIVE, at the book's owner epoch, or above
    every fence (or gone entry) any partition holds for the symbol if that is higher (a
    moved symbol keeps an epoch its old owner refuses). A book that is fenced where it is
    listed (kept for a rollback) is not a home; of two homes, the later checkpoint wins."""
    fence: dict[str, int] = {}
    homes: dict[str, tuple[int, str, int]] = {}  # symbol -> (partition, instance, epoch)
    cps = list(checkpoints)
    for cp in cps:
        for symbol, entry in cp.fences.items():
            fence[symbol] = max(fence.get(symbol, 0), entry.epoch)
        for symbol, left in cp.gone.items():
            fence[symbol] = max(fence.get(symbol, 0), left.epoch)
    for cp in sorted(cps, key=lambda c: (c.taken_ms, c.partition)):
        for symbol, book in cp.books.items():
            if symbol in cp.fences:
                continue
            instance = owners.get(cp.partition) or cp.instance
            homes[symbol] = (cp.partition, instance, book.epoch)
    return [
        RebuiltRoute(symbol, partition, instance, max(1, epoch, fence.get(symbol, 0)))
        for symbol, (partition, instance, epoch) in sorted(homes.items())
    ]


def plan_epoch_floors(
    checkpoints: Iterable[recovery.Checkpoint], rebuilt: Iterable[RebuiltRoute]
) -> dict[str, int]:
    """Per symbol that left every engine (a fence or gone entry somewhere, no home), the
    highest epoch among those (pure): a listing of it again starts above that."""
    floors: dict[str, int] = {}
    for cp in checkpoints:
        for symbol, entry in cp.fences.items():
            floors[symbol] = max(floors.get(symbol, 0), entry.epoch)
        for symbol, left in cp.gone.items():
            floors[symbol] = max(floors.get(symbol, 0), left.epoch)
    for planned in rebuilt:
        floors.pop(planned.symbol, None)
    return floors


# KEYS: route, route-epochs. ARGV: symbol, floor. A listed symbol needs no floor.
_FLOOR = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local kept = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
redis.call('HSET', KEYS[2], ARGV[1], math.max(kept, tonumber(ARGV[2])))
return 1
"""

# KEYS: route, routes set, route-load. ARGV: symbol, partition, instance, epoch.
_RESTORE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'partition', ARGV[2], 'instance', ARGV[3],
           'status', 'ACTIVE', 'epoch', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
return 1
"""


def read_checkpoints(r: redis.Redis) -> list[recovery.Checkpoint]:
    """Every partition's checkpoint in Redis."""
    out = []
    for key in r.scan_iter(match=names.REDIS_CHECKPOINT.format("*"), count=1000):
        raw = r.get(key)
        if raw is not None:
            out.append(recovery.Checkpoint.from_json(raw))
    return out


def rebuild_routes(r: redis.Redis) -> list[RebuiltRoute]:
    """Re-list, from the engines' checkpoints, every symbol that has no route (a Redis
    that came back empty, or lost keys): see plan_rebuild. A route that exists is left as
    it is, so running it again, or beside a live router, changes nothing. The epoch
    floors of symbols that left every engine are restored too (plan_epoch_floors). Returns
    the routes written."""
    checkpoints = read_checkpoints(r)
    owners = {}
    for cp in checkpoints:  # spare partitions too: a moved symbol may live on one
        owner = registry.partition_owner(r, cp.partition)
        if owner:
            owners[cp.partition] = owner
    written = []
    planned_routes = plan_rebuild(checkpoints, owners)
    for symbol, floor in plan_epoch_floors(checkpoints, planned_routes).items():
        r.eval(_FLOOR, 2, names.REDIS_ROUTE.format(symbol), names.REDIS_ROUTE_EPOCHS, symbol, floor)
    for planned in planned_routes:
        done = r.eval(
            _RESTORE,
            3,
            names.REDIS_ROUTE.format(planned.symbol),
            names.REDIS_ROUTES,
            names.REDIS_ROUTE_LOAD,
            planned.symbol,
            planned.partition,
            planned.instance,
            planned.epoch,
        )
        if done:
            written.append(planned)
    return written
