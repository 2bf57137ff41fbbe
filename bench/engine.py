"""End-to-end benchmark of ONE engine process through the real broker (Tansu, local).

    python -m bench.engine [--orders N] [--rate R] [--symbols K]

1. Throughput: N orders (hotshard.local.flow.zipf_stream) are pre-loaded into partition 0 of
   `orders`; then the engine starts and the benchmark reads order_status until every
   order's events are out: orders/s = N / (last event - first event), as seen by a reader.
2. Latency: a separate producer process offers orders to partition 1 at R/s (default
   75,000: half the 150,000 goal) and stamps each send; the reader notes when the first
   order_status of each input offset arrives: order-to-event latency p50/p99/max
   (client send -> event read, so it includes both Kafka hops and the reader).
3. `--baseline`: the same offered load again, through a relay with the engine's Kafka
   settings that does no matching (partition 2): the broker's and the clients' share.

`--engine-wrapper 'valgrind --tool=cachegrind ...'` runs the engine under a tool: two runs
of different --orders give the instructions per order end to end (the Kafka client's
threads included), whatever the machine's load.

`--profile DIR` runs py-spy (GIL samples, 200/s) on the engine process during the throughput
run and prints where its samples are (DIR/engine.txt, collapsed stacks).

Everything runs on 127.0.0.1 on free ports and is stopped at the end. On a 2-core machine
the broker, the engine, the producer and the reader share the cores: compare ratios in
one run, not absolute numbers across machines.
"""

import argparse
import multiprocessing as mp
import os
import shlex
import signal
import subprocess
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.edge import thread_times
from engine.service.settings import EngineSettings
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


def _reader(
    bootstrap: str,
    partition: int,
    fetch_wait_ms: int,
    *,
    topic: str = TOPIC_ORDER_STATUS,
    group: str = "hotshard-bench",
) -> Consumer:
    """A consumer of `topic`'s `partition` from its start, with the engine's settings."""
    c = Consumer(
        kafka.consumer_config(
            {"bootstrap.servers": bootstrap}, group_id=group, fetch_wait_max_ms=fetch_wait_ms
        )
    )
    c.assign([TopicPartition(topic, partition, 0)])
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


def _offer(
    bootstrap: str, count: int, rate: float, seed: int, symbols: int, out: str, partition: int
) -> None:
    """Producer process: send `count` orders at `rate`/s to `partition`, write send times
    (ns) to `out`."""
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
            prod.produce(TOPIC_ORDERS, values[i], keys[i], partition)
        prod.poll(0)
    prod.flush(60)
    Path(out).write_bytes(sent.tobytes())


RELAY_PARTITION = 2


def _relay(bootstrap: str, fetch_wait_ms: int, batch_size: int, stop: Any) -> None:
    """The Kafka floor of the latency run (--baseline): a process with the engine's client
    settings (engine/__main__.py, engine.service.settings defaults) that consumes `orders`
    partition RELAY_PARTITION and publishes, per consumed batch and symbol, one
    OrderStatusBatch with one event per order (its input offset) and nothing else: no
    book, no fills, trades or depth. Its send -> read latency is what the broker and the
    clients take; the engine's minus it is the engine's (an upper bound: the relay
    writes fewer records than the engine)."""
    settings = EngineSettings()
    consumer = _reader(
        bootstrap,
        RELAY_PARTITION,
        fetch_wait_ms,
        topic=TOPIC_ORDERS,
        group="hotshard-bench-relay",
    )
    prod = Producer(
        kafka.producer_config({"bootstrap.servers": bootstrap}, linger_ms=settings.linger_ms)
    )
    size = batch_size or settings.batch_size
    timeout = settings.poll_timeout_ms / 1000
    try:
        while not stop.is_set():
            by_symbol: dict[bytes, list[int]] = {}
            for m in consumer.consume(size, timeout):
                offset = m.offset()
                if m.error() is None and offset is not None:
                    by_symbol.setdefault(m.key() or b"", []).append(offset)
            for key, offsets in by_symbol.items():
                batch = events_pb2.OrderStatusBatch(symbol=key.decode())
                for offset in offsets:
                    batch.events.add(input_offset=offset, status=1)
                prod.produce(TOPIC_ORDER_STATUS, batch.SerializeToString(), key, RELAY_PARTITION)
            prod.poll(0)
    finally:
        prod.flush(10)
        consumer.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Reads:
    arrived: "array[int]"
    """Per input offset: when its first order_status was read (ns since the epoch)."""
    produced: "array[int]"
    """... and that record's timestamp: when the engine produced it (ms resolution, in ns)."""
    first: float
    last: float
    cpu: float
    """The engine's CPU seconds from the first read to the last (0 if not asked)."""
    threads: dict[str, float]
    """... and per thread kind (bench.edge.thread_times: the loop, librdkafka's threads)."""


