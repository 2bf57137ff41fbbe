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
   settings that does no matching: the broker's and the clients' share. `--relay-only`:
   only that (no engine).

Per hop: `--engine-fetch-wait-ms` (hop 1: the engine's, or the relay's, fetch of `orders`),
`--reader-fetch-wait-ms` (hop 2: the reader's fetch of order_status), `--linger-ms` (the
engine's producer), `--batch-wait-ms` (the engine's consume_batch). Every consumer here
(the engine, the relay, the reader) takes a batch with hotshard.kafka.consume_batch: its
turn starts on the first record. `--legacy-consume` runs everything twice in one run, first
with the old consume (librdkafka's consume(n, timeout), which holds a batch for the whole
timeout unless it fills: the engine's --batch-wait-ms -1, the relay's and the reader's
consume(n, 5 ms)), then with the new one: a before/after on the same machine, each with an
engine process and partitions of its own. `--json`: the results as one JSON line at the end.

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
import json
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
from engine.book.instrument import DEFAULT_DEDUP_WINDOW
from engine.service.settings import LEGACY_CONSUME, EngineSettings
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


def _take(consumer: Consumer, size: int, legacy: bool, batch_wait_ms: float = 0.0) -> list[Any]:
    """A batch: the old consume (the whole 5 ms unless `size` came) or consume_batch."""
    if legacy:
        return list(consumer.consume(size, 0.005))
    return kafka.consume_batch(consumer, size, 0.1, batch_wait_ms / 1000)


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


def _preload(bootstrap: str, values: list[bytes], keys: list[bytes], partition: int) -> None:
    prod = producer(bootstrap, **{"linger.ms": 20})
    for key, value in zip(keys, values, strict=True):
        while True:
            try:
                prod.produce(TOPIC_ORDERS, value, key, partition)
                break
            except BufferError:
                prod.poll(0.05)
    if prod.flush(120):
        raise SystemExit("pre-load did not complete")


WARMUP_TOPIC = "bench-warmup"


def _offer(
    bootstrap: str,
    count: int,
    rate: float,
    seed: int,
    symbols: int,
    out: str,
    partition: int,
    linger_ms: float,
) -> None:
    """Producer process: send `count` orders at `rate`/s to `partition`, write send times
    (ns) to `out`."""
    # Symbols of their own ("L000"...): the throughput run's symbols already live on its
    # partition, so the same names here would all be refused STALE_ROUTE (a symbol is
    # matched from one partition only) and the run would time rejections, not matching.
    stream = [("L" + s[1:], c) for s, c in zipf_stream(count, seed=seed, symbols=symbols)]
    values = [encode_order(s, c) for s, c in stream]
    keys = [s.encode() for s, _ in stream]
    prod = producer(bootstrap, **{"linger.ms": linger_ms})
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


def _relay(
    bootstrap: str,
    partition: int,
    fetch_wait_ms: int,
    batch_size: int,
    linger_ms: float,
    batch_wait_ms: float,
    stop: Any,
) -> None:
    """The Kafka floor of the latency run (--baseline): a process with the engine's client
    settings (engine/__main__.py, engine.service.settings defaults) that consumes `orders`
    `partition` and publishes, per consumed batch and symbol, one
    OrderStatusBatch with one event per order (its input offset) and nothing else: no
    book, no fills, trades or depth. Its send -> read latency is what the broker and the
    clients take; the engine's minus it is the engine's (an upper bound: the relay
    writes fewer records than the engine)."""
    settings = EngineSettings()
    consumer = _reader(
        bootstrap,
        partition,
        fetch_wait_ms,
        topic=TOPIC_ORDERS,
        group=f"hotshard-bench-relay-{partition}",
    )
    prod = Producer(
        kafka.producer_config(
            {"bootstrap.servers": bootstrap}, linger_ms=linger_ms or settings.linger_ms
        )
    )
    size = batch_size or settings.batch_size
    timeout = settings.poll_timeout_ms / 1000
    legacy = batch_wait_ms == LEGACY_CONSUME
    try:
        while not stop.is_set():
            by_symbol: dict[bytes, list[int]] = {}
            batch = (
                consumer.consume(size, timeout)
                if legacy
                else kafka.consume_batch(consumer, size, timeout, batch_wait_ms / 1000)
            )
            for m in batch:
                offset = m.offset()
                if m.error() is None and offset is not None:
                    by_symbol.setdefault(m.key() or b"", []).append(offset)
            for key, offsets in by_symbol.items():
                out = events_pb2.OrderStatusBatch(symbol=key.decode())
                for offset in offsets:
                    out.events.add(input_offset=offset, status=1)
                prod.produce(TOPIC_ORDER_STATUS, out.SerializeToString(), key, partition)
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
    consumer: Consumer,
    first_offset: int,
    count: int,
    timeout: float,
    pid: int = 0,
    *,
    legacy: bool = False,
) -> Reads:
    """Read order_status until every input offset in [first_offset, +count) has one."""
    arrived = array("q", [0]) * count
    produced = array("q", [0]) * count
    seen = refused = 0
    first = last = 0.0
    cpu_first = cpu_last = 0.0
    threads_first: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + timeout
    parse = events_pb2.OrderStatusBatch.FromString
    while seen < count and time.monotonic() < deadline:
        msgs = _take(consumer, 1000, legacy)
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
                    refused += not ev.seq
        last = now
    threads: dict[str, float] = {}
    if pid:
        for (_, kind), spent in thread_times({"engine": pid}).items():
            threads[kind] = spent - threads_first.get(("engine", kind), 0.0)
    if seen < count:
        raise SystemExit(f"only {seen:,} of {count:,} orders produced events in {timeout} s")
    if refused and pid:
        # seq 0 from the engine: refused outside any book (no route, no budget): the run
        # would time refusals, not matching (the relay's events have no seq: pid 0)
        raise SystemExit(f"{refused:,} of {count:,} orders were refused outside any book")
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


