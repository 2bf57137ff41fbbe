"""The engine's configuration: read once at start (environment, then command line), passed
down as one frozen object. Library code never reads the environment."""

import argparse
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from engine.book.instrument import DEFAULT_DEDUP_WINDOW
from engine.book.market import DEFAULT_DEDUP_IDS, DedupBudget, Market
from hotshard import clients, names
from hotshard.kafka import AUTH_MODES, AUTH_NONE

LEGACY_CONSUME = -1.0
"""--batch-wait-ms of the old consume (consume(batch, poll timeout): the whole timeout)."""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    kafka_brokers: str = "127.0.0.1:9092"
    kafka_auth: str = AUTH_NONE
    aws_region: str = "us-east-1"
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_tls: bool = False
    grpc_port: int = 50051
    grpc_bind: str = "0.0.0.0"
    advertise_host: str = ""
    log_level: str = "INFO"
    partitions: tuple[int, ...] = ()
    instance_id: str = ""
    symbols: Path | None = None
    create_topics: int = 0
    snapshot_interval_s: float = 10.0
    snapshot_s3_threshold: int = 1 << 20
    snapshot_bucket: str = ""
    s3_endpoint_url: str = ""
    snapshot_dir: str = ""
    batch_size: int = 4000
    poll_timeout_ms: int = 5
    batch_wait_ms: float = 0.0
    fetch_wait_max_ms: int = 20
    linger_ms: float = 2.0
    metrics_interval_s: float = 10.0
    depth_snapshot_interval_s: float = 5.0
    depth_levels: int = 10
    heartbeat_interval_s: float = 1.0
    ownership_ttl_s: float = 10.0
    fence_retain_s: float = 60.0
    shadow_hold_ms: float = 500.0
    dedup_ids: int = DEFAULT_DEDUP_IDS
    dedup_window: int = DEFAULT_DEDUP_WINDOW

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "EngineSettings":
        """Settings from environment variables (`ENV`, one per option); unset -> default."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = clients.env_value(env, ENV[f.name], "")
            if raw:
                values[f.name] = _from_text(f.name, raw)
        return replace(cls(), **values)

    @property
    def instance(self) -> str:
        return self.instance_id or f"{socket.gethostname()}-{self.grpc_port}"

    @property
    def address(self) -> str:
        """The gRPC address other processes use to reach this engine."""
        host = self.advertise_host
        if not host:
            host = self.grpc_bind
            if host in ("0.0.0.0", "", "::"):
                host = socket.gethostbyname(socket.gethostname())
        return f"{host}:{self.grpc_port}"


# The environment variable of every option, derived in one place: the names shared with the
# Lambdas and the fleet (hotshard.names), and ENGINE_<OPTION> for the engine's own tuning.
_SHARED_ENV = {
    "kafka_brokers": names.ENV_KAFKA_BROKERS,
    "kafka_auth": names.ENV_KAFKA_AUTH,
    "aws_region": names.ENV_AWS_REGION,
    "redis_host": names.ENV_REDIS_HOST,
    "redis_port": names.ENV_REDIS_PORT,
    "redis_tls": names.ENV_REDIS_TLS,
    "grpc_port": names.ENV_GRPC_PORT,
    "log_level": names.ENV_LOG_LEVEL,
    "partitions": names.ENV_ENGINE_PARTITIONS,
    "instance_id": names.ENV_ENGINE_INSTANCE_ID,
    "snapshot_interval_s": names.ENV_SNAPSHOT_INTERVAL_S,
    "snapshot_s3_threshold": names.ENV_SNAPSHOT_S3_THRESHOLD,
    "snapshot_bucket": names.ENV_SNAPSHOT_BUCKET,
    "s3_endpoint_url": names.ENV_S3_ENDPOINT_URL,
}
ENV: dict[str, str] = {
    f.name: _SHARED_ENV.get(f.name, f"ENGINE_{f.name.upper()}") for f in fields(EngineSettings)
}


def _from_text(name: str, raw: str) -> Any:
    """One option's value from its environment variable's text, typed as its default."""
    default = getattr(EngineSettings(), name)
    if name == "partitions":
        return parse_partitions(raw)
    if name == "symbols":
        return Path(raw)
    if name == "log_level":
        return raw.upper()
    if isinstance(default, bool):
        return raw.lower() in clients.TRUE
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def market_for(settings: EngineSettings) -> Market:
    """The process's books: the listed symbols (`--symbols`) or every symbol on first use,
    within the process's budget of remembered ended-order ids (`--dedup-ids`,
    `--dedup-window`; engine/book/market.py says how it is shared). DedupBudgetError if the
    listed symbols' windows do not fit."""
    from engine.replay import load_symbols  # noqa: PLC0415

    budget = DedupBudget(ids=settings.dedup_ids, window=settings.dedup_window)
    if settings.symbols:
        return Market(load_symbols(settings.symbols, settings.dedup_window), dedup=budget)
    return Market(open_listing=True, dedup=budget)


