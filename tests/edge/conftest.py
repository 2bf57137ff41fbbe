"""Real services for the edge tests: one redis-server per test module (flushed before each
test), Tansu where a test needs the broker. Ports are free ones on 127.0.0.1."""

from collections.abc import Iterator

import pytest
import redis

from hotshard import kafka
from hotshard.local import services

PARTITIONS = 4


@pytest.fixture(scope="module")
def redis_server() -> Iterator[services.RedisServer]:
    with services.redis_server() as server:
        yield server


@pytest.fixture
def r(redis_server: services.RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="module")
def broker() -> Iterator[services.Broker]:
    with services.tansu() as b:
        kafka.create_topics(b.admin(), PARTITIONS)
        yield b
