"""The operator's CloudWatch dashboard `hotshard`: the engines, the hot symbols, the pushes and
the migrations on one page (docs/DEPLOY.md, "Watching it").

Metric names come from hotshard.names, so the dashboard reads what the runtime writes. The
per-engine and per-symbol graphs are SEARCH expressions over the `hotshard` namespace: one
line per engine process (dimension Instance) or per symbol (dimension Symbol, the 20
highest), for any time range (Metrics Insights queries, which the alarms use, see only the
last three hours).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from hotshard import names

DASHBOARD_NAME = "hotshard"
STREAM_SERVICE = "stream_handler"  # Powertools service name of the stream handler
TOP_SYMBOLS = 20
PERIOD = Duration.minutes(1)


def search(metric: str, dimension: str, statistic: str) -> str:
    """A SEARCH over the namespace for `metric`, one series per value of `dimension`."""
    schema = f"{{{names.METRICS_NAMESPACE},{dimension}}}"
    return f"SEARCH('{schema} MetricName=\"{metric}\"', '{statistic}', {PERIOD.to_seconds()})"


def per(
    metric: str, dimension: str, statistic: str, label: str, top: int = 0
) -> cloudwatch.IMetric:
    expression = search(metric, dimension, statistic)
    if top:
        expression = f"SORT({expression}, MAX, DESC, {top})"
    return cloudwatch.MathExpression(expression=expression, label=label, period=PERIOD)


class OperatorDashboard(Construct):
    """Dashboard `hotshard`; `url` opens it in the console."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine: sfn.StateMachine,
        hot_alarms: Sequence[cloudwatch.Alarm],
        failure_alarms: Sequence[cloudwatch.Alarm],
        outcomes: Mapping[str, cloudwatch.Metric],
        region: str,
    ) -> None:
        super().__init__(scope, construct_id)
        executions = [
            state_machine.metric_started(period=PERIOD, label="started"),
            state_machine.metric_succeeded(period=PERIOD, label="succeeded"),
            state_machine.metric_failed(period=PERIOD, label="failed (any)"),
            state_machine.metric_timed_out(period=PERIOD, label="timed out"),
            state_machine.metric_aborted(period=PERIOD, label="aborted"),
        ]
        push = {"service": STREAM_SERVICE}
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=DASHBOARD_NAME,
            default_interval=Duration.hours(3),
            widgets=[
                [
                    cloudwatch.TextWidget(
                        markdown=(
                            "# hotshard\n"
                            "Engines (one line per process), the busiest symbols, pushes to "
                            "clients and migrations. A migration starts when one of the two "
                            "migration alarms (bottom row) goes to ALARM (EventBridge -> "
                            "state machine hotshard-migration); the other alarms mean a "
                            "symbol may need a hand (docs/DEPLOY.md, section 5)."
                        ),
                        width=12,
                        height=4,
                    ),
                    cloudwatch.AlarmStatusWidget(
                        title="Alarms",
                        alarms=[*hot_alarms, *failure_alarms],
                        width=12,
                        height=4,
                    ),
                ],
                [
                    cloudwatch.GraphWidget(
                        title="Engine process CPU (% of one core)",
                        left=[per(names.METRIC_PROCESS_CPU, names.DIM_INSTANCE, "Maximum", "")],
                        width=12,
                    ),
                    cloudwatch.GraphWidget(
                        title="Engine orders/s",
                        left=[per(names.METRIC_ORDER_RATE, names.DIM_INSTANCE, "Average", "")],
                        width=12,
                    ),
                ],
                [
                    cloudwatch.GraphWidget(
                        title=f"Busiest symbols: orders/s (top {TOP_SYMBOLS})",
                        left=[
                            per(
                                names.METRIC_SYMBOL_ORDER_RATE,
                                names.DIM_SYMBOL,
                                "Maximum",
                                "",
                                TOP_SYMBOLS,
                            )
                        ],
                        width=12,
                    ),
                    cloudwatch.GraphWidget(
                        title=f"Slowest symbols: order -> event p99, ms (top {TOP_SYMBOLS})",
                        left=[
                            per(
                                names.METRIC_ORDER_TO_EVENT,
                                names.DIM_SYMBOL,
                                "p99",
                                "",
                                TOP_SYMBOLS,
                            )
                        ],
                        width=12,
                    ),
                ],
                [
                    cloudwatch.GraphWidget(
                        title="Consumer lag (records not yet consumed)",
                        left=[per(names.METRIC_CONSUMER_LAG, names.DIM_INSTANCE, "Maximum", "")],
                        width=8,
                    ),
                    cloudwatch.GraphWidget(
                        title="Push latency, ms (event -> push posted)",
                        left=[
                            cloudwatch.Metric(
                                namespace=names.METRICS_NAMESPACE,
                                metric_name=names.METRIC_PUSH_LATENCY,
                                dimensions_map=push,
                                statistic=stat,
                                period=PERIOD,
                                label=stat,
                            )
                            for stat in ("p50", "p99")
                        ],
                        width=8,
                    ),
                    cloudwatch.GraphWidget(
                        title="Pushes per minute",
                        left=[
                            cloudwatch.Metric(
                                namespace=names.METRICS_NAMESPACE,
                                metric_name=names.METRIC_PUSHES,
                                dimensions_map=push,
                                statistic="Sum",
                                period=PERIOD,
                            )
                        ],
                        width=8,
                    ),
                ],
                [
                    cloudwatch.GraphWidget(
                        title="Migrations: executions and outcome",
                        left=executions,
                        right=[outcome.with_(label=error) for error, outcome in outcomes.items()],
                        stacked=False,
                        width=12,
                    ),
                    *(
                        cloudwatch.AlarmWidget(alarm=alarm, title=alarm_title, width=6)
                        for alarm, alarm_title in zip(
                            hot_alarms,
                            ("Migration alarm: engine CPU", "Migration alarm: symbol rate"),
                            strict=True,
                        )
                    ),
                ],
            ],
        )
        self.url = (
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#dashboards/dashboard/{DASHBOARD_NAME}"
        )
