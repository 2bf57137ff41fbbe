"""Recovery after kill -9, end to end on the real broker and Redis (DESIGN section 10:
back to matching in <= 2 s for 1,000,000 resting orders).

    python -m bench.recovery [--orders N] [--symbols K] [--tail T] [--repeat R] [--profile DIR]

1. N resting GTC limits (K symbols, 50 levels a side, 100 users) are pre-loaded into
   partition 0 of `orders`; one engine process consumes them and is stopped with SIGTERM,
   so its checkpoint names a snapshot of the whole book (stored in Redis, the local
   default).
2. Each repeat: the engine is started again (a graceful restart, timed too); T orders are
   sent after its checkpoint (adds and cancels of them, so the book stays at N: what a
   kill -9 between two checkpoints makes the restart replay); a prober sends one IOC order
   every `--probe-ms` to partition 0 and a reader reads order_status.
3. kill -9 of the engine; a new engine process is started at once (what a supervisor does
   with no delay: `hotshard up` polls every 0.5 s, systemd in AWS has RestartSec=1).
   **Back to matching** = kill -> the first order_status read for a probe sent after the
   kill: everything from the dead process to an order matched again, through the broker.

The breakdown comes from the new engine's log (its own timestamps): interpreter and imports,
connecting, reading the checkpoint and snapshot and loading the book, then the replay and
the first fetch (the gRPC server comes up beside the loop once it has caught up: its time
after the kill is shown apart). `--profile DIR` runs the restarted engine under py-spy (its
whole life from exec: imports included) and prints where the time went.
"""

import argparse
import functools
import json
import math
import os
import shutil
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from bench.pyspy import collapsed_stacks
from hotshard import kafka, recovery
from hotshard.commands import Command, add, cancel
from hotshard.domain import Side, TimeInForce
from hotshard.local.services.broker import tansu
from hotshard.local.services.engine import EngineProcess, start_engine
from hotshard.local.services.process import free_port, spawn, wait_for, workdir
from hotshard.local.services.redis import redis_server
from hotshard.local.traffic import producer
from hotshard.names import TOPIC_ORDER_STATUS, TOPIC_ORDERS
from hotshard.v1 import control_pb2, events_pb2
from hotshard.wire import encode_order

INSTANCE = "recovery"
ENGINE_ARGS = ("--snapshot-interval-s", "3600", "--fetch-wait-max-ms", "10")
GOAL_S = 2.0
GRACEFUL_STOP_S = 300.0


def symbols_of(count: int) -> list[str]:
    return ["BIG"] if count == 1 else [f"BIG{i:03d}" for i in range(count)]


def resting(n: int, symbols: list[str]) -> list[tuple[str, Command]]:
    """`n` GTC limits that never trade (bench.memory's shape), spread over `symbols`."""
    users = [f"user{i:03d}" for i in range(100)]
    return [
        (
            symbols[i % len(symbols)],
            add(
                f"o{i:08d}",
                users[i % 100],
                Side.BUY if i % 2 else Side.SELL,
                999 - i % 50 if i % 2 else 1000 + i % 50,
                100,
            ),
        )
        for i in range(n)
    ]


