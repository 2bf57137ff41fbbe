"""Test-wide settings.

Hypothesis explores new random examples on every local run; under CI (CI=true) it runs a
fixed, derandomized set so a submission's result does not depend on the draw.
"""

import os

# Engines run in the test process (tests/integration/inprocess.py) fork snapshot children:
# gRPC's fork handlers must be off before anything imports gRPC (engine/__init__.py says why).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


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