def parse_partitions(text: str) -> tuple[int, ...]:
    """'0-3,8' -> (0, 1, 2, 3, 8); '' -> () (an idle engine: symbols come by Restore)."""
    out: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            first, last = int(low), int(high) if sep else int(low)
        except ValueError as exc:
            raise ValueError(f"bad partition list {text!r}: use e.g. 0-3,8") from exc
        if first < 0 or last < first:
            raise ValueError(f"bad partition range {part!r} in {text!r}")
        out.update(range(first, last + 1))
    return tuple(sorted(out))


HELP = """\
Run one engine process: own partitions of `orders`, match, publish events, snapshot, serve
gRPC control (hotshard.v1.EngineControl).

Every option has an environment variable (shown in brackets): the option's value when the
flag is not given, else the default shown. SIGTERM or SIGINT: stop consuming, publish what
is pending, take a final snapshot, deregister, exit 0.
"""


def parse_args(argv: Sequence[str] | None, env: Mapping[str, str] | None = None) -> EngineSettings:
    base = EngineSettings.from_env(os.environ if env is None else env)
    p = argparse.ArgumentParser(
        prog="python -m engine",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def opt(flag: str, help_text: str, env_key: str = "", **kw: Any) -> None:
        name = flag.lstrip("-").replace("-", "_")
        default = getattr(base, name)
        assert env_key in ("", ENV[name]), f"{flag}: its variable is {ENV[name]}"
        shown = f" [{ENV[name]}]"
        shown_default = default if not isinstance(default, tuple) else _ranges(default)
        p.add_argument(
            flag, default=default, help=f"{help_text}{shown} (default: {shown_default})", **kw
        )

    opt("--kafka-brokers", "Kafka bootstrap servers, host:port[,...]", names.ENV_KAFKA_BROKERS)
    opt(
        "--kafka-auth",
        "Kafka auth: 'none' (plaintext, local) or 'msk-iam' (SASL_SSL OAUTHBEARER, signed "
        "with the instance's IAM role)",
        names.ENV_KAFKA_AUTH,
        choices=AUTH_MODES,
    )
    opt("--aws-region", "AWS region (MSK IAM signing, S3)", names.ENV_AWS_REGION)
    opt(
        "--redis-host", "Redis host: routing table, registry, small snapshots", names.ENV_REDIS_HOST
    )
    opt("--redis-port", "Redis port", names.ENV_REDIS_PORT, type=int)
    opt(
        "--redis-tls",
        "connect to Redis over TLS (ElastiCache with encryption in transit)",
        names.ENV_REDIS_TLS,
        action=argparse.BooleanOptionalAction,
    )
    opt("--grpc-port", "port of the gRPC control server", names.ENV_GRPC_PORT, type=int)
    opt("--grpc-bind", "address the gRPC server listens on")
    opt(
        "--advertise-host",
        "host written to the registry for others to reach the gRPC server "
        "(default: the bind address, or this host's address when binding all)",
    )
    opt("--log-level", "DEBUG, INFO, WARNING or ERROR", names.ENV_LOG_LEVEL)
    opt(
        "--partitions",
        "partitions of `orders` this process owns, e.g. 0-3,8; empty: none (a warm, idle "
        "engine that gets symbols by Restore)",
        names.ENV_ENGINE_PARTITIONS,
        type=parse_partitions,
    )
    opt(
        "--instance-id",
        "registry id of this process (default: <hostname>-<grpc port>, stable across "
        "restarts so a restarted process reclaims its partitions)",
        names.ENV_ENGINE_INSTANCE_ID,
    )
    opt(
        "--symbols",
        "JSON file of listed symbols and their rules (as engine.replay); orders for other "
        "symbols are REJECTED(UNKNOWN_SYMBOL). Without it every symbol is accepted",
        type=Path,
    )
    opt(
        "--create-topics",
        "create the hotshard topics with this many partitions if missing (local runs; "
        "in AWS the infrastructure creates them); 0: do not",
        type=int,
    )
    opt(
        "--snapshot-interval-s",
        "seconds between periodic snapshots (checkpoints) of every changed book",
        names.ENV_SNAPSHOT_INTERVAL_S,
        type=float,
    )
    opt(
        "--snapshot-s3-threshold",
        "snapshots larger than this many bytes go to S3, smaller ones to Redis",
        names.ENV_SNAPSHOT_S3_THRESHOLD,
        type=int,
    )
    opt(
        "--snapshot-bucket",
        "S3 bucket for large snapshots; empty: every snapshot goes to Redis",
        names.ENV_SNAPSHOT_BUCKET,
    )
    opt(
        "--s3-endpoint-url",
        "S3 endpoint (a local moto server); empty: AWS",
        names.ENV_S3_ENDPOINT_URL,
    )
    opt(
        "--snapshot-dir",
        "a local cluster's bucket: snapshots above --snapshot-s3-threshold are files here "
        "(file:// locations) instead of Redis values; empty: Redis (or the bucket)",
    )
    opt(
        "--batch-size",
        "most records one consume() call takes (it returns sooner at --poll-timeout-ms): "
        "under a backlog, larger batches mean fewer records per (symbol, batch) to write "
        "and produce (docs/BENCHMARKS.md, issue 15 fourth pass)",
        type=int,
    )
    opt(
        "--poll-timeout-ms",
        "longest wait of one loop turn for its first record (the turn starts on it)",
        type=int,
    )
    opt(
        "--batch-wait-ms",
        "once a turn's first record is there, how much longer it waits for the batch to "
        "fill (hotshard.kafka.consume_batch); 0: only what is buffered already. -1: the "
        "old consume, consume(--batch-size, --poll-timeout-ms), which holds every record "
        "until the whole timeout passed or the batch is full (kept to measure against)",
        type=float,
    )
    opt(
        "--fetch-wait-max-ms",
        "broker fetch wait; on Tansu latency ~ this / 4 (it does not wake waiting fetches)",
        type=int,
    )
    opt("--linger-ms", "producer linger: events wait this long to share a request", type=float)
    opt("--metrics-interval-s", "seconds between metric reports (EMF lines on stdout)", type=float)
    opt(
        "--depth-snapshot-interval-s",
        "seconds between top-of-book snapshots on `depth` (every symbol's whole top "
        "--depth-levels per side, so a reader that starts late or lost updates converges)",
        type=float,
    )
    opt("--depth-levels", "levels per side in a depth snapshot", type=int)
    opt("--heartbeat-interval-s", "seconds between registry heartbeats", type=float)
    opt(
        "--ownership-ttl-s",
        "seconds a partition stays owned without a heartbeat (after a crash, another "
        "instance may take it after this)",
        type=float,
    )
    opt(
        "--fence-retain-s",
        "seconds the fence of a symbol that left (Remove) is kept once no checkpoint needs "
        "it: meanwhile its late orders on its old partition get REJECTED(STALE_ROUTE); "
        "after, such an order is one for a symbol not here (Stats stops listing the fence)",
        type=float,
    )
    opt(
        "--shadow-hold-ms",
        "how long a shadow holds each record of its symbol before applying it while its "
        "move's fence offset is not known yet: the records its source refuses after the "
        "Fence arrive just before the Promote, and a shadow that applied one must be "
        "promoted from the fence snapshot instead (seconds on a big book)",
        type=float,
    )
    opt(
        "--dedup-ids",
        "the process's budget of remembered ended-order ids (duplicate protection after an "
        "order ended; live orders are always remembered), shared by all its books: each "
        "symbol reserves its whole window when the engine takes it on, and a symbol whose "
        "window does not fit gets REJECTED(DEDUP_BUDGET_FULL), a restore of it is refused. "
        "~280 bytes per id (docs/BENCHMARKS.md, Memory)",
        type=int,
    )
    opt(
        "--dedup-window",
        "ended-order ids each symbol remembers, for symbols taken on first use and listed "
        "symbols whose --symbols entry has no dedup_window (a moved symbol keeps the window "
        "its snapshot carries); 0: only live orders are protected",
        type=int,
    )
    args = p.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(EngineSettings)}
    settings = EngineSettings(**values)
    _check(p, settings)
    return settings


