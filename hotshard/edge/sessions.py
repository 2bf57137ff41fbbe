"""WebSocket sessions in Redis: connection -> user, user -> connections, and symbol
subscriptions (depth and trades) both ways. Written by order_router ($connect, $disconnect,
subscribe), read by stream_handler to fan out, cleaned by both (a 410 from the Management
API means the connection is gone)."""

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, cast

import redis

from hotshard import names
from hotshard.clients import text
from hotshard.rawpipe import RawPipeline

CONNECTION_TTL_S = 3 * 3600  # API Gateway closes a connection after 2 hours at most
BATCH = "batch"
"""A connection's push mode (`?pushes=batch` at $connect): several pushes per frame."""
MODE_CACHE = 100_000
KNOWN_MAX = 100_000
"""Connections one process remembers well enough to register again (the oldest go first)."""
FORGOTTEN_CHECK_S = 1.0
"""How often a frame's handling checks that Redis still has the registry (one SET NX)."""

# KEYS: conn, conn-subs. ARGV: conn id, user-conns key format prefix, subs key prefix.
_DISCONNECT = """
local user = redis.call('HGET', KEYS[1], 'user')
if user then redis.call('SREM', ARGV[2] .. user, ARGV[1]) end
for _, symbol in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  redis.call('SREM', ARGV[3] .. symbol, ARGV[1])
end
redis.call('DEL', KEYS[1], KEYS[2])
return user
"""


def _prefix(fmt: str) -> str:
    assert fmt.endswith("{}") and fmt.count("{}") == 1
    return fmt[:-2]


