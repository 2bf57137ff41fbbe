"""The local stand-in for the CloudWatch alarms and the EventBridge rule (infra/migration.py):
it reads the same two metrics the alarms watch, from the engines' Stats - the highest
engine process CPU (ProcessCpu) and the highest per-symbol order rate (SymbolOrderRate) -
judges them like the alarms (threshold from cdk.json's context, greater than it in
hotshard:alarmDatapointsToAlarm of the last hotshard:alarmEvaluationPeriods periods) and,
on a transition to ALARM, starts one execution of the state machine with the event
EventBridge would deliver - not while one it started runs, nor for
hotshard:migrationCooldownPeriods periods after it ended (a moved symbol's meters restart
on its new engine: without a cooldown the alarm may go OK and back to ALARM and move
again at once; in AWS, DetectHotSymbol refuses an alarm's execution during the same
cooldown). Locally a period is a few seconds, not a minute; the thresholds and counts are
the same."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotshard import names
from hotshard.migration import plan

CDK_JSON = Path(__file__).resolve().parents[2] / "cdk.json"
DEFAULT_CPU_THRESHOLD = 85.0
DEFAULT_RATE_THRESHOLD = 50_000.0
EVALUATION_PERIODS = 3
DATAPOINTS_TO_ALARM = 2
COOLDOWN_PERIODS = 3
PERIOD_S = 5.0


def thresholds(path: Path = CDK_JSON) -> tuple[float, float]:
    """(CPU %, orders/s) the alarms use: cdk.json's hotshard:cpuAlarmThreshold and
    hotshard:symbolRateAlarmThreshold (defaults when run without the repository)."""
    try:
        context = json.loads(path.read_text())["context"]
    except (OSError, ValueError, KeyError):
        return DEFAULT_CPU_THRESHOLD, DEFAULT_RATE_THRESHOLD
    return (
        float(context.get("hotshard:cpuAlarmThreshold", DEFAULT_CPU_THRESHOLD)),
        float(context.get("hotshard:symbolRateAlarmThreshold", DEFAULT_RATE_THRESHOLD)),
    )


@dataclass(frozen=True)
class Evaluation:
    """How the alarms judge and how long a move quiets them, in periods (cdk.json)."""

    periods: int = EVALUATION_PERIODS
    to_alarm: int = DATAPOINTS_TO_ALARM
    cooldown: int = COOLDOWN_PERIODS


def evaluation(path: Path = CDK_JSON) -> Evaluation:
    """cdk.json's hotshard:alarmEvaluationPeriods, hotshard:alarmDatapointsToAlarm and
    hotshard:migrationCooldownPeriods (infra/config.py reads the same keys)."""
    try:
        context = json.loads(path.read_text())["context"]
    except (OSError, ValueError, KeyError):
        return Evaluation()
    return Evaluation(
        int(context.get("hotshard:alarmEvaluationPeriods", EVALUATION_PERIODS)),
        int(context.get("hotshard:alarmDatapointsToAlarm", DATAPOINTS_TO_ALARM)),
        int(context.get("hotshard:migrationCooldownPeriods", COOLDOWN_PERIODS)),
    )


@dataclass
class Alarm:
    """One CloudWatch alarm: GreaterThanThreshold, M of N periods, missing = not breaching."""

    name: str
    metric: str
    threshold: float
    periods: int = EVALUATION_PERIODS
    to_alarm: int = DATAPOINTS_TO_ALARM
    state: str = "OK"
    window: deque[bool] = field(default_factory=deque)

    def observe(self, value: float | None) -> bool:
        """Add one period's maximum; True when this turns the alarm to ALARM."""
        self.window.append(value is not None and value > self.threshold)
        while len(self.window) > self.periods:
            self.window.popleft()
        breaching = sum(self.window) >= self.to_alarm
        before, self.state = self.state, "ALARM" if breaching else "OK"
        return before != "ALARM" and self.state == "ALARM"


def alarm_event(alarm: Alarm, value: float | None) -> dict[str, Any]:
    """The EventBridge event a CloudWatch alarm state change delivers (trimmed)."""
    return {
        "version": "0",
        "source": "aws.cloudwatch",
        "detail-type": "CloudWatch Alarm State Change",
        "resources": [f"arn:aws:cloudwatch:local:000000000000:alarm:{alarm.name}"],
        "detail": {
            "alarmName": alarm.name,
            "state": {"value": "ALARM", "reason": f"{alarm.metric} {value} > {alarm.threshold}"},
            "previousState": {"value": "OK"},
        },
    }


def maxima(stats: Iterable[Any]) -> tuple[float | None, float | None]:
    """(max process CPU, max per-symbol orders/s) over engines' StatsReply."""
    cpu: float | None = None
    rate: float | None = None
    for reply in stats:
        cpu = reply.cpu_percent if cpu is None else max(cpu, reply.cpu_percent)
        for symbol in reply.symbols:
            rate = symbol.orders_per_second if rate is None else max(rate, symbol.orders_per_second)
    return cpu, rate


class Monitor:
    """Every `period_s`: read Stats, judge both alarms, start an execution on ALARM (not
    while one it started is still running, nor within the cooldown after it ended:
    plan.cooling_down)."""

    def __init__(
        self,
        read_stats: Callable[[], list[Any]],
        start: Callable[[dict[str, Any]], str],
        running: Callable[[str], bool],
        *,
        period_s: float = PERIOD_S,
        cpu_threshold: float | None = None,
        rate_threshold: float | None = None,
        say: Callable[[str], None] = lambda _line: None,
        cooldown_periods: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        cpu, rate = thresholds()
        judged = evaluation()
        self.alarms = (
            Alarm(
                "EngineCpuHigh",
                names.METRIC_PROCESS_CPU,
                cpu_threshold or cpu,
                judged.periods,
                judged.to_alarm,
            ),
            Alarm(
                "SymbolRateHigh",
                names.METRIC_SYMBOL_ORDER_RATE,
                rate_threshold or rate,
                judged.periods,
                judged.to_alarm,
            ),
        )
        self.read_stats, self.start, self.running = read_stats, start, running
        self.period_s, self.say, self.clock = period_s, say, clock
        periods = judged.cooldown if cooldown_periods is None else cooldown_periods
        self.cooldown_s = periods * period_s
        self.started: list[str] = []
        self.ended_at: float | None = None  # when the last execution it started was seen ended
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> str | None:
        try:
            cpu, rate = maxima(self.read_stats())
        except Exception:
            cpu, rate = None, None
        fired = [
            (alarm, value)
            for alarm, value in zip(self.alarms, (cpu, rate), strict=True)
            if alarm.observe(value)
        ]
        if self.started and self.ended_at is None and not self.running(self.started[-1]):
            self.ended_at = self.clock()
        if not fired:
            return None
        if self.started and self.ended_at is None:
            return None  # one it started is still running
        now = self.clock()
        if plan.cooling_down(now, self.ended_at, self.cooldown_s):
            alarm, value = fired[0]
            self.say(f"monitor: {alarm.name} during the cooldown after a move: nothing started")
            return None
        alarm, value = fired[0]
        arn = self.start(alarm_event(alarm, value))
        self.started.append(arn)
        self.ended_at = None
        self.say(f"monitor: {alarm.name} ({alarm.metric} {value} > {alarm.threshold}): {arn}")
        return arn

    def run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.tick()

    def start_thread(self) -> None:
        self._thread = threading.Thread(target=self.run, name="monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
