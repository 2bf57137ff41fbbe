"""Migration: the Step Functions state machine, its task Lambdas, the alarms around it.

The definition is statemachine/migration.asl.json, inlined with DefinitionBody.from_string
(so tests and reviewers see it in the template). The task Lambdas are derived from it: every
Task state whose Resource (or, for `arn:aws:states:::lambda:invoke`, whose
Parameters.FunctionName) is `${<Task>FunctionArn}` gets one Lambda whose handler is
statemachine/tasks/<task>.py `handler` (`WaitForDrain` -> `wait_for_drain`), and the
placeholder is substituted with its ARN. Choice, Pass, Wait, Succeed and Fail states need
nothing; states nested in Parallel branches and Map iterators count too; a Task with any
other Resource is refused at synth (nothing here would grant what it calls).

Least privilege per task (TASK_ACCESS): every task reaches Redis, MSK and the engines' gRPC
ports through its security group and nothing else in the VPC; IAM grants only what its row
names (Kafka topics, Auto Scaling actions on the fleet's group). A task the table does not
know (a new state) gets no IAM grant beyond its logs and a synth warning.

Alarms: two on the engines' own metrics (process CPU, per-symbol order rate, Metrics
Insights) feed one EventBridge rule that starts the state machine with the alarm event as
input. The terminal Fail states' errors (hotshard.names.MIGRATION_*) are counted by metric
filters on the state machine's execution log, and a failed Rollback (the symbol may be left
MIGRATING), a failure after the switch and a timed-out or aborted execution each have an
alarm. The operator's dashboard (infra/dashboard.py) shows them all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Annotations, CfnOutput, Duration, Environment, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from hotshard import names
from infra.cache import CacheStack
from infra.config import InfraConfig
from infra.constructs.nag import acknowledge, acknowledge_wildcards
from infra.constructs.python_function import HotshardFunction, deps_layer, log_group
from infra.dashboard import OperatorDashboard
from infra.fleet import FleetStack
from infra.messaging import MessagingStack
from infra.network import NetworkStack
from infra.storage import StorageStack

ASL_FILE = Path("statemachine") / "migration.asl.json"
ASL_PATH = Path(__file__).resolve().parent.parent / ASL_FILE
STATE_MACHINE_NAME = "hotshard-migration"
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
_FUNCTION_PLACEHOLDER = re.compile(r"^\$\{(\w+)FunctionArn\}$")
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
LAMBDA_MAX_TIMEOUT_S = 900
DEFAULT_TIMEOUT_S = 300  # a Task without TimeoutSeconds
# Errors of the terminal Fail states that an operator must hear about.
ALARMED_OUTCOMES = (names.MIGRATION_ROLLBACK_FAILED, names.MIGRATION_FAILED_AFTER_SWITCH)


class AslError(ValueError):
    """The definition asks for something this stack cannot wire (the message says what)."""


def placeholders(asl: str) -> set[str]:
    """The `${...}` names a definition expects to be substituted."""
    return set(_PLACEHOLDER.findall(asl))


def snake(state: str) -> str:
    """`WaitForDrain` -> `wait_for_drain` (the task module's name)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", state).lower()


def walk_states(states: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every state of a definition, nested Parallel branches and Map iterators included."""
    for name, state in states.items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from walk_states(branch.get("States", {}))
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from walk_states(state[key].get("States", {}))


@dataclass(frozen=True)
class TaskFunction:
    """One task Lambda: the ASL's `${<name>FunctionArn}`, the states that call it."""

    name: str
    states: tuple[str, ...]
    timeout_s: int

    @property
    def module(self) -> str:
        return snake(self.name)

    @property
    def placeholder(self) -> str:
        return f"{self.name}FunctionArn"


def _function_of(state_name: str, state: Mapping[str, Any]) -> str:
    resource = str(state.get("Resource", ""))
    target = resource
    if resource.startswith(LAMBDA_INVOKE):
        target = str(state.get("Parameters", {}).get("FunctionName", ""))
    match = _FUNCTION_PLACEHOLDER.match(target)
    if match is None:
        raise AslError(
            f"Task state {state_name!r} calls {resource or 'no Resource'!r}: only Lambda tasks "
            "named `${<Task>FunctionArn}` are wired (infra/migration.py grants nothing else)"
        )
    return match.group(1)


def task_functions(asl: Mapping[str, Any]) -> dict[str, TaskFunction]:
    """The task Lambdas a definition needs, by name, in the order the ASL lists them.
    Raises AslError for a Task that is not a `${...FunctionArn}` Lambda."""
    found: dict[str, list[tuple[str, int]]] = {}
    for name, state in walk_states(asl.get("States", {})):
        if state.get("Type") != "Task":
            continue
        timeout = int(state.get("TimeoutSeconds", DEFAULT_TIMEOUT_S))
        found.setdefault(_function_of(name, state), []).append((name, timeout))
    return {
        fn: TaskFunction(
            fn,
            tuple(s for s, _ in uses),
            min(LAMBDA_MAX_TIMEOUT_S, max(t for _, t in uses)),
        )
        for fn, uses in found.items()
    }


def fail_errors(asl: Mapping[str, Any]) -> set[str]:
    """The `Error` of every Fail state."""
    return {
        str(state["Error"])
        for _, state in walk_states(asl.get("States", {}))
        if state.get("Type") == "Fail" and "Error" in state
    }


@dataclass(frozen=True)
class TaskAccess:
    """What one task may touch beyond Redis and the engines' gRPC (network only)."""

    kafka_read: tuple[str, ...] = ()
    kafka_write: tuple[str, ...] = ()
    fleet: tuple[str, ...] = ()  # Auto Scaling actions on the fleet's group (+ its Describe)


# What each task's code (hotshard/migration, statemachine/tasks) calls beyond Redis and the
# engines: snapshots move between engines by reference (the engines read and write S3),
# and the hottest symbol comes from the engines' Stats, so no task reads S3 or CloudWatch.
_PENDING = (names.TOPIC_PENDING_ORDERS,)
_ORDERS = (names.TOPIC_ORDERS,)
TASK_ACCESS: dict[str, TaskAccess] = {
    "DetectHotSymbol": TaskAccess(),
    "ProvisionNewInstance": TaskAccess(
        fleet=("autoscaling:SetDesiredCapacity", "autoscaling:CompleteLifecycleAction")
    ),
    "PauseRouting": TaskAccess(kafka_read=_PENDING),  # pending-orders' end offset on p
    "WaitForDrain": TaskAccess(),
    "TransferSnapshot": TaskAccess(),
    "WaitForCatchUp": TaskAccess(),
    "SwitchRouting": TaskAccess(kafka_write=_PENDING),  # stop-and-copy's PENDING_END marker
    "ReplayPendingOrders": TaskAccess(),  # a Promote: the engine reads pending-orders
    "Cleanup": TaskAccess(),
    # The PENDING_END markers (pending-orders; `orders` q when the route had already moved,
    # so the source replays what was routed to q), q's end offset, and the warm-pool
    # instance given back (scaled in, desired - 1).
    "Rollback": TaskAccess(
        kafka_read=(*_PENDING, *_ORDERS),
        kafka_write=(*_PENDING, *_ORDERS),
        fleet=("autoscaling:TerminateInstanceInAutoScalingGroup",),
    ),
}
FLEET_DESCRIBE_ACTIONS = ("autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances")


class MigrationStack(Stack):
    """State machine + task Lambdas + alarms + EventBridge rule + the operator's dashboard."""

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
        asl_text = (config.source_root / ASL_FILE).read_text()
        asl = json.loads(asl_text)
        functions = task_functions(asl)
        expected = {fn.placeholder for fn in functions.values()}
        if placeholders(asl_text) != expected:
            raise AslError(
                f"{ASL_FILE} placeholders {sorted(placeholders(asl_text))}: only the task "
                f"ARNs {sorted(expected)} are substituted"
            )
        if names.MIGRATION_ROLLBACK_FAILED not in fail_errors(asl):
            Annotations.of(self).add_warning_v2(
                "hotshard:asl",
                f"{ASL_FILE} has no Fail state with Error {names.MIGRATION_ROLLBACK_FAILED!r}: "
                "a failed Rollback would not reach the RollbackFailed alarm",
            )

        layers = [layer] if (layer := deps_layer(self, config)) else []
        environment = {
            **messaging.client_environment,
            **cache.client_environment,
            names.ENV_SNAPSHOT_BUCKET: storage.snapshots.bucket_name,
            names.ENV_ENGINE_ASG: fleet.asg_name,
            names.ENV_SPARE_PARTITIONS: config.spare_partition_list,
            # the alarms' period is one minute (_hot_alarm)
            names.ENV_MIGRATION_COOLDOWN_S: str(config.migration_cooldown_periods * 60),
            names.ENV_CPU_ALARM_THRESHOLD: str(config.cpu_alarm_threshold),
            names.ENV_RATE_ALARM_THRESHOLD: str(config.symbol_rate_alarm_threshold),
        }
        self.tasks: dict[str, HotshardFunction] = {}
        for fn in functions.values():
            access = TASK_ACCESS.get(fn.name)
            if access is None:
                access = TaskAccess()
                Annotations.of(self).add_warning_v2(
                    "hotshard:task-access",
                    f"task {fn.name} is not in infra/migration.py TASK_ACCESS: it gets Redis "
                    "and the engines' gRPC only; add a row if it needs more",
                )
            self.tasks[fn.name] = self._task(config, fn, access, network, environment, layers)
            self._grant(self.tasks[fn.name].role, access, messaging, fleet)

        self.logs = log_group(self, "MigrationLogs", days=config.log_retention_days)
        self.state_machine = sfn.StateMachine(
            self,
            "Migration",
            state_machine_name=STATE_MACHINE_NAME,
            definition_body=sfn.DefinitionBody.from_string(asl_text),
            definition_substitutions={
                functions[name].placeholder: task.function.function_arn
                for name, task in self.tasks.items()
            },
            logs=sfn.LogOptions(
                destination=self.logs, level=sfn.LogLevel.ALL, include_execution_data=True
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
            config,
        )
        self.rate_alarm = self._hot_alarm(
            "SymbolRateHigh",
            "one symbol's order rate is above what a shared engine should carry",
            f"SELECT MAX({names.METRIC_SYMBOL_ORDER_RATE}) "
            f"FROM SCHEMA({names.METRICS_NAMESPACE}, {names.DIM_SYMBOL})",
            "max per-symbol orders/s",
            config.symbol_rate_alarm_threshold,
            config,
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

        self.outcomes = {
            error: self._outcome_metric(error)
            for error in (names.MIGRATION_ROLLED_BACK, *ALARMED_OUTCOMES)
        }
        self.rollback_failed_alarm = self._outcome_alarm(
            "RollbackFailed",
            names.MIGRATION_ROLLBACK_FAILED,
            "a migration's Rollback failed: its symbol may be left MIGRATING (orders buffered "
            "in pending-orders); see the execution's $.error and fix the route by hand",
        )
        self.after_switch_alarm = self._outcome_alarm(
            "FailedAfterSwitch",
            names.MIGRATION_FAILED_AFTER_SWITCH,
            "a migration failed after SwitchRouting: the symbol is on its target but its "
            "pending orders may not be replayed or its source not cleaned up",
        )
        stopped = cloudwatch.MathExpression(
            expression="timedOut + aborted",
            using_metrics={
                "timedOut": self.state_machine.metric_timed_out(period=Duration.minutes(1)),
                "aborted": self.state_machine.metric_aborted(period=Duration.minutes(1)),
            },
            period=Duration.minutes(1),
            label="migrations timed out or aborted",
        )
        self.stopped_alarm = stopped.create_alarm(
            self,
            "MigrationStopped",
            alarm_description="a migration timed out or was aborted: no Rollback ran, its "
            "symbol may be left MIGRATING",
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.dashboard = OperatorDashboard(
            self,
            "Dashboard",
            state_machine=self.state_machine,
            hot_alarms=(self.cpu_alarm, self.rate_alarm),
            failure_alarms=(
                self.rollback_failed_alarm,
                self.after_switch_alarm,
                self.stopped_alarm,
            ),
            outcomes=self.outcomes,
            region=self.region,
        )
        CfnOutput(self, "StateMachineArn", value=self.state_machine.state_machine_arn)
        CfnOutput(self, "CpuAlarmName", value=self.cpu_alarm.alarm_name)
        CfnOutput(self, "RateAlarmName", value=self.rate_alarm.alarm_name)
        CfnOutput(self, "RollbackFailedAlarmName", value=self.rollback_failed_alarm.alarm_name)
        CfnOutput(self, "DashboardUrl", value=self.dashboard.url)

    def _task(
        self,
        config: InfraConfig,
        fn: TaskFunction,
        access: TaskAccess,
        network: NetworkStack,
        environment: dict[str, str],
        layers: list[Any],
    ) -> HotshardFunction:
        reason = "; nor do autoscaling:Describe* and ec2:DescribeInstances" if access.fleet else ""
        return HotshardFunction(
            self,
            fn.name,
            config=config,
            code_dirs=("statemachine",),
            entry_file=f"statemachine/tasks/{fn.module}.py",
            handler=f"statemachine.tasks.{fn.module}.handler",
            service=f"migration-{fn.module}",
            description=f"hotshard migration task {fn.name} ({', '.join(fn.states)})",
            vpc=network.vpc,
            security_group=network.tasks_sg,
            environment=environment,
            layers=layers,
            timeout=Duration.seconds(fn.timeout_s),
            wildcard_reason=reason,
        )

    def _grant(
        self,
        role: iam.IRole,
        access: TaskAccess,
        messaging: MessagingStack,
        fleet: FleetStack,
    ) -> None:
        if access.kafka_read or access.kafka_write:
            messaging.grant_kafka(role, read=access.kafka_read, write=access.kafka_write)
        if access.fleet:
            role.add_to_principal_policy(
                iam.PolicyStatement(actions=list(access.fleet), resources=[fleet.asg_arn])
            )
            role.add_to_principal_policy(
                iam.PolicyStatement(actions=list(FLEET_DESCRIBE_ACTIONS), resources=["*"])
            )
            acknowledge_wildcards(
                role,
                [fleet.asg_arn],
                "the only wildcard is the Auto Scaling group's uuid, unknown before it "
                "exists; the group is named, so the grant covers this one group",
            )

    def _hot_alarm(
        self,
        construct_id: str,
        description: str,
        query: str,
        label: str,
        threshold: float,
        config: InfraConfig,
    ) -> cloudwatch.Alarm:
        """An alarm on a Metrics Insights query: hotshard:alarmDatapointsToAlarm of the last
        hotshard:alarmEvaluationPeriods one-minute maxima above threshold (the local
        monitor, hotshard.local.monitor, reads the same keys)."""
        return cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=cloudwatch.MathExpression(
                expression=query, period=Duration.minutes(1), label=label
            ),
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=config.alarm_evaluation_periods,
            datapoints_to_alarm=config.alarm_datapoints_to_alarm,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _outcome_metric(self, error: str) -> cloudwatch.Metric:
        """A metric named `error`: 1 per execution that ended in the Fail state with that
        Error, counted from the execution log (Step Functions logs each history event as
        JSON: type, details, execution_arn, ...)."""
        fltr = logs.MetricFilter(
            self,
            f"{error}Count",
            log_group=self.logs,
            filter_pattern=logs.FilterPattern.all(
                logs.FilterPattern.string_value("$.type", "=", "ExecutionFailed"),
                logs.FilterPattern.string_value("$.details.error", "=", error),
            ),
            metric_namespace=names.METRICS_NAMESPACE,
            metric_name=error,
            metric_value="1",
            unit=cloudwatch.Unit.COUNT,
        )
        return fltr.metric(statistic="Sum", period=Duration.minutes(1))

    def _outcome_alarm(self, construct_id: str, error: str, description: str) -> cloudwatch.Alarm:
        """ALARM as soon as one execution ends in `error`."""
        return self.outcomes[error].create_alarm(
            self,
            construct_id,
            alarm_description=description,
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
