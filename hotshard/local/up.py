"""`hotshard up`: a complete local cluster a user keeps running (DESIGN section 8).

Tansu, redis-server with an AOF (appendfsync everysec), `--engines` engine processes over
`--partitions` regular partitions of `orders`, a warm pool of `--warm` idle engines on spare
partitions (hotshard.local.fleet, through moto's Auto Scaling API), the local edge, the
control plane (hotshard.local.control: moto's Step Functions running the repository's ASL,
the task handlers in this process) and, unless `--no-monitor`, the monitor playing the
alarms. A supervisor restarts a crashed engine (same id, port and partitions) or Redis
(same port and AOF), as systemd does on an engine instance. Once ready it writes the state
file (JSON: ws_url, http_url, jwt_secret, kafka_brokers, redis, aws_endpoint,
state_machine_arn, engines, ...) that `hotshard migrate|routes|engines` and
`hotshard-client` read. It runs until SIGINT/SIGTERM, then stops all it started and
removes the state file."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotshard import kafka, route
from hotshard.local.control import (
    ASG_NAME,
    REGION,
    ControlPlane,
    control_plane,
    redis_faults,
    redis_holds,
)
from hotshard.local.fleet import WarmPool
from hotshard.local.monitor import Monitor, evaluation, thresholds
from hotshard.local.services.broker import Broker, broker_for
from hotshard.local.services.engine import EngineProcess, start_engine
from hotshard.local.services.gateway import GatewayProcess, start_gateway
from hotshard.local.services.process import ServiceError, free_port, workdir
from hotshard.local.services.redis import RedisServer, redis_server
from hotshard.migration import steps
from hotshard.migration.engines import EngineClient
from hotshard.migration.settings import MigrationSettings

DEFAULT_STATE_FILE = Path(".hotshard") / "cluster.json"
DEFAULT_SYMBOLS = ("HOT", "AAA", "BBB", "CCC", "DDD", "EEE")
SUPERVISE_S = 0.5
ENGINE_CHECK_S = 0.05
"""How often the supervisor looks for an exited engine (a poll of its process, no I/O): a
crashed engine is restarted within this, not within SUPERVISE_S (the rest of supervision:
Redis, routes, the warm pool's reconcile through moto)."""
RESTART_BACKOFF_S = 1.0
"""An engine that exits again within this of its restart waits this long for the next one
(a start that keeps failing is not spun 20 times a second; systemd's RestartSec=1 in AWS)."""
REBUILD_WINDOW_S = 30.0
"""After a Redis restart, how long the supervisor keeps rebuilding lost routes."""
ENGINE_ARGS = ("--fetch-wait-max-ms", "10")


@dataclass
class UpOptions:
    engines: int = 2
    warm: int = 1
    partitions: int = 4
    symbols: Sequence[str] = DEFAULT_SYMBOLS
    monitor: bool = True
    state_file: Path = DEFAULT_STATE_FILE
    spare: int = 0  # spare partitions; 0: warm + 2
    monitor_period_s: float = 5.0
    cpu_threshold: float | None = None
    rate_threshold: float | None = None
    broker_storage: str = "memory"
    """memory (the log is lost when the broker stops) or s3 (durable_tansu: a broker restart
    keeps every acknowledged record)."""
    task_processes: bool = False
    """Each migration task in a worker process of its own, as a Lambda (hotshard.local.lambdas),
    not on a thread of this process."""


def split(partitions: int, engines: int) -> list[list[int]]:
    """Regular partitions 0..P-1 over N engines, contiguous and as even as possible."""
    if engines < 1 or partitions < engines:
        raise ValueError("need at least one engine and one partition per engine")
    out: list[list[int]] = []
    start = 0
    for k in range(engines):
        size = partitions // engines + (1 if k < partitions % engines else 0)
        out.append(list(range(start, start + size)))
        start += size
    return out


def restart_due(now: float, restarted_at: float) -> bool:
    """May an exited engine last restarted at `restarted_at` (monotonic; 0: never) start
    again now? At once, unless that restart was less than RESTART_BACKOFF_S ago."""
    return not restarted_at or now - restarted_at >= RESTART_BACKOFF_S


@dataclass
class Slot:
    """One engine process the supervisor keeps running."""

    instance: str
    partitions: tuple[int, ...]
    port: int
    warm: bool
    engine: EngineProcess | None = None
    restarts: int = 0
    stopping: bool = False
    restarted_at: float = 0.0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Cluster:
    options: UpOptions
    broker: Broker
    redis: RedisServer
    workdir: Path
    secret: str
    spare: tuple[int, ...]
    plane: ControlPlane
    gateway: GatewayProcess | None = None
    slots: dict[str, Slot] = field(default_factory=dict)
    pool: WarmPool | None = None
    monitor: Monitor | None = None
    say: Callable[[str], None] = lambda _line: None
    lock: threading.RLock = field(default_factory=threading.RLock)
    redis_restarts: int = 0
    rebuild_until: float = 0.0

    # ------------------------------------------------------------------ engines

    def start_slot(self, slot: Slot) -> None:
        slot.engine = start_engine(
            workdir=self.workdir,
            brokers=self.broker.bootstrap,
            redis_port=self.redis.port,
            partitions=",".join(str(p) for p in slot.partitions),
            instance=slot.instance,
            # big snapshots as files by reference (the local bucket), not in the AOF'd Redis
            extra_args=[*ENGINE_ARGS, "--snapshot-dir", str(self.workdir / "snapshots")],
            grpc_port=slot.port,
            env={"POWERTOOLS_METRICS_DISABLED": "true"},
        )

    def add_engine(self, instance: str, partitions: Sequence[int], *, warm: bool) -> Slot:
        slot = Slot(instance, tuple(partitions), free_port(), warm)
        self.start_slot(slot)
        with self.lock:
            self.slots[instance] = slot
        return slot

    def start_warm(self, ec2_id: str, partition: int) -> str:
        port = free_port()
        slot = Slot(f"{ec2_id}-{port}", (partition,), port, True)
        self.start_slot(slot)
        with self.lock:
            self.slots[slot.instance] = slot
        self.write_state()
        return slot.instance

    def stop_engine(self, instance: str) -> None:
        with self.lock:
            slot = self.slots.pop(instance, None)
        if slot is not None and slot.engine is not None:
            slot.stopping = True
            slot.engine.process.stop()
        self.write_state()

    def warm_slots(self) -> dict[str, int]:
        with self.lock:
            return {s.instance: s.partitions[0] for s in self.slots.values() if s.warm}

    def slot(self, instance: str) -> Slot:
        with self.lock:
            return self.slots[instance]

    # ------------------------------------------------------------------ supervision

    def supervise_once(self) -> list[str]:
        done: list[str] = []
        if not self.redis.process.alive():
            self.redis.restart()
            self.redis_restarts += 1
            self.write_state()
            self.rebuild_until = time.monotonic() + REBUILD_WINDOW_S
            done.append(f"redis-server restarted on {self.redis.port} (AOF)")
        if self.rebuild_until > time.monotonic():
            # if it came back without its data, the engines' rewritten checkpoints bring
            # the routes back (a route that exists is left alone: with the AOF, nothing)
            try:
                client = self.redis.client()
                try:
                    for w in route.rebuild_routes(client):
                        done.append(f"route of {w.symbol} rebuilt: partition {w.partition}")
                finally:
                    client.close()
            except Exception as exc:  # Redis still loading: next round
                done.append(f"routes not rebuilt yet: {type(exc).__name__}")
        done += self.restart_exited()
        if self.pool is not None:
            with contextlib.suppress(Exception):
                done += self.pool.reconcile()
        return done

    def restart_exited(self) -> list[str]:
        """Start again every engine that exited (same id, port and partitions), at once
        unless it was restarted less than RESTART_BACKOFF_S ago."""
        done: list[str] = []
        with self.lock:
            slots = list(self.slots.values())
        now = time.monotonic()
        for slot in slots:
            engine = slot.engine
            if engine is None or engine.process.alive() or slot.stopping:
                continue
            if not restart_due(now, slot.restarted_at):
                continue
            code = engine.process.popen.returncode
            slot.restarted_at = now
            try:
                self.start_slot(slot)
            except ServiceError as exc:
                done.append(f"engine {slot.instance} did not restart: {exc}")
                continue
            slot.restarts += 1
            self.write_state()
            done.append(f"engine {slot.instance} exited ({code}); restarted on {slot.address}")
        return done

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        assert self.gateway is not None
        with self.lock:
            engines = [
                {
                    "id": s.instance,
                    "grpc": s.address,
                    "partitions": list(s.partitions),
                    "warm": s.warm,
                    "restarts": s.restarts,
                    "pid": s.engine.process.popen.pid if s.engine is not None else None,
                }
                for s in self.slots.values()
            ]
        return {
            "ws_url": self.gateway.ws_url,
            "http_url": self.gateway.http_url,
            "jwt_secret": self.secret,
            "kafka_brokers": self.broker.bootstrap,
            "broker_storage": self.options.broker_storage,
            "redis": {"host": self.redis.host, "port": self.redis.port},
            "aws_endpoint": self.plane.url,
            "aws_region": self.plane.region,
            "state_machine_arn": self.plane.state_machine_arn,
            "auto_scaling_group": ASG_NAME,
            "spare_partitions": list(self.spare),
            "warm_pool": self.options.warm,
            "partitions": self.options.partitions,
            "engines": engines,
            "monitor": self.monitor is not None,
            "pids": {
                "broker": self.broker.process.popen.pid if self.broker.process else None,
                "redis": self.redis.process.popen.pid,
            },
            "pid": os.getpid(),
            "workdir": str(self.workdir),
            "state_file": str(self.options.state_file.resolve()),
        }

    def write_state(self) -> None:
        if self.gateway is None:
            return
        path = self.options.state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state(), indent=2) + "\n")
        tmp.replace(path)

    def read_stats(self) -> list[Any]:
        out = []
        with self.lock:
            addresses = [s.address for s in self.slots.values()]
        for address in addresses:
            try:
                with EngineClient(address, timeout_s=2.0) as client:
                    out.append(client.stats())
            except Exception:
                continue
        return out


