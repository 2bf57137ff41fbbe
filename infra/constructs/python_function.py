"""HotshardFunction: a Python Lambda with hotshard's defaults and nothing it was not granted.

Defaults: Python 3.12 on x86_64 (the runtime on Amazon Linux 2023, whose glibc 2.34 loads
the deps layer's manylinux_2_28 x86_64 wheels; python3.11's Amazon Linux 2 has glibc 2.26,
and confluent-kafka ships no older wheel of the pinned version); its own log group with
retention; its own role whose only grants are writing to that log group and, in a VPC,
managing its network interfaces. Callers add everything else with scoped statements
(`add_to_role_policy`, `grant_*`).
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from hotshard import names
from infra.config import InfraConfig
from infra.constructs.nag import acknowledge
from infra.constructs.source_bundle import bundling, report_missing

RUNTIME = lambda_.Runtime.PYTHON_3_12
SHARED_PACKAGE = "hotshard"
NOT_IN_LAMBDAS = ("hotshard/local", "hotshard/client", "hotshard/cli.py")
"""Parts of the shared package for one machine or for users, never shipped in a Lambda."""


def log_group(
    scope: Construct, construct_id: str, *, days: int, name: str | None = None
) -> logs.LogGroup:
    """A log group deleted with its stack and kept `days` days (validated by InfraConfig);
    named `name` when something outside CloudFormation must find it, else generated."""
    group = logs.LogGroup(
        scope, construct_id, log_group_name=name, removal_policy=RemovalPolicy.DESTROY
    )
    cfn = group.node.default_child
    assert isinstance(cfn, logs.CfnLogGroup)
    cfn.retention_in_days = days
    return group


def deps_layer(scope: Construct, config: InfraConfig) -> lambda_.ILayerVersion | None:
    """The third-party packages layer (`make lambda-deps`), or None with a warning if unbuilt."""
    path = config.lambda_deps_dir
    if not path.is_dir():
        report_missing(
            scope,
            path.parent,
            [path.name],
            require=config.require_code,
            why="third-party packages for the Lambdas; run `make lambda-deps`",
        )
        return None
    return lambda_.LayerVersion(
        scope,
        "Deps",
        code=lambda_.Code.from_asset(str(path)),
        compatible_runtimes=[RUNTIME],
        compatible_architectures=[lambda_.Architecture.X86_64],
        description="hotshard Lambda dependencies (pip install --target, manylinux x86_64)",
    )


class HotshardFunction(Construct):
    """A Lambda whose code is the shared package plus `code_dir`, in the VPC, least privilege."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        code_dirs: tuple[str, ...],
        entry_file: str,
        handler: str,
        service: str,
        description: str,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        environment: Mapping[str, str],
        layers: list[lambda_.ILayerVersion],
        timeout: Duration | None = None,
        memory_size: int = 512,
        wildcard_reason: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        report_missing(
            self,
            config.source_root,
            [entry_file],
            require=config.require_code,
            why="its handler comes with a later issue",
        )
        self.log_group = log_group(self, "Logs", days=config.log_retention_days)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{description} (least privilege)",
        )
        self.log_group.grant_write(self.role)
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="VpcNetworkInterfaces",
                actions=[
                    "ec2:CreateNetworkInterface",
                    "ec2:DescribeNetworkInterfaces",
                    "ec2:DeleteNetworkInterface",
                    "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses",
                ],
                resources=["*"],
            )
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "ec2 network-interface actions of a Lambda in a VPC and X-Ray PutTraceSegments/"
            "PutTelemetryRecords support no resource-level permissions" + wildcard_reason,
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler=handler,
            code=lambda_.Code.from_asset(
                str(config.source_root),
                bundling=bundling(config.source_root, (SHARED_PACKAGE, *code_dirs), NOT_IN_LAMBDAS),
            ),
            description=description,
            role=self.role,
            log_group=self.log_group,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[security_group],
            environment={
                names.ENV_LOG_LEVEL: config.log_level,
                "POWERTOOLS_LOG_LEVEL": config.log_level,
                "POWERTOOLS_METRICS_NAMESPACE": "hotshard",
                "POWERTOOLS_SERVICE_NAME": service,
                **environment,
            },
            layers=layers,
            timeout=timeout or Duration.seconds(30),
            memory_size=memory_size,
            tracing=lambda_.Tracing.ACTIVE,
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "python3.12: the deps layer holds cp312 manylinux_2_28 wheels (make lambda-deps); "
            "move runtime and layer together",
        )
