"""End-to-end benchmark of ONE engine process through the real broker (Tansu, local).

    python -m bench.engine [--orders N] [--rate R] [--symbols K]

1. Throughput: N orders (hotshard.local.flow.zipf_stream) are pre-loaded into partition 0 of
   `orders`; then the engine starts and the benchmark reads order_status until every
   order's events are out: orders/s = N / (last event - first event), as seen by a reader.
2. Latency: a separate producer process offers orders to partition 1 at R/s (default
   75,000: half the 150,000 goal) and stamps each send; the reader notes when the first
   order_status of each input offset arrives: order-to-event latency p50/p99/max
   (client send -> event read, so it includes both Kafka hops and the reader).

Everything runs on 127.0.0.1 on free ports and is stopped at the end. On a 2-core machine
the broker, the engine, the producer and the reader share the cores: compare ratios in
one run, not absolute numbers across machines.
"""

import argparse
import multiprocessing as mp
import time
from array import array
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from hotshard import kafka
from hotshard.local.flow import zipf_stream
from hotshard.local.services.broker import tansu
from hotshard.local.services.engine import start_engine
from hotshard.local.services.process import workdir
from hotshard.local.services.redis import redis_server
from hotshard.local.traffic import producer
from hotshard.names import TOPIC_ORDER_STATUS, TOPIC_ORDERS
from hotshard.v1 import events_pb2
from hotshard.wire import encode_order


def _reader(bootstrap: str, partition: int) -> Consumer:
    c = Consumer(
        kafka.consumer_config(
            {"bootstrap.servers": bootstrap}, group_id="hotshard-bench", fetch_wait_max_ms=10
        )
    )
    c.assign([TopicPartition(TOPIC_ORDER_STATUS, partition, 0)])
    return c


def _preload(bootstrap: str, values: list[bytes], keys: list[bytes]) -> None:
    prod = producer(bootstrap, **{"linger.ms": 20})
    for key, value in zip(keys, values, strict=True):
        while True:
            try:
                prod.produce(TOPIC_ORDERS, value, key, 0)
                break
            except BufferError:
                prod.poll(0.05)
    if prod.flush(120):
        raise SystemExit("pre-load did not complete")


WARMUP_TOPIC = "bench-warmup"


def _offer(bootstrap: str, count: int, rate: float, seed: int, symbols: int, out: str) -> None:
    """Producer process: send `count` orders at `rate`/s, write send times (ns) to `out`."""
    stream = zipf_stream(count, seed=seed, symbols=symbols)
    values = [encode_order(s, c) for s, c in stream]
    keys = [s.encode() for s, _ in stream]
    prod = producer(bootstrap, **{"linger.ms": 1})
    # An idempotent producer's first records wait ~0.5 s for its producer id (Tansu):
    # acquire it before the clock starts, or the first half second of orders carries it.
    prod.produce(WARMUP_TOPIC, b"warm-up")
    prod.flush(10)
    sent = array("q", [0]) * count
    began = time.perf_counter()
    step = 200
    for start in range(0, count, step):
        due = began + start / rate
        while (delay := due - time.perf_counter()) > 0:
            time.sleep(min(delay, 0.001))
        now = time.time_ns()
        for i in range(start, min(start + step, count)):
            sent[i] = now
            prod.produce(TOPIC_ORDERS, values[i], keys[i], 1)
        prod.poll(0)
    prod.flush(60)
    Path(out).write_bytes(sent.tobytes())


def _read_statuses(
    consumer: Consumer, first_offset: int, count: int, timeout: float
) -> tuple["array[int]", float, float]:
    """Arrival time (ns) of the first order_status of each input offset; first/last times."""
    arrived = array("q", [0]) * count
    seen = 0
    first = last = 0.0
    deadline = time.monotonic() + timeout
    parse = events_pb2.OrderStatusBatch.FromString
    while seen < count and time.monotonic() < deadline:
        msgs = consumer.consume(1000, 0.005)
        if not msgs:
            continue
        now_ns = time.time_ns()
        now = time.perf_counter()
        first = first or now
        for m in msgs:
            if m.error() is not None:
                continue
            for ev in parse(m.value() or b"").events:
                i = ev.input_offset - first_offset
                if 0 <= i < count and not arrived[i]:
                    arrived[i] = now_ns
                    seen += 1
        last = now
    if seen < count:
        raise SystemExit(f"only {seen:,} of {count:,} orders produced events in {timeout} s")
    return arrived, first, last


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--orders", type=int, default=200_000, help="pre-loaded orders (throughput)")
    p.add_argument("--rate", type=float, default=75_000, help="offered orders/s (latency)")
    p.add_argument("--latency-orders", type=int, default=300_000, help="orders offered at --rate")
    p.add_argument("--symbols", type=int, default=100)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)

    stream = zipf_stream(args.orders, seed=args.seed, symbols=args.symbols)
    values = [encode_order(s, c, client_ts_ns=1) for s, c in stream]
    keys = [s.encode() for s, _ in stream]
    with (
        tansu() as broker,
        redis_server() as redis_srv,
        workdir("hotshard-bench-") as wd,
    ):
        # Partition 0: the pre-loaded throughput run; partition 1: the paced latency run
        # (fresh partitions: Tansu fetches slow down as a partition's batch count grows).
        kafka.create_topics(broker.admin(), 2)
        kafka.create_topics(broker.admin(), 1, (WARMUP_TOPIC,))
        _preload(broker.bootstrap, values, keys)
        consumer = _reader(broker.bootstrap, 0)
        engine = start_engine(
            workdir=wd,
            brokers=broker.bootstrap,
            redis_port=redis_srv.port,
            partitions="0-1",
            instance="bench",
            extra_args=["--snapshot-interval-s", "3600", "--fetch-wait-max-ms", "10"],
            wait=False,  # read from the first event on
        )
        try:
            arrived, _, _ = _read_statuses(consumer, 0, args.orders, timeout=300)
            # The orders of the first read share its arrival time; the clock starts there,
            # so they are not counted (counting them overstates the rate by a whole batch).
            first_ns, last_ns = min(arrived), max(arrived)
            counted = sum(1 for a in arrived if a > first_ns)
            rate = counted / ((last_ns - first_ns) / 1e9)
            print(
                f"throughput: {args.orders:,} pre-loaded orders, {args.symbols} symbols: "
                f"{rate:,.0f} orders/s end to end ({counted:,} orders in "
                f"{(last_ns - first_ns) / 1e9:.2f} s after the first events were read)"
            )

            out = wd / "sent.bin"
            offer = mp.get_context("spawn").Process(
                target=_offer,
                args=(
                    broker.bootstrap,
                    args.latency_orders,
                    args.rate,
                    args.seed + 1,
                    args.symbols,
                    str(out),
                ),
            )
            consumer.close()
            consumer = _reader(broker.bootstrap, 1)
            offer.start()
            arrived, first, last = _read_statuses(consumer, 0, args.latency_orders, timeout=300)
            offer.join(60)
            sent = array("q")
            sent.frombytes(out.read_bytes())
            lat = sorted((a - s) / 1e6 for a, s in zip(arrived, sent, strict=True))
            print(
                f"latency at {args.rate:,.0f} orders/s offered ({args.latency_orders:,} orders; "
                f"achieved {args.latency_orders / (last - first):,.0f}/s): "
                f"p50 {_pct(lat, 0.5):.2f} ms, p99 {_pct(lat, 0.99):.2f} ms, "
                f"max {lat[-1]:.2f} ms (send -> first order_status read)"
            )
        finally:
            engine.process.stop()
            consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
