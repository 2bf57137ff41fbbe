import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from engine.service.settings import EngineSettings, parse_partitions
from engine.service.store import S3_PREFIX
from hotshard import names
from hotshard.kafka import AUTH_MSK_IAM
from infra import engine_host
from infra.config import InfraConfig
from infra.fleet import (
    CW_AGENT_CONFIG,
    CW_AGENT_LOG_ACTIONS,
    ENGINE_LOG_GROUP,
    ENGINE_PATHS,
    GROUP_DESCRIBE_ACTIONS,
    HOST_ENTRY,
    USER_DATA_LIMIT,
    engine_install_script,
    partition_groups,
    spare_groups,
)
from infra.storage import SNAPSHOT_PREFIX
from tests.infra.iam import actions_of, as_list, role_statements


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
    # MaxGroupPreparedCapacity = fleetMinSize + warmPoolSize: the pool holds warmPoolSize
    # instances at any desired capacity (without it, fleetMaxSize - desired: 4).
    fleet.has_resource_properties(
        "AWS::AutoScaling::WarmPool",
        {
            "PoolState": "Stopped",
            "MinSize": 2,
            "MaxGroupPreparedCapacity": 4,
            "InstanceReusePolicy": {"ReuseOnScaleIn": True},
        },
    )
    fleet.has_resource_properties(
        "AWS::AutoScaling::LifecycleHook",
        {
            "LifecycleHookName": "engine-ready",
            "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
            "DefaultResult": "ABANDON",
        },
    )


def _user_data_lines(fleet: Template) -> list[str]:
    """The user data's lines, with CloudFormation tokens shown as <token>."""
    join = _launch_data(fleet)["UserData"]["Fn::Base64"]["Fn::Join"]
    text = "".join(part if isinstance(part, str) else "<token>" for part in join[1])
    return text.splitlines()


def test_user_data_runs_one_engine_unit_per_grpc_port(fleet: Template) -> None:
    lines = _user_data_lines(fleet)
    assert "Environment=GRPC_PORT=%i" in lines
    regular = " ".join(str(p) for p in range(12))
    spare = " ".join(str(p) for p in range(12, 48))
    start = (
        "/opt/hotshard/venv/bin/python /opt/hotshard/app/infra/engine_host.py start"
        f" --base-port 50051 --asg hotshard-engines --regular {regular} --spare {spare}"
    )
    assert f"ExecStart={start}" in lines
    assert "StartLimitIntervalSec=0" in lines
    assert (
        "for port in 50051 50052 50053 50054 50055 50056; do "
        "systemctl enable --now engine@$port.service; done"
    ) in lines
    assert "complete-lifecycle-action" in "\n".join(lines)
    assert len("\n".join(lines).encode()) < USER_DATA_LIMIT - 2048  # room for the tokens


def test_the_engine_asset_ships_the_host_script() -> None:
    # engine_host.py is not inlined (user data is 16 KiB at most): the asset carries it.
    assert HOST_ENTRY in ENGINE_PATHS
    assert Path(HOST_ENTRY).name == "engine_host.py"


def test_the_execstart_arguments_parse_into_the_layout() -> None:
    config = InfraConfig.from_context({})
    argv = ["start", "--base-port", "50051", "--asg", "g", "--regular", *partition_groups(config)]
    args = engine_host.parser().parse_args([*argv, "--spare", *spare_groups(config)])
    regular = [p for g in args.regular for p in parse_partitions(g)]
    spare = [p for g in args.spare for p in parse_partitions(g)]
    assert regular == list(config.regular_partitions)
    assert spare == list(config.spare_partitions)


def test_engine_environment_matches_the_engine_settings(fleet: Template) -> None:
    lines = _user_data_lines(fleet)
    env = lines[lines.index("cat > /etc/hotshard/engine.env <<'ENV'") + 1 :]
    env = env[: env.index("ENV")]
    values = dict(line.split("=", 1) for line in env)
    assert values[names.ENV_KAFKA_AUTH] == AUTH_MSK_IAM
    assert values[names.ENV_REDIS_TLS] == "true"
    assert values[names.ENV_SNAPSHOT_BUCKET] == "hotshard-snapshots-123456789012-ap-northeast-2"
    assert values[names.ENV_SPARE_PARTITIONS] == "12-47"
    # engine_host.py sets both per process: <EC2 instance id>-<grpc port>, and the partitions.
    assert names.ENV_ENGINE_INSTANCE_ID not in values
    assert names.ENV_ENGINE_PARTITIONS not in values
    literal = {k: v for k, v in values.items() if "<token>" not in v}  # brokers, Redis host/port
    settings = EngineSettings.from_env({**literal, names.ENV_GRPC_PORT: "50052"})
    assert settings.kafka_auth == AUTH_MSK_IAM
    assert settings.redis_tls is True
    assert settings.snapshot_bucket == values[names.ENV_SNAPSHOT_BUCKET]
    # The interval the orders retention is derived from is the one the engines run with.
    assert settings.snapshot_interval_s == InfraConfig.from_context({}).snapshot_interval_s


