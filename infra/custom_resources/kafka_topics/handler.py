"""Custom::KafkaTopics: the hotshard topics on MSK, as the stack configures them.

The on-event handler of a CDK custom-resources `Provider` (infra/messaging.py): the
Provider's framework Lambda answers CloudFormation, so this handler returns the physical id
or raises (the message becomes the stack event's reason).

Create/Update: connect with IAM auth (SASL OAUTHBEARER over TLS, token from
aws-msk-iam-sasl-signer-python), read what exists and `plan` the difference: topics to
create (partitions, replication factor, configs), partitions to add (Kafka cannot remove
them, so fewer wanted is left alone), and topic configs to set (only the keys the resource
names, incrementally). A topic whose replication factor differs is an error: Kafka changes
it only by a partition reassignment, which this resource does not do. Delete keeps the
topics: they go with the cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The documented public admin API. confluent_kafka.admin re-exports these from its C module
# without an __all__, which mypy reads as not exported; hence the ignore.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

logger = logging.getLogger()
logger.setLevel(logging.INFO)

PHYSICAL_ID = "hotshard-kafka-topics"
TIMEOUT_S = 30.0


class TopicMismatchError(ValueError):
    """An existing topic cannot be made what the resource asks (its replication factor)."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the resource wants it; `config` holds topic-level settings only."""

    name: str
    partitions: int
    replication: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicState:
    """A topic as the cluster has it; `config` holds the values of the keys asked about."""

    partitions: int
    replication: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    create: list[TopicSpec]
    grow: dict[str, int]  # topic -> new partition count
    alter: dict[str, dict[str, str]]  # topic -> the config keys to set, with their values

    @property
    def empty(self) -> bool:
        return not (self.create or self.grow or self.alter)


def parse_topics(raw: Sequence[Mapping[str, Any]]) -> list[TopicSpec]:
    """Topic specs from the resource properties (CloudFormation passes numbers as strings)."""
    return [
        TopicSpec(
            t["Name"],
            int(t["Partitions"]),
            int(t["ReplicationFactor"]),
            {str(k): str(v) for k, v in t.get("Config", {}).items()},
        )
        for t in raw
    ]


def plan(existing: Mapping[str, TopicState], wanted: Sequence[TopicSpec]) -> Plan:
    """What to do so the cluster has `wanted`, given what exists; raises
    TopicMismatchError for a replication factor that differs."""
    wrong = [
        f"{t.name} has replication factor {existing[t.name].replication}, wanted {t.replication}"
        for t in wanted
        if t.name in existing and existing[t.name].replication != t.replication
    ]
    if wrong:
        raise TopicMismatchError(
            "; ".join(wrong) + " (reassign its partitions with kafka-reassign-partitions)"
        )
    create = [t for t in wanted if t.name not in existing]
    grow = {
        t.name: t.partitions
        for t in wanted
        if t.name in existing and existing[t.name].partitions < t.partitions
    }
    alter = {}
    for t in wanted:
        if t.name in existing:
            changed = {k: v for k, v in t.config.items() if existing[t.name].config.get(k) != v}
            if changed:
                alter[t.name] = changed
    return Plan(create, grow, alter)


def admin_client(bootstrap: str, region: str) -> AdminClient:
    """An AdminClient for MSK with IAM auth, signed with the Lambda's role."""
    from aws_msk_iam_sasl_signer import (  # type: ignore[import-untyped]  # noqa: PLC0415
        MSKAuthTokenProvider,
    )

    def oauth_cb(_config: str) -> tuple[str, float]:
        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return token, expiry_ms / 1000  # the signer speaks ms, librdkafka wants s

    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "OAUTHBEARER",
        "oauth_cb": oauth_cb,
    }
    return AdminClient(settings)


def describe(admin: AdminClient, wanted: Sequence[TopicSpec]) -> dict[str, TopicState]:
    """The wanted topics that exist: partitions, replication and the configs asked for."""
    metadata = admin.list_topics(timeout=TIMEOUT_S)
    present = [t for t in wanted if t.name in metadata.topics]
    configs: dict[str, dict[str, str]] = {t.name: {} for t in present}
    asked = [ConfigResource(ResourceType.TOPIC, t.name) for t in present if t.config]
    if asked:
        for resource, future in admin.describe_configs(asked, request_timeout=TIMEOUT_S).items():
            entries = future.result(timeout=TIMEOUT_S)
            configs[resource.name] = {k: str(e.value) for k, e in entries.items()}
    states = {}
    for t in present:
        partitions = metadata.topics[t.name].partitions
        replicas = len(next(iter(partitions.values())).replicas) if partitions else 0
        states[t.name] = TopicState(len(partitions), replicas, configs[t.name])
    return states


def apply(admin: AdminClient, todo: Plan) -> None:
    """Carry out a plan; raises on the first request the cluster refuses."""
    logger.info(
        "topics: creating %s, growing %s, setting %s",
        [t.name for t in todo.create],
        todo.grow,
        todo.alter,
    )
    futures: list[Any] = []
    if todo.create:
        new = [
            NewTopic(t.name, t.partitions, t.replication, config=dict(t.config))
            for t in todo.create
        ]
        futures += admin.create_topics(new, request_timeout=TIMEOUT_S).values()
    if todo.grow:
        grown = [NewPartitions(name, count) for name, count in todo.grow.items()]
        futures += admin.create_partitions(grown, request_timeout=TIMEOUT_S).values()
    if todo.alter:
        resources = [
            ConfigResource(
                ResourceType.TOPIC,
                name,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in settings.items()
                ],
            )
            for name, settings in todo.alter.items()
        ]
        futures += admin.incremental_alter_configs(resources, request_timeout=TIMEOUT_S).values()
    for future in futures:
        future.result(timeout=TIMEOUT_S)


def ensure_topics(admin: AdminClient, wanted: Sequence[TopicSpec]) -> Plan:
    todo = plan(describe(admin, wanted), wanted)
    if not todo.empty:
        apply(admin, todo)
    return todo


def handler(event: Mapping[str, Any], _context: Any) -> dict[str, str]:
    """Provider on-event handler: raise to fail the resource."""
    if event["RequestType"] in ("Create", "Update"):
        props = event["ResourceProperties"]
        admin = admin_client(props["BootstrapServers"], props["Region"])
        ensure_topics(admin, parse_topics(props["Topics"]))
    return {"PhysicalResourceId": PHYSICAL_ID}
