"""Migration: the Step Functions state machine, its task Lambdas, the alarms that start it.

The definition is statemachine/migration.asl.json, inlined with DefinitionBody.from_string
(so tests and reviewers see it in the template) with one substitution per Task state:
`${<State>FunctionArn}` -> the ARN of the Lambda whose handler is
statemachine/tasks/<state_name>.py `handler`. Two alarms (engine process CPU, per-symbol
order rate, both Metrics Insights queries over the engine's own metrics) feed one
EventBridge rule that starts the state machine with the alarm event as input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from aws_cdk import CfnOutput, Duration, Environment, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from hotshard import names
from infra.cache import CacheStack
from infra.config import InfraConfig
from infra.constructs.nag import acknowledge, acknowledge_wildcards
from infra.constructs.python_function import HotshardFunction, deps_layer, log_group
from infra.fleet import FleetStack
from infra.messaging import MessagingStack
from infra.network import NetworkStack
from infra.storage import StorageStack

ASL_PATH = Path(__file__).resolve().parent.parent / "statemachine" / "migration.asl.json"
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def placeholders(asl: str) -> set[str]:
    """The `${...}` names a definition expects to be substituted."""
    return set(_PLACEHOLDER.findall(asl))


def snake(state: str) -> str:
    """`WaitForDrain` -> `wait_for_drain` (the task module's name)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", state).lower()


@dataclass(frozen=True)
class TaskAccess:
    """What one task may touch beyond Redis and the engines' gRPC (network-only)."""

    kafka_read: tuple[str, ...] = ()
    kafka_write: tuple[str, ...] = ()
    snapshots: bool = False
    statements: tuple[iam.PolicyStatement, ...] = field(default=())
    wildcard_reason: str = ""


class MigrationStack(Stack):
    """State machine + task Lambdas + alarms + EventBridge rule."""

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
        fleet: FleetStack,
    ) -> None:
        super().__init__(scope, construct_id, env=env, description="hotshard migration")
        # Tasks name the fleet's group by its fixed name; deploy them after the group exists.
        self.add_stack_dependency(fleet)
        orders, pending = names.TOPIC_ORDERS, names.TOPIC_PENDING_ORDERS
        access = {
            "DetectHotSymbol": TaskAccess(
                statements=(
                    iam.PolicyStatement(actions=["cloudwatch:GetMetricData"], resources=["*"]),
                ),
                wildcard_reason="; cloudwatch:GetMetricData has none either",
            ),
            "ProvisionNewInstance": TaskAccess(
                statements=(
                    iam.PolicyStatement(
                        actions=["autoscaling:SetDesiredCapacity"], resources=[fleet.asg_arn]
                    ),
                    iam.PolicyStatement(
                        actions=[
                            "autoscaling:DescribeAutoScalingGroups",
                            "autoscaling:DescribeWarmPool",
                            "ec2:DescribeInstances",
                        ],
                        resources=["*"],
                    ),
                ),
                wildcard_reason="; nor do autoscaling:Describe* and ec2:DescribeInstances",
            ),
            "PauseRouting": TaskAccess(),
            "WaitForDrain": TaskAccess(kafka_read=(orders,)),
            "TransferSnapshot": TaskAccess(snapshots=True),
            "SwitchRouting": TaskAccess(),
            "ReplayPendingOrders": TaskAccess(kafka_read=(pending,), kafka_write=(orders,)),
            "Cleanup": TaskAccess(snapshots=True),
            "Rollback": TaskAccess(kafka_read=(pending,), kafka_write=(orders,)),
        }
        asl = ASL_PATH.read_text()
        expected = {f"{state}FunctionArn" for state in access}
        if placeholders(asl) != expected:
            raise ValueError(
                f"{ASL_PATH.name} placeholders {sorted(placeholders(asl))} != {sorted(expected)}"
            )

        layers = [layer] if (layer := deps_layer(self, config)) else []
        environment = {
            **messaging.client_environment,
            **cache.client_environment,
            names.ENV_SNAPSHOT_BUCKET: storage.snapshots.bucket_name,
            names.ENV_ENGINE_ASG: fleet.asg_name,
        }
        self.tasks: dict[str, HotshardFunction] = {}
        for state, grants in access.items():
            module = snake(state)
            task = HotshardFunction(
                self,
                state,
                config=config,
                code_dirs=("statemachine",),
                entry_file=f"statemachine/tasks/{module}.py",
                handler=f"statemachine.tasks.{module}.handler",
                service=f"migration-{module}",
                description=f"hotshard migration task {state}",
                vpc=network.vpc,
                security_group=network.tasks_sg,
                environment=environment,
                layers=layers,
                timeout=Duration.minutes(5),
                wildcard_reason=grants.wildcard_reason,
            )
            if grants.kafka_read or grants.kafka_write:
                messaging.grant_kafka(task.role, read=grants.kafka_read, write=grants.kafka_write)
            if grants.snapshots:
                storage.grant_snapshots(task.role)
            for statement in grants.statements:
                task.role.add_to_policy(statement)
            if state == "ProvisionNewInstance":
                acknowledge_wildcards(
                    task.role,
                    [fleet.asg_arn],
                    "the only wildcard is the Auto Scaling group's uuid, unknown before it "
                    "exists; the group is named, so the grant covers this one group",
                )
            self.tasks[state] = task

        self.state_machine = sfn.StateMachine(
            self,
            "Migration",
            state_machine_name="hotshard-migration",
            definition_body=sfn.DefinitionBody.from_string(asl),
            definition_substitutions={
                f"{state}FunctionArn": task.function.function_arn
                for state, task in self.tasks.items()
            },
            logs=sfn.LogOptions(
                destination=log_group(self, "MigrationLogs", days=config.log_retention_days),
                level=sfn.LogLevel.ALL,
                include_execution_data=True,
            ),
            tracing_enabled=True,
            timeout=Duration.hours(1),
        )
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[task.function.function_arn for task in self.tasks.values()],
            )
        )

        acknowledge(
            self.state_machine,
            "AwsSolutions-IAM5[Resource::*]",
            "Step Functions log delivery (logs:CreateLogDelivery, DescribeLogGroups, ...) and "
            "X-Ray PutTraceSegments support no resource-level permissions",
        )
        acknowledge(
            self.state_machine,
            "CloudFormation-Validate::E1029",
            "the ${...} in the definition are DefinitionSubstitutions that CloudFormation "
            "fills in; they are meant to be outside Fn::Sub",
        )
        self.cpu_alarm = self._hot_alarm(
            "EngineCpuHigh",
            "an engine process runs hot: move its hottest symbol",
            f"SELECT MAX({names.METRIC_PROCESS_CPU}) FROM {names.METRICS_NAMESPACE}",
            "max engine process CPU %",
            config.cpu_alarm_threshold,
        )
        self.rate_alarm = self._hot_alarm(
            "SymbolRateHigh",
            "one symbol's order rate is above what a shared engine should carry",
            f"SELECT MAX({names.METRIC_SYMBOL_ORDER_RATE}) "
            f"FROM SCHEMA({names.METRICS_NAMESPACE}, {names.DIM_SYMBOL})",
            "max per-symbol orders/s",
            config.symbol_rate_alarm_threshold,
        )
        self.rule = events.Rule(
            self,
            "HotEngine",
            description="an engine alarm went to ALARM: start a migration",
            event_pattern=events.EventPattern(
                source=["aws.cloudwatch"],
                detail_type=["CloudWatch Alarm State Change"],
                resources=[self.cpu_alarm.alarm_arn, self.rate_alarm.alarm_arn],
                detail={"state": {"value": ["ALARM"]}},
            ),
            targets=[targets.SfnStateMachine(self.state_machine)],
        )
        CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        CfnOutput(self, "CpuAlarmName", value=self.cpu_alarm.alarm_name)
        CfnOutput(self, "RateAlarmName", value=self.rate_alarm.alarm_name)

    def _hot_alarm(
        self, construct_id: str, description: str, query: str, label: str, threshold: float
    ) -> cloudwatch.Alarm:
        """An alarm on a Metrics Insights query: 2 of 3 one-minute maxima above threshold."""
        return cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=cloudwatch.MathExpression(
                expression=query, period=Duration.minutes(1), label=label
            ),
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
