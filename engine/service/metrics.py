"""What the engine counts: per-symbol order rate and order-to-event latency, process CPU,
lag. Read by the Stats rpc and written as CloudWatch embedded metric format (EMF) lines,
one per report and symbol, which the CloudWatch agent (or Lambda-style log ingestion)
turns into metrics in the `hotshard` namespace.

Latency is client_ts_ns (set by the client or router) -> the moment the engine hands the
batch's events to the producer, so it includes queueing in Kafka and in the engine. Stats
answers p50/p99 of the last LATENCY_SAMPLES orders; EMF carries every order of the window
as a histogram (`OrderToEvent`: {"Values": [...], "Counts": [...], "Min", "Max", "Sum",
"Count"}, values in ms quantised to `HISTOGRAM_SUBBUCKETS` buckets per doubling, <= 100
values a document), so CloudWatch computes percentiles across every instance and period
instead of averaging per-process percentiles.
"""

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.fastwire import (
    HISTOGRAM_MAX_BITS,
    HISTOGRAM_MIN_BITS,
    HISTOGRAM_SUBBUCKETS,
    bucket_of,
    count_latencies,
)
from hotshard import names

LATENCY_SAMPLES = 4096
# the histogram's buckets (bucket_of): compiled with the book, once per order
__all__ = ["HISTOGRAM_MAX_BITS", "HISTOGRAM_MIN_BITS", "HISTOGRAM_SUBBUCKETS", "bucket_of"]


def bucket_value_ms(bucket: int) -> float:
    """The middle of a bucket, in ms (what the histogram reports for its values)."""
    bits, sub = divmod(bucket, HISTOGRAM_SUBBUCKETS)
    low = (4 + sub) << (bits - 3)
    width = 1 << (bits - 3)
    return round((low + width / 2) / 1e6, 6)


@dataclass(slots=True)
class SymbolMeter:
    total: int = 0
    window: int = 0
    rate: float = 0.0
    latencies_ns: deque[int] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    histogram: dict[int, int] = field(default_factory=dict)  # bucket -> orders, since last EMF
    latency_sum_ns: int = 0
    latency_min_ns: int = 0
    latency_max_ns: int = 0

    def record(self, now_ns: int, stamps: list[int]) -> None:
        """The orders with client timestamps `stamps` (not empty) had their events at now_ns."""
        fresh = not self.histogram
        latencies, low, high, total = count_latencies(self.histogram, now_ns, stamps)
        self.latencies_ns.extend(latencies)
        if fresh:
            self.latency_min_ns, self.latency_max_ns = low, high
        else:
            self.latency_min_ns = min(self.latency_min_ns, low)
            self.latency_max_ns = max(self.latency_max_ns, high)
        self.latency_sum_ns += total

    def drain_histogram(self) -> dict[str, object] | None:
        """The window's latencies as an EMF histogram value (ms), and a fresh window."""
        if not self.histogram:
            return None
        buckets = sorted(self.histogram)
        out: dict[str, object] = {
            "Values": [bucket_value_ms(b) for b in buckets],
            "Counts": [self.histogram[b] for b in buckets],
            "Min": round(self.latency_min_ns / 1e6, 6),
            "Max": round(self.latency_max_ns / 1e6, 6),
            "Sum": round(self.latency_sum_ns / 1e6, 6),
            "Count": sum(self.histogram.values()),
        }
        self.histogram = {}
        self.latency_sum_ns = self.latency_min_ns = self.latency_max_ns = 0
        return out

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
    log_replaced: int = 0
    """Partitions whose checkpoint named another `orders` log than the broker's (it lost
    its data): a count since the start, alarmed on (LogReplaced)."""
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
            if stamps:
                self.symbols[symbol].record(now_ns, stamps)

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
                            {"Name": names.METRIC_LOG_REPLACED, "Unit": "Count"},
                        ],
                    }
                ],
            },
            "Instance": instance,
            names.METRIC_PROCESS_CPU: round(self.cpu_percent, 2),
            "OrderRate": round(self.rate, 1),
            "ConsumerLag": lag,
            names.METRIC_LOG_REPLACED: self.log_replaced,
        }
        out = [json.dumps(process, separators=(",", ":"))]
        busy = sorted(
            ((s, m) for s, m in self.symbols.items() if m.rate > 0), key=lambda sm: -sm[1].rate
        )
        for symbol, meter in busy[:top]:
            histogram = meter.drain_histogram()
            metrics: list[dict[str, str]] = [
                {"Name": names.METRIC_SYMBOL_ORDER_RATE, "Unit": "Count/Second"}
            ]
            doc: dict[str, object] = {
                names.DIM_SYMBOL: symbol,
                "Instance": instance,
                names.METRIC_SYMBOL_ORDER_RATE: round(meter.rate, 1),
            }
            if histogram is not None:
                metrics.append({"Name": names.METRIC_ORDER_TO_EVENT, "Unit": "Milliseconds"})
                doc[names.METRIC_ORDER_TO_EVENT] = histogram
            doc["_aws"] = {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [
                    {
                        "Namespace": names.METRICS_NAMESPACE,
                        "Dimensions": [[names.DIM_SYMBOL]],
                        "Metrics": metrics,
                    }
                ],
            }
            out.append(json.dumps(doc, separators=(",", ":")))
        for meter in self.symbols.values():  # quiet symbols' leftovers start a fresh window
            if meter.rate == 0 and meter.histogram:
                meter.drain_histogram()
        return out
