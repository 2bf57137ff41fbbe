"""Every Kafka client the tests make, remembered (weakly) with the test that made it and
where, so a client that outlives its broker is named by the test run, not only by
librdkafka's "Connection refused" lines on stderr (issue 13).

confluent_kafka's clients hold their broker connections and threads for as long as a
reference to them does (AdminClient has no close(); a Producer or Consumer not closed is
freed by reference counting, or by the cyclic collector if a cycle keeps it: a test's
frame kept by an exception's traceback, say). The edge's cold start (`tune_gc`: a young
generation of 50,000 allocations and gc.freeze()) turns "until the next collection" into
minutes, or the rest of the process. Such a client reconnects to its stopped broker every
second and logs as `rdkafka#producer-N` (an AdminClient too) or `rdkafka#consumer-N`.

`install()` (as this plugin is imported, from tests/conftest.py: before any test module or
deeper conftest imports confluent_kafka's classes) puts a subclass of Producer and Consumer
in confluent_kafka's namespace and wraps AdminClient's __init__: every client made with a
`bootstrap.servers` is recorded, and one made without a `client.id` gets one naming the
test file and line that made it (librdkafka puts it in every log line for that client).
After each test's teardown (module and session fixtures included, so their brokers have
stopped) the teardown fails, naming each client's test and creation site, if
- a client not closed was freed by the cyclic collector (a cycle kept it: the next time,
  a freeze or a rare collection keeps it for minutes); seen whenever that collection runs,
- or a client not closed is still alive, after a full collection, while nothing listens
  at its broker's address any more.
What a test's `tune_gc` did to the collector is undone first (restore_gc)."""

import gc
import itertools
import os
import re
import socket
import threading
import time
import traceback
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

GRACE_S = 1.0
"""How long a leaked candidate may take to go (a thread of the test still unwinding)."""

_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


@dataclass
class Made:
    kind: str
    name: str
    """librdkafka's name for it: CLIENT_ID#TYPE-N, as in its log lines."""
    bootstrap: str
    test: str
    sites: list[str]
    ref: Any = None
    closed: bool = False

    def alive(self) -> bool:
        return not self.closed and self.ref() is not None


@dataclass
class Registry:
    made: list[Made] = field(default_factory=list)
    cycled: list[Made] = field(default_factory=list)
    """Clients not closed that the cyclic collector freed (not reported yet)."""
    collecting: int | None = None
    """The thread running a collection now, if one does."""
    test: str = "(no test: collection or a session fixture)"
    lock: threading.Lock = field(default_factory=threading.Lock)
    handles: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    """librdkafka numbers every handle of the process (producers, consumers, admin clients
    alike) from one counter: the N of rdkafka#producer-N."""


REGISTRY = Registry()


def _sites() -> list[str]:
    """The repository's frames that made the client (innermost last, at most 4)."""
    frames = traceback.extract_stack()[:-3]
    ours = [
        f
        for f in frames
        if f.filename.startswith(_HERE)
        and "/.venv/" not in f.filename
        and not f.filename.endswith("tests/kafka_clients.py")
    ]
    return [f"{os.path.relpath(f.filename, _HERE)}:{f.lineno}" for f in ours[-4:]]


def _client_id(sites: list[str]) -> str:
    """A client.id naming where a test made the client: the innermost frame of the tests
    and the innermost of the repository, `t.TESTFILE.LINE.FILE.LINE` (librdkafka logs it
    as `t.test_x.py.58.traffic.py.39#producer-N`)."""
    tests = [s for s in sites if s.startswith("tests/")]
    where = [*tests[-1:], *[s for s in sites[-1:] if s not in tests[-1:]]] or ["unknown"]
    short = ".".join(w.rsplit("/", 1)[-1].replace(":", ".") for w in where)
    return "t." + re.sub(r"[^A-Za-z0-9._-]", ".", short)[:100]


