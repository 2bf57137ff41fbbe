"""Redis commands sent as one write and their replies read in order, without redis-py's
pipeline machinery: what the edge uses where it sends many script calls per request or
per batch.

redis-py's pipeline asks `SCRIPT EXISTS` for its scripts before every execute (one more
round trip per pipeline) and packs each argument through its generic encoder (~30% of the
stream handler's time went to packing). Here a script call is an EVALSHA; a reply
NOSCRIPT (a Redis that restarted or flushed its scripts) loads the scripts and sends
again only the commands that were refused, in their order.

    batch = RawPipeline(r)
    batch.script(script, keys=[...], args=[...])   # a redis.commands.core.Script
    batch.command("HSET", key, "field", 1)
    replies = batch.execute()   # raw replies (bytes, ints, lists), in order

Replies are as the connection's protocol parses them, without redis-py's response
callbacks (HGETALL: a dict under RESP3, a flat list under RESP2; `hash_items` reads both). A
command Redis refused gets its ResponseError as its reply (`raise_on_error=False`) or
raises it. A dropped connection is retried as redis-py retries a command (the client's
Retry: a restart shorter than its tries is not seen), then raises redis.ConnectionError.

`send_only()` writes the queued commands and returns without their replies: they are read
(an error logged) before anything else is read on this thread's connection. For a write
whose answer the request does not wait for (the router's confirm after the broker's
acknowledgement): the bytes are sent before the request answers, and Redis applies a
connection's commands in order, so the thread's next command sees it.

Each thread sends on a connection of its own (made with the client's settings), not one
from the client's pool: the pool's lock and its "has the connection unread data" poll
before every command were a quarter of the router's time with 64 handler threads. A
Lambda container runs one request at a time, so there it is one connection either way.
"""

import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

import hiredis
import redis
from redis.exceptions import NoScriptError, ResponseError

Arg = str | bytes | int | float

log = logging.getLogger("hotshard.rawpipe")


def pack(commands: list[tuple[Arg, ...]]) -> bytes:
    """RESP arrays of bulk strings, as redis-py's encoder would write them (ints in decimal,
    floats by repr, text as UTF-8). hiredis packs them in C (~3x faster than the loop below,
    which was ~half of the stream handler's GIL samples); it takes exactly str, bytes, int
    and float, so anything else (a bool, an IntEnum, what redis-py refuses) goes the
    Python way, which says what is wrong."""
    try:
        return b"".join([_pack_command(command) for command in commands])
    except TypeError:
        return pack_python(commands)


# (its stub types the argument as a one-item tuple)
_pack_command = cast(Callable[[tuple[Arg, ...]], bytes], hiredis.pack_command)


def pack_python(commands: list[tuple[Arg, ...]]) -> bytes:
    """`pack` in Python: the reference hiredis's packing is checked against."""
    out: list[bytes] = []
    append = out.append
    for command in commands:
        append(b"*%d\r\n" % len(command))
        for arg in command:
            if isinstance(arg, bytes):
                data = arg
            elif isinstance(arg, str):
                data = arg.encode()
            elif isinstance(arg, bool):  # redis-py refuses these too
                raise redis.DataError("a bool is not a Redis argument")
            elif isinstance(arg, int):
                data = b"%d" % arg
            elif isinstance(arg, float):
                data = repr(arg).encode()
            else:
                raise redis.DataError(f"{type(arg).__name__} is not a Redis argument")
            append(b"$%d\r\n" % len(data))
            append(data)
            append(b"\r\n")
    return b"".join(out)