def _read_statuses(
    consumer: Consumer, first_offset: int, count: int, timeout: float, pid: int = 0
) -> Reads:
    """Read order_status until every input offset in [first_offset, +count) has one."""
    arrived = array("q", [0]) * count
    produced = array("q", [0]) * count
    seen = 0
    first = last = 0.0
    cpu_first = cpu_last = 0.0
    threads_first: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + timeout
    parse = events_pb2.OrderStatusBatch.FromString
    while seen < count and time.monotonic() < deadline:
        msgs = consumer.consume(1000, 0.005)
        if not msgs:
            continue
        now_ns = time.time_ns()
        now = time.perf_counter()
        if pid:
            cpu_last = cpu_seconds(pid)
            if not cpu_first:
                cpu_first = cpu_last
                threads_first = thread_times({"engine": pid})
        first = first or now
        for m in msgs:
            if m.error() is not None:
                continue
            made_ns = m.timestamp()[1] * 1_000_000
            for ev in parse(m.value() or b"").events:
                i = ev.input_offset - first_offset
                if 0 <= i < count and not arrived[i]:
                    arrived[i] = now_ns
                    produced[i] = made_ns
                    seen += 1
        last = now
    threads: dict[str, float] = {}
    if pid:
        for (_, kind), spent in thread_times({"engine": pid}).items():
            threads[kind] = spent - threads_first.get(("engine", kind), 0.0)
    if seen < count:
        raise SystemExit(f"only {seen:,} of {count:,} orders produced events in {timeout} s")
    return Reads(arrived, produced, first, last, cpu_last - cpu_first, threads)


def _stop_profiles(spies: list["subprocess.Popen[bytes]"], out: Path | None) -> None:
    """SIGINT makes py-spy write what it sampled; then print the table."""
    if not spies or out is None:
        return
    from rich.console import Console  # noqa: PLC0415

    from bench.edge import profile_table  # noqa: PLC0415

    for spy in spies:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
    Console(width=140).print(profile_table(out / "engine.txt", 24, ("hotshard/", "engine/")))