def _latency(
    bootstrap: str, args: Any, partition: int, wd: Path, who: str, legacy: bool, pid: int = 0
) -> dict[str, Any]:
    """Offer --latency-orders at --rate to `partition` and read their first statuses there;
    prints the latency and its split, returns them."""
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
            args.offer_linger_ms,
        ),
    )
    consumer = _reader(bootstrap, partition, args.reader_fetch_wait_ms)
    load_before = _load()
    try:
        offer.start()
        reads = _read_statuses(
            consumer, 0, args.latency_orders, timeout=args.timeout_s, pid=pid, legacy=legacy
        )
        offer.join(60)
    finally:
        consumer.close()
    sent = array("q")
    sent.frombytes(out.read_bytes())
    lat = sorted((a - s) / 1e6 for a, s in zip(reads.arrived, sent, strict=True))
    achieved = args.latency_orders / max(reads.last - reads.first, 1e-9)
    print(
        f"latency through the {who} at {args.rate:,.0f} orders/s offered "
        f"({args.latency_orders:,} orders; achieved {achieved:,.0f}/s): "
        f"p50 {_pct(lat, 0.5):.2f} ms, p99 {_pct(lat, 0.99):.2f} ms, "
        f"max {lat[-1]:.2f} ms (send -> first order_status read); load {load_before} -> {_load()}"
    )
    # Split at the event record's timestamp (set by the producer when the engine or relay
    # publishes): before it, hop 1 (the broker holding the order until the fetch returns)
    # and the batch; after it, hop 2 (linger, the broker holding the event until the
    # reader's fetch returns). ms resolution.
    into = sorted((p - s) / 1e6 for p, s in zip(reads.produced, sent, strict=True))
    out_of = sorted((a - p) / 1e6 for a, p in zip(reads.arrived, reads.produced, strict=True))
    result: dict[str, Any] = {
        "achieved": round(achieved),
        "p50_ms": round(_pct(lat, 0.5), 2),
        "p90_ms": round(_pct(lat, 0.9), 2),
        "p99_ms": round(_pct(lat, 0.99), 2),
        "max_ms": round(lat[-1], 2),
        "load_before": load_before,
        "load_after": _load(),
    }
    waits = (
        f"fetch wait {args.engine_fetch_wait_ms} ms",
        f"linger + fetch wait {args.reader_fetch_wait_ms} ms",
    )
    if pid:  # the engine's CPU per order of a paced stream (turns of a fetch's records)
        result["engine_cpu_us_per_order"] = round(reads.cpu / args.latency_orders * 1e6, 2)
        print(
            f"  engine CPU: {reads.cpu:.2f} s, {result['engine_cpu_us_per_order']:.1f} us per "
            f"order (from the first read to the last)"
        )
        per_thread = {
            kind: round(spent / args.latency_orders * 1e6, 2)
            for kind, spent in sorted(reads.threads.items(), key=lambda kv: -kv[1])
            if spent > 0
        }
        result["engine_by_thread_us_per_order"] = per_thread
        print(
            "    by thread, us per order: "
            + ", ".join(f"{kind} {us:.2f}" for kind, us in per_thread.items())
        )
    for (name, key), part, wait in zip(
        ((f"send -> {who} publishes", "hop1"), ("publish -> read", "hop2")),
        (into, out_of),
        waits,
        strict=True,
    ):
        print(
            f"  {name}: p50 {_pct(part, 0.5):.1f} ms, p90 {_pct(part, 0.9):.1f} ms, "
            f"p99 {_pct(part, 0.99):.1f} ms ({wait})"
        )
        result[f"{key}_p50_ms"] = round(_pct(part, 0.5), 1)
        result[f"{key}_p90_ms"] = round(_pct(part, 0.9), 1)
        result[f"{key}_p99_ms"] = round(_pct(part, 0.99), 1)
    return result


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


