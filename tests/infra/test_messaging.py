import json
from typing import Any

from aws_cdk.assertions import Match, Template

from hotshard import names
from infra.custom_resources.kafka_topics.handler import (
    TopicSpec,
    parse_topics,
    plan,
    response_body,
)


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


def test_topics_resource_creates_every_topic(templates: dict[str, Template]) -> None:
    (topics,) = templates["HotshardMessaging"].find_resources("Custom::KafkaTopics").values()
    specs = topics["Properties"]["Topics"]
    assert [t["Name"] for t in specs] == list(names.TOPICS)
    assert {t["Partitions"] for t in specs} == {"12"}
    assert {t["ReplicationFactor"] for t in specs} == {"3"}
    bootstrap = json.dumps(topics["Properties"]["BootstrapServers"])
    assert "BootstrapBrokerStringSaslIam" in bootstrap


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
    create, grow = plan({"orders": 12, "fills": 12}, wanted)
    assert create == [TopicSpec("depth", 12, 3)]
    assert grow == {"orders": 24}


def test_topic_plan_never_shrinks() -> None:
    assert plan({"orders": 48}, [TopicSpec("orders", 12, 3)]) == ([], {})


def test_topic_properties_arrive_as_strings() -> None:
    raw = [{"Name": "orders", "Partitions": "12", "ReplicationFactor": "3"}]
    assert parse_topics(raw) == [TopicSpec("orders", 12, 3)]


def test_response_carries_cloudformation_ids() -> None:
    event = {"StackId": "s", "RequestId": "r", "LogicalResourceId": "Topics"}
    body = json.loads(response_body(event, status="FAILED", reason="boom", log_stream="ls"))
    assert body["Status"] == "FAILED"
    assert body["Reason"].startswith("boom")
    assert (body["StackId"], body["RequestId"], body["LogicalResourceId"]) == ("s", "r", "Topics")
