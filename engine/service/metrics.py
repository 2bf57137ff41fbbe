"""What the engine counts: per-symbol order rate and order-to-event latency, process CPU,
lag. Read by the Stats rpc and written as CloudWatch embedded metric format (EMF) lines,
one per report and symbol, which the CloudWatch agent (or Lambda-style log ingestion)
turns into metrics in the `hotshard` namespace.

Latency is client_ts_ns (set by the client or router) -> the moment the engine hands the
batch's events to the producer, so it includes queueing in Kafka and in the engine.
"""

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hotshard import names

LATENCY_SAMPLES = 4096


@dataclass(slots=True)
class SymbolMeter:
    total: int = 0
    window: int = 0
    rate: float = 0.0
    latencies_ns: deque[int] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_ns:
            return 0.0
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


@dataclass(slots=True)
class Metrics:
    clock: Callable[[], float] = time.monotonic
    cpu_clock: Callable[[], float] = time.process_time
    symbols: dict[str, SymbolMeter] = field(default_factory=dict)
    total: int = 0
    rate: float = 0.0
    cpu_percent: float = 0.0
    _window: int = 0
    _since: float = 0.0
    _cpu_since: float = 0.0

    def __post_init__(self) -> None:
        self._since = self.clock()
        self._cpu_since = self.cpu_clock()

    def observe(self, orders: dict[str, int], client_ts: dict[str, list[int]], now_ns: int) -> None:
        n = 0
        for symbol, count in orders.items():
            meter = self.symbols.get(symbol)
            if meter is None:
                meter = self.symbols[symbol] = SymbolMeter()
            meter.total += count
            meter.window += count
            n += count
        self.total += n
        self._window += n
        for symbol, stamps in client_ts.items():
            self.symbols[symbol].latencies_ns.extend(now_ns - ts for ts in stamps)

    def roll(self) -> float:
        """Close the current window: rates and CPU over it. Returns its length (s)."""
        now, cpu = self.clock(), self.cpu_clock()
        elapsed = max(now - self._since, 1e-9)
        self.cpu_percent = 100.0 * (cpu - self._cpu_since) / elapsed
        self.rate = self._window / elapsed
        for meter in self.symbols.values():
            meter.rate = meter.window / elapsed
            meter.window = 0
        self._window = 0
        self._since, self._cpu_since = now, cpu
        return elapsed

    def forget(self, symbol: str) -> None:
        self.symbols.pop(symbol, None)

    def emf(self, instance: str, lag: int, timestamp_ms: int, top: int = 100) -> list[str]:
        """EMF documents: one for the process, one per symbol with orders in the window
        (the busiest `top`)."""
        process = {
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [
                    {
                        "Namespace": names.METRICS_NAMESPACE,
                        "Dimensions": [["Instance"]],
                        "Metrics": [
                            {"Name": names.METRIC_PROCESS_CPU, "Unit": "Percent"},
                            {"Name": "OrderRate", "Unit": "Count/Second"},
                            {"Name": "ConsumerLag", "Unit": "Count"},
                        ],
                    }
                ],
            },
            "Instance": instance,
            names.METRIC_PROCESS_CPU: round(self.cpu_percent, 2),
            "OrderRate": round(self.rate, 1),
            "ConsumerLag": lag,
        }
        out = [json.dumps(process, separators=(",", ":"))]
        busy = sorted(
            ((s, m) for s, m in self.symbols.items() if m.rate > 0), key=lambda sm: -sm[1].rate
        )
        for symbol, meter in busy[:top]:
            doc = {
                "_aws": {
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [
                        {
                            "Namespace": names.METRICS_NAMESPACE,
                            "Dimensions": [[names.DIM_SYMBOL]],
                            "Metrics": [
                                {"Name": names.METRIC_SYMBOL_ORDER_RATE, "Unit": "Count/Second"},
                                {"Name": "OrderToEventP50", "Unit": "Milliseconds"},
                                {"Name": "OrderToEventP99", "Unit": "Milliseconds"},
                            ],
                        }
                    ],
                },
                names.DIM_SYMBOL: symbol,
                "Instance": instance,
                names.METRIC_SYMBOL_ORDER_RATE: round(meter.rate, 1),
                "OrderToEventP50": round(meter.percentile_ms(0.50), 3),
                "OrderToEventP99": round(meter.percentile_ms(0.99), 3),
            }
            out.append(json.dumps(doc, separators=(",", ":")))
        return out
