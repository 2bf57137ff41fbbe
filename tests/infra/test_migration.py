import copy
import json
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match, Template

from hotshard import names
from hotshard.local.monitor import evaluation, thresholds
from infra.app import build
from infra.migration import (
    ASL_FILE,
    ASL_PATH,
    FLEET_DESCRIBE_ACTIONS,
    TASK_ACCESS,
    AslError,
    fail_errors,
    placeholders,
    task_functions,
)
from tests.infra.conftest import TASKS, context, make_source_root
from tests.infra.iam import actions_of, as_list, role_statements

MAIN_PATH = [
    "DetectHotSymbol",
    "ProvisionNewInstance",
    "PauseRouting",
    "WaitForDrain",
    "TransferSnapshot",
    "SwitchRouting",
    "ReplayPendingOrders",
    "Cleanup",
]


@pytest.fixture(scope="module")
def migration(templates: dict[str, Template]) -> Template:
    return templates["HotshardMigration"]


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ASL_PATH.read_text())
    return loaded


def _path(asl: dict[str, Any], strategy: str) -> list[str]:
    """The states an execution of `strategy` passes when every task succeeds."""
    state, path = asl["StartAt"], []
    while asl["States"][state]["Type"] not in ("Succeed", "Fail"):
        spec = asl["States"][state]
        if spec["Type"] == "Choice":
            chosen = [c["Next"] for c in spec["Choices"] if c["StringEquals"] == strategy]
            state = chosen[0] if chosen else spec["Default"]
            continue
        path.append(state)
        state = spec["Next"]
    return path


def test_asl_follows_the_seed_steps_in_order(asl: dict[str, Any]) -> None:
    assert _path(asl, "stop-and-copy") == MAIN_PATH
    assert _path(asl, "pre-copy") == [
        "DetectHotSymbol",
        "ProvisionNewInstance",
        "TransferSnapshot",
        "WaitForCatchUp",
        "SwitchRouting",
        "ReplayPendingOrders",
        "Cleanup",
    ]
    assert "QueryLanguage" not in json.dumps(asl)  # JSONPath only, no JSONata


def test_every_step_before_the_switch_rolls_back(asl: dict[str, Any]) -> None:
    for name in MAIN_PATH[1:6]:
        catches = asl["States"][name]["Catch"]
        assert catches == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Rollback"}
        ]
    for name in MAIN_PATH[6:]:
        assert all(c["Next"] != "Rollback" for c in asl["States"][name]["Catch"])
    assert asl["States"]["Rollback"]["Next"] == "RolledBack"
    assert asl["States"]["RolledBack"]["Type"] == "Fail"


def test_every_transition_names_a_state(asl: dict[str, Any]) -> None:
    states = asl["States"]
    targets = [s.get("Next") for s in states.values()] + [
        c["Next"] for s in states.values() for c in s.get("Catch", [])
    ]
    assert {t for t in targets if t} <= set(states)


def test_state_machine_inlines_the_asl_with_task_arns(migration: Template) -> None:
    (machine,) = migration.find_resources("AWS::StepFunctions::StateMachine").values()
    props = machine["Properties"]
    assert json.loads(props["DefinitionString"]) == json.loads(ASL_PATH.read_text())
    substitutions = props["DefinitionSubstitutions"]
    assert set(substitutions) == placeholders(ASL_PATH.read_text())
    functions = migration.find_resources("AWS::Lambda::Function")
    for fn in TASKS.values():
        arn = substitutions[fn.placeholder]
        (logical_id, attribute) = arn["Fn::GetAtt"]
        assert attribute == "Arn"
        task = functions[logical_id]["Properties"]
        assert task["Handler"] == f"statemachine.tasks.{fn.module}.handler"
        assert task["Timeout"] == fn.timeout_s  # the ASL's TimeoutSeconds, at most 900
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"


def test_state_machine_may_invoke_exactly_its_tasks(migration: Template) -> None:
    policies = migration.find_resources("AWS::IAM::Policy")
    invoke = [
        s
        for p in policies.values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Action"] == "lambda:InvokeFunction"
    ]
    (statement,) = invoke
    assert len(statement["Resource"]) == len(TASKS)
    assert "*" not in json.dumps(statement["Resource"])


def test_cpu_alarm_fires_above_85_percent(migration: Template) -> None:
    migration.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Threshold": 85,
            "ComparisonOperator": "GreaterThanThreshold",
            "Metrics": [Match.object_like({"Expression": Match.string_like_regexp("ProcessCpu")})],
        },
    )
    migration.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Threshold": 50000,
            "Metrics": [
                Match.object_like({"Expression": Match.string_like_regexp("SymbolOrderRate")})
            ],
        },
    )