class RawPipeline:
    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self.commands: list[tuple[Arg, ...]] = []
        self._scripts: dict[str, bytes | str] = {}  # sha -> source

    def __len__(self) -> int:
        return len(self.commands)

    def command(self, *args: Arg) -> None:
        self.commands.append(args)

    def script(self, script: Any, keys: Sequence[Arg], args: Sequence[Arg]) -> None:
        """A call of a registered script (`r.register_script(...)`)."""
        self._scripts[script.sha] = script.script
        self.commands.append(("EVALSHA", script.sha, len(keys), *keys, *args))

    def execute(self, *, raise_on_error: bool = True) -> list[Any]:
        commands, self.commands = self.commands, []
        if not commands:
            return []
        replies = self._send(commands)
        refused = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if refused:
            self._load()
            again = self._send([commands[i] for i in refused])
            for i, reply in zip(refused, again, strict=True):
                replies[i] = reply
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, ResponseError):
                    raise reply
        return replies

    def send_only(self) -> None:
        """Write the queued commands (no scripts: a NOSCRIPT could not be answered) without
        waiting for their replies; they are read before this thread's next replies. Raises
        redis.ConnectionError if they could not be written."""
        commands, self.commands = self.commands, []
        if self._scripts:
            raise ValueError("send_only takes commands, not script calls")
        if not commands:
            return
        local = _thread_local(self.r)
        conn = thread_connection(self.r)
        data = pack(commands)

        def send() -> None:
            try:
                _drain(local, conn)
                conn.send_packed_command([data])
            except BaseException:
                local.unread = 0
                conn.disconnect()
                raise

        conn.retry.call_with_retry(send, lambda _error: None)
        local.unread = len(commands)

    def _load(self) -> None:
        for sha, source in self._scripts.items():
            loaded = self.r.script_load(source)
            if loaded != sha:  # cannot be, unless the script's text changed under us
                raise ResponseError(f"SCRIPT LOAD answered {loaded!r} for {sha}")

    def _send(self, commands: list[tuple[Arg, ...]]) -> list[Any]:
        local = _thread_local(self.r)
        conn = thread_connection(self.r)
        data = pack(commands)

        def roundtrip() -> list[Any]:
            try:
                _drain(local, conn)
                conn.send_packed_command([data])
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(conn.read_response())
                    except ResponseError as exc:
                        replies.append(exc)
                return replies
            except BaseException:
                local.unread = 0
                conn.disconnect()  # a half-read connection is of no further use
                raise

        result: list[Any] = conn.retry.call_with_retry(roundtrip, lambda _error: None)
        return result


def _drain(local: threading.local, conn: Any) -> None:
    """Read the replies of what send_only() wrote on this connection (first: they come
    before any later command's); a refused one is logged, there is nobody to answer."""
    while getattr(local, "unread", 0):
        try:
            conn.read_response()
        except ResponseError as exc:
            log.warning("a command sent without waiting was refused: %s", exc)
        local.unread -= 1


_LOCALS: "weakref.WeakKeyDictionary[redis.Redis, threading.local]" = weakref.WeakKeyDictionary()
_LOCALS_LOCK = threading.Lock()


def _thread_local(r: redis.Redis) -> threading.local:
    local = _LOCALS.get(r)
    if local is None:
        with _LOCALS_LOCK:
            local = _LOCALS.setdefault(r, threading.local())
    return local


def thread_connection(r: redis.Redis) -> Any:
    """This thread's own connection to `r`'s server (redis-py's Connection, with the
    pool's settings: timeouts, TLS, retry); it connects when first used."""
    local = _thread_local(r)
    conn = getattr(local, "conn", None)
    if conn is None:
        pool = r.connection_pool
        conn = local.conn = pool.connection_class(**pool.connection_kwargs)
    return conn


def run_script(script: Any, keys: Sequence[Arg], args: Sequence[Arg], pipe: Any = None) -> Any:
    """Call a registered script now, or queue it on `pipe` (a RawPipeline, or a redis-py
    pipeline: its reply comes with the pipeline's; None is returned)."""
    if isinstance(pipe, RawPipeline):
        pipe.script(script, keys, args)
        return None
    return script(keys=keys, args=args, client=pipe)


def call_script(r: redis.Redis, script: Any, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
    """One script call on this thread's connection (EVALSHA; NOSCRIPT loads it): its raw
    reply, or its ResponseError raised."""
    pipe = RawPipeline(r)
    pipe.script(script, keys, args)
    return pipe.execute()[0]


def hash_items(raw: Any) -> list[tuple[Any, Any]]:
    """An HGETALL reply's (field, value) pairs, whichever protocol answered."""
    if isinstance(raw, dict):
        return list(raw.items())
    return list(zip(raw[::2], raw[1::2], strict=True))