PARTITIONS_PER_RUN = 3
"""Per variant (old consume, new): the pre-loaded throughput partition, the paced latency
partition and the relay's (fresh partitions: Tansu fetches slow down as a partition's batch
count grows)."""


def _throughput(args: Any, reads: Reads) -> dict[str, Any]:
    # The orders of the first read share its arrival time; the clock starts there, so they
    # are not counted (counting them overstates the rate by a whole batch).
    arrived, cpu = reads.arrived, reads.cpu
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
    # the engine's own CPU time over the same span: what an order costs it whatever else
    # the machine runs (the broker, the reader and other users share the cores)
    print(
        f"engine CPU: {cpu:.2f} s for those orders, {cpu / max(counted, 1) * 1e6:.1f} us "
        f"per order ({counted / max(cpu, 1e-9):,.0f} orders per engine CPU-second); "
        f"load average {_load()}"
    )
    per_thread = {
        kind: round(spent / max(counted, 1) * 1e6, 2)
        for kind, spent in sorted(reads.threads.items(), key=lambda kv: -kv[1])
        if spent > 0
    }
    print(
        "  by thread, us per order: "
        + ", ".join(f"{kind} {us:.2f}" for kind, us in per_thread.items())
    )
    return {
        "orders_per_s": round(rate),
        "engine_cpu_us_per_order": round(cpu / max(counted, 1) * 1e6, 2),
        "by_thread_us_per_order": per_thread,
        "load_after": _load(),
    }


def _engine_args(args: Any, legacy: bool) -> list[str]:
    return [
        # room for both runs' symbols (the latency run's are its own): at the default
        # budget the second 100 symbols are refused DEDUP_BUDGET_FULL
        "--dedup-ids",
        str(2 * args.symbols * DEFAULT_DEDUP_WINDOW),
        "--snapshot-interval-s",
        "3600",
        "--fetch-wait-max-ms",
        str(args.engine_fetch_wait_ms),
        "--batch-wait-ms",
        str(LEGACY_CONSUME if legacy else args.batch_wait_ms),
        *(["--batch-size", str(args.batch_size)] if args.batch_size else []),
        *(["--linger-ms", str(args.linger_ms)] if args.linger_ms else []),
    ]


def _run_engine(
    args: Any, broker: Any, redis_port: int, wd: Path, base: int, name: str, legacy: bool
) -> dict[str, Any]:
    """One engine process: the throughput run on partition `base` (pre-loaded), then the
    latency run on `base` + 1."""
    result: dict[str, Any] = {}
    reader = _reader(broker.bootstrap, base, args.reader_fetch_wait_ms)
    consumer: Consumer | None = reader
    engine = start_engine(
        workdir=wd,
        brokers=broker.bootstrap,
        redis_port=redis_port,
        partitions=f"{base}-{base + 1}",
        instance=f"bench-{name}",
        extra_args=_engine_args(args, legacy),
        wait=False,  # read from the first event on
        wrapper=shlex.split(args.engine_wrapper),
    )
    spies = []
    if args.profile:
        from bench.edge import start_profiles  # noqa: PLC0415

        spies = start_profiles({"engine": engine.process.popen.pid}, 600, args.profile)
    try:
        pid = engine.process.popen.pid
        reads = _read_statuses(
            reader, 0, args.orders, timeout=args.timeout_s, pid=pid, legacy=legacy
        )
        _stop_profiles(spies, args.profile)
        result["throughput"] = _throughput(args, reads)
        reader.close()
        consumer = None
        if not args.skip_latency:
            result["latency"] = _latency(
                broker.bootstrap, args, base + 1, wd, "engine", legacy, pid
            )
    finally:
        engine.process.stop()
        if consumer is not None:
            consumer.close()
    return result


