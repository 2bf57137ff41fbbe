"""Real services for integration tests: each test gets its own Tansu and redis-server on
free ports (they start in well under a second), so xdist workers never share state."""

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from hotshard import kafka
from hotshard.local.services.broker import Broker, tansu
from hotshard.local.services.engine import EngineProcess, start_engine
from hotshard.local.services.redis import RedisServer
from hotshard.local.services.redis import redis_server as start_redis

PARTITIONS = 4


@pytest.fixture
def broker() -> Iterator[Broker]:
    with tansu() as b:
        kafka.create_topics(b.admin(), PARTITIONS)
        yield b


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with start_redis() as r:
        yield r


@pytest.fixture
def engines(tmp_path, broker, redis_server):
    """Start engine processes: engines(partitions, instance, *extra_args); all are killed
    at the end of the test (their logs are printed if the test failed)."""
    started: list[EngineProcess] = []

    def start(partitions: str, instance: str, *extra: str, **kw: Any) -> EngineProcess:
        engine = start_engine(
            workdir=tmp_path,
            brokers=kw.pop("brokers", broker.bootstrap),
            redis_port=redis_server.port,
            partitions=partitions,
            instance=instance,
            extra_args=["--snapshot-interval-s", "1", "--fetch-wait-max-ms", "10", *extra],
            **kw,
        )
        started.append(engine)
        return engine

    yield start
    for engine in started:
        with contextlib.suppress(Exception):
            engine.process.stop(signal.SIGKILL)
        print(f"--- {engine.instance} log tail ---\n{engine.process.log_tail(15)}")