def _latency(bootstrap: str, args: Any, partition: int, wd: Path, who: str) -> Consumer:
    """Offer --latency-orders at --rate to `partition` and read their first statuses there;
    prints the latency and its split. Returns the reader (to close)."""
    out = wd / f"sent-{partition}.bin"
    offer = mp.get_context("spawn").Process(
        target=_offer,
        args=(
            bootstrap,
            args.latency_orders,
            args.rate,
            args.seed + 1,
            args.symbols,
            str(out),
            partition,
        ),
    )
    consumer = _reader(bootstrap, partition, args.fetch_wait_ms)
    offer.start()
    reads = _read_statuses(consumer, 0, args.latency_orders, timeout=args.timeout_s)
    offer.join(60)
    sent = array("q")
    sent.frombytes(out.read_bytes())
    lat = sorted((a - s) / 1e6 for a, s in zip(reads.arrived, sent, strict=True))
    print(
        f"latency through the {who} at {args.rate:,.0f} orders/s offered "
        f"({args.latency_orders:,} orders; achieved "
        f"{args.latency_orders / max(reads.last - reads.first, 1e-9):,.0f}/s): "
        f"p50 {_pct(lat, 0.5):.2f} ms, p99 {_pct(lat, 0.99):.2f} ms, "
        f"max {lat[-1]:.2f} ms (send -> first order_status read); load {_load()}"
    )
    # Split at the event record's timestamp (set by the producer when the engine or relay
    # publishes): before it, hop 1 (the broker holding the order until the fetch returns)
    # and the batch; after it, hop 2 (linger, the broker holding the event until the
    # reader's fetch returns). ms resolution.
    into = sorted((p - s) / 1e6 for p, s in zip(reads.produced, sent, strict=True))
    out_of = sorted((a - p) / 1e6 for a, p in zip(reads.arrived, reads.produced, strict=True))
    for name, part in ((f"send -> {who} publishes", into), ("publish -> read", out_of)):
        print(
            f"  {name}: p50 {_pct(part, 0.5):.1f} ms, p99 {_pct(part, 0.99):.1f} ms "
            f"(fetch wait {args.fetch_wait_ms} ms)"
        )
    return consumer


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


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
    p.add_argument(
        "--fetch-wait-ms",
        type=int,
        default=10,
        help="fetch.wait.max.ms of the engine and the reader (Tansu holds a fetch about a "
        "quarter of it: the broker's share of each hop)",
    )
    p.add_argument(
        "--batch-size", type=int, default=0, help="the engine's --batch-size (0: its default)"
    )
    p.add_argument(
        "--engine-wrapper",
        default="",
        help="run the engine under this command, e.g. 'valgrind --tool=cachegrind "
        "--cache-sim=no --cachegrind-out-file=/tmp/cg.%%p': its instruction count, "
        "deterministic whatever the load (the CPU figures are then the wrapper's)",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="after the engine's latency run, the same offered load through a relay with the "
        "engine's Kafka settings and no matching: the broker's and clients' share",
    )
    p.add_argument(
        "--timeout-s", type=float, default=300, help="longest wait for each run's events"
    )
    p.add_argument("--profile", type=Path, default=None, help="py-spy output folder")
    p.add_argument(
        "--skip-latency", action="store_true", help="only the throughput run (e.g. to profile)"
    )
    args = p.parse_args(argv)

    stream = zipf_stream(args.orders, seed=args.seed, symbols=args.symbols)
    # stamped as a router would (its clock when the order came): the engine's latency
    # histogram then counts seconds, not the ~1.8e18 ns a stamp of 1 gave (an int beyond
    # the compiled code's fast 62-bit range: its sums cost ~1,000 instructions per order)
    stamp = time.time_ns()
    values = [encode_order(s, c, client_ts_ns=stamp) for s, c in stream]
    keys = [s.encode() for s, _ in stream]
    with (
        tansu() as broker,
        redis_server() as redis_srv,
        workdir("hotshard-bench-") as wd,
    ):
        # Partition 0: the pre-loaded throughput run; partition 1: the paced latency run;
        # partition 2: the relay's (--baseline) (fresh partitions: Tansu fetches slow down
        # as a partition's batch count grows).
        kafka.create_topics(broker.admin(), 3)
        kafka.create_topics(broker.admin(), 1, (WARMUP_TOPIC,))
        _preload(broker.bootstrap, values, keys)
        consumer = _reader(broker.bootstrap, 0, args.fetch_wait_ms)
        engine = start_engine(
            workdir=wd,
            brokers=broker.bootstrap,
            redis_port=redis_srv.port,
            partitions="0-1",
            instance="bench",
            extra_args=[
                "--snapshot-interval-s",
                "3600",
                "--fetch-wait-max-ms",
                str(args.fetch_wait_ms),
                *(["--batch-size", str(args.batch_size)] if args.batch_size else []),
            ],
            wait=False,  # read from the first event on
            wrapper=shlex.split(args.engine_wrapper),
        )
        spies = []
        if args.profile:
            from bench.edge import start_profiles  # noqa: PLC0415

            spies = start_profiles({"engine": engine.process.popen.pid}, 600, args.profile)
        try:
            pid = engine.process.popen.pid
            reads = _read_statuses(consumer, 0, args.orders, timeout=args.timeout_s, pid=pid)
            arrived, cpu = reads.arrived, reads.cpu
            _stop_profiles(spies, args.profile)
            # The orders of the first read share its arrival time; the clock starts there,
            # so they are not counted (counting them overstates the rate by a whole batch).
            first_ns, last_ns = min(arrived), max(arrived)
            counted = sum(1 for a in arrived if a > first_ns)
            if not counted:
                raise SystemExit(
                    f"all {args.orders:,} orders' statuses came in one read: too few to time "
                    "(give --orders a few batches' worth, e.g. 200000)"
                )
            rate = counted / ((last_ns - first_ns) / 1e9)
            print(
                f"throughput: {args.orders:,} pre-loaded orders, {args.symbols} symbols: "
                f"{rate:,.0f} orders/s end to end ({counted:,} orders in "
                f"{(last_ns - first_ns) / 1e9:.2f} s after the first events were read)"
            )
            # the engine's own CPU time over the same span: what an order costs it whatever
            # else the machine runs (the broker, the reader and other users share the cores)
            print(
                f"engine CPU: {cpu:.2f} s for those orders, {cpu / max(counted, 1) * 1e6:.1f} us "
                f"per order ({counted / max(cpu, 1e-9):,.0f} orders per engine CPU-second); "
                f"load average {_load()}"
            )
            per_thread = ", ".join(
                f"{kind} {spent / max(counted, 1) * 1e6:.2f}"
                for kind, spent in sorted(reads.threads.items(), key=lambda kv: -kv[1])
                if spent > 0
            )
            print(f"  by thread, us per order: {per_thread}")
            if args.skip_latency:
                return 0

            consumer.close()
            consumer = _latency(broker.bootstrap, args, 1, wd, "engine")
            if args.baseline:
                stop = mp.get_context("spawn").Event()
                relay = mp.get_context("spawn").Process(
                    target=_relay,
                    args=(broker.bootstrap, args.fetch_wait_ms, args.batch_size, stop),
                )
                relay.start()
                try:
                    consumer.close()
                    consumer = _latency(
                        broker.bootstrap, args, RELAY_PARTITION, wd, "relay (Kafka floor)"
                    )
                finally:
                    stop.set()
                    relay.join(30)
        finally:
            engine.process.stop()
            consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