def tail(n: int, symbols: list[str], run: int) -> list[tuple[str, Command]]:
    """n orders after the checkpoint: adds near the touch, each cancelled a little later."""
    out: list[tuple[str, Command]] = []
    for i in range(n // 2):
        symbol = symbols[i % len(symbols)]
        oid = f"t{run}-{i:07d}"
        out.append((symbol, add(oid, "tail", Side.BUY, 990 - i % 7, 100)))
        out.append((symbol, cancel(oid, "tail")))
    return out


def produce(bootstrap: str, stream: list[tuple[str, Command]]) -> None:
    prod = producer(bootstrap, **{"linger.ms": 20})
    for symbol, command in stream:
        value = encode_order(symbol, command, client_ts_ns=1)
        while True:
            try:
                prod.produce(TOPIC_ORDERS, value, symbol.encode(), 0)
                break
            except BufferError:
                prod.poll(0.05)
    if prod.flush(300):
        raise SystemExit("orders not delivered to the broker")


def stats(engine: EngineProcess) -> Any:
    return engine.stub().Stats(control_pb2.StatsRequest(), timeout=5)


def wait_consumed(engine: EngineProcess, offset: int, timeout: float) -> None:
    """Until the engine's next offset on partition 0 passed `offset`."""

    def done() -> bool:
        reply = stats(engine)
        return any(p.partition == 0 and p.next_offset > offset for p in reply.partitions)

    wait_for(done, timeout, f"the engine to consume through offset {offset:,}", interval=0.2)


@dataclass
class Prober:
    """Sends an IOC buy at price 1 (never trades) every `period_s` to partition 0; the
    reader notes when each probe's first order_status arrives."""

    bootstrap: str
    symbol: str
    period_s: float
    run: int
    sent_ns: dict[int, int] = field(default_factory=dict)
    read_ns: dict[int, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    consumer: Any = None

    def start(self) -> None:
        self.consumer = Consumer(
            kafka.consumer_config(
                {"bootstrap.servers": self.bootstrap},
                group_id="bench-recovery",
                fetch_wait_max_ms=10,
            )
        )
        self.consumer.assign([TopicPartition(TOPIC_ORDER_STATUS, 0, OFFSET_END)])
        self.consumer.consume(1, 0.5)  # resolve the end offset before probing
        self.threads = [
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _send(self) -> None:
        prod = producer(self.bootstrap, **{"linger.ms": 0})
        k = 0
        prefix = f"probe{self.run}-"
        next_at = time.perf_counter()
        while not self.stop.is_set():
            command = add(f"{prefix}{k}", "probe", Side.BUY, 1, 1, tif=TimeInForce.IOC)
            value = encode_order(self.symbol, command, client_ts_ns=time.time_ns())
            self.sent_ns[k] = time.time_ns()
            prod.produce(TOPIC_ORDERS, value, self.symbol.encode(), 0)
            prod.poll(0)
            k += 1
            next_at += self.period_s
            time.sleep(max(0.0, next_at - time.perf_counter()))
        prod.flush(10)

    def _read(self) -> None:
        prefix = f"probe{self.run}-"
        parse = events_pb2.OrderStatusBatch.FromString
        while not self.stop.is_set():
            for m in self.consumer.consume(1000, 0.005):
                if m.error() is not None:
                    continue
                now = time.time_ns()
                for ev in parse(m.value() or b"").events:
                    if ev.order_id.startswith(prefix):
                        self.read_ns.setdefault(int(ev.order_id[len(prefix) :]), now)

    def first_after(self, t_ns: int) -> tuple[int, int] | None:
        """(send, read) of the earliest-read probe sent after t_ns."""
        found = [
            (self.read_ns[k], s)
            for k, s in list(self.sent_ns.items())
            if s > t_ns and k in self.read_ns
        ]
        if not found:
            return None
        read, sent = min(found)
        return sent, read

    def latencies_ms(self, since_ns: int, until_ns: int) -> list[float]:
        return sorted(
            (self.read_ns[k] - s) / 1e6
            for k, s in list(self.sent_ns.items())
            if since_ns < s < until_ns and k in self.read_ns
        )

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)
        self.consumer.close()


def log_times(path: Path) -> dict[str, tuple[float, dict[str, Any]]]:
    """message -> (epoch seconds, record) of the first JSON log line of each message."""
    out: dict[str, tuple[float, dict[str, Any]]] = {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
            stamp = datetime.strptime(record["timestamp"], "%Y-%m-%d %H:%M:%S,%f%z")
        except (ValueError, KeyError, TypeError):
            continue
        out.setdefault(str(record.get("message")), (stamp.timestamp(), record))
    return out


def phase_timeline(
    logs: dict[str, tuple[float, dict[str, Any]]],
    kill_ns: int,
    spawned_ns: int,
    hit: tuple[int, int],
) -> list[tuple[str, float]]:
    """(phase, seconds after the kill at which it ended), in order: the engine's own phases
    (its "engine started" and "caught up" lines: wall times relative to its package's
    import), then the first probe's send and read as the prober saw them."""
    kill_s = kill_ns / 1e9
    out = [("killed; new engine spawned", spawned_ns / 1e9 - kill_s)]
    started = logs.get("engine started")
    if started is not None and "started_at" in started[1]:
        base = float(started[1]["started_at"]) - kill_s
        out.append(("interpreter up (engine package imported)", base))
        phases: dict[str, float] = dict(started[1].get("phases", {}))
        caught = logs.get("caught up")
        if caught is not None:
            phases.update(caught[1].get("phases", {}))
        out += [(name, base + float(at)) for name, at in phases.items()]
    out.append(("first probe after the kill sent", hit[0] / 1e9 - kill_s))
    out.append(("its status read: back to matching", hit[1] / 1e9 - kill_s))
    return sorted(out, key=lambda item: item[1])


def engine_argv(bootstrap: str, redis_port: int, port: int) -> list[str]:
    return [
        sys.executable, "-m", "engine", "--kafka-brokers", bootstrap, "--redis-host",
        "127.0.0.1", "--redis-port", str(redis_port), "--grpc-bind", "127.0.0.1",
        "--grpc-port", str(port), "--partitions", "0", "--instance-id", INSTANCE,
        *ENGINE_ARGS,
    ]  # fmt: skip


def spawn_engine(
    wd: Path, bootstrap: str, redis_port: int, port: int, name: str, profile: Path | None
) -> EngineProcess:
    argv = engine_argv(bootstrap, redis_port, port)
    if profile is not None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        argv = [spy, "record", "--rate", "250", "--format", "raw", "--nonblocking",
                "--output", str(profile), "--", *argv]  # fmt: skip
    repo = Path(__file__).resolve().parents[1]
    return EngineProcess(port, INSTANCE, spawn(name, argv, wd, {"PYTHONPATH": str(repo)}))


def engine_pid(engine: EngineProcess, under_spy: bool) -> int:
    pid = engine.process.popen.pid
    if under_spy:  # py-spy's child
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(children[0]) if children else pid
    return pid


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _written(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def profile_summary(path: Path, top: int = 12) -> list[str]:
    """Collapsed stacks -> share of samples per phase of start and per leaf function."""
    leaf: Counter[str] = Counter()
    phase: Counter[str] = Counter()
    total = 0
    for stack, frames, n in collapsed_stacks(path):
        total += n
        leaf[
            frames[-1].split(" (")[0] + " " + Path(frames[-1].rpartition("(")[2].split(":")[0]).name
        ] += n
        joined = stack
        if "Engine.shutdown" in joined:
            phase["shutdown (after the measurement)"] += n
        elif "tune_gc" in joined:
            phase["tune_gc: gc.collect + freeze"] += n
        elif "_find_and_load" in joined and "run (" not in joined:
            phase["imports"] += n
        elif "_recover" in joined or "restore_partition" in joined:
            if "load (" in joined or "restore_orders" in joined:
                phase["recover: load the snapshot"] += n
            elif "fetch" in joined:
                phase["recover: fetch the snapshot"] += n
            else:
                phase["recover: other"] += n
        elif "build (" in joined:
            phase["build: clients"] += n
        elif "_process" in joined or "apply_batch" in joined:
            phase["loop: the batches (replay)"] += n
        elif "run (" in joined:
            phase["loop: other"] += n
        else:
            phase["other"] += n
    lines = [f"py-spy ({total:,} samples at 250 Hz):"]
    lines += [f"  {name:<32} {n / max(total, 1):6.1%}" for name, n in phase.most_common()]
    lines.append("  leaf functions:")
    lines += [f"  {name[:60]:<60} {n / max(total, 1):6.1%}" for name, n in leaf.most_common(top)]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.recovery",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--orders", type=int, default=1_000_000, help="resting orders (1,000,000)")
    p.add_argument("--symbols", type=int, default=1, help="symbols holding them (1)")
    p.add_argument("--tail", type=int, default=20_000, help="orders after the checkpoint")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--probe-ms", type=float, default=5.0)
    p.add_argument("--profile", type=Path, default=None, help="py-spy the restarts into DIR")
    args = p.parse_args(argv)
    print(f"load before: {os.getloadavg()}")
    symbols = symbols_of(args.symbols)
    book = resting(args.orders, symbols)
    with tansu() as broker, redis_server() as redis_srv, workdir("hotshard-recovery-") as wd:
        kafka.create_topics(broker.admin(), 1)
        began = time.monotonic()
        produce(broker.bootstrap, book)
        print(f"pre-loaded {len(book):,} orders in {time.monotonic() - began:.1f} s")
        del book
        port = free_port()
        engine = start_engine(
            workdir=wd, brokers=broker.bootstrap, redis_port=redis_srv.port, partitions="0",
            instance=INSTANCE, extra_args=list(ENGINE_ARGS), grpc_port=port,
        )  # fmt: skip
        offset = args.orders - 1
        wait_consumed(engine, offset, 600)
        # and delivered its events (Stats' lag counts those not acknowledged yet): the stop's
        # final checkpoint follows a flush
        wait_for(lambda: stats(engine).consumer_lag == 0, 600, "the events", interval=0.5)
        resting_now = sum(s.resting_orders for s in stats(engine).symbols)
        # SIGTERM: the final checkpoint covers the whole book (its dump can take a while on a
        # loaded machine: never SIGKILL it after the usual 10 s)
        engine.process.stop(timeout=GRACEFUL_STOP_S)
        r = redis_srv.client()
        checkpoint = recovery.read_checkpoint(r, 0)
        assert checkpoint is not None and checkpoint.offset >= offset, checkpoint
        sizes = [
            int(r.strlen(entry.location.removeprefix("redis:")))
            for entry in checkpoint.books.values()
            if entry.location.startswith("redis:")
        ]
        print(
            f"{resting_now:,} resting orders on {len(symbols)} symbol(s); checkpoint at offset "
            f"{checkpoint.offset:,}; snapshots {sum(sizes) / 1e6:.1f} MB in Redis"
        )
        results: list[dict[str, float]] = []
        for run in range(args.repeat):
            t0 = time.monotonic()
            engine = start_engine(
                workdir=wd, brokers=broker.bootstrap, redis_port=redis_srv.port, partitions="0",
                instance=INSTANCE, extra_args=list(ENGINE_ARGS), grpc_port=port,
            )  # fmt: skip
            graceful = time.monotonic() - t0
            extra = tail(args.tail, symbols, run)
            produce(broker.bootstrap, extra)
            offset += len(extra)
            wait_consumed(engine, offset, 120)
            prober = Prober(broker.bootstrap, symbols[0], args.probe_ms / 1000, run)
            prober.start()
            time.sleep(2.0)  # the prober's producer id, then a steady state
            kill_ns = time.time_ns()
            engine.process.popen.send_signal(signal.SIGKILL)
            engine.process.popen.wait(10)
            engine.process.stop()
            spawned_ns = time.time_ns()
            profile = args.profile / f"restart-{run}.txt" if args.profile else None
            if profile is not None:
                profile.parent.mkdir(parents=True, exist_ok=True)
            engine = spawn_engine(
                wd, broker.bootstrap, redis_srv.port, port, f"engine-restart-{run}", profile
            )
            deadline = time.monotonic() + 60
            cpu_at_hit = 0.0
            while (hit := prober.first_after(kill_ns)) is None and time.monotonic() < deadline:
                cpu_at_hit = process_cpu_s(engine_pid(engine, profile is not None))
                time.sleep(0.002)
            if hit is None:
                raise SystemExit(f"no probe matched within 60 s after the kill:\n"
                                 f"{engine.process.log_tail()}")  # fmt: skip
            engine.wait_serving(30)
            time.sleep(0.5)
            before = prober.latencies_ms(kill_ns - 5 * 10**8, kill_ns)
            prober.close()
            back_s = (hit[1] - kill_ns) / 1e9
            logs = log_times(engine.process.log_path)
            started = logs.get("engine started")
            serving = logs.get("serving")
            recovered = logs.get("partition recovered")
            row = {
                "graceful_restart_s": graceful,
                "back_s": back_s,
                "spawn_s": (spawned_ns - kill_ns) / 1e9,
            }
            if started and serving and recovered:
                recovery_s = float(started[1].get("recovery_s", 0))
                t_start = started[0]
                row["to_recover_begin_s"] = t_start - recovery_s - spawned_ns / 1e9
                row["recover_s"] = recovery_s
                # the loop starts right after recovery; gRPC comes up beside it, once the
                # loop has caught up (engine/__main__.py), so it is not on this path
                row["replay_s"] = hit[1] / 1e9 - t_start
                row["grpc_up_after_kill_s"] = serving[0] - kill_ns / 1e9
                # CPU seconds (the engine process, all threads) as of "engine started", and
                # spent in the snapshot's fetch and load (the loading thread's)
                row["cpu_to_started_s"] = float(started[1].get("cpu_s", math.nan))
                row["fetch_cpu_s"] = float(recovered[1].get("fetch_cpu_s", math.nan))
                row["load_s"] = float(recovered[1].get("load_s", math.nan))
                row["load_cpu_s"] = float(recovered[1].get("load_cpu_s", math.nan))
            caught = logs.get("caught up")
            if caught is not None and "index_slices" in caught[1]:
                # the restored book's index slices the loop ran before it caught up
                row["index_slices_to_caught_up"] = float(caught[1]["index_slices"])
                row["index_cpu_to_caught_up_s"] = float(caught[1]["index_cpu_s"])
            # CPU of the engine process until the first probe was read (within ~2 ms)
            row["cpu_to_matching_s"] = cpu_at_hit
            timeline = phase_timeline(logs, kill_ns, spawned_ns, hit)
            row["probe_p50_before_ms"] = statistics.median(before) if before else float("nan")
            results.append(row)
            parts = ", ".join(f"{k} {v:.3f}" for k, v in row.items())
            print(f"run {run + 1}: back to matching {back_s:.3f} s after kill -9 ({parts})")
            print("  phases (s after the kill, each phase's end; + its own length):")
            previous = 0.0
            for name, at in timeline:
                print(f"    {at:7.3f}  +{at - previous:6.3f}  {name}")
                previous = at
            if args.profile is not None:
                # SIGTERM the engine (py-spy's child); py-spy writes its file once it exits
                spy_pid = engine.process.popen.pid
                children = Path(f"/proc/{spy_pid}/task/{spy_pid}/children").read_text().split()
                for child in children:
                    os.kill(int(child), signal.SIGTERM)
                engine.process.popen.wait(GRACEFUL_STOP_S)
                engine.process.stop()
                assert profile is not None
                wait_for(functools.partial(_written, profile), 10, "py-spy")
                for line in profile_summary(profile):
                    print(line)
            else:
                engine.process.stop(timeout=GRACEFUL_STOP_S)
        backs = sorted(row["back_s"] for row in results)
        median = statistics.median(backs)
        print(
            f"kill -9 -> matching again, {args.orders:,} resting orders on {len(symbols)} "
            f"symbol(s), {args.tail:,} orders to replay: median {median:.3f} s, "
            f"min {backs[0]:.3f}, max {backs[-1]:.3f} (goal <= {GOAL_S:.0f} s: "
            f"{'met' if median <= GOAL_S else 'NOT met'})"
        )
        for key in results[0]:
            values = [row[key] for row in results if key in row]
            print(f"  {key:<22} median {statistics.median(values):.3f}")
    print(f"load after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
