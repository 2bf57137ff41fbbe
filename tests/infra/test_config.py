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
            "hotshard:mskBrokerCount": "2",
            "hotshard:topicReplication": "2",
        }
    )
    assert config.warm_pool_size == 3
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
    ],
)
def test_bad_context_is_refused_naming_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        InfraConfig.from_context({PREFIX + key: value})