def _config(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    if args and isinstance(args[0], dict):
        return args[0]
    return None


def _track(self: Any, kind: str, rdtype: str, args: Any, kwargs: Any) -> tuple[Any, Any]:
    """(args, kwargs) to build the client with: a client.id added where none was given."""
    config = _config(args, kwargs)
    merged = {**(config or {}), **{k.replace("_", "."): v for k, v in kwargs.items()}}
    with REGISTRY.lock:
        number = next(REGISTRY.handles)
    bootstrap = str(merged.get("bootstrap.servers", ""))
    if not bootstrap:  # no broker: nothing to reconnect to, nothing to log
        return args, kwargs
    sites = _sites()
    client_id = merged.get("client.id")
    if client_id is None:
        client_id = _client_id(sites)
        if config is not None:
            args = ({**config, "client.id": client_id}, *args[1:])
        else:
            kwargs = {**kwargs, "client.id": client_id}
    made = Made(kind, f"{client_id}#{rdtype}-{number}", bootstrap, REGISTRY.test, sites)
    made.ref = weakref.ref(self, lambda _ref: _freed(made))
    self._hotshard_made = made
    with REGISTRY.lock:
        REGISTRY.made.append(made)
    return args, kwargs


def _freed(made: Made) -> None:
    """A client went: by the collector (this thread runs a collection) if a cycle kept it."""
    if not made.closed and REGISTRY.collecting == threading.get_ident():
        REGISTRY.cycled.append(made)


def _collection(phase: str, _info: dict[str, Any]) -> None:
    REGISTRY.collecting = threading.get_ident() if phase == "start" else None


def _recording(real: Any, kind: str, rdtype: str) -> Any:
    """A subclass of confluent_kafka's `real` client class that records each client made."""

    class Recorded(real):  # type: ignore[misc]
        __doc__ = real.__doc__

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            args, kwargs = _track(self, kind, rdtype, args, kwargs)
            super().__init__(*args, **kwargs)

        def close(self, *args: Any, **kwargs: Any) -> Any:
            closed = super().close(*args, **kwargs)
            made = self.__dict__.get("_hotshard_made")
            if made is not None:
                made.closed = True
            return closed

    Recorded.__name__ = Recorded.__qualname__ = kind
    Recorded.__module__ = "confluent_kafka"
    return Recorded


def install() -> None:
    """Put the recording subclasses in confluent_kafka's namespace (idempotent)."""
    import confluent_kafka  # noqa: PLC0415
    from confluent_kafka import admin, cimpl  # noqa: PLC0415

    if getattr(confluent_kafka, "_hotshard_tracked", False):
        return
    producer = _recording(cimpl.Producer, "Producer", "producer")
    consumer = _recording(cimpl.Consumer, "Consumer", "consumer")
    for module in (confluent_kafka, cimpl):
        setattr(module, "Producer", producer)  # noqa: B010 - (mypy: cimpl's are final)
        setattr(module, "Consumer", consumer)  # noqa: B010

    admin_init = admin.AdminClient.__init__

    def admin_tracked(self: Any, conf: Any, **kwargs: Any) -> None:
        (conf,), kwargs = _track(self, "AdminClient", "producer", (conf,), kwargs)
        admin_init(self, conf, **kwargs)

    admin.AdminClient.__init__ = admin_tracked  # type: ignore[method-assign]
    gc.callbacks.append(_collection)
    confluent_kafka._hotshard_tracked = True  # type: ignore[attr-defined]


def _listening(bootstrap: str, cache: dict[str, bool]) -> bool:
    """Does anything accept connections at the first address of `bootstrap`?"""
    if bootstrap not in cache:
        host, _, port = bootstrap.split(",", maxsplit=1)[0].strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=0.5):
                cache[bootstrap] = True
        except (OSError, ValueError):
            cache[bootstrap] = False
    return cache[bootstrap]


def leaked(grace_s: float = GRACE_S) -> list[Made]:
    """Clients not closed, alive after a full collection, whose broker no longer listens.
    Cheap when there are none (no collection; one connect per broker address)."""
    with REGISTRY.lock:
        REGISTRY.made[:] = [m for m in REGISTRY.made if m.alive()]
        candidates = list(REGISTRY.made)
    listening: dict[str, bool] = {}
    orphans = [m for m in candidates if not _listening(m.bootstrap, listening)]
    if not orphans:
        return []
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(m.alive() for m in orphans):
        time.sleep(0.05)  # a thread of the test letting go of one
    gc.collect()  # (what it frees is in `cycled`; frozen objects it does not look at)
    return [m for m in orphans if m.alive()]


