"""Engine fleet: launch template, Auto Scaling group with a Warm Pool, lifecycle hook, role.

Each instance runs `engineProcessesPerInstance` engine processes (`python -m engine`), one
systemd unit `engine@<grpc port>.service` each, installed from a CDK asset that holds the
repository's `hotshard`, `engine` and `proto` packages with pyproject.toml and
constraints.txt (pinned install), and infra/engine_host.py. `hotshard-ready.service` runs at
every boot and completes the `engine-ready` lifecycle action once every process answers the
gRPC Health call with serving=true, so an instance is ready before it is InService, whether
it comes from the warm pool or not.

Partitions: each unit starts through `infra/engine_host.py start`, which sets
ENGINE_PARTITIONS and ENGINE_INSTANCE_ID (`<EC2 instance id>-<grpc port>`). `orders` has
regular partitions, cut into one group per process of the minimum fleet
(`partition_groups`), and spare ones after them, one group per process that can run beyond
it (`spare_groups`). An in-service process takes a regular group (or its own partitions
back), a warm-pool process a spare group, so an engine taken from the warm pool already
owns a partition with nothing routed to it; see engine_host.py for the rules.

Metrics: the engine writes its metrics as CloudWatch embedded metric format (EMF) JSON lines
on stdout (engine/service/metrics.py). Each unit appends its stdout to
/var/log/hotshard/engine-<grpc port>.log and its stderr (the engine's Powertools JSON logs)
to /var/log/hotshard/engine-<grpc port>.logs.log; the Amazon CloudWatch agent (AL2023 package
`amazon-cloudwatch-agent`) ships each file to the log group `/hotshard/engines`, one stream
per instance, port and kind; CloudWatch Logs extracts the `hotshard` metrics the migration
alarms watch from the EMF events. logrotate keeps the files
small (copytruncate: the unit's file stays open in append mode).
"""

from __future__ import annotations

import json

from aws_cdk import Duration, Environment, Stack
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from hotshard import names
from infra.cache import CacheStack
from infra.config import InfraConfig
from infra.constructs.nag import acknowledge, acknowledge_wildcards
from infra.constructs.python_function import log_group
from infra.constructs.source_bundle import bundling, report_missing
from infra.messaging import MessagingStack
from infra.network import NetworkStack
from infra.storage import StorageStack

ASG_NAME = "hotshard-engines"
LIFECYCLE_HOOK = "engine-ready"
HOST_ENTRY = "infra/engine_host.py"
ENGINE_PATHS = (
    "hotshard",
    "engine",
    "proto",
    "pyproject.toml",
    "constraints.txt",
    "README.md",
    HOST_ENTRY,
)
ENGINE_ENTRY = "engine/__main__.py"
APP_DIR = "/opt/hotshard"
HOST_SCRIPT = f"{APP_DIR}/app/{HOST_ENTRY}"  # shipped in the engine asset, run as a script
USER_DATA_LIMIT = 16 * 1024  # EC2: bytes of user data before base64
ENGINE_LOG_GROUP = "/hotshard/engines"
ENGINE_LOG_DIR = "/var/log/hotshard"
CW_AGENT_DIR = "/opt/aws/amazon-cloudwatch-agent"
CW_AGENT_CONFIG = f"{CW_AGENT_DIR}/etc/hotshard.json"
CW_AGENT_LOG_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams")
GROUP_DESCRIBE_ACTIONS = ("autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeWarmPool")