@contextlib.contextmanager
def up(options: UpOptions, say: Callable[[str], None] = lambda _line: None) -> Iterator[Cluster]:
    """Start everything; leaving the block stops it all (the state file is removed)."""
    spare_count = options.spare or options.warm + 2
    spare = tuple(range(options.partitions, options.partitions + spare_count))
    with (
        broker_for(options.broker_storage) as broker,
        kafka.fetch_wait_floor(broker.fetch_wait_min_ms),
        redis_server(appendonly=True) as redis_srv,
        workdir("hotshard-up-") as wd,
    ):
        say(
            f"broker {broker.bootstrap} ({options.broker_storage} storage), "
            f"redis {redis_srv.port} (AOF)"
        )
        kafka.create_topics(broker.admin(), options.partitions + spare_count)
        settings = MigrationSettings(
            kafka_brokers=broker.bootstrap,
            redis_port=redis_srv.port,
            engine_asg=ASG_NAME,
            spare_partitions=spare,
            # the alarms' cooldown, in the monitor's periods (as infra/migration.py's in minutes)
            cooldown_s=evaluation().cooldown * options.monitor_period_s,
            cpu_alarm_threshold=options.cpu_threshold or thresholds()[0],
            rate_alarm_threshold=options.rate_threshold or thresholds()[1],
        )
        with control_plane(
            settings, REGION, task_processes=options.task_processes, log_dir=wd
        ) as plane:
            say(f"control plane: moto {plane.url}, state machine {plane.state_machine_arn}")
            cluster = Cluster(
                options, broker, redis_srv, wd, secrets.token_urlsafe(32), spare, plane, say=say
            )
            stop = threading.Event()
            supervisor: threading.Thread | None = None
            try:
                r = redis_srv.client()
                plane.dispatch.fault = redis_faults(r)
                plane.dispatch.hold = redis_holds(r)
                cluster.pool = WarmPool(
                    autoscaling=plane.client("autoscaling"),
                    ec2=plane.client("ec2"),
                    r=r,
                    asg_name=ASG_NAME,
                    spare=spare,
                    warm=options.warm,
                    start=cluster.start_warm,
                    stop=cluster.stop_engine,
                    slots=cluster.warm_slots,
                )
                cluster.pool.create()
                for k, parts in enumerate(split(options.partitions, options.engines)):
                    slot = cluster.add_engine(f"engine-{k}", parts, warm=False)
                    say(f"engine {slot.instance}: partitions {parts}, gRPC {slot.address}")
                for line in cluster.pool.reconcile():
                    say(line)
                for symbol in options.symbols:
                    found = route.list_symbol(r, symbol)
                    say(f"{symbol}: partition {found.partition} on {found.instance}")
                cluster.gateway = start_gateway(
                    wd, broker.bootstrap, redis_srv.port, cluster.secret
                )
                say(f"gateway: {cluster.gateway.ws_url} {cluster.gateway.http_url}")
                if options.monitor:
                    sfn = plane.client("stepfunctions")

                    def running(arn: str) -> bool:
                        return bool(sfn.describe_execution(executionArn=arn)["status"] == "RUNNING")

                    cluster.monitor = Monitor(
                        cluster.read_stats,
                        plane.start_execution,
                        running,
                        period_s=options.monitor_period_s,
                        cpu_threshold=options.cpu_threshold,
                        rate_threshold=options.rate_threshold,
                        say=say,
                        ended=lambda symbols: {
                            s: ms / 1000 for s, ms in steps.ended_ms(r, symbols).items()
                        },
                    )
                    cluster.monitor.start_thread()
                cluster.write_state()

                def supervise() -> None:
                    last = time.monotonic()
                    while not stop.wait(ENGINE_CHECK_S):
                        try:
                            if time.monotonic() - last >= SUPERVISE_S:
                                last = time.monotonic()
                                lines = cluster.supervise_once()
                            else:
                                lines = cluster.restart_exited()
                            for line in lines:
                                say(line)
                        except Exception as exc:
                            say(f"supervisor: {type(exc).__name__}: {exc}")

                supervisor = threading.Thread(target=supervise, name="supervisor", daemon=True)
                supervisor.start()
                yield cluster
            finally:
                stop.set()
                if supervisor is not None:
                    supervisor.join(30)
                if cluster.monitor is not None:
                    cluster.monitor.stop()
                if cluster.gateway is not None:
                    cluster.gateway.process.stop()
                with cluster.lock:
                    slots = list(cluster.slots.values())
                for slot in slots:
                    slot.stopping = True
                    if slot.engine is not None:
                        slot.engine.process.stop()
                with contextlib.suppress(OSError):
                    options.state_file.unlink()


def run(options: UpOptions, say: Callable[[str], None]) -> int:
    """Run until SIGINT/SIGTERM."""
    stop = threading.Event()

    def handle(_sig: int, _frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with up(options, say) as cluster:
            say(f"ready: state file {options.state_file} (Ctrl-C stops everything)")
            while not stop.wait(0.5):
                pass
            say("stopping ...")
            del cluster
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def read_state(path: Path) -> dict[str, Any]:
    """The state file of a running `hotshard up` (FileNotFoundError if none)."""
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def wait_state(path: Path, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return read_state(path)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no state file at {path}")
        time.sleep(0.2)