def cycled() -> list[Made]:
    """The clients a collection freed since the last call (a cycle kept them alive)."""
    with REGISTRY.lock:
        found, REGISTRY.cycled[:] = list(REGISTRY.cycled), []
    return found


def describe(made: Made) -> str:
    return (
        f"{made.kind} {made.name} of {made.bootstrap}, made by {made.test} at "
        f"{' <- '.join(reversed(made.sites)) or '?'}"
    )


def holders(made: Made, depth: int = 2) -> list[str]:
    """What refers to a leaked client (types only, a short chain): where to look."""
    obj = made.ref()
    if obj is None:
        return []
    lines: list[str] = []
    level: list[Any] = [obj]
    for d in range(depth):
        nxt: list[Any] = []
        for o in level:
            for ref in gc.get_referrers(o):
                if ref is level or (isinstance(ref, list) and ref is nxt):
                    continue
                kind = type(ref).__qualname__
                if kind == "frame":
                    kind = f"frame {ref.f_code.co_filename.rsplit('/', 1)[-1]}:{ref.f_lineno}"
                lines.append("  " * (d + 1) + kind)
                nxt.append(ref)
        level = nxt[:8]
    if not lines and gc.get_freeze_count():
        lines.append(
            f"(no referrer in the collector's view: {gc.get_freeze_count()} frozen objects)"
        )
    return lines[:16]


# ---------------------------------------------------------------- pytest hooks


_GC_THRESHOLD = gc.get_threshold()


def restore_gc() -> bool:
    """Undo what a test's `tune_gc` (the edge's cold start: gc.freeze() and a young
    generation of 50,000) did to the process: in Lambda it is the container's for good, in
    the tests it outlived the test that called it and hid from the collector every
    reference cycle alive at the freeze for the rest of the worker's run (a test's frame
    kept by an exception's traceback, and the Kafka client in it, reconnecting to its
    stopped broker for minutes: issue 13). Whether there was anything to undo."""
    tuned = bool(gc.get_freeze_count()) or gc.get_threshold() != _GC_THRESHOLD
    if tuned:
        gc.unfreeze()
        gc.set_threshold(*_GC_THRESHOLD)
    return tuned


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    REGISTRY.test = item.nodeid


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Fail a test's teardown with every client a cycle kept (freed by a collection since
    the last test's end) and every one alive after its broker stopped (checked in the
    teardown of the test that stopped it: a module's broker stops in its last test's
    teardown, the session's in the worker's last test's)."""
    result = yield
    REGISTRY.test = f"(teardown of {item.nodeid})"
    restore_gc()
    alive = leaked()
    kept = cycled()
    if alive or kept:
        lines = [f"Kafka clients kept alive past their use ({len(alive) + len(kept)}):"]
        for made in alive:
            lines.append(f"- alive after its broker stopped: {describe(made)}")
            lines.extend(f"    {h}" for h in holders(made))
            made.closed = True  # reported once
        for made in kept:
            lines.append(f"- kept by a reference cycle (freed by a collection): {describe(made)}")
        raise AssertionError("\n".join(lines))
    return result


def still_open() -> list[Made]:
    """Every client made with a broker address that is neither closed nor freed."""
    with REGISTRY.lock:
        return [m for m in REGISTRY.made if m.alive()]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No test may leave a Kafka client behind: one outlives its broker and keeps logging
    'Connection refused' after the summary, and its threads outlive the test. (Frozen ones
    too: gc.freeze() hides an object from gc.get_objects(), not from a weak reference.)"""
    alive = still_open() + cycled()
    if alive:
        print(f"\nKafka clients left open by the tests: {len(alive)}")
        for made in alive:
            print(f"- {describe(made)}")
        if exitstatus == 0:
            session.exitstatus = 1


install()
