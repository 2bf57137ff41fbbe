"""One Kafka hop on the local broker (Tansu): produce -> consume latency at several fetch waits.

    python -m bench.kafka_hop [--waits 1,2,5,10,20] [--rate 10000] [--seconds 3] [--json]

For each consumer fetch.wait.max.ms in --waits: a fresh one-partition topic, a producer
process with the engine's producer settings (hotshard.kafka.producer_config: idempotent,
lz4, --linger-ms) that offers --rate records/s of 100 bytes, each stamped with its send
time, and a consumer in this process (hotshard.kafka.consume_batch, the engine's consume)
that stamps each record when it is returned. Latency = returned - sent: the producer's
linger and request, the broker's write, the broker holding the consumer's fetch
(Tansu does not wake a waiting fetch), the fetch response and the client. Also the
broker's CPU per second of wall time while the consumer fetches an idle partition and
during the run: what a short fetch wait costs the broker.

This is the broker's share of each hop of bench.engine (the engine's orders -> engine,
engine -> reader), without the engine.
"""

import argparse
import json
import multiprocessing as mp
import time
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.engine import cpu_seconds
from hotshard import kafka
from hotshard.local.services.broker import tansu

SIZE = 100


def _offer(bootstrap: str, topic: str, rate: float, count: int, linger_ms: float) -> None:
    """Producer process: `count` records at `rate`/s, each value starting with its send
    time (ns); a warm-up record first (its producer id: ~0.5 s on Tansu) stamped 0."""
    prod = Producer(kafka.producer_config({"bootstrap.servers": bootstrap}, linger_ms=linger_ms))
    prod.produce(topic, (0).to_bytes(8, "little") + b"w" * (SIZE - 8), partition=0)
    prod.flush(10)
    pad = b"x" * (SIZE - 8)
    began = time.perf_counter()
    step = max(1, int(rate / 1000))  # one step a millisecond
    for start in range(0, count, step):
        due = began + start / rate
        while (delay := due - time.perf_counter()) > 0:
            time.sleep(min(delay, 0.0005))
        for _ in range(min(step, count - start)):
            prod.produce(topic, time.time_ns().to_bytes(8, "little") + pad, partition=0)
        prod.poll(0)
    prod.flush(30)


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def hop(broker: Any, wait_ms: int, args: Any) -> dict[str, float]:
    """One fetch wait: idle broker CPU, then the paced run's latency."""
    topic = f"hop-{wait_ms}-{time.monotonic_ns()}"
    kafka.create_topics(broker.admin(), 1, (topic,))
    consumer = Consumer(
        kafka.consumer_config(
            {"bootstrap.servers": broker.bootstrap},
            group_id=f"hop-{topic}",
            fetch_wait_max_ms=wait_ms,
            fetch_min_bytes=args.fetch_min_bytes,
        )
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    pid = broker.process.popen.pid
    try:
        consumer.consume(1, 0.5)  # connected and fetching
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        idle_end = t0 + args.idle_s
        while time.monotonic() < idle_end:
            kafka.consume_batch(consumer, 1000, 0.1)
        idle = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        count = int(args.rate * args.seconds)
        offer = mp.get_context("spawn").Process(
            target=_offer, args=(broker.bootstrap, topic, args.rate, count, args.linger_ms)
        )
        offer.start()
        lat: list[float] = []
        seen = 0
        cpu1 = t1 = 0.0
        deadline = time.monotonic() + args.seconds + 60
        while seen < count and time.monotonic() < deadline:
            msgs = kafka.consume_batch(consumer, 1000, 0.1, args.batch_wait_ms / 1000)
            now = time.time_ns()
            for m in msgs:
                if m.error() is not None:
                    continue
                sent = int.from_bytes((m.value() or b"")[:8], "little")
                if not sent:
                    continue
                if not seen:
                    cpu1, t1 = cpu_seconds(pid), time.monotonic()
                lat.append((now - sent) / 1e6)
                seen += 1
        busy = (cpu_seconds(pid) - cpu1) / max(time.monotonic() - t1, 1e-9)
        offer.join(30)
    finally:
        consumer.close()
    lat.sort()
    return {
        "fetch_wait_ms": wait_ms,
        "records": seen,
        "p50_ms": round(_pct(lat, 0.5), 2),
        "p90_ms": round(_pct(lat, 0.9), 2),
        "p99_ms": round(_pct(lat, 0.99), 2),
        "max_ms": round(lat[-1], 2) if lat else float("nan"),
        "broker_cpu_idle_ms_per_s": round(idle * 1000, 1),
        "broker_cpu_busy_ms_per_s": round(busy * 1000, 1),
    }


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.kafka_hop",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--waits", default="1,2,5,10,20", help="consumer fetch.wait.max.ms values")
    p.add_argument("--rate", type=float, default=10_000, help="records/s offered")
    p.add_argument("--seconds", type=float, default=3.0, help="seconds of records per wait")
    p.add_argument("--linger-ms", type=float, default=2.0, help="the producer's linger.ms")
    p.add_argument("--fetch-min-bytes", type=int, default=1, help="the consumer's fetch.min.bytes")
    p.add_argument(
        "--batch-wait-ms", type=float, default=0.0, help="consume_batch's batch wait (0)"
    )
    p.add_argument("--idle-s", type=float, default=2.0, help="seconds of the idle measure")
    p.add_argument("--json", action="store_true", help="also print the results as one JSON line")
    args = p.parse_args(argv)
    waits = [int(w) for w in args.waits.split(",") if w]
    results = []
    load_before = _load()
    with tansu() as broker:
        for wait in waits:
            r = hop(broker, wait, args)
            results.append(r)
            print(
                f"fetch wait {wait:>3} ms: p50 {r['p50_ms']:.2f} p90 {r['p90_ms']:.2f} "
                f"p99 {r['p99_ms']:.2f} max {r['max_ms']:.2f} ms ({r['records']:,} records); "
                f"broker CPU {r['broker_cpu_idle_ms_per_s']:.0f} ms/s idle, "
                f"{r['broker_cpu_busy_ms_per_s']:.0f} ms/s at {args.rate:,.0f} records/s"
            )
    print(f"linger {args.linger_ms} ms, load {load_before} -> {_load()}")
    if args.json:
        print(
            json.dumps(
                {
                    "bench": "kafka_hop",
                    "rate": args.rate,
                    "linger_ms": args.linger_ms,
                    "fetch_min_bytes": args.fetch_min_bytes,
                    "load_before": load_before,
                    "load_after": _load(),
                    "hops": results,
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
