import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from infra.migration import ASL_PATH, placeholders
from tests.infra.conftest import TASK_STATES

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


def test_asl_follows_the_seed_steps_in_order(asl: dict[str, Any]) -> None:
    state, path = asl["StartAt"], []
    while state in MAIN_PATH:
        path.append(state)
        state = asl["States"][state].get("Next")
    assert path == MAIN_PATH
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
    for state in TASK_STATES:
        arn = substitutions[f"{state}FunctionArn"]
        (logical_id, attribute) = arn["Fn::GetAtt"]
        assert attribute == "Arn"
        assert functions[logical_id]["Properties"]["Handler"].startswith("statemachine.tasks.")
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
    assert len(statement["Resource"]) == len(TASK_STATES)
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
