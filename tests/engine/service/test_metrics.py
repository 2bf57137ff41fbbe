"""EMF from the engine: process metrics, and per symbol a latency histogram CloudWatch can
aggregate across instances (Values/Counts), not a percentile computed in-process."""

import json
import random
from collections.abc import Callable

from engine.service.metrics import (
    HISTOGRAM_MAX_BITS,
    HISTOGRAM_MIN_BITS,
    Metrics,
    bucket_of,
    bucket_value_ms,
)
from hotshard import names


def test_buckets_are_within_an_eighth_and_at_most_a_hundred():
    for ns in (20_000, 123_456, 1_000_000, 7_777_777, 2_000_000_000):
        assert abs(bucket_value_ms(bucket_of(ns)) * 1e6 - ns) <= ns / 8
    assert bucket_of(1) == bucket_of(1 << (HISTOGRAM_MIN_BITS - 1))
    assert bucket_of(10**15) == bucket_of((1 << HISTOGRAM_MAX_BITS) - 1)
    every = {
        bucket_of(1 << b) + k
        for b in range(HISTOGRAM_MIN_BITS, HISTOGRAM_MAX_BITS + 1)
        for k in range(4)
    }
    assert len(every) <= 100
    assert sorted(bucket_value_ms(b) for b in every) == [bucket_value_ms(b) for b in sorted(every)]


def _clock(values: list[float]) -> Callable[[], float]:
    it = iter(values)
    return lambda: next(it)


def test_emf_carries_every_latency_of_the_window_as_values_and_counts():
    m = Metrics(clock=_clock([0.0, 10.0, 20.0]), cpu_clock=_clock([0.0, 1.0, 2.0]))
    now = 10_000_000_000
    m.observe({"AAPL": 3}, {"AAPL": [now - 2_000_000, now - 2_000_000, now - 40_000_000]}, now)
    m.observe({"MSFT": 1}, {"MSFT": [now - 1_000_000]}, now)
    m.roll()
    docs = [json.loads(line) for line in m.emf("eng-1", 7, 1234)]
    process, *symbols = docs
    assert process["ConsumerLag"] == 7 and process["Instance"] == "eng-1"
    by = {d[names.DIM_SYMBOL]: d for d in symbols}
    aapl = by["AAPL"]
    metric_names = [x["Name"] for x in aapl["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert metric_names == [names.METRIC_SYMBOL_ORDER_RATE, names.METRIC_ORDER_TO_EVENT]
    hist = aapl[names.METRIC_ORDER_TO_EVENT]
    assert hist["Counts"] == [2, 1] and hist["Count"] == 3
    assert abs(hist["Values"][0] - 2.0) < 0.25 and abs(hist["Values"][1] - 40.0) < 5
    assert (hist["Min"], hist["Max"], hist["Sum"]) == (2.0, 40.0, 44.0)
    assert "OrderToEventP99" not in json.dumps(docs)
    # the next window starts empty: a quiet symbol sends no histogram, a busy one its own
    m.observe({"AAPL": 1}, {"AAPL": [now - 5_000_000]}, now)
    m.roll()
    (_, again) = [json.loads(line) for line in m.emf("eng-1", 0, 2345)]
    assert again[names.METRIC_ORDER_TO_EVENT]["Count"] == 1
    # Stats' in-process percentiles still read the recent samples
    assert m.symbols["AAPL"].percentile_ms(0.99) == 40.0


def test_observed_latencies_count_as_the_plain_formula_says():
    # the per-order loop is compiled (engine.fastwire.count_latencies): it must count what
    # max(now - ts, 0) per order gives, across observes, future stamps included
    metrics = Metrics()
    rng = random.Random(1)
    now = 3 * 10**9
    # runs of one bucket broken by others, back to an earlier bucket (counted as runs)
    clustered = [
        now - rng.choice((5_000_000, 9_000_000, 40_000)) - rng.randrange(9) for _ in range(500)
    ]
    batches = [
        (10**9, [10**9 - 5, 10**9 - 30_000, 10**9 + 7]),
        (2 * 10**9, [1, 10**9, 3]),
        (now, clustered),
    ]
    expected: dict[int, int] = {}
    latencies = []
    for now, stamps in batches:
        metrics.observe({"S": len(stamps)}, {"S": stamps}, now)
        for ts in stamps:
            latency = max(now - ts, 0)
            latencies.append(latency)
            expected[bucket_of(latency)] = expected.get(bucket_of(latency), 0) + 1
    meter = metrics.symbols["S"]
    assert meter.histogram == expected
    assert list(meter.latencies_ns) == latencies
    assert (meter.latency_min_ns, meter.latency_max_ns) == (min(latencies), max(latencies))
    assert meter.latency_sum_ns == sum(latencies)


def test_latencies_next_to_both_ends_keep_a_bucket_per_quarter():
    # mutants bucket_of 2 (`bits <= MIN_BITS`: 8-16 us all in the lowest bucket) and 4
    # (`bits >= MAX_BITS`: 137-275 s all in the highest)
    low, high = 1 << (HISTOGRAM_MIN_BITS - 1), 1 << (HISTOGRAM_MAX_BITS - 1)
    for start in (low, high):
        quarters = [start + k * (start // 4) for k in range(4)]
        assert len({bucket_of(ns) for ns in quarters}) == 4
        for ns in quarters:
            assert abs(bucket_value_ms(bucket_of(ns)) * 1e6 - ns) <= ns / 8


def test_a_first_stamp_after_now_counts_as_a_latency_of_0():
    # mutants count_latencies 4 (`now_ns > stamps[0] or True`: a min of -5) and 9 (`else
    # 1`: a max of 1 where every latency is 0)
    now = 10**9
    metrics = Metrics()
    metrics.observe({"S": 2}, {"S": [now + 5, now - 100]}, now)
    metrics.observe({"T": 1}, {"T": [now + 5]}, now)
    s, t = metrics.symbols["S"], metrics.symbols["T"]
    assert (s.latency_min_ns, s.latency_max_ns, s.latency_sum_ns) == (0, 100, 100)
    assert (t.latency_min_ns, t.latency_max_ns, t.latency_sum_ns) == (0, 0, 0)
