"""A local cluster on free 127.0.0.1 ports: Tansu, redis-server, engine processes (each
owning its partitions of `orders`), the local edge (gateway, order_router) and, in a process
of its own as in AWS, the feeder and stream_handler, all as child processes. What
`hotshard demo` trades against.

    with local_cluster(say=print) as cluster:
        ...  # cluster.gateway.ws_url, cluster.secret, cluster.redis.client()
        lost = cluster.died()

Leaving the block stops every process it started (the edge first) and removes their files.
"""

import contextlib
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hotshard import kafka
from hotshard.local.services.broker import Broker, tansu
from hotshard.local.services.engine import EngineProcess, start_engine
from hotshard.local.services.gateway import GatewayProcess, start_gateway, start_stream
from hotshard.local.services.process import Process, workdir
from hotshard.local.services.redis import RedisServer, redis_server

PARTITIONS = 4
ENGINES = (("demo-0", "0-1"), ("demo-1", "2-3"))
"""(instance id, partitions) of each engine process."""


@dataclass
class Cluster:
    broker: Broker
    redis: RedisServer
    workdir: Path
    secret: str
    """The gateway's HS256 JWT secret (local tokens: hotshard.client.session.local_token)."""
    engines: list[EngineProcess] = field(default_factory=list)
    gateway: GatewayProcess | None = None
    stream: Process | None = None
    """The feeder and stream_handler (their own process, as the Lambda is in AWS)."""

    def processes(self) -> list[Process]:
        """The child processes started for this cluster, in the order they started."""
        gateway = [self.gateway.process] if self.gateway is not None else []
        stream = [self.stream] if self.stream is not None else []
        return [e.process for e in self.engines] + gateway + stream

    def died(self) -> list[Process]:
        return [p for p in self.processes() if not p.alive()]


@contextlib.contextmanager
def local_cluster(
    *,
    partitions: int = PARTITIONS,
    engines: Sequence[tuple[str, str]] = ENGINES,
    say: Callable[[str], None] = lambda _line: None,
) -> Iterator[Cluster]:
    """Start the cluster (`say` gets one line per service as it comes up)."""
    with tansu() as broker, redis_server() as redis_srv, workdir("hotshard-demo-") as wd:
        say(f"broker [bold]{broker.bootstrap}[/], redis [bold]{redis_srv.port}[/]")
        kafka.create_topics(broker.admin(), partitions)
        cluster = Cluster(broker, redis_srv, wd, secrets.token_urlsafe(32))
        try:
            for instance, parts in engines:
                engine = start_engine(
                    workdir=wd,
                    brokers=broker.bootstrap,
                    redis_port=redis_srv.port,
                    partitions=parts,
                    instance=instance,
                    extra_args=["--fetch-wait-max-ms", "10"],
                )
                cluster.engines.append(engine)
                say(f"engine {engine.instance}: gRPC {engine.address}")
            cluster.gateway = start_gateway(
                wd, broker.bootstrap, redis_srv.port, cluster.secret, feed=False
            )
            gateway = cluster.gateway
            say(f"gateway: WebSocket [bold]{gateway.ws_url}[/], HTTP {gateway.http_url}")
            cluster.stream = start_stream(
                wd,
                broker.bootstrap,
                redis_srv.port,
                gateway.management_url,
                gateway.management_secret,
            )
            say("stream handler: its own process, posting to the gateway's Management API")
            yield cluster
        finally:
            for process in reversed(cluster.processes()):
                process.stop()
