import json
from collections.abc import Iterator
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from hotshard import names
from hotshard.local.services import broker as broker_service
from infra.config import InfraConfig
from infra.custom_resources.kafka_topics import handler
from infra.custom_resources.kafka_topics.handler import (
    Plan,
    TopicMismatchError,
    TopicSpec,
    TopicState,
    ensure_topics,
    parse_topics,
    plan,
)
from infra.messaging import server_properties
from tests.infra.iam import actions_of, role_statements


def test_msk_uses_iam_auth_and_tls_only(templates: dict[str, Template]) -> None:
    templates["HotshardMessaging"].has_resource_properties(
        "AWS::MSK::Cluster",
        {
            "ClusterName": "hotshard",
            "NumberOfBrokerNodes": 3,
            "BrokerNodeGroupInfo": {
                "InstanceType": "kafka.m5.large",
                "ClientSubnets": [{"Fn::ImportValue": _any_str()}] * 3,
                "SecurityGroups": [{"Fn::ImportValue": _any_str()}],
                "StorageInfo": {"EBSStorageInfo": {"VolumeSize": 100}},
            },
            "ClientAuthentication": {
                "Sasl": {"Iam": {"Enabled": True}},
                "Unauthenticated": {"Enabled": False},
            },
            "EncryptionInfo": {"EncryptionInTransit": {"ClientBroker": "TLS", "InCluster": True}},
        },
    )


def _any_str() -> Any:
    return Match.string_like_regexp(".+")


def test_the_cluster_runs_with_the_durability_configuration(
    templates: dict[str, Template],
) -> None:
    messaging = templates["HotshardMessaging"]
    (logical_id, configuration), *rest = messaging.find_resources("AWS::MSK::Configuration").items()
    assert not rest
    settings = dict(
        line.split("=", 1) for line in configuration["Properties"]["ServerProperties"].splitlines()
    )
    assert settings["min.insync.replicas"] == "2"
    assert settings["unclean.leader.election.enable"] == "false"
    assert settings["default.replication.factor"] == "3"
    assert settings["auto.create.topics.enable"] == "false"
    assert configuration["Properties"]["KafkaVersionsList"] == ["3.6.0"]
    messaging.has_resource_properties(
        "AWS::MSK::Cluster",
        {
            "NumberOfBrokerNodes": 3,
            "ConfigurationInfo": {
                "Arn": {"Fn::GetAtt": [logical_id, "Arn"]},
                "Revision": {"Fn::GetAtt": [logical_id, "LatestRevision.Revision"]},
            },
        },
    )


def test_min_insync_replicas_follows_the_config() -> None:
    config = InfraConfig.from_context(
        {
            "hotshard:topicReplication": 4,
            "hotshard:mskBrokerCount": 6,
            "hotshard:mskMinInsyncReplicas": 3,
        }
    )
    assert "min.insync.replicas=3\n" in server_properties(config)
    assert "default.replication.factor=4\n" in server_properties(config)


def _topics(templates: dict[str, Template]) -> dict[str, Any]:
    (topics,) = templates["HotshardMessaging"].find_resources("Custom::KafkaTopics").values()
    props: dict[str, Any] = topics["Properties"]
    return props


def test_topics_resource_keeps_every_topic_replicated_and_partitioned(
    templates: dict[str, Template],
) -> None:
    props = _topics(templates)
    specs = props["Topics"]
    assert [t["Name"] for t in specs] == list(names.TOPICS)
    # 12 regular + 36 spare partitions, on every topic (events mirror orders' numbers).
    assert {t["Partitions"] for t in specs} == {"48"}
    assert {t["ReplicationFactor"] for t in specs} == {"3"}
    assert "BootstrapBrokerStringSaslIam" in json.dumps(props["BootstrapServers"])


def test_orders_are_kept_long_enough_to_replay_from_a_checkpoint(
    templates: dict[str, Template],
) -> None:
    config = InfraConfig.from_context({})
    retention = {t["Name"]: t["Config"].get("retention.ms") for t in _topics(templates)["Topics"]}
    replayed = {names.TOPIC_ORDERS, names.TOPIC_PENDING_ORDERS}
    assert {t for t, v in retention.items() if v} == replayed
    for topic in replayed:
        kept_ms = int(retention[topic])
        assert kept_ms == config.orders_retention_ms
        # Three snapshot intervals (the oldest checkpoint a running engine leaves) plus
        # the margin an engine may be down, which outlasts a whole migration (1 h).
        assert kept_ms >= 3 * config.snapshot_interval_s * 1000 + 3_600_000
        assert kept_ms < config.snapshot_retention_days * 86_400_000  # snapshots outlive it


