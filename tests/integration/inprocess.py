"""An engine in the test's own process: the real loop (on its own thread), the real gRPC
server, the real broker and Redis, and its state within reach of the test, for what a
separate process cannot show (which thread did what, what a cache holds).

Read the state only through `on_loop`: the loop thread owns it."""

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from engine.__main__ import build
from engine.service.control import serve
from engine.service.loop import Engine
from engine.service.settings import EngineSettings, parse_partitions
from hotshard.local.services.broker import Broker
from hotshard.local.services.process import free_port
from hotshard.local.services.redis import RedisServer
from hotshard.v1 import control_pb2_grpc

T = TypeVar("T")


@dataclass
class InProcessEngine:
    engine: Engine
    channel: Any
    stub: Any
    thread: threading.Thread
    failure: list[BaseException] = dataclasses.field(default_factory=list)

    def on_loop(self, fn: Callable[[], T]) -> T:
        return self.engine.call(fn, 30)


@contextlib.contextmanager
def engine_in_process(
    broker: Broker, redis_server: RedisServer, partitions: str, instance: str, **settings: Any
) -> Iterator[InProcessEngine]:
    base = EngineSettings(
        kafka_brokers=broker.bootstrap,
        redis_port=redis_server.port,
        grpc_bind="127.0.0.1",
        grpc_port=free_port(),
        partitions=parse_partitions(partitions),
        instance_id=instance,
        snapshot_interval_s=1.0,
        fetch_wait_max_ms=10,
    )
    engine = build(dataclasses.replace(base, **settings))
    engine.start()
    server = serve(engine, engine.settings.grpc_bind, engine.settings.grpc_port)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            engine.run()
        except BaseException as exc:  # the test sees it
            failure.append(exc)

    thread = threading.Thread(target=run, name="loop", daemon=True)
    thread.start()
    channel = grpc.insecure_channel(engine.settings.address)
    running = InProcessEngine(
        engine,
        channel,
        control_pb2_grpc.EngineControlStub(channel),  # type: ignore[no-untyped-call]
        thread,
        failure,
    )
    try:
        yield running
    finally:
        engine.stopping.set()
        thread.join(30)
        channel.close()
        server.stop(0)
        with contextlib.suppress(Exception):
            engine.shutdown()
        engine.close_clients()  # (shutdown does, unless it failed before)