def _run_relay(args: Any, broker: Any, wd: Path, base: int, legacy: bool) -> dict[str, Any]:
    partition = base + 2
    stop = mp.get_context("spawn").Event()
    relay = mp.get_context("spawn").Process(
        target=_relay,
        args=(
            broker.bootstrap,
            partition,
            args.engine_fetch_wait_ms,
            args.batch_size,
            args.linger_ms,
            LEGACY_CONSUME if legacy else args.batch_wait_ms,
            stop,
        ),
    )
    relay.start()
    try:
        return _latency(broker.bootstrap, args, partition, wd, "relay (Kafka floor)", legacy)
    finally:
        stop.set()
        relay.join(30)


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
        "quarter of it: the broker's share of each hop); the two below override it per hop",
    )
    p.add_argument(
        "--engine-fetch-wait-ms",
        type=int,
        default=None,
        help="hop 1: the engine's (and the relay's) fetch wait on `orders`",
    )
    p.add_argument(
        "--reader-fetch-wait-ms",
        type=int,
        default=None,
        help="hop 2: the reader's fetch wait on order_status",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=0.0,
        help="the engine's (and the relay's) --batch-wait-ms: how long a batch may wait "
        "to fill once its first record is there",
    )
    p.add_argument(
        "--linger-ms",
        type=float,
        default=0.0,
        help="the engine's (and the relay's) producer linger.ms (0: the engine's default)",
    )
    p.add_argument(
        "--offer-linger-ms", type=float, default=1.0, help="the paced order producer's linger.ms"
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
        "--relay-only",
        action="store_true",
        help="only the relay's latency run (the broker hops alone, no engine)",
    )
    p.add_argument(
        "--legacy-consume",
        action="store_true",
        help="first everything with the old consume (the engine's --batch-wait-ms -1, the "
        "relay's and the reader's consume(n, 5 ms)), then with consume_batch: before/after",
    )
    p.add_argument(
        "--new-first",
        action="store_true",
        help="with --legacy-consume: the new consume first (to see what the order does)",
    )
    p.add_argument("--json", action="store_true", help="the results as one JSON line at the end")
    p.add_argument(
        "--timeout-s", type=float, default=300, help="longest wait for each run's events"
    )
    p.add_argument("--profile", type=Path, default=None, help="py-spy output folder")
    p.add_argument(
        "--skip-latency", action="store_true", help="only the throughput run (e.g. to profile)"
    )
    args = p.parse_args(argv)
    if args.engine_fetch_wait_ms is None:
        args.engine_fetch_wait_ms = args.fetch_wait_ms
    if args.reader_fetch_wait_ms is None:
        args.reader_fetch_wait_ms = args.fetch_wait_ms
    variants = [("old-consume", True), ("consume-batch", False)]
    if not args.legacy_consume:
        variants = variants[1:]
    elif args.new_first:
        variants.reverse()

    stream = zipf_stream(args.orders, seed=args.seed, symbols=args.symbols)
    # stamped as a router would (its clock when the order came): the engine's latency
    # histogram then counts seconds, not the ~1.8e18 ns a stamp of 1 gave (an int beyond
    # the compiled code's fast 62-bit range: its sums cost ~1,000 instructions per order)
    stamp = time.time_ns()
    values = [encode_order(s, c, client_ts_ns=stamp) for s, c in stream]
    keys = [s.encode() for s, _ in stream]
    results: dict[str, Any] = {
        "bench": "engine",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "load_before": _load(),
    }
    with (
        tansu() as broker,
        redis_server() as redis_srv,
        workdir("hotshard-bench-") as wd,
    ):
        kafka.create_topics(broker.admin(), PARTITIONS_PER_RUN * len(variants))
        kafka.create_topics(broker.admin(), 1, (WARMUP_TOPIC,))
        if not args.relay_only:
            for i in range(len(variants)):
                _preload(broker.bootstrap, values, keys, PARTITIONS_PER_RUN * i)
        for i, (name, legacy) in enumerate(variants):
            base = PARTITIONS_PER_RUN * i
            print(f"--- {name} (partitions {base}-{base + 2}) ---")
            run: dict[str, Any] = {}
            if not args.relay_only:
                run.update(_run_engine(args, broker, redis_srv.port, wd, base, name, legacy))
            if (args.baseline or args.relay_only) and not args.skip_latency:
                run["relay"] = _run_relay(args, broker, wd, base, legacy)
            results[name] = run
    results["load_after"] = _load()
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