class Sessions:
    def __init__(self, r: redis.Redis, clock: Callable[[], float] = time.monotonic) -> None:
        self.r = r
        self.clock = clock
        self._disconnect = r.register_script(_DISCONNECT)
        self._users: dict[str, str] = {}  # a connection's user never changes: safe to cache
        self._batching: dict[str, bool] = {}  # nor does its push mode
        self._known: dict[str, dict[str, str]] = {}
        """Connection -> its `conn:{id}` fields, as this process last wrote or read them."""
        self._subs: dict[str, set[str]] = {}
        """Connection -> the symbols it subscribed to through this process."""
        self._checked_at = -FORGOTTEN_CHECK_S
        self._generation: str | None = None
        """The registry's marker as this process last saw it (None: not yet)."""
        self.reregistered = 0
        """Connections registered again after Redis came back without the registry."""

    def _remember(self, connection_id: str, fields: dict[str, str]) -> None:
        known = self._known.setdefault(connection_id, {})
        known.update(fields)
        if len(self._known) > KNOWN_MAX:
            oldest = next(iter(self._known))
            self._known.pop(oldest)
            self._subs.pop(oldest, None)

    def register_again_if_forgotten(self) -> int:
        """At most every FORGOTTEN_CHECK_S: if Redis lost the registry (it restarted empty:
        the marker key is gone), register again every connection this process knows, with
        its push mode and subscriptions, so the stream handler finds them (before, no
        status reached a connection opened before the restart until its client
        reconnected). Returns how many were registered again."""
        now = self.clock()
        if now - self._checked_at < FORGOTTEN_CHECK_S:
            return 0
        self._checked_at = now
        # The marker is a generation: whoever finds it gone writes a new one, and every
        # process that saw another (or none yet) registers again what it knows. A plain
        # SET NX told only the first process of several, and a $connect that wrote the
        # marker again before a process's check hid the loss from it.
        generation = self._marker()
        if generation == self._generation:
            return 0  # still there: nothing was forgotten
        self._generation = generation
        if not self._known:
            return 0  # a fresh Redis, or nothing of it known here
        with self.r.pipeline(transaction=False) as pipe:
            for connection_id, fields in self._known.items():
                conn = names.REDIS_CONNECTION.format(connection_id)
                mine = names.REDIS_USER_CONNECTIONS.format(fields["user"])
                pipe.hset(conn, mapping=cast("dict[Any, Any]", fields))
                pipe.expire(conn, CONNECTION_TTL_S)
                pipe.sadd(mine, connection_id)
                pipe.expire(mine, CONNECTION_TTL_S)
                symbols = sorted(self._subs.get(connection_id, ()))
                if symbols:
                    subs = names.REDIS_CONNECTION_SUBS.format(connection_id)
                    for symbol in symbols:
                        pipe.sadd(names.REDIS_SUBSCRIBERS.format(symbol), connection_id)
                    pipe.sadd(subs, *symbols)
                    pipe.expire(subs, CONNECTION_TTL_S)
            pipe.execute()
        self.reregistered += len(self._known)
        return len(self._known)

    def _marker(self) -> str:
        """The registry's generation, written first if Redis has none (one round trip)."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.set(names.REDIS_SESSIONS_MARKER, uuid.uuid4().hex, nx=True)
            pipe.get(names.REDIS_SESSIONS_MARKER)
            _, generation = pipe.execute()
        return text(generation)

    def connect(self, connection_id: str, user_id: str, now_ms: int, *, pushes: str = "") -> None:
        """Record the connection; `pushes` = BATCH opts it in to BATCH frames."""
        conn = names.REDIS_CONNECTION.format(connection_id)
        mine = names.REDIS_USER_CONNECTIONS.format(user_id)
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hset(conn, mapping={"user": user_id, "connected_ms": now_ms})
            if pushes:
                pipe.hset(conn, "pushes", pushes)
            pipe.expire(conn, CONNECTION_TTL_S)
            pipe.sadd(mine, connection_id)
            pipe.expire(mine, CONNECTION_TTL_S)
            pipe.set(names.REDIS_SESSIONS_MARKER, uuid.uuid4().hex, nx=True)
            pipe.get(names.REDIS_SESSIONS_MARKER)
            generation = pipe.execute()[-1]
        if self._generation is None:
            self._generation = text(generation)  # what it knows is registered in this one
        self._users[connection_id] = user_id
        fields = {"user": user_id, "connected_ms": str(now_ms)}
        self._remember(connection_id, {**fields, **({"pushes": pushes} if pushes else {})})

    def disconnect(self, connection_id: str) -> str | None:
        """Forget the connection and its subscriptions; returns its user (None: unknown)."""
        self._users.pop(connection_id, None)
        self._batching.pop(connection_id, None)
        self._known.pop(connection_id, None)
        self._subs.pop(connection_id, None)
        user = self._disconnect(
            keys=[
                names.REDIS_CONNECTION.format(connection_id),
                names.REDIS_CONNECTION_SUBS.format(connection_id),
            ],
            args=[
                connection_id,
                _prefix(names.REDIS_USER_CONNECTIONS),
                _prefix(names.REDIS_SUBSCRIBERS),
            ],
        )
        return None if user is None else text(user)

    def set_cancel_on_disconnect(self, connection_id: str, enabled: bool) -> None:
        """Opt this connection in (or out): when it closes, the user's open orders are
        cancelled (hotshard.edge.api, `$disconnect`)."""
        self.r.hset(
            names.REDIS_CONNECTION.format(connection_id), "cancel_on_disconnect", int(enabled)
        )
        if connection_id in self._known:
            self._remember(connection_id, {"cancel_on_disconnect": str(int(enabled))})

    def cancels_on_disconnect(self, connection_id: str) -> bool:
        raw = self.r.hget(names.REDIS_CONNECTION.format(connection_id), "cancel_on_disconnect")
        return raw is not None and text(raw) == "1"

    def user_of(self, connection_id: str) -> str | None:
        user = self._users.get(connection_id)
        if user is None:
            raw = self.r.hgetall(names.REDIS_CONNECTION.format(connection_id))
            fields = {text(k): text(v) for k, v in raw.items()}
            if "user" not in fields:
                return None
            user = self._users[connection_id] = fields["user"]
            self._remember(connection_id, fields)
            if len(self._users) > 100_000:
                self._users.clear()
        return user

    def subscribe(self, connection_id: str, symbols: Iterable[str]) -> list[str]:
        wanted = sorted(set(symbols))
        if not wanted:
            return []
        mine = names.REDIS_CONNECTION_SUBS.format(connection_id)
        with self.r.pipeline(transaction=True) as pipe:
            for symbol in wanted:
                pipe.sadd(names.REDIS_SUBSCRIBERS.format(symbol), connection_id)
            pipe.sadd(mine, *wanted)
            pipe.expire(mine, CONNECTION_TTL_S)
            pipe.execute()
        if connection_id in self._known:
            self._subs.setdefault(connection_id, set()).update(wanted)
        return wanted

    def unsubscribe(self, connection_id: str, symbols: Iterable[str]) -> list[str]:
        gone = sorted(set(symbols))
        if not gone:
            return []
        with self.r.pipeline(transaction=True) as pipe:
            for symbol in gone:
                pipe.srem(names.REDIS_SUBSCRIBERS.format(symbol), connection_id)
            pipe.srem(names.REDIS_CONNECTION_SUBS.format(connection_id), *gone)
            pipe.execute()
        self._subs.get(connection_id, set()).difference_update(gone)
        return gone

    def of_users(self, users: Iterable[str]) -> dict[str, list[str]]:
        """user -> its connection ids (one round trip)."""
        wanted = sorted(set(users))
        with self.r.pipeline(transaction=False) as pipe:
            for user in wanted:
                pipe.smembers(names.REDIS_USER_CONNECTIONS.format(user))
            replies = pipe.execute()
        return {u: sorted(text(c) for c in ids) for u, ids in zip(wanted, replies, strict=True)}

    def of_symbols(self, symbols: Iterable[str]) -> dict[str, list[str]]:
        """symbol -> subscribed connection ids (one round trip)."""
        wanted = sorted(set(symbols))
        with self.r.pipeline(transaction=False) as pipe:
            for symbol in wanted:
                pipe.smembers(names.REDIS_SUBSCRIBERS.format(symbol))
            replies = pipe.execute()
        return {s: sorted(text(c) for c in ids) for s, ids in zip(wanted, replies, strict=True)}

    def targets(
        self, users: Iterable[str], symbols: Iterable[str]
    ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """(user -> connection ids, symbol -> subscribed connection ids) in one round trip."""
        pipe = RawPipeline(self.r)  # raw replies: each SMEMBERS a list
        lookup = self.queue_targets(pipe, users, symbols)
        return lookup.read(pipe.execute()) if lookup.count else ({}, {})

    def queue_targets(
        self, pipe: RawPipeline, users: Iterable[str], symbols: Iterable[str]
    ) -> "TargetLookup":
        """`targets`' reads queued on `pipe` (a RawPipeline of this Redis): its last
        `count` replies, read by the lookup's `read`."""
        lookup = TargetLookup(sorted(set(users)), sorted(set(symbols)))
        for user in lookup.users:
            pipe.command("SMEMBERS", names.REDIS_USER_CONNECTIONS.format(user))
        for symbol in lookup.symbols:
            pipe.command("SMEMBERS", names.REDIS_SUBSCRIBERS.format(symbol))
        return lookup

    def batching(self, connections: Iterable[str]) -> set[str]:
        """The connections that opted in to BATCH frames (cached: a mode never changes)."""
        connections = list(connections)
        unknown = [c for c in connections if c not in self._batching]
        if unknown:
            with self.r.pipeline(transaction=False) as pipe:
                for conn in unknown:
                    pipe.hget(names.REDIS_CONNECTION.format(conn), "pushes")
                modes = pipe.execute()
            if len(self._batching) + len(unknown) > MODE_CACHE:
                self._batching.clear()
            for conn, mode in zip(unknown, modes, strict=True):
                self._batching[conn] = mode is not None and text(mode) == BATCH
        return {c for c in connections if self._batching.get(c)}


class TargetLookup:
    """Connections of users and subscribers of symbols, as queued by Sessions.queue_targets."""

    def __init__(self, users: list[str], symbols: list[str]) -> None:
        self.users = users
        self.symbols = symbols
        self.count = len(users) + len(symbols)
        """How many replies it reads (the pipeline's last)."""

    def read(self, replies: list[Any]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """(user -> connection ids, symbol -> subscribed connection ids) from the last
        `count` replies of the pipeline (each SMEMBERS a list)."""
        mine = replies[len(replies) - self.count :] if self.count else []
        of_users = {
            u: sorted(text(c) for c in ids)
            for u, ids in zip(self.users, mine[: len(self.users)], strict=True)
        }
        of_symbols = {
            s: sorted(text(c) for c in ids)
            for s, ids in zip(self.symbols, mine[len(self.users) :], strict=True)
        }
        return of_users, of_symbols
