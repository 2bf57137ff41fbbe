"""CloudFormation custom resource (Custom::KafkaTopics): create the hotshard topics on MSK.

Create/Update: connect with IAM auth (SASL OAUTHBEARER over TLS, token from
aws-msk-iam-sasl-signer-python), create the topics that are missing and add partitions to
those that have fewer than asked. Partitions are never removed (Kafka cannot) and Delete
keeps the topics: they go with the cluster. The result goes to CloudFormation's pre-signed
URL, so a failure shows in the stack events instead of a one-hour timeout.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aws_msk_iam_sasl_signer import MSKAuthTokenProvider  # type: ignore[import-untyped]
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    NewPartitions,
    NewTopic,
)

logger = logging.getLogger()
logger.setLevel(logging.INFO)

PHYSICAL_ID = "hotshard-kafka-topics"
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int


def parse_topics(raw: Sequence[Mapping[str, str]]) -> list[TopicSpec]:
    """Topic specs from the resource properties (CloudFormation passes numbers as strings)."""
    return [TopicSpec(t["Name"], int(t["Partitions"]), int(t["ReplicationFactor"])) for t in raw]


def plan(
    existing: Mapping[str, int], wanted: Sequence[TopicSpec]
) -> tuple[list[TopicSpec], dict[str, int]]:
    """(topics to create, {topic: new partition count}) given {topic: partitions} that exist."""
    create = [t for t in wanted if t.name not in existing]
    grow = {
        t.name: t.partitions
        for t in wanted
        if t.name in existing and existing[t.name] < t.partitions
    }
    return create, grow


def ensure_topics(bootstrap: str, region: str, wanted: Sequence[TopicSpec]) -> None:
    def oauth_cb(_config: str) -> tuple[str, float]:
        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return token, expiry_ms / 1000  # the signer speaks ms, librdkafka wants s

    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "OAUTHBEARER",
        "oauth_cb": oauth_cb,
    }
    admin = AdminClient(settings)
    metadata = admin.list_topics(timeout=TIMEOUT_S)
    existing = {name: len(topic.partitions) for name, topic in metadata.topics.items()}
    create, grow = plan(existing, wanted)
    logger.info("topics: creating %s, growing %s", [t.name for t in create], grow)
    futures = {}
    if create:
        futures.update(
            admin.create_topics(
                [NewTopic(t.name, t.partitions, t.replication) for t in create],
                request_timeout=TIMEOUT_S,
            )
        )
    if grow:
        futures.update(
            admin.create_partitions(
                [NewPartitions(name, count) for name, count in grow.items()],
                request_timeout=TIMEOUT_S,
            )
        )
    for future in futures.values():
        future.result(timeout=TIMEOUT_S)


def handler(event: dict[str, Any], context: Any) -> None:
    status, reason = "SUCCESS", "ok"
    try:
        if event["RequestType"] in ("Create", "Update"):
            props = event["ResourceProperties"]
            ensure_topics(props["BootstrapServers"], props["Region"], parse_topics(props["Topics"]))
    except Exception as exc:  # every failure must reach CloudFormation
        logger.exception("topic bootstrap failed")
        status, reason = "FAILED", f"{type(exc).__name__}: {exc}"[:500]
    body = response_body(event, status=status, reason=reason, log_stream=context.log_stream_name)
    request = urllib.request.Request(
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""}
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S):
        pass


def response_body(event: Mapping[str, Any], *, status: str, reason: str, log_stream: str) -> bytes:
    return json.dumps(
        {
            "Status": status,
            "Reason": f"{reason} (log stream {log_stream})",
            "PhysicalResourceId": PHYSICAL_ID,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
        }
    ).encode()