def test_the_alarms_evaluate_and_cool_down_as_the_local_monitor(migration: Template) -> None:
    """cdk.json's hotshard:alarmEvaluationPeriods / alarmDatapointsToAlarm /
    migrationCooldownPeriods: the same numbers hotshard.local.monitor reads."""
    judged, (cpu, rate) = evaluation(), thresholds()
    for metric in ("ProcessCpu", "SymbolOrderRate"):
        migration.has_resource_properties(
            "AWS::CloudWatch::Alarm",
            {
                "EvaluationPeriods": judged.periods,
                "DatapointsToAlarm": judged.to_alarm,
                "Metrics": [
                    Match.object_like(
                        {
                            "Expression": Match.string_like_regexp(metric),
                            "MetricStat": Match.absent(),
                        }
                    )
                ],
            },
        )
    migration.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "statemachine.tasks.detect_hot_symbol.handler",
            "Environment": {
                "Variables": Match.object_like(
                    {
                        names.ENV_MIGRATION_COOLDOWN_S: str(judged.cooldown * 60),
                        # which other symbol an alarm moves while one cools down: the alarms'
                        names.ENV_CPU_ALARM_THRESHOLD: str(round(cpu)),
                        names.ENV_RATE_ALARM_THRESHOLD: str(round(rate)),
                    }
                )
            },
        },
    )


def test_alarm_rule_starts_the_state_machine(migration: Template) -> None:
    (rule,) = migration.find_resources("AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.cloudwatch"]
    assert pattern["detail"] == {"state": {"value": ["ALARM"]}}
    assert len(pattern["resources"]) == 2
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": _logical_id(migration, "AWS::StepFunctions::StateMachine")}


def _logical_id(template: Template, kind: str) -> str:
    (logical_id,) = template.find_resources(kind)
    return str(logical_id)


# ---------------------------------------------------------------------- tasks from the ASL


def _lambda(name: str, **extra: Any) -> dict[str, Any]:
    return {"Type": "Task", "Resource": f"${{{name}FunctionArn}}", **extra}


def test_tasks_come_from_task_states_of_any_shape() -> None:
    asl = {
        "StartAt": "Detect",
        "States": {
            "Detect": _lambda("DetectHotSymbol", TimeoutSeconds=60, Next="Strategy"),
            "Strategy": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.strategy", "StringEquals": "pre-copy", "Next": "Warm"}],
                "Default": "Copy",
            },
            "Warm": {
                "Type": "Parallel",
                "Branches": [
                    {"StartAt": "Shadow", "States": {"Shadow": _lambda("WarmUp", End=True)}}
                ],
                "Next": "Done",
            },
            "Copy": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "${TransferSnapshotFunctionArn}", "Payload.$": "$"},
                "TimeoutSeconds": 1200,
                "Next": "Again",
            },
            "Again": _lambda("DetectHotSymbol", TimeoutSeconds=90, Next="Each"),
            "Each": {
                "Type": "Map",
                "ItemProcessor": {"StartAt": "One", "States": {"One": _lambda("Poll", End=True)}},
                "Next": "Done",
            },
            "Pause": {"Type": "Pass", "Next": "Wait"},
            "Wait": {"Type": "Wait", "Seconds": 1, "Next": "Done"},
            "Done": {"Type": "Succeed"},
            "Broken": {"Type": "Fail", "Error": names.MIGRATION_ROLLBACK_FAILED},
        },
    }
    tasks = task_functions(asl)
    assert list(tasks) == ["DetectHotSymbol", "WarmUp", "TransferSnapshot", "Poll"]
    assert tasks["DetectHotSymbol"].states == ("Detect", "Again")
    assert tasks["DetectHotSymbol"].timeout_s == 90  # the longest of its states
    assert tasks["TransferSnapshot"].timeout_s == 900  # a Lambda runs 15 minutes at most
    assert tasks["WarmUp"].timeout_s == 300  # no TimeoutSeconds
    assert tasks["WarmUp"].module == "warm_up"
    assert fail_errors(asl) == {names.MIGRATION_ROLLBACK_FAILED}


