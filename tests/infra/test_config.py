import json
from pathlib import Path

import pytest

from infra.config import DEFAULTS, PREFIX, ConfigError, InfraConfig

CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"


def test_cdk_json_context_repeats_every_default() -> None:
    context = json.loads(CDK_JSON.read_text())["context"]
    ours = {k[len(PREFIX) :]: v for k, v in context.items() if k.startswith(PREFIX)}
    assert ours == {key: default for key, (default, _) in DEFAULTS.items()}


def test_cdk_json_turns_telemetry_off_and_pins_the_launch_template_flag() -> None:
    config = json.loads(CDK_JSON.read_text())
    assert config["context"]["cli-telemetry"] is False
    assert config["versionReporting"] is False
    flag = "@aws-cdk/aws-autoscaling:generateLaunchTemplateInsteadOfLaunchConfig"
    assert config["context"][flag] is True


def test_defaults_give_the_documented_deployment() -> None:
    config = InfraConfig.from_context({})
    assert config.instance_type == "c5.2xlarge"
    assert config.region == "ap-northeast-2"
    assert config.cpu_alarm_threshold == 85
    assert list(config.grpc_ports) == [50051 + i for i in range(6)]


def test_command_line_strings_are_parsed() -> None:
    config = InfraConfig.from_context(
        {
            "hotshard:warmPoolSize": "3",
            "hotshard:nag": "false",
            "hotshard:autoList": "true",
            "hotshard:availabilityZones": "ap-northeast-2a,ap-northeast-2c",
            "hotshard:mskBrokerCount": "4",
            "hotshard:httpThrottleRate": "100",
        }
    )
    assert config.warm_pool_size == 3
    assert config.http_throttle_rate == 100
    assert config.nag is False
    assert config.auto_list is True
    assert config.availability_zones == ("ap-northeast-2a", "ap-northeast-2c")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("warmPoolSiz", 1, "unknown context keys"),
        ("mskBrokerCount", 4, "multiple of 3"),
        ("cpuAlarmThreshold", 120, "outside"),
        ("region", "seoul", "not a region"),
        ("availabilityZones", ["us-east-1a", "us-east-1b"], "not in ap-northeast-2"),
        ("fleetMinSize", "x", "must be an integer"),
        ("logRetentionDays", 10, "not one of"),
        ("account", "12345", "12-digit"),
        ("mskMinInsyncReplicas", 3, "must be below hotshard:topicReplication"),
        ("mskMinInsyncReplicas", 1, "outside"),
        ("sparePartitionsPerWarmEngine", 0, "outside"),
        ("replayMarginHours", 0, "outside"),
        ("snapshotRetentionDays", 1, "must outlast the orders retention"),
        ("webSocketThrottleBurst", 0, "outside"),
    ],
)
def test_bad_context_is_refused_naming_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        InfraConfig.from_context({PREFIX + key: value})


def test_spare_partitions_come_after_the_regular_ones() -> None:
    config = InfraConfig.from_context({})
    assert config.regular_partitions == range(12)
    # (fleetMaxSize 6 - fleetMinSize 2 + warmPoolSize 2) instances x 6 processes x 1 each.
    assert config.spare_engines == 36
    assert config.spare_partitions == range(12, 48)
    assert config.spare_partition_list == "12-47"
    assert config.topic_partitions == 48


def test_orders_retention_covers_three_snapshot_intervals_and_the_margin() -> None:
    config = InfraConfig.from_context(
        {"hotshard:snapshotIntervalSeconds": 30, "hotshard:replayMarginHours": 6}
    )
    assert config.orders_retention_ms == (3 * 30 + 6 * 3600) * 1000
    assert InfraConfig.from_context({}).orders_retention_ms == 86_430_000


def test_a_fleet_without_room_beyond_its_minimum_is_refused() -> None:
    with pytest.raises(ConfigError, match="no migration target"):
        InfraConfig.from_context({"hotshard:fleetMaxSize": 2, "hotshard:warmPoolSize": 0})


def test_partitions_per_broker_stay_within_what_msk_recommends() -> None:
    # 48 partitions x 6 topics x 3 replicas / 3 brokers = 288 <= 300 on kafka.t3.small ...
    cheap = {"hotshard:mskBrokerType": "kafka.t3.small"}
    assert InfraConfig.from_context(cheap).topic_partitions == 48
    # ... two spare partitions per engine would put 504 on each.
    with pytest.raises(ConfigError, match="MSK recommends at most 300"):
        InfraConfig.from_context({**cheap, "hotshard:sparePartitionsPerWarmEngine": 2})
    # Unknown broker types are not checked.
    many = {"hotshard:sparePartitionsPerWarmEngine": 20, "hotshard:mskBrokerType": "kafka.x"}
    assert InfraConfig.from_context(many).topic_partitions == 12 + 36 * 20


def test_deploy_md_lists_every_knob_with_its_default_and_meaning() -> None:
    text = (CDK_JSON.parent / "docs" / "DEPLOY.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `hotshard:")]
    documented = {}
    for row in rows:
        key, default, meaning = (cell.strip() for cell in row.strip("|").split("|"))
        documented[key.strip("`")[len(PREFIX) :]] = (json.loads(default.strip("`")), meaning)
    assert documented == dict(DEFAULTS)
