"""The fuzz suites (`make fuzz` runs them at full size, `make test` a slice).

HOTSHARD_FUZZ_EXAMPLES sets how many cases each fuzz test draws (default 150: the slice).
`make fuzz` sets it so that the suites draw 100,000 cases together (25,000 each; times in
docs/FAULTS.md), with no deadline per case (a loaded machine's stall is not an input's
fault) and no example database, bounded in time by the make target."""

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("HOTSHARD_FUZZ_EXAMPLES", "150"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

from tests.hotshard.conftest import _close_kafka_clients, broker, redis_server  # noqa: E402

__all__ = ["EXAMPLES", "FUZZ", "_close_kafka_clients", "broker", "redis_server"]
