import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from hotshard import names
from infra.config import InfraConfig
from infra.fleet import engine_install_script
from tests.infra.iam import actions_of, role_statements


@pytest.fixture(scope="module")
def fleet(templates: dict[str, Template]) -> Template:
    return templates["HotshardFleet"]


def _launch_data(fleet: Template) -> dict[str, Any]:
    (template,) = fleet.find_resources("AWS::EC2::LaunchTemplate").values()
    data: dict[str, Any] = template["Properties"]["LaunchTemplateData"]
    return data


def test_launch_template_is_c5_2xlarge_with_imdsv2_and_encrypted_ebs(fleet: Template) -> None:
    data = _launch_data(fleet)
    assert data["InstanceType"] == "c5.2xlarge"
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    (disk,) = data["BlockDeviceMappings"]
    assert disk["Ebs"]["Encrypted"] is True
    assert disk["Ebs"]["VolumeType"] == "gp3"
    assert data["Monitoring"] == {"Enabled": True}


def test_asg_has_a_stopped_warm_pool_and_a_launch_hook(fleet: Template) -> None:
    fleet.has_resource_properties(
        "AWS::AutoScaling::AutoScalingGroup",
        {"AutoScalingGroupName": "hotshard-engines", "MinSize": "2", "MaxSize": "6"},
    )
    fleet.has_resource_properties(
        "AWS::AutoScaling::WarmPool",
        {"PoolState": "Stopped", "MinSize": 2, "InstanceReusePolicy": {"ReuseOnScaleIn": True}},
    )
    fleet.has_resource_properties(
        "AWS::AutoScaling::LifecycleHook",
        {
            "LifecycleHookName": "engine-ready",
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
            "DefaultResult": "ABANDON",
        },
    )


def test_user_data_runs_one_engine_unit_per_grpc_port(fleet: Template) -> None:
    user_data = json.dumps(_launch_data(fleet)["UserData"])
    assert "python -m engine" in user_data
    assert "Environment=GRPC_PORT=%i" in user_data
    assert "for port in 50051 50052 50053 50054 50055 50056" in user_data
    for key in (names.ENV_KAFKA_BROKERS, names.ENV_REDIS_HOST, names.ENV_REDIS_PORT):
        assert f"{key}=" in user_data
    assert "complete-lifecycle-action" in user_data


def test_engine_role_is_least_privilege(fleet: Template) -> None:
    stmts = role_statements(fleet, "EngineRole")
    assert not any(a.endswith("*") for a in actions_of(stmts))
    (metrics,) = [s for s in stmts if s["Action"] == "cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "hotshard"}}
    (connect,) = [s for s in stmts if "kafka-cluster:Connect" in s["Action"]]
    assert "Fn::ImportValue" in json.dumps(connect["Resource"])  # the cluster ARN only
    (snapshots,) = [s for s in stmts if "s3:PutObject" in s["Action"]]
    assert json.dumps(snapshots["Resource"]).endswith('/snapshots/*"]]}')
    (code,) = [s for s in stmts if s["Action"] == "s3:GetObject"]
    assert "*" not in json.dumps(code["Resource"])


def test_install_script_writes_the_engine_environment() -> None:
    config = InfraConfig.from_context({"hotshard:engineProcessesPerInstance": 2})
    lines = engine_install_script(
        config=config, zip_path="/z.zip", environment={"REDIS_HOST": "r"}, region="ap-northeast-2"
    )
    assert "REDIS_HOST=r" in lines
    assert "for port in 50051 50052; do systemctl enable --now engine@$port.service; done" in lines