def _ranges(parts: tuple[int, ...]) -> str:
    return ",".join(str(x) for x in parts) or "none"


def _check(p: argparse.ArgumentParser, s: EngineSettings) -> None:
    if s.kafka_auth not in AUTH_MODES:
        p.error(f"--kafka-auth must be one of {', '.join(AUTH_MODES)}")
    if not 1 <= s.batch_size <= 100_000:
        p.error("--batch-size must be 1..100000")
    if s.batch_wait_ms != LEGACY_CONSUME and not 0 <= s.batch_wait_ms <= 1000:
        p.error("--batch-wait-ms must be 0..1000, or -1 (the old consume)")
    intervals = (
        s.snapshot_interval_s,
        s.metrics_interval_s,
        s.heartbeat_interval_s,
        s.depth_snapshot_interval_s,
    )
    if min(intervals) <= 0:
        p.error("intervals must be positive")
    if s.depth_levels < 1:
        p.error("--depth-levels must be >= 1")
    if s.ownership_ttl_s <= s.heartbeat_interval_s:
        p.error("--ownership-ttl-s must exceed --heartbeat-interval-s")
    if not 0 <= s.dedup_window <= s.dedup_ids:
        p.error("need 0 <= --dedup-window <= --dedup-ids")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        p.error("--log-level must be DEBUG, INFO, WARNING or ERROR")