class FleetStack(Stack):
    """The engine instances: c5.2xlarge by default, IMDSv2, encrypted EBS, warm pool."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        env: Environment,
        network: NetworkStack,
        messaging: MessagingStack,
        cache: CacheStack,
        storage: StorageStack,
    ) -> None:
        super().__init__(scope, construct_id, env=env, description="hotshard engine fleet")
        report_missing(
            self,
            config.source_root,
            [ENGINE_ENTRY, HOST_ENTRY],
            require=config.require_code,
            why="`python -m engine` comes with the engine issues",
        )
        self.asg_name = ASG_NAME
        self.asg_arn = (
            f"arn:{self.partition}:autoscaling:{self.region}:{self.account}:autoScalingGroup:*:"
            f"autoScalingGroupName/{ASG_NAME}"
        )
        self.role = iam.Role(
            self,
            "EngineRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="hotshard engine instances (least privilege)",
        )
        messaging.grant_kafka(
            self.role,
            read=[names.TOPIC_ORDERS, names.TOPIC_PENDING_ORDERS],
            write=[
                names.TOPIC_FILLS,
                names.TOPIC_TRADES,
                names.TOPIC_DEPTH,
                names.TOPIC_ORDER_STATUS,
            ],
            transactions=True,
        )
        storage.grant_snapshots(self.role)
        # The CloudWatch agent ships the engines' stdout (EMF metric lines) here; the group
        # exists before any instance, so the agent needs no logs:CreateLogGroup.
        self.engine_logs = log_group(
            self, "EngineLogs", days=config.log_retention_days, name=ENGINE_LOG_GROUP
        )
        self.engine_logs.grant(self.role, *CW_AGENT_LOG_ACTIONS)
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": names.METRICS_NAMESPACE}},
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "autoscaling:CompleteLifecycleAction",
                    "autoscaling:RecordLifecycleActionHeartbeat",
                ],
                resources=[self.asg_arn],
            )
        )
        # engine_host.py: which instances are still in the group (a partition's home holds
        # only while its instance is).
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=list(GROUP_DESCRIBE_ACTIONS),
                resources=["*"],
            )
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData has no resource-level permissions (the statement is "
            "limited to the hotshard namespace by the cloudwatch:namespace condition), nor "
            "do the read-only autoscaling:DescribeAutoScalingGroups and DescribeWarmPool",
        )
        acknowledge_wildcards(
            self.role,
            [self.asg_arn],
            "the only wildcard is the Auto Scaling group's uuid, unknown before it exists; "
            "the group is named, so the grant covers this one group",
        )

        asset = s3_assets.Asset(
            self,
            "EngineCode",
            path=str(config.source_root),
            bundling=bundling(config.source_root, ENGINE_PATHS),
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[asset.bucket.arn_for_objects(asset.s3_object_key)],
            )
        )
        user_data = ec2.UserData.for_linux()
        zip_path = user_data.add_s3_download_command(
            bucket=asset.bucket, bucket_key=asset.s3_object_key, local_file=f"{APP_DIR}/engine.zip"
        )
        user_data.add_commands(
            *engine_install_script(
                config=config,
                zip_path=zip_path,
                environment={
                    **messaging.client_environment,
                    **cache.client_environment,
                    names.ENV_AWS_REGION: self.region,
                    names.ENV_LOG_LEVEL: config.log_level,
                    names.ENV_SNAPSHOT_BUCKET: storage.bucket_name,
                    names.ENV_SNAPSHOT_INTERVAL_S: str(config.snapshot_interval_s),
                    names.ENV_SPARE_PARTITIONS: config.spare_partition_list,
                },
                region=self.region,
            )
        )

        self.launch_template = ec2.LaunchTemplate(
            self,
            "EngineTemplate",
            instance_type=ec2.InstanceType(config.instance_type),
            machine_image=ec2.MachineImage.latest_amazon_linux2023(),
            require_imdsv2=True,
            http_put_response_hop_limit=1,
            role=self.role,
            security_group=network.engine_sg,
            user_data=user_data,
            detailed_monitoring=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        config.engine_volume_gib,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
        )
        self.asg = autoscaling.AutoScalingGroup(
            self,
            "Engines",
            auto_scaling_group_name=ASG_NAME,
            vpc=network.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            launch_template=self.launch_template,
            min_capacity=config.fleet_min_size,
            max_capacity=config.fleet_max_size,
            group_metrics=[autoscaling.GroupMetrics.all()],
        )
        self.asg.add_lifecycle_hook(
            "EngineReady",
            lifecycle_hook_name=LIFECYCLE_HOOK,
            lifecycle_transition=autoscaling.LifecycleTransition.INSTANCE_LAUNCHING,
            default_result=autoscaling.DefaultResult.ABANDON,
            heartbeat_timeout=Duration.minutes(15),
        )
        acknowledge(
            self.asg,
            "AwsSolutions-AS3",
            "scaling events go to EventBridge and the group's CloudWatch metrics (all group "
            "metrics are on); an SNS topic would have no subscriber in the default deployment",
        )
        # Without a prepared capacity the pool would hold fleetMaxSize - desired instances
        # (4 by default); with it, warmPoolSize at every desired capacity (min_size keeps it
        # there once desired grows), which is what the spare partitions are counted for.
        self.warm_pool = self.asg.add_warm_pool(
            min_size=config.warm_pool_size,
            max_group_prepared_capacity=config.fleet_min_size + config.warm_pool_size,
            pool_state=autoscaling.PoolState.STOPPED,
            reuse_on_scale_in=True,
        )


def _cut(partitions: range, slots: int) -> list[str]:
    """`partitions` cut into at most `slots` consecutive groups (ENGINE_PARTITIONS syntax,
    e.g. "0" or "0-1"), as even as possible: each covers ceil(len / slots)."""
    if not partitions or slots < 1:
        return []
    size = -(-len(partitions) // slots)
    groups = []
    for first in range(partitions.start, partitions.stop, size):
        last = min(first + size, partitions.stop) - 1
        groups.append(str(first) if first == last else f"{first}-{last}")
    return groups


def partition_groups(config: InfraConfig) -> list[str]:
    """Regular `orders` partitions cut into one group per engine process of the minimum
    fleet: the in-service fleet owns them all."""
    return _cut(
        config.regular_partitions, config.fleet_min_size * config.engine_processes_per_instance
    )


def spare_groups(config: InfraConfig) -> list[str]:
    """Spare partitions, `sparePartitionsPerWarmEngine` per group: one group for each engine
    process that can run beyond the minimum fleet (InfraConfig.spare_engines)."""
    return _cut(config.spare_partitions, config.spare_engines)


def engine_log_file(port: int | str) -> str:
    """Where `engine@<port>.service` appends its stdout (the EMF metric lines)."""
    return f"{ENGINE_LOG_DIR}/engine-{port}.log"


def engine_stderr_file(port: int | str) -> str:
    """Where `engine@<port>.service` appends its stderr (its JSON log lines)."""
    return f"{ENGINE_LOG_DIR}/engine-{port}.logs.log"


def cloudwatch_agent_config(config: InfraConfig) -> str:
    """The CloudWatch agent's configuration: each engine's stdout file (EMF) and stderr file
    (logs) to its own stream of ENGINE_LOG_GROUP. One entry per file rather than a glob (a
    glob ships only the most recently written file). The region comes from the instance
    metadata."""
    files = [
        {
            "file_path": engine_log_file(port),
            "log_group_name": ENGINE_LOG_GROUP,
            "log_stream_name": f"{{instance_id}}-{port}",
        }
        for port in config.grpc_ports
    ] + [
        {
            "file_path": engine_stderr_file(port),
            "log_group_name": ENGINE_LOG_GROUP,
            "log_stream_name": f"{{instance_id}}-{port}-logs",
        }
        for port in config.grpc_ports
    ]
    document = {"logs": {"logs_collected": {"files": {"collect_list": files}}}}
    return json.dumps(document, separators=(",", ":"))


def engine_install_script(
    *, config: InfraConfig, zip_path: str, environment: dict[str, str], region: str
) -> list[str]:
    """Bash lines that install the engine, write its systemd units and start them."""
    ports = " ".join(str(p) for p in config.grpc_ports)
    groups = " ".join(partition_groups(config))
    spares = " ".join(spare_groups(config))
    env_lines = [f"{key}={value}" for key, value in environment.items()]
    python = f"{APP_DIR}/venv/bin/python"
    return [
        "set -euo pipefail",
        "dnf install -y -q python3.11 python3.11-pip unzip amazon-cloudwatch-agent logrotate",
        f"mkdir -p {APP_DIR}/app /etc/hotshard {ENGINE_LOG_DIR}",
        f"unzip -o -q {zip_path} -d {APP_DIR}/app",
        f"python3.11 -m venv {APP_DIR}/venv",
        f"{APP_DIR}/venv/bin/pip install -q -c {APP_DIR}/app/constraints.txt {APP_DIR}/app",
        "id hotshard >/dev/null 2>&1 || useradd --system --home-dir /opt/hotshard hotshard",
        "cat > /etc/hotshard/engine.env <<'ENV'",
        *env_lines,
        "ENV",
        "cat > /etc/systemd/system/engine@.service <<'UNIT'",
        "[Unit]",
        "Description=hotshard engine process, gRPC port %i",
        "After=network-online.target",
        "Wants=network-online.target",
        "# Keep restarting: a start that lost a partition race exits and chooses again.",
        "StartLimitIntervalSec=0",
        "[Service]",
        "User=hotshard",
        "EnvironmentFile=/etc/hotshard/engine.env",
        f"Environment={names.ENV_GRPC_PORT}=%i",
        f"WorkingDirectory={APP_DIR}/app",
        "# engine_host.py chooses ENGINE_PARTITIONS, then execs python -m engine",
        f"ExecStart={python} {HOST_SCRIPT} start --base-port {config.grpc_base_port}"
        f" --asg {ASG_NAME} --regular {groups} --spare {spares}",
        "Restart=always",
        "RestartSec=1",
        "LimitNOFILE=65536",
        "# stdout: EMF metric lines; stderr: JSON logs; the CloudWatch agent ships both",
        "Environment=PYTHONUNBUFFERED=1",
        f"StandardOutput=append:{engine_log_file('%i')}",
        f"StandardError=append:{engine_stderr_file('%i')}",
        "[Install]",
        "WantedBy=multi-user.target",
        "UNIT",
        "cat > /etc/logrotate.d/hotshard <<'ROTATE'",
        f"{ENGINE_LOG_DIR}/engine-*.log {{",
        "daily",
        "maxsize 200M",
        "rotate 2",
        "compress",
        "missingok",
        "notifempty",
        "copytruncate",
        "}",
        "ROTATE",
        f"cat > {CW_AGENT_CONFIG} <<'JSON'",
        cloudwatch_agent_config(config),
        "JSON",
        "cat > /usr/local/bin/hotshard-ready <<'READY'",
        "#!/bin/bash",
        "# Every boot: wait until each engine process answers the gRPC Health call with",
        "# serving=true, then let the instance go on (into the warm pool or into service).",
        "# No pending lifecycle action (a plain reboot) is not an error.",
        "set -uo pipefail",
        f"{python} {HOST_SCRIPT} ready {ports} || exit 1",
        "imds=http://169.254.169.254/latest",
        'token=$(curl -sf -X PUT $imds/api/token -H "X-aws-ec2-metadata-token-ttl-seconds: 300")',
        'iid=$(curl -sf -H "X-aws-ec2-metadata-token: $token" $imds/meta-data/instance-id)',
        f"aws autoscaling complete-lifecycle-action --region {region}"
        f" --auto-scaling-group-name {ASG_NAME} --lifecycle-hook-name {LIFECYCLE_HOOK}"
        " --instance-id $iid --lifecycle-action-result CONTINUE || true",
        "READY",
        "chmod 755 /usr/local/bin/hotshard-ready",
        "cat > /etc/systemd/system/hotshard-ready.service <<'UNIT'",
        "[Unit]",
        "Description=hotshard: complete the engine-ready lifecycle action",
        "After=network-online.target",
        "[Service]",
        "Type=oneshot",
        "ExecStart=/usr/local/bin/hotshard-ready",
        "[Install]",
        "WantedBy=multi-user.target",
        "UNIT",
        "systemctl daemon-reload",
        f"for port in {ports}; do systemctl enable --now engine@$port.service; done",
        "systemctl enable --now logrotate.timer",
        # fetch-config translates the JSON, enables the agent's unit and (-s) restarts it.
        f"{CW_AGENT_DIR}/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s"
        f" -c file:{CW_AGENT_CONFIG}",
        "systemctl enable --now hotshard-ready.service",
    ]
