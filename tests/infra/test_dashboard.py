"""The operator's dashboard: what an operator looks at, under the names the runtime writes."""

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from hotshard import names
from infra.dashboard import DASHBOARD_NAME, search


@pytest.fixture(scope="module")
def body(templates: dict[str, Template]) -> tuple[dict[str, Any], list[str]]:
    """The dashboard body as JSON (CloudFormation tokens as `<logical id>`), and the logical
    ids those tokens name."""
    (dashboard,) = (
        templates["HotshardMigration"].find_resources("AWS::CloudWatch::Dashboard").values()
    )
    assert dashboard["Properties"]["DashboardName"] == DASHBOARD_NAME
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    refs: list[str] = []
    text = ""
    for part in parts:
        if isinstance(part, str):
            text += part
        else:
            ref = part.get("Ref") or part.get("Fn::GetAtt", ["?"])[0]
            refs.append(str(ref))
            text += f"<{ref}>"
    return json.loads(text), refs


def _widgets(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["properties"].get("title", w["type"]): w for w in body["widgets"]}


def _expressions(widget: dict[str, Any]) -> list[str]:
    """The metric-math expressions a graph draws."""
    rows = widget["properties"].get("metrics", [])
    return [
        item["expression"]
        for row in rows
        for item in row
        if isinstance(item, dict) and "expression" in item
    ]


def test_engines_get_one_line_per_process(body: tuple[dict[str, Any], list[str]]) -> None:
    widgets = _widgets(body[0])
    assert _expressions(widgets["Engine process CPU (% of one core)"]) == [
        search(names.METRIC_PROCESS_CPU, names.DIM_INSTANCE, "Maximum")
    ]
    assert _expressions(widgets["Engine orders/s"]) == [
        search(names.METRIC_ORDER_RATE, names.DIM_INSTANCE, "Average")
    ]
    assert _expressions(widgets["Consumer lag (records not yet consumed)"]) == [
        search(names.METRIC_CONSUMER_LAG, names.DIM_INSTANCE, "Maximum")
    ]
    assert search("X", "Instance", "Maximum") == (
        "SEARCH('{hotshard,Instance} MetricName=\"X\"', 'Maximum', 60)"
    )


def test_symbols_show_their_rate_and_latency(body: tuple[dict[str, Any], list[str]]) -> None:
    widgets = _widgets(body[0])
    rate = search(names.METRIC_SYMBOL_ORDER_RATE, names.DIM_SYMBOL, "Maximum")
    latency = search(names.METRIC_ORDER_TO_EVENT, names.DIM_SYMBOL, "p99")
    assert _expressions(widgets["Busiest symbols: orders/s (top 20)"]) == [
        f"SORT({rate}, MAX, DESC, 20)"
    ]
    assert _expressions(widgets["Slowest symbols: order -> event p99, ms (top 20)"]) == [
        f"SORT({latency}, MAX, DESC, 20)"
    ]


def test_pushes_show_their_latency(body: tuple[dict[str, Any], list[str]]) -> None:
    widget = _widgets(body[0])["Push latency, ms (event -> push posted)"]
    metrics = widget["properties"]["metrics"]
    assert [m[:4] for m in metrics] == [
        [names.METRICS_NAMESPACE, names.METRIC_PUSH_LATENCY, names.DIM_SERVICE, "stream_handler"]
    ] * 2
    assert [m[4]["stat"] for m in metrics] == ["p50", "p99"]


def test_migrations_show_executions_outcomes_and_both_alarms(
    templates: dict[str, Template], body: tuple[dict[str, Any], list[str]]
) -> None:
    widgets = _widgets(body[0])
    runs = json.dumps(widgets["Migrations: executions and outcome"]["properties"]["metrics"])
    for metric in ("ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed"):
        assert metric in runs
    for outcome in (
        names.MIGRATION_ROLLED_BACK,
        names.MIGRATION_FAILED_AFTER_SWITCH,
        names.MIGRATION_ROLLBACK_FAILED,
    ):
        assert f'"{outcome}"' in runs
    migration = templates["HotshardMigration"]
    alarms = migration.find_resources("AWS::CloudWatch::Alarm")
    hot = {
        k
        for k, a in alarms.items()
        if "Metrics" in a["Properties"]
        and any(
            names.METRIC_PROCESS_CPU in m.get("Expression", "")
            or names.METRIC_SYMBOL_ORDER_RATE in m.get("Expression", "")
            for m in a["Properties"]["Metrics"]
        )
    }
    assert len(hot) == 2
    shown = {
        ref
        for ref in body[1]
        if ref in alarms  # alarm ARNs appear as Fn::GetAtt of the alarm
    }
    assert hot <= shown
    assert shown == set(alarms)  # the status widget lists every alarm of the stack
    assert "Migration alarm: engine CPU" in widgets
    assert "Migration alarm: symbol rate" in widgets


def test_the_dashboard_url_is_an_output(templates: dict[str, Template]) -> None:
    outputs = templates["HotshardMigration"].find_outputs("DashboardUrl")
    (url,) = outputs.values()
    assert url["Value"].endswith(f"#dashboards/dashboard/{DASHBOARD_NAME}")
    assert url["Value"].startswith("https://ap-northeast-2.console.aws.amazon.com/cloudwatch/")
