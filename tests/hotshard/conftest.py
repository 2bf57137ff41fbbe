"""Real services for the tests of hotshard/ (edge, local, client, routing table) and
tests/lambdas: one redis-server per test module (flushed before each
test), Tansu where a test needs the broker. Ports are free ones on 127.0.0.1."""

from collections.abc import Iterator

import pytest
import redis

from hotshard import kafka
from hotshard.local.services.broker import Broker, tansu
from hotshard.local.services.redis import RedisServer
from hotshard.local.services.redis import redis_server as start_redis

PARTITIONS = 4


@pytest.fixture(autouse=True)
def _close_kafka_clients() -> Iterator[None]:
    """Producers of tests.hotshard.edge.kit are closed when their test ends."""
    yield
    from tests.hotshard.edge.kit import close_producers  # noqa: PLC0415

    close_producers()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with start_redis() as server:
        yield server


@pytest.fixture
def r(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    with tansu() as b:
        kafka.create_topics(b.admin(), PARTITIONS)
        yield b
