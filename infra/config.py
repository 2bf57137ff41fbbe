"""InfraConfig: every knob of the deployment, read once from CDK context and validated.

Each knob is a context key `hotshard:<name>` in cdk.json. Defaults live in DEFAULTS below
(cdk.json repeats them so they are visible where people look; a test keeps the two equal).
Override one on the command line: `cdk synth -c hotshard:warmPoolSize=2`. Values given on
the command line arrive as strings; numbers and lists are parsed here. Unknown
`hotshard:*` keys are an error, so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotshard import names

PREFIX = "hotshard:"

# key -> (default, one-line meaning). The meaning is the documentation (docs/DEPLOY.md).
DEFAULTS: dict[str, tuple[Any, str]] = {
    "account": ("", "AWS account id; empty = CDK_DEFAULT_ACCOUNT, else environment-agnostic"),
    "region": ("ap-northeast-2", "AWS region (Seoul)"),
    "availabilityZones": (
        ["ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c"],
        "AZs used by the VPC; listed so synth never asks AWS",
    ),
    "natGateways": (1, "NAT gateways (engines install packages from PyPI at first boot)"),
    "instanceType": ("c5.2xlarge", "engine EC2 instance type"),
    "engineProcessesPerInstance": (6, "engine processes per instance, one per vCPU kept free"),
    "grpcBasePort": (50051, "gRPC port of the first engine process; the next ones count up"),
    "engineVolumeGib": (30, "encrypted gp3 root volume of an engine instance"),
    "fleetMinSize": (2, "engine instances in service at least"),
    "fleetMaxSize": (6, "engine instances in service at most"),
    "warmPoolSize": (2, "stopped, pre-initialised engine instances kept in the warm pool"),
    "sparePartitionsPerWarmEngine": (
        1,
        "spare partitions each engine process beyond the minimum fleet owns (migration targets)",
    ),
    "mskBrokerType": ("kafka.m5.large", "MSK broker instance type"),
    "mskBrokerCount": (3, "MSK brokers; a multiple of the number of AZs"),
    "mskKafkaVersion": ("3.6.0", "Kafka version of the MSK cluster"),
    "mskVolumeGib": (100, "EBS storage per MSK broker"),
    "mskMinInsyncReplicas": (
        2,
        "min.insync.replicas of the cluster: replicas that hold an acknowledged record",
    ),
    "ordersPartitions": (
        12,
        "regular partitions of orders, served by the minimum fleet (spare ones come on top)",
    ),
    "topicReplication": (3, "replication factor of every topic"),
    "snapshotIntervalSeconds": (
        10,
        "SNAPSHOT_INTERVAL_S of the engines: seconds between snapshots and checkpoints",
    ),
    "replayMarginHours": (
        24,
        "hours an engine may be down and still replay orders from its checkpoint",
    ),
    "redisNodeType": ("cache.r6g.large", "ElastiCache node type"),
    "redisReplicas": (1, "Redis replicas per shard (>= 1 for automatic failover)"),
    "cpuAlarmThreshold": (85, "engine process CPU percent that starts a migration"),
    "symbolRateAlarmThreshold": (50000, "orders/s of one symbol that starts a migration"),
    "alarmEvaluationPeriods": (3, "one-minute periods the two migration alarms evaluate"),
    "alarmDatapointsToAlarm": (2, "of those periods, how many above the threshold mean ALARM"),
    "migrationCooldownPeriods": (
        3,
        "alarm periods after a symbol's migration ends in which an alarm does not move that"
        " symbol again (another hot one may move)",
    ),
    "snapshotRetentionDays": (7, "days before a snapshot object expires"),
    "logRetentionDays": (30, "CloudWatch Logs retention of every log group"),
    "logLevel": ("INFO", "LOG_LEVEL of the engine and the Lambdas"),
    "httpThrottleRate": (5000, "HTTP API stage: steady requests/s before 429"),
    "httpThrottleBurst": (2500, "HTTP API stage: burst of requests above the rate"),
    "webSocketThrottleRate": (5000, "WebSocket API stage: steady messages/s before 429"),
    "webSocketThrottleBurst": (2500, "WebSocket API stage: burst of messages above the rate"),
    "autoList": (
        False,
        "AUTO_LIST of order_router: list an unrouted symbol on its first order",
    ),
    "sourceRoot": (
        "",
        "directory holding hotshard/, engine/, lambdas/, statemachine/; empty = repo",
    ),
    "lambdaDepsDir": (
        "build/lambda-deps",
        "third-party packages layer, built by `make lambda-deps`",
    ),
    "requireCode": (False, "fail synth when an entry point (handler, engine) is missing"),
    "nag": (True, "run cdk-nag AwsSolutions checks during synth"),
}

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827)
_REPO_ROOT = Path(__file__).resolve().parent.parent
# A restart replays `orders` from its partition's last checkpoint. While the engine runs that
# is at most one snapshot interval old, one more when a checkpoint was skipped (events not yet
# delivered), and one for the checkpoint being written: three intervals, then the margin.
SNAPSHOT_GENERATIONS = 3
# Partitions per broker (leaders and followers) MSK recommends for Standard brokers, the
# "Right-size your cluster" table of the MSK developer guide; other types are not checked.
MSK_PARTITIONS_PER_BROKER = {
    "kafka.t3.small": 300,
    "kafka.m5.large": 1000,
    "kafka.m5.xlarge": 1000,
    "kafka.m5.2xlarge": 2000,
    "kafka.m7g.large": 1000,
    "kafka.m7g.xlarge": 1000,
    "kafka.m7g.2xlarge": 2000,
}
TOPIC_COUNT = len(names.TOPICS)


class ConfigError(ValueError):
    """A context value is missing, malformed or out of range; the message names the key."""


@dataclass(frozen=True, kw_only=True)
class InfraConfig:
    """Validated deployment settings; see DEFAULTS for the meaning of each field."""

    account: str | None
    region: str
    availability_zones: tuple[str, ...]
    nat_gateways: int
    instance_type: str
    engine_processes_per_instance: int
    grpc_base_port: int
    engine_volume_gib: int
    fleet_min_size: int
    fleet_max_size: int
    warm_pool_size: int
    spare_partitions_per_warm_engine: int
    msk_broker_type: str
    msk_broker_count: int
    msk_kafka_version: str
    msk_volume_gib: int
    msk_min_insync_replicas: int
    orders_partitions: int
    topic_replication: int
    snapshot_interval_s: int
    replay_margin_hours: int
    redis_node_type: str
    redis_replicas: int
    cpu_alarm_threshold: int
    symbol_rate_alarm_threshold: int
    alarm_evaluation_periods: int
    alarm_datapoints_to_alarm: int
    migration_cooldown_periods: int
    snapshot_retention_days: int
    log_retention_days: int
    log_level: str
    http_throttle_rate: int
    http_throttle_burst: int
    websocket_throttle_rate: int
    websocket_throttle_burst: int
    auto_list: bool
    source_root: Path
    lambda_deps_dir: Path
    require_code: bool
    nag: bool

    @property
    def grpc_ports(self) -> range:
        """The gRPC ports of the engine processes on one instance."""
        return range(self.grpc_base_port, self.grpc_base_port + self.engine_processes_per_instance)

    @property
    def regular_partitions(self) -> range:
        """Partitions of `orders` the minimum fleet serves; symbols are listed only here."""
        return range(self.orders_partitions)

    @property
    def spare_engines(self) -> int:
        """Engine processes that can run beyond the minimum fleet at once: every process of
        each instance in service above fleetMinSize and of each warm-pool instance."""
        instances = self.fleet_max_size - self.fleet_min_size + self.warm_pool_size
        return instances * self.engine_processes_per_instance

    @property
    def spare_partitions(self) -> range:
        """Partitions reserved for migration targets, after the regular ones."""
        first = self.orders_partitions
        return range(first, first + self.spare_engines * self.spare_partitions_per_warm_engine)

    @property
    def spare_partition_list(self) -> str:
        """SPARE_PARTITIONS: the spare range in ENGINE_PARTITIONS syntax (e.g. "12-47")."""
        spare = self.spare_partitions
        return f"{spare.start}-{spare.stop - 1}" if len(spare) > 1 else str(spare.start)

    @property
    def topic_partitions(self) -> int:
        """Partitions of every topic: regular + spare (events mirror `orders`' numbers)."""
        return self.spare_partitions.stop

    @property
    def orders_retention_ms(self) -> int:
        """retention.ms of `orders` and `pending-orders`: SNAPSHOT_GENERATIONS snapshot
        intervals (the oldest checkpoint a running engine leaves) plus the hours an engine
        may be down and still resume from its checkpoint."""
        seconds = self.snapshot_interval_s * SNAPSHOT_GENERATIONS + self.replay_margin_hours * 3600
        return seconds * 1000

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> InfraConfig:
        """Build from CDK context (`hotshard:*` keys); missing keys take DEFAULTS."""
        unknown = sorted(
            k for k in context if k.startswith(PREFIX) and k[len(PREFIX) :] not in DEFAULTS
        )
        if unknown:
            raise ConfigError(f"unknown context keys {unknown}; known: {sorted(DEFAULTS)}")
        raw = {key: context.get(PREFIX + key, default) for key, (default, _) in DEFAULTS.items()}
        source_root = Path(_text(raw, "sourceRoot") or _REPO_ROOT)
        deps = Path(_text(raw, "lambdaDepsDir"))
        config = cls(
            account=_text(raw, "account") or None,
            region=_text(raw, "region"),
            availability_zones=_texts(raw, "availabilityZones"),
            nat_gateways=_int(raw, "natGateways", low=0),
            instance_type=_text(raw, "instanceType"),
            engine_processes_per_instance=_int(raw, "engineProcessesPerInstance", low=1),
            grpc_base_port=_int(raw, "grpcBasePort", low=1024, high=65000),
            engine_volume_gib=_int(raw, "engineVolumeGib", low=8),
            fleet_min_size=_int(raw, "fleetMinSize", low=1),
            fleet_max_size=_int(raw, "fleetMaxSize", low=1),
            warm_pool_size=_int(raw, "warmPoolSize", low=0),
            spare_partitions_per_warm_engine=_int(raw, "sparePartitionsPerWarmEngine", low=1),
            msk_broker_type=_text(raw, "mskBrokerType"),
            msk_broker_count=_int(raw, "mskBrokerCount", low=2),
            msk_kafka_version=_text(raw, "mskKafkaVersion"),
            msk_volume_gib=_int(raw, "mskVolumeGib", low=1),
            msk_min_insync_replicas=_int(raw, "mskMinInsyncReplicas", low=2),
            orders_partitions=_int(raw, "ordersPartitions", low=1),
            topic_replication=_int(raw, "topicReplication", low=1),
            snapshot_interval_s=_int(raw, "snapshotIntervalSeconds", low=1, high=3600),
            replay_margin_hours=_int(raw, "replayMarginHours", low=1),
            redis_node_type=_text(raw, "redisNodeType"),
            redis_replicas=_int(raw, "redisReplicas", low=1, high=5),
            cpu_alarm_threshold=_int(raw, "cpuAlarmThreshold", low=1, high=100),
            symbol_rate_alarm_threshold=_int(raw, "symbolRateAlarmThreshold", low=1),
            alarm_evaluation_periods=_int(raw, "alarmEvaluationPeriods", low=1, high=60),
            alarm_datapoints_to_alarm=_int(raw, "alarmDatapointsToAlarm", low=1, high=60),
            migration_cooldown_periods=_int(raw, "migrationCooldownPeriods", low=0, high=1440),
            snapshot_retention_days=_int(raw, "snapshotRetentionDays", low=1),
            log_retention_days=_int(raw, "logRetentionDays", low=1),
            log_level=_text(raw, "logLevel").upper(),
            http_throttle_rate=_int(raw, "httpThrottleRate", low=1),
            http_throttle_burst=_int(raw, "httpThrottleBurst", low=1),
            websocket_throttle_rate=_int(raw, "webSocketThrottleRate", low=1),
            websocket_throttle_burst=_int(raw, "webSocketThrottleBurst", low=1),
            auto_list=_bool(raw, "autoList"),
            source_root=source_root,
            lambda_deps_dir=deps if deps.is_absolute() else source_root / deps,
            require_code=_bool(raw, "requireCode"),
            nag=_bool(raw, "nag"),
        )
        config._check()
        return config

    def _check_partitions_per_broker(self) -> None:
        limit = MSK_PARTITIONS_PER_BROKER.get(self.msk_broker_type)
        replicas = self.topic_partitions * TOPIC_COUNT * self.topic_replication
        per_broker = -(-replicas // self.msk_broker_count)
        if limit is not None and per_broker > limit:
            raise ConfigError(
                f"{TOPIC_COUNT} topics x {self.topic_partitions} partitions "
                f"({self.orders_partitions} regular + {len(self.spare_partitions)} spare) x "
                f"replication {self.topic_replication} put {per_broker} partitions on each of "
                f"{self.msk_broker_count} brokers; MSK recommends at most {limit} for "
                f"{self.msk_broker_type}: fewer hotshard:sparePartitionsPerWarmEngine, "
                "fleetMaxSize or warmPoolSize, or more or larger brokers"
            )

    def _check(self) -> None:
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", self.region):
            raise ConfigError(f"hotshard:region {self.region!r} is not a region name")
        if self.account is not None and not re.fullmatch(r"\d{12}", self.account):
            raise ConfigError(f"hotshard:account {self.account!r} is not a 12-digit account id")
        if len(self.availability_zones) < 2:
            raise ConfigError("hotshard:availabilityZones needs at least 2 zones")
        stray = [az for az in self.availability_zones if not az.startswith(self.region)]
        if stray:
            raise ConfigError(f"hotshard:availabilityZones {stray} are not in {self.region}")
        if self.msk_broker_count % len(self.availability_zones):
            raise ConfigError(
                f"hotshard:mskBrokerCount {self.msk_broker_count} is not a multiple of "
                f"{len(self.availability_zones)} availability zones"
            )
        if self.topic_replication > self.msk_broker_count:
            raise ConfigError("hotshard:topicReplication exceeds hotshard:mskBrokerCount")
        if self.alarm_datapoints_to_alarm > self.alarm_evaluation_periods:
            raise ConfigError(
                "hotshard:alarmDatapointsToAlarm exceeds hotshard:alarmEvaluationPeriods"
            )
        if self.msk_min_insync_replicas >= self.topic_replication:
            raise ConfigError(
                f"hotshard:mskMinInsyncReplicas {self.msk_min_insync_replicas} must be below "
                f"hotshard:topicReplication {self.topic_replication}, or one broker down stops "
                "every producer (acks=all)"
            )
        if not self.spare_engines:
            raise ConfigError(
                "hotshard:fleetMaxSize equals fleetMinSize and warmPoolSize is 0: no engine "
                "beyond the minimum fleet, so no spare partition and no migration target"
            )
        self._check_partitions_per_broker()
        if self.snapshot_retention_days * 86_400_000 <= self.orders_retention_ms:
            raise ConfigError(
                f"hotshard:snapshotRetentionDays {self.snapshot_retention_days} must outlast "
                f"the orders retention ({self.orders_retention_ms / 3_600_000:.1f} h): a "
                "checkpoint that can still be replayed must find its snapshots"
            )
        if self.fleet_min_size > self.fleet_max_size:
            raise ConfigError("hotshard:fleetMinSize exceeds hotshard:fleetMaxSize")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ConfigError(
                f"hotshard:logRetentionDays {self.log_retention_days} is not one of "
                f"{LOG_RETENTION_DAYS}"
            )
        if self.log_level not in _LOG_LEVELS:
            raise ConfigError(f"hotshard:logLevel {self.log_level!r} is not one of {_LOG_LEVELS}")
        if self.grpc_ports.stop > 65536:
            raise ConfigError("hotshard:grpcBasePort + engineProcessesPerInstance exceeds 65535")


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw[key]
    if not isinstance(value, str):
        raise ConfigError(f"hotshard:{key} must be a string, got {value!r}")
    return value.strip()


def _texts(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw[key]
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f"hotshard:{key} must be a list of strings, got {value!r}")
    return tuple(i.strip() for i in items if i.strip())


def _int(raw: Mapping[str, Any], key: str, *, low: int, high: int | None = None) -> int:
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"hotshard:{key} must be an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"hotshard:{key} must be an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        raise ConfigError(f"hotshard:{key}={number} is outside [{low}, {high or 'inf'}]")
    return number


def _bool(raw: Mapping[str, Any], key: str) -> bool:
    value = raw[key]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"hotshard:{key} must be true or false, got {value!r}")