def test_topics_resource_goes_through_the_cdk_provider(templates: dict[str, Template]) -> None:
    messaging = templates["HotshardMessaging"]
    token = _topics(templates)["ServiceToken"]
    (provider_id, _attribute) = token["Fn::GetAtt"]
    functions = messaging.find_resources("AWS::Lambda::Function")
    framework = functions[provider_id]["Properties"]
    assert framework["Handler"] == "framework.onEvent"  # aws-cdk-lib's provider framework
    (on_event, _arn) = framework["Environment"]["Variables"]["USER_ON_EVENT_FUNCTION_ARN"][
        "Fn::GetAtt"
    ]
    assert (
        functions[on_event]["Properties"]["Handler"]
        == "infra.custom_resources.kafka_topics.handler.handler"
    )
    actions = actions_of(role_statements(messaging, "TopicsHandler"))
    assert "kafka-cluster:AlterTopicDynamicConfiguration" in actions
    assert "kafka-cluster:WriteData" not in actions


def test_bootstrap_brokers_are_read_with_a_scoped_sdk_call(templates: dict[str, Template]) -> None:
    template = templates["HotshardMessaging"]
    (call,) = template.find_resources("Custom::AWS").values()
    assert "getBootstrapBrokers" in json.dumps(call["Properties"]["Create"])
    policies = template.find_resources("AWS::IAM::Policy")
    statements = [
        s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    (sdk,) = [s for s in statements if s["Action"] == "kafka:GetBootstrapBrokers"]
    assert sdk["Resource"] == {"Fn::GetAtt": ["Cluster", "Arn"]}


def test_topic_plan_creates_missing_and_grows_short_topics() -> None:
    wanted = [TopicSpec("orders", 24, 3), TopicSpec("fills", 12, 3), TopicSpec("depth", 12, 3)]
    todo = plan({"orders": TopicState(12, 3), "fills": TopicState(12, 3)}, wanted)
    assert todo == Plan(create=[TopicSpec("depth", 12, 3)], grow={"orders": 24}, alter={})


def test_topic_plan_never_shrinks() -> None:
    assert plan({"orders": TopicState(48, 3)}, [TopicSpec("orders", 12, 3)]).empty


def test_topic_plan_sets_only_the_configs_that_differ() -> None:
    wanted = [TopicSpec("orders", 12, 3, {"retention.ms": "100", "cleanup.policy": "delete"})]
    have = {"orders": TopicState(12, 3, {"retention.ms": "604800000", "cleanup.policy": "delete"})}
    assert plan(have, wanted).alter == {"orders": {"retention.ms": "100"}}


def test_topic_plan_refuses_a_different_replication_factor() -> None:
    with pytest.raises(TopicMismatchError, match="orders has replication factor 1, wanted 3"):
        plan({"orders": TopicState(12, 1)}, [TopicSpec("orders", 12, 3)])


def test_topic_properties_arrive_as_strings() -> None:
    raw: list[dict[str, Any]] = [
        {"Name": "orders", "Partitions": "12", "ReplicationFactor": "3"},
        {"Name": "fills", "Partitions": "12", "ReplicationFactor": "3", "Config": {"a": "1"}},
    ]
    assert parse_topics(raw) == [TopicSpec("orders", 12, 3), TopicSpec("fills", 12, 3, {"a": "1"})]


def test_the_handler_reads_what_the_stack_writes(templates: dict[str, Template]) -> None:
    specs = parse_topics(_topics(templates)["Topics"])
    assert [t.name for t in specs] == list(names.TOPICS)
    config = InfraConfig.from_context({})
    orders = specs[0]
    assert (orders.partitions, orders.replication) == (config.topic_partitions, 3)
    assert orders.config == {"retention.ms": str(config.orders_retention_ms)}


def test_delete_keeps_the_topics_and_connects_to_nothing() -> None:
    # No broker behind these properties: a Delete must not try to reach one.
    event = {"RequestType": "Delete", "ResourceProperties": {"BootstrapServers": "nowhere:1"}}
    assert handler.handler(event, None) == {"PhysicalResourceId": handler.PHYSICAL_ID}


@pytest.fixture(scope="module")
def broker() -> Iterator[broker_service.Broker]:
    with broker_service.tansu() as b:
        yield b


@pytest.mark.integration
def test_topics_are_created_configured_and_left_alone_on_a_real_broker(
    broker: broker_service.Broker,
) -> None:
    # Tansu cannot add partitions (shared/notes/local-kafka.md); everything else is real.
    admin = broker.admin()
    wanted = [TopicSpec("orders", 4, 1, {"retention.ms": "86430000"}), TopicSpec("fills", 4, 1)]
    assert ensure_topics(admin, wanted).create == wanted
    assert handler.describe(admin, wanted) == {
        "orders": TopicState(4, 1, {"retention.ms": "86430000"}),
        "fills": TopicState(4, 1, {}),
    }
    assert ensure_topics(admin, wanted).empty  # an Update with nothing changed
    longer = [TopicSpec("orders", 4, 1, {"retention.ms": "172830000"})]
    assert ensure_topics(admin, longer).alter == {"orders": {"retention.ms": "172830000"}}
    assert handler.describe(admin, longer)["orders"].config == {"retention.ms": "172830000"}
    with pytest.raises(TopicMismatchError):
        ensure_topics(admin, [TopicSpec("fills", 4, 3)])
