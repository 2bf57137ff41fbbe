"""The local stand-in for the CloudWatch alarms and the EventBridge rule (infra/migration.py):
it reads the same two metrics the alarms watch, from the engines' Stats - the highest
engine process CPU (ProcessCpu) and the highest per-symbol order rate (SymbolOrderRate) -
judges them like the alarms (threshold from cdk.json's context, greater than it in
hotshard:alarmDatapointsToAlarm of the last hotshard:alarmEvaluationPeriods periods) and,
on a transition to ALARM, starts one execution of the state machine with the event
EventBridge would deliver - not while one it started runs, nor when the symbol it would
move is within hotshard:migrationCooldownPeriods periods of the end of its own last
migration and no other is above the alarm's threshold (a moved symbol's meters restart
on its new engine: without a cooldown the alarm may go OK and back to ALARM and move it
again at once; the cooldown is per symbol: a second hot symbol elsewhere may move; in
AWS, DetectHotSymbol makes the same decision, plan.hottest). Locally a period is a few
seconds, not a minute; the thresholds and counts are the same."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotshard import names
from hotshard.migration import plan
from hotshard.migration.errors import NoHotSymbol
from hotshard.reasons import Reason

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


def loads(stats: Iterable[Any]) -> list[plan.EngineLoad]:
    """The engines' loads as DetectHotSymbol sees them, from their StatsReply."""
    return [
        plan.engine_load(s.instance_id, "", (p.partition for p in s.partitions), s) for s in stats
    ]


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
    while one it started is still running, nor when plan.hottest says every candidate is
    cooling down). `ended(symbols)`: when each symbol's last migration ended (seconds on
    `clock`; hotshard.migration.steps.ended_ms read from Redis)."""

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
        ended: Callable[[Iterable[str]], Mapping[str, float]] = lambda _symbols: {},
        clock: Callable[[], float] = time.time,
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
        self.period_s, self.say, self.clock, self.ended = period_s, say, clock, ended
        periods = judged.cooldown if cooldown_periods is None else cooldown_periods
        self.cooldown_s = periods * period_s
        self.started: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> str | None:
        try:
            stats = self.read_stats()
        except Exception:
            stats = []
        cpu, rate = maxima(stats)
        fired = [
            (alarm, value)
            for alarm, value in zip(self.alarms, (cpu, rate), strict=True)
            if alarm.observe(value)
        ]
        if not fired:
            return None
        if self.started and self.running(self.started[-1]):
            return None  # one it started is still running
        alarm, value = fired[0]
        refused = self._cooling_down(alarm, loads(stats))
        if refused:
            self.say(f"monitor: {alarm.name}: {refused}: nothing started")
            return None
        arn = self.start(alarm_event(alarm, value))
        self.started.append(arn)
        self.say(f"monitor: {alarm.name} ({alarm.metric} {value} > {alarm.threshold}): {arn}")
        return arn

    def _cooling_down(self, alarm: Alarm, engines: list[plan.EngineLoad]) -> str:
        """Why DetectHotSymbol would move nothing for the cooldown ("" : it may move one)."""
        symbols = [s for e in engines for s in e.symbols]
        try:
            ended = self.ended(symbols)
        except Exception:  # Redis away: DetectHotSymbol, reading it, decides
            ended = {}
        cooling = plan.cooling(self.clock(), ended, self.cooldown_s)
        try:
            by_rate = alarm.name == plan.RATE_ALARM
            plan.hottest(engines, by_rate=by_rate, cooling=cooling, threshold=alarm.threshold)
        except NoHotSymbol as exc:
            return exc.detail if exc.reason == Reason.MIGRATION_COOLDOWN else ""
        return ""

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
