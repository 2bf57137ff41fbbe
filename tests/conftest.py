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


# Every Kafka client the tests make is remembered with its test (tests/kafka_clients.py,
# installed as it is imported: before any test module or deeper conftest imports
# confluent_kafka's classes); a test whose end leaves one alive after its broker stopped
# fails its teardown naming it, and one still open at the session's end fails the session.
pytest_plugins = ["tests.kafka_clients"]