def test_ready_check_calls_grpc_health_not_tcp(fleet: Template) -> None:
    lines = _user_data_lines(fleet)
    ports = "50051 50052 50053 50054 50055 50056"
    assert (
        "/opt/hotshard/venv/bin/python /opt/hotshard/app/infra/engine_host.py ready"
        f" {ports} || exit 1"
    ) in lines
    assert not any("/dev/tcp" in line for line in lines)


def test_engine_role_is_least_privilege(fleet: Template) -> None:
    stmts = role_statements(fleet, "EngineRole")
    assert not any(a.endswith("*") for a in actions_of(stmts))
    (metrics,) = [s for s in stmts if s["Action"] == "cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "hotshard"}}
    (connect,) = [s for s in stmts if "kafka-cluster:Connect" in s["Action"]]
    assert "Fn::ImportValue" in json.dumps(connect["Resource"])  # the cluster ARN only
    (snapshots,) = [s for s in stmts if "s3:PutObject" in s["Action"]]
    assert json.dumps(snapshots["Resource"]).endswith('/snapshots/*"]]}')
    # The engine writes s3://<bucket>/snapshots/<symbol>/... (engine.service.store).
    assert S3_PREFIX == SNAPSHOT_PREFIX
    (listing,) = [s for s in stmts if s["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["snapshots/*"]}}
    (code,) = [s for s in stmts if s["Action"] == "s3:GetObject"]
    assert "*" not in json.dumps(code["Resource"])
    # engine_host.py asks Auto Scaling which instances are still in the group (read-only).
    (describe,) = [s for s in stmts if "autoscaling:DescribeWarmPool" in as_list(s["Action"])]
    assert sorted(as_list(describe["Action"])) == sorted(GROUP_DESCRIBE_ACTIONS)


def _engine_log_group_id(fleet: Template) -> str:
    groups = fleet.find_resources(
        "AWS::Logs::LogGroup", {"Properties": {"LogGroupName": ENGINE_LOG_GROUP}}
    )
    (logical_id,) = groups
    return logical_id


def test_engine_log_group_has_a_retention(fleet: Template) -> None:
    fleet.has_resource_properties(
        "AWS::Logs::LogGroup", {"LogGroupName": ENGINE_LOG_GROUP, "RetentionInDays": 30}
    )


def test_engine_role_may_only_write_streams_of_the_engine_log_group(fleet: Template) -> None:
    stmts = role_statements(fleet, "EngineRole")
    logs = [s for s in stmts if any(a.startswith("logs:") for a in as_list(s["Action"]))]
    (statement,) = logs
    assert sorted(as_list(statement["Action"])) == sorted(CW_AGENT_LOG_ACTIONS)
    # The group's ARN attribute is arn:...:log-group:/hotshard/engines:* (its streams).
    assert statement["Resource"] == {"Fn::GetAtt": [_engine_log_group_id(fleet), "Arn"]}
    assert "Condition" not in statement


def test_user_data_ships_engine_stdout_with_the_cloudwatch_agent(fleet: Template) -> None:
    lines = _user_data_lines(fleet)
    (install,) = [line for line in lines if line.startswith("dnf install")]
    assert "amazon-cloudwatch-agent" in install.split()  # AL2023's own package repository
    assert "logrotate" in install.split()
    # stdout (EMF metric lines) and stderr (JSON logs) go to files per unit.
    unit = lines[lines.index("cat > /etc/systemd/system/engine@.service <<'UNIT'") + 1 :]
    unit = unit[: unit.index("UNIT")]
    assert "StandardOutput=append:/var/log/hotshard/engine-%i.log" in unit
    assert "StandardError=append:/var/log/hotshard/engine-%i.logs.log" in unit
    assert "Environment=PYTHONUNBUFFERED=1" in unit  # a line reaches the file when printed
    assert "mkdir -p /opt/hotshard/app /etc/hotshard /var/log/hotshard" in lines
    # The agent reads exactly those files, one stream per port, into the stack's group.
    body = lines[lines.index(f"cat > {CW_AGENT_CONFIG} <<'JSON'") + 1 :]
    agent = json.loads("\n".join(body[: body.index("JSON")]))
    collect = agent["logs"]["logs_collected"]["files"]["collect_list"]
    ports = range(50051, 50057)
    assert [c["file_path"] for c in collect] == [
        *(f"/var/log/hotshard/engine-{p}.log" for p in ports),
        *(f"/var/log/hotshard/engine-{p}.logs.log" for p in ports),
    ]
    assert {c["log_group_name"] for c in collect} == {ENGINE_LOG_GROUP}
    assert [c["log_stream_name"] for c in collect] == [
        *(f"{{instance_id}}-{p}" for p in ports),
        *(f"{{instance_id}}-{p}-logs" for p in ports),
    ]
    assert "retention_in_days" not in json.dumps(agent)  # the stack owns the retention
    # fetch-config translates the file, enables the agent and (-s) starts it.
    start = (
        "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config"
        f" -m ec2 -s -c file:{CW_AGENT_CONFIG}"
    )
    assert start in lines
    # logrotate keeps the files bounded without reopening them (append mode).
    rotate = lines[lines.index("cat > /etc/logrotate.d/hotshard <<'ROTATE'") + 1 :]
    rotate = rotate[: rotate.index("ROTATE")]
    assert rotate[0] == "/var/log/hotshard/engine-*.log {"
    assert "copytruncate" in rotate
    assert "systemctl enable --now logrotate.timer" in lines


def test_install_script_writes_the_engine_environment() -> None:
    config = InfraConfig.from_context({"hotshard:engineProcessesPerInstance": 2})
    lines = engine_install_script(
        config=config, zip_path="/z.zip", environment={"REDIS_HOST": "r"}, region="ap-northeast-2"
    )
    assert "REDIS_HOST=r" in lines
    assert "for port in 50051 50052; do systemctl enable --now engine@$port.service; done" in lines


@pytest.mark.parametrize(
    ("partitions", "min_size", "groups"),
    [
        (12, 2, [str(p) for p in range(12)]),
        (24, 2, [f"{p}-{p + 1}" for p in range(0, 24, 2)]),
        (12, 1, [f"{p}-{p + 1}" for p in range(0, 12, 2)]),
        (13, 2, [f"{p}-{p + 1}" for p in range(0, 12, 2)] + ["12"]),
        (4, 2, ["0", "1", "2", "3"]),
    ],
)
def test_partition_groups_cover_every_regular_partition_once(
    partitions: int, min_size: int, groups: list[str]
) -> None:
    config = InfraConfig.from_context(
        {"hotshard:ordersPartitions": partitions, "hotshard:fleetMinSize": min_size}
    )
    assert partition_groups(config) == groups
    covered = [p for g in groups for p in parse_partitions(g)]
    assert covered == list(range(partitions))


@pytest.mark.parametrize(
    ("context", "first", "count", "size"),
    [
        ({}, 12, 36, 1),  # (6 - 2 + 2) instances x 6 processes, one partition each
        ({"hotshard:sparePartitionsPerWarmEngine": 2}, 12, 36, 2),
        ({"hotshard:fleetMaxSize": 2, "hotshard:warmPoolSize": 1}, 12, 6, 1),
        ({"hotshard:ordersPartitions": 24, "hotshard:fleetMinSize": 6}, 24, 12, 1),
    ],
)
def test_every_engine_beyond_the_minimum_fleet_has_its_spare_group(
    context: dict[str, int], first: int, count: int, size: int
) -> None:
    config = InfraConfig.from_context(
        {f"hotshard:{k}" if ":" not in k else k: v for k, v in context.items()}
    )
    groups = [parse_partitions(g) for g in spare_groups(config)]
    assert len(groups) == count == config.spare_engines
    assert {len(g) for g in groups} == {size}
    covered = [p for g in groups for p in g]
    assert covered == list(range(first, first + count * size)) == list(config.spare_partitions)
    assert config.topic_partitions == first + count * size
