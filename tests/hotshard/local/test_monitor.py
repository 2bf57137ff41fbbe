"""The local alarms (hotshard.local.monitor): same metrics and thresholds as the CDK alarms."""

from types import SimpleNamespace
from typing import Any

from hotshard.local.monitor import (
    Alarm,
    Evaluation,
    Monitor,
    alarm_event,
    evaluation,
    maxima,
    thresholds,
)
from hotshard.migration import plan
from infra.app import cdk_json_context
from infra.config import InfraConfig


def test_thresholds_are_the_cdk_alarms() -> None:
    config = InfraConfig.from_context({**cdk_json_context(), "hotshard:account": "123456789012"})
    assert thresholds() == (config.cpu_alarm_threshold, config.symbol_rate_alarm_threshold)


def test_evaluation_and_cooldown_are_the_cdk_alarms() -> None:
    config = InfraConfig.from_context({**cdk_json_context(), "hotshard:account": "123456789012"})
    assert evaluation() == Evaluation(
        config.alarm_evaluation_periods,
        config.alarm_datapoints_to_alarm,
        config.migration_cooldown_periods,
    )


def test_two_of_three_periods_above_the_threshold_alarm_once() -> None:
    alarm = Alarm("EngineCpuHigh", "ProcessCpu", 85)
    assert [alarm.observe(v) for v in (90, 50, None, 86)] == [False, False, False, False]
    assert alarm.observe(99) is True  # 86, 99 of the last three
    assert alarm.observe(99) is False  # still ALARM: no second start
    assert [alarm.observe(v) for v in (10, 10)] == [False, False]
    assert alarm.state == "OK"
    assert not Alarm("x", "m", 85).observe(85)  # greater than, not equal


def _stats(cpu: float, instance: str = "e-0", **rates: float) -> Any:
    return SimpleNamespace(
        instance_id=instance,
        cpu_percent=cpu,
        symbols=[
            SimpleNamespace(symbol=s, orders_per_second=v, partition=0) for s, v in rates.items()
        ],
        partitions=[SimpleNamespace(partition=0)],
        fences=[],
    )


def test_maxima_over_engines() -> None:
    assert maxima([_stats(10, A=5), _stats(40, B=1, C=7)]) == (40, 7)
    assert maxima([]) == (None, None)


def test_the_event_is_what_the_alarm_rule_delivers_and_detect_reads() -> None:
    event = alarm_event(Alarm("SymbolRateHigh", "SymbolOrderRate", 5), 9)
    assert event["detail"]["state"]["value"] == "ALARM"
    assert plan.parse_request(event).alarm == "SymbolRateHigh"


def test_the_monitor_starts_one_execution_per_alarm_and_not_while_running() -> None:
    feed = [
        [_stats(95)],
        [_stats(95)],
        [_stats(95)],
        [_stats(1)],
        [_stats(1)],
        [_stats(99)],
        [_stats(99)],
    ]
    started: list[dict[str, Any]] = []
    running = [True]

    def start(event: dict[str, Any]) -> str:
        started.append(event)
        return f"arn-{len(started)}"

    monitor = Monitor(lambda: feed.pop(0), start, lambda _arn: running[0], cpu_threshold=85)
    results = [monitor.tick() for _ in range(5)]
    assert results == [None, "arn-1", None, None, None]
    running[0] = True
    assert [monitor.tick(), monitor.tick()] == [None, None]  # ALARM again, one still running
    running[0] = False
    assert started[0]["detail"]["alarmName"] == "EngineCpuHigh"


def test_no_second_migration_of_a_symbol_within_its_cooldown_another_may_move() -> None:
    """ALARM, OK, ALARM again right after HOT's move ended (its meters restart on its new
    engine): HOT does not move again until cooldown periods have passed since its end; a
    second hot symbol on another engine moves meanwhile."""
    now = [0.0]
    started: list[str] = []
    running = [True]
    ended: dict[str, float] = {}

    def start(_event: dict[str, Any]) -> str:
        started.append(f"arn-{len(started) + 1}")
        return started[-1]

    feed: list[list[Any]] = []
    monitor = Monitor(
        lambda: feed.pop(0),
        start,
        lambda _arn: running[0],
        period_s=1.0,
        cpu_threshold=85,
        cooldown_periods=6,
        ended=lambda symbols: {s: t for s, t in ended.items() if s in set(symbols)},
        clock=lambda: now[0],
    )
    assert monitor.cooldown_s == 6.0

    def run(*periods: list[Any]) -> list[str | None]:
        feed.extend(periods)
        out = []
        for _ in periods:
            now[0] += 1.0
            out.append(monitor.tick())
        return out

    hot = [_stats(95, "e-0", HOT=900, A=1), _stats(10, "e-1", B=5, C=1)]
    cool = [_stats(1, "e-0", A=1), _stats(1, "e-1", HOT=1, B=5)]
    hot_again = [_stats(1, "e-0", A=1), _stats(95, "e-1", HOT=900, B=5)]
    assert run(hot, hot) == [None, "arn-1"]
    running[0] = False
    ended["HOT"] = now[0]  # HOT's move ended at t=2
    assert run(cool, cool, hot_again, hot_again) == [None, None, None, None]  # ALARM at t=6: 4 s
    assert run(cool, cool, hot_again, hot_again) == [None, None, None, "arn-2"]  # t=10: 8 s
    # another symbol, hot on another engine, during HOT's cooldown: it moves
    running[0] = False
    ended["HOT"] = now[0]
    both = [_stats(95, "e-0", HOT=900, A=1), _stats(90, "e-1", B=700, C=1)]
    assert run(cool, cool, both, both) == [None, None, None, "arn-3"]  # t=14: HOT 4 s
    assert started == ["arn-1", "arn-2", "arn-3"]