@pytest.mark.parametrize(
    "state",
    [
        {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:cloudwatch:putMetricData"},
        {"Type": "Task"},
        {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {}},
        {"Type": "Task", "Resource": "arn:aws:lambda:ap-northeast-2:1:function:x"},
    ],
)
def test_a_task_that_is_not_a_project_lambda_is_refused(state: dict[str, Any]) -> None:
    with pytest.raises(AslError, match="'Odd'"):
        task_functions({"StartAt": "Odd", "States": {"Odd": state}})


def _task_role(migration: Template, task: str) -> list[dict[str, Any]]:
    return role_statements(migration, f"{task}Role")


def test_only_provisioning_and_rollback_touch_the_fleet(migration: Template) -> None:
    for fn in TASKS.values():
        statements = _task_role(migration, fn.name)
        fleet = {a for a in actions_of(statements) if a.startswith("autoscaling:")}
        wanted = set(TASK_ACCESS[fn.name].fleet)
        if not wanted:
            assert not fleet, fn.name
            continue
        assert fleet == wanted | {"autoscaling:DescribeAutoScalingGroups"}, fn.name
        (scoped,) = [s for s in statements if set(as_list(s["Action"])) == wanted]
        assert "autoScalingGroupName/hotshard-engines" in json.dumps(scoped["Resource"])
        # Describe* have no resource-level permissions (merged with the other "*" actions).
        on_any = actions_of([s for s in statements if s["Resource"] == "*"])
        assert set(FLEET_DESCRIBE_ACTIONS) <= on_any
    assert set(TASK_ACCESS["ProvisionNewInstance"].fleet) == {
        "autoscaling:SetDesiredCapacity",
        "autoscaling:CompleteLifecycleAction",
    }
    assert TASK_ACCESS["Rollback"].fleet == ("autoscaling:TerminateInstanceInAutoScalingGroup",)


def test_tasks_touch_no_snapshot_object_and_no_metric(migration: Template) -> None:
    # Snapshots move between engines by reference; the hot symbol comes from engine Stats.
    for fn in TASKS.values():
        actions = actions_of(_task_role(migration, fn.name))
        assert not {a for a in actions if a.startswith(("s3:", "cloudwatch:"))}, fn.name


def test_only_the_pending_markers_are_written(migration: Template) -> None:
    for fn in TASKS.values():
        statements = _task_role(migration, fn.name)
        written = [s for s in statements if "kafka-cluster:WriteData" in as_list(s["Action"])]
        topics = json.dumps([s["Resource"] for s in written])
        assert bool(written) == bool(TASK_ACCESS[fn.name].kafka_write), fn.name
        if written:
            assert "/pending-orders" in topics, fn.name
        # Only a Rollback after the route moved writes to `orders` (q's PENDING_END marker).
        assert ("/orders" in topics) == (fn.name == "Rollback"), fn.name


def test_tasks_reach_only_kafka_redis_the_engines_and_https(
    templates: dict[str, Template],
) -> None:
    network = templates["HotshardNetwork"]
    groups = network.find_resources("AWS::EC2::SecurityGroup")
    (tasks,) = [
        k
        for k, v in groups.items()
        if v["Properties"]["GroupDescription"] == "migration task Lambdas"
    ]
    inline = groups[tasks]["Properties"]["SecurityGroupEgress"]
    assert [(r["CidrIp"], r["FromPort"], r["ToPort"]) for r in inline] == [("0.0.0.0/0", 443, 443)]
    peers = [
        r["Properties"]
        for r in network.find_resources("AWS::EC2::SecurityGroupEgress").values()
        if r["Properties"]["GroupId"] == {"Fn::GetAtt": [tasks, "GroupId"]}
    ]
    to = {
        r["DestinationSecurityGroupId"]["Fn::GetAtt"][0]: (r["FromPort"], r["ToPort"])
        for r in peers
    }
    description = {k: v["Properties"]["GroupDescription"] for k, v in groups.items()}
    assert {description[k]: ports for k, ports in to.items()} == {
        "MSK brokers: IAM auth over TLS only": (9098, 9098),
        "ElastiCache Redis: TLS only": (6379, 6379),
        "hotshard engine instances": (50051, 50056),
    }


# ---------------------------------------------------------------------- failure alarms


def _alarm_on(migration: Template, metric: str) -> dict[str, Any]:
    alarms = [
        a["Properties"]
        for a in migration.find_resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == metric
    ]
    (alarm,) = alarms
    found: dict[str, Any] = alarm
    return found


@pytest.mark.parametrize(
    "error", [names.MIGRATION_ROLLBACK_FAILED, names.MIGRATION_FAILED_AFTER_SWITCH]
)
def test_a_failed_rollback_or_a_failure_after_the_switch_raises_an_alarm(
    migration: Template, error: str
) -> None:
    (machine,) = migration.find_resources("AWS::StepFunctions::StateMachine").values()
    destination = machine["Properties"]["LoggingConfiguration"]["Destinations"][0]
    (log_group, _arn) = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"]
    filters = [
        f["Properties"]
        for f in migration.find_resources("AWS::Logs::MetricFilter").values()
        if f["Properties"]["MetricTransformations"][0]["MetricName"] == error
    ]
    (fltr,) = filters
    assert fltr["LogGroupName"] == {"Ref": log_group}  # the state machine's execution log
    assert '$.type = "ExecutionFailed"' in fltr["FilterPattern"]
    assert f'$.details.error = "{error}"' in fltr["FilterPattern"]
    transform = fltr["MetricTransformations"][0]
    assert transform["MetricNamespace"] == names.METRICS_NAMESPACE
    assert transform["MetricValue"] == "1"
    alarm = _alarm_on(migration, error)
    assert alarm["Namespace"] == names.METRICS_NAMESPACE
    assert alarm["Statistic"] == "Sum"
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["EvaluationPeriods"] == 1
    assert alarm["TreatMissingData"] == "notBreaching"


def test_a_timed_out_or_aborted_migration_raises_an_alarm(migration: Template) -> None:
    alarms = [
        a["Properties"]
        for a in migration.find_resources("AWS::CloudWatch::Alarm").values()
        if "timed out or was aborted" in a["Properties"].get("AlarmDescription", "")
    ]
    (alarm,) = alarms
    used = {m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert used == {"ExecutionsTimedOut", "ExecutionsAborted"}
    assert alarm["Threshold"] == 1


def test_the_asl_is_checked_for_the_rollback_failed_state(deployment: Any) -> None:
    asl = json.loads(ASL_PATH.read_text())
    warnings = Annotations.from_stack(deployment.migration).find_warning(
        "*",
        Match.string_like_regexp(f"no Fail state with Error '{names.MIGRATION_ROLLBACK_FAILED}'"),
    )
    assert bool(warnings) == (names.MIGRATION_ROLLBACK_FAILED not in fail_errors(asl))


# ---------------------------------------------------------------------- a new ASL


def _with_pre_copy(asl: dict[str, Any]) -> dict[str, Any]:
    """The repository's ASL plus what the pre-copy rewrite adds: a Choice on strategy, a
    Pass, a new Task, and the Fail state a failed Rollback ends in."""
    asl = copy.deepcopy(asl)
    states = asl["States"]
    first = asl["StartAt"]
    states["Strategy"] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.strategy", "StringEquals": "pre-copy", "Next": "WarmUp"}],
        "Default": "Noted",
    }
    states["WarmUp"] = _lambda("WarmUpTarget", TimeoutSeconds=120, Next="Noted")
    states["Noted"] = {"Type": "Pass", "Next": first}
    states["RollbackFailed"] = {"Type": "Fail", "Error": names.MIGRATION_ROLLBACK_FAILED}
    asl["StartAt"] = "Strategy"
    return asl


def test_a_rewritten_asl_gets_its_new_tasks_without_touching_infra(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = make_source_root(tmp_path_factory.mktemp("src-pre-copy"))
    asl = _with_pre_copy(json.loads(ASL_PATH.read_text()))
    (root / ASL_FILE).write_text(json.dumps(asl))
    (root / "statemachine" / "tasks" / "warm_up_target.py").write_text(
        "def handler(event, context):\n    return None\n"
    )
    built = build(context(root), outdir=str(tmp_path_factory.mktemp("cdk.out-pre-copy")))
    migration = Template.from_stack(built.migration)

    (machine,) = migration.find_resources("AWS::StepFunctions::StateMachine").values()
    assert json.loads(machine["Properties"]["DefinitionString"]) == asl
    assert set(machine["Properties"]["DefinitionSubstitutions"]) == placeholders(json.dumps(asl))
    functions = migration.find_resources("AWS::Lambda::Function")
    (new,) = [
        k
        for k, f in functions.items()
        if f["Properties"]["Handler"] == "statemachine.tasks.warm_up_target.handler"
    ]
    assert functions[new]["Properties"]["Timeout"] == 120
    # Least privilege for a task nobody described yet: its logs, its network, no more.
    actions = actions_of(role_statements(migration, "WarmUpTargetRole"))
    assert {a.split(":")[0] for a in actions} <= {"logs", "ec2", "xray"}
    invoke = [
        s
        for p in migration.find_resources("AWS::IAM::Policy").values()
        for s in p["Properties"]["PolicyDocument"]["Statement"]
        if s["Action"] == "lambda:InvokeFunction"
    ]
    (statement,) = invoke
    assert {"Fn::GetAtt": [new, "Arn"]} in statement["Resource"]
    annotations = Annotations.from_stack(built.migration)
    assert annotations.find_warning("*", Match.string_like_regexp("task WarmUpTarget is not in"))
    assert not annotations.find_warning("*", Match.string_like_regexp("no Fail state with Error"))
