"""Test-wide settings.

Hypothesis explores new random examples on every local run; under CI (CI=true) it runs a
fixed, derandomized set so a submission's result does not depend on the draw.
"""

import os
from typing import Any

# Engines run in the test process (tests/integration/inprocess.py) fork snapshot children:
# gRPC's fork handlers must be off before anything imports gRPC (engine/__init__.py says why).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


def _track_admin_clients() -> None:
    """AdminClient has no close(): it lives, with its broker connections and their
    reconnects (librdkafka logs them as `rdkafka#producer-N`: "Connection refused" once
    its broker stopped), as long as a reference to it does. Each one made while the tests
    run remembers where, so the session's end can name the ones still alive."""
    import traceback  # noqa: PLC0415
    import weakref  # noqa: PLC0415

    from confluent_kafka import admin  # noqa: PLC0415

    cls = admin.AdminClient
    if getattr(cls, "_hotshard_tracked", False):
        return
    made = cls.__init__

    def tracked(self: Any, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        frames = traceback.extract_stack(limit=10)[:-1]
        here = [f for f in frames if "/tests/" in f.filename or "/hotshard/" in f.filename]
        _ADMIN_SITES[id(self)] = (weakref.ref(self), here[-3:])

    cls.__init__ = tracked  # type: ignore[method-assign]
    cls._hotshard_tracked = True  # type: ignore[attr-defined]


_ADMIN_SITES: dict[int, tuple[Any, list[Any]]] = {}
_track_admin_clients()


def _open_admin_clients() -> list[str]:
    """Where each AdminClient still alive (see _track_admin_clients) was made."""
    alive = []
    for ref, sites in list(_ADMIN_SITES.values()):
        if ref() is not None:
            where = " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in sites)
            alive.append(f"AdminClient ({where})")
    return alive


def _open_kafka_clients() -> list[str]:
    """Kafka producers and consumers still open (not closed) in this process."""
    import gc  # noqa: PLC0415

    from confluent_kafka import Consumer, Producer  # noqa: PLC0415

    # no gc.collect(): a client that only a reference cycle keeps is a leak as well (it lives
    # on until a collection happens to run, possibly after its broker stopped)
    alive = []
    for obj in gc.get_objects():
        try:
            kind = type(obj)
        except ReferenceError:  # a dead weak proxy
            continue
        try:
            if issubclass(kind, Producer):
                obj.flush(0)  # raises on a closed producer
            elif issubclass(kind, Consumer):
                obj.memberid()  # raises on a closed consumer
            else:
                continue
        except RuntimeError:
            continue
        alive.append(kind.__name__)
    return alive


def pytest_sessionfinish(session, exitstatus):
    """No test may leave a Kafka client behind: one outlives its broker and keeps logging
    'Connection refused' after the summary, and its threads outlive the test."""
    alive = _open_kafka_clients()
    if alive:
        kinds = ", ".join(sorted(set(alive)))
        print(f"\nKafka clients left open by the tests: {len(alive)} ({kinds})")
        if exitstatus == 0:
            session.exitstatus = 1
    admins = _open_admin_clients()  # named, not failed: the whole suite not checked yet
    if admins:
        print(f"\nAdminClients still alive: {len(admins)} ({'; '.join(sorted(set(admins)))})")
