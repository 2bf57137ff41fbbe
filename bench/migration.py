"""The migration's pause as the book grows, both strategies side by side (DESIGN section 5
and 10: pre-copy pause p99 <= 50 ms for 100,000 resting orders, flat from 10k to 1M; the
moved symbol's worst stall <= 2x its normal p99; stop-and-copy reported beside it).

    python -m bench.migration [--sizes 10000,100000,1000000] [--rate R] [--plot PATH]

One `hotshard up` cluster (hotshard.local.up: Tansu, Redis, two engines, a warm pool, the
gateway, moto's Step Functions running the repository's ASL with the task handlers). For
every (book size, strategy) one symbol is listed and N resting GTC limits are written to
its partition of `orders` (stamped with its route epoch, as the router would), so the
engine holds a book of N orders away from the touch. Each move then runs THROUGH THE STATE
MACHINE (`{"symbol": S, "strategy": ...}`, the execution a `hotshard migrate` starts), to
a warm engine, while WebSocket clients trade S through the gateway at `--rate` orders/s
(passive limits near the touch, their cancels, marketable IOCs: the book stays at N).

Per move: pause (the state machine's: first order delayed -> matching resumed; pre-copy:
route switch -> Promote answered; stop-and-copy: PauseRouting -> Promote answered),
total duration, snapshot bytes, orders buffered (replayed + held), and the symbol's
per-order latency (sent -> its first ORDER_STATUS push, through the whole edge) p50/p99
before / during / after the move and the worst stall (the highest latency of an order
sent during the move). A plot of pause and worst stall against book size.
"""

import argparse
import asyncio
import dataclasses
import json
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from hotshard import kafka, route
from hotshard.clients import text
from hotshard.commands import add
from hotshard.domain import Side
from hotshard.local.demo import report
from hotshard.local.demo.migration import (
    Lane,
    Tally,
    migration_of,
    snapshot_bytes,
    steps_of,
    trade,
)
from hotshard.local.traffic import producer
from hotshard.local.up import UpOptions, up
from hotshard.names import TOPIC_ORDER_STATUS, TOPIC_ORDERS
from hotshard.v1 import control_pb2, events_pb2
from hotshard.wire import encode_order

STRATEGIES = ("pre-copy", "stop-and-copy")
BEFORE_S = 6.0
AFTER_S = 5.0
WARM_UP_S = 0.0
CATCH_UP_S = 120.0  # then measure anyway (a 1M book may never be prompt: see BENCHMARKS)
READY_MS = 500.0
REDIS_LATENCY_MS = 5


def name_of(size: int, strategy: str, run: int = 0) -> str:
    """B10KP, B10KS, ...; the `run`-th repeat (from 1) gets a letter: B10KPB, B10KPC, ..."""
    suffix = "" if run == 0 else chr(ord("A") + run)
    return f"B{size // 1000}K{'P' if strategy == 'pre-copy' else 'S'}{suffix}"


def preload(bootstrap: str, symbol: str, found: route.Route, n: int) -> None:
    """n resting GTC limits, 50 levels a side, well away from the clients' prices."""
    prod = producer(bootstrap, **{"linger.ms": 20})
    users = [f"book{i:03d}" for i in range(100)]
    key = symbol.encode()
    for i in range(n):
        buy = i % 2 == 1
        command = add(
            f"r{i:08d}",
            users[i % 100],
            Side.BUY if buy else Side.SELL,
            9_900 + i % 50 if buy else 10_051 + i % 50,
            100,
        )
        value = encode_order(symbol, command, route_epoch=found.epoch, client_ts_ns=1)
        while True:
            try:
                prod.produce(TOPIC_ORDERS, value, key, found.partition)
                break
            except BufferError:
                prod.poll(0.05)
    if prod.flush(300):
        raise SystemExit("pre-load not delivered")


def resting(cluster: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for stats in cluster.read_stats():
        for s in stats.symbols:
            out[s.symbol] = max(out.get(s.symbol, 0), int(s.resting_orders))
    return out


def wait_resting(cluster: Any, wanted: dict[str, int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = resting(cluster)
        if all(now.get(s, 0) >= n for s, n in wanted.items()):
            return
        time.sleep(1.0)
    raise SystemExit(f"books not loaded in {timeout:.0f} s: {resting(cluster)} vs {wanted}")


def wait_warm(cluster: Any, timeout: float = 60.0) -> None:
    """Until an idle warm engine serves (the pool refills after each move)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = cluster.redis.client()
        routed = {p for p, n in route.partition_loads(r).items() if n > 0}
        for instance, partition in cluster.warm_slots().items():
            if partition in routed:
                continue
            try:
                engine = cluster.slot(instance).engine
                stub = engine.stub()
                if stub.Health(control_pb2.HealthRequest(), timeout=1).serving:
                    return
            except Exception:
                continue
        time.sleep(0.5)
    raise SystemExit("no idle warm engine")


@dataclass
class EngineSide:
    """The moved symbol's latency at the engines' output: order sent (WebSocket) -> its
    first ORDER_STATUS read from the `order_status` topic (every partition, from its end
    when the move's clients start). The same path as the edge's but for the gateway's
    stream handler and push: the pre-loaded books' millions of ACCEPTED statuses are
    behind the start offset here, where the stream handler reads them all first."""

    bootstrap: str
    tally: Tally
    samples: list[tuple[float, float]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        consumer = Consumer(
            kafka.consumer_config(
                {"bootstrap.servers": self.bootstrap},
                group_id="bench-migration",
                fetch_wait_max_ms=10,
            )
        )
        topic = consumer.list_topics(TOPIC_ORDER_STATUS, timeout=10).topics[TOPIC_ORDER_STATUS]
        consumer.assign(
            [TopicPartition(TOPIC_ORDER_STATUS, p, OFFSET_END) for p in sorted(topic.partitions)]
        )
        consumer.consume(1, 0.5)  # resolve the end offsets before the clients send
        self.thread = threading.Thread(target=self._read, args=(consumer,), daemon=True)
        self.thread.start()

    def _read(self, consumer: Any) -> None:
        parse = events_pb2.OrderStatusBatch.FromString
        watched = self.tally.watched
        by_id: dict[str, float] = {}
        taken = 0
        try:
            while not self.stop.is_set():
                messages = consumer.consume(1000, 0.01)
                now = time.time()
                if not messages:
                    continue
                log = self.tally.sent_log
                end = len(log)
                for _, oid, sent_at in log[taken:end]:
                    by_id.setdefault(oid, sent_at)  # a resend: from the first send
                taken = end
                for m in messages:
                    if m.error() is not None:
                        continue
                    for ev in parse(m.value() or b"").events:
                        if ev.symbol != watched or ev.order_id in self.seen:
                            continue
                        sent = by_id.get(ev.order_id)
                        if sent is None:
                            continue
                        self.seen.add(ev.order_id)
                        self.samples.append((sent, (now - sent) * 1e3))
        finally:
            consumer.close()

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(10)


def engine_logs(workdir: Path, symbol: str, since: float = 0.0) -> list[dict[str, Any]]:
    """The engines' own log lines about the move's steps on `symbol` (fence, fence
    snapshot, promote, snapshot), and their long cyclic collections ("gc") and checkpoints
    (of every symbol) since `since` (epoch s), oldest first."""
    wanted = {"fence", "fence snapshot", "promote", "snapshot", "replied", "index built"}
    out: list[tuple[float, dict[str, Any]]] = []
    for path in sorted(workdir.glob("engine-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
                stamp = datetime.strptime(record["timestamp"], "%Y-%m-%d %H:%M:%S,%f%z")
            except (ValueError, KeyError, TypeError):
                continue
            ours = record.get("message") in wanted and record.get("symbol") == symbol
            other = record.get("message") in ("gc", "checkpoint")
            if ours or (other and stamp.timestamp() >= since):
                record["engine"] = path.stem
                out.append((stamp.timestamp(), record))
    return [r for _, r in sorted(out, key=lambda x: x[0])]


def pause_steps(output: dict[str, Any]) -> dict[str, int]:
    """Where the pause went, from the state machine's own timestamps (ms)."""
    switch = output.get("switch") or {}
    fence = switch.get("fence") or {}
    resumed = switch.get("resumed_ms")
    out: dict[str, int] = {}
    pause = output.get("pause") or {}
    if pause.get("paused_ms") and fence.get("fenced_ms"):  # stop-and-copy
        out["pause->fenced"] = int(fence["fenced_ms"]) - int(pause["paused_ms"])
        if switch.get("switched_ms"):
            out["fenced->switch"] = int(switch["switched_ms"]) - int(fence["fenced_ms"])
    switched, moved = switch.get("switched_ms"), switch.get("moved_ms")
    if switched and moved:
        out["route write"] = int(moved) - int(switched)
        if fence.get("fenced_ms") and not pause.get("paused_ms"):
            out["fence"] = int(fence["fenced_ms"]) - int(moved)
            if resumed:
                out["promote"] = int(resumed) - int(fence["fenced_ms"])
        elif resumed and fence.get("marked_ms"):  # stop-and-copy: the end marker first
            out["end marker"] = int(fence["marked_ms"]) - int(moved)
            out["promote"] = int(resumed) - int(fence["marked_ms"])
        elif resumed:
            out["promote"] = int(resumed) - int(moved)
    return out


@dataclass
class Move:
    size: int
    strategy: str
    symbol: str
    recorded: report.Recorded
    summary: report.Summary
    engine_side: report.Summary | None = None
    steps: dict[str, int] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)
    engine_lost: int = 0
    """Acknowledged orders of the symbol whose status never reached the engines' output."""
    worst_step: str = ""
    """The state machine's step the worst order at the engines' output was sent in."""
    marks: dict[str, int] = field(default_factory=dict)
    """The switch's own timestamps (epoch ms): moved, fenced, resumed."""
    redis_slow: list[tuple[str, float, str]] = field(default_factory=list)
    """Redis's SLOWLOG over the move (>= 10 ms): when, ms, the command and its first key."""
    redis_latency: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Redis's own latency monitor over the move: event -> (when it last happened, its
    longest ms), events of at least REDIS_LATENCY_MS (LATENCY LATEST, reset per move)."""


def worst_step(recorded: report.Recorded) -> str:
    """The step (the last one entered at or before its send) that the highest-latency order
    sent during the move was sent in ("" none)."""
    span = report.window(recorded)
    if span is None:
        return ""
    during = [x for x in recorded.samples if span[0] <= x[0] <= span[1]]
    if not during:
        return ""
    sent, _latency = max(during, key=lambda x: x[1])
    entered = [step for step in recorded.steps if step.entered_s <= sent]
    return max(entered, key=lambda step: step.entered_s).name if entered else ""


def move_one(cluster: Any, symbol: str, size: int, strategy: str, rate: float) -> Move:
    sfn = cluster.plane.client("stepfunctions")
    tally = Tally(watched=symbol)
    stop = threading.Event()
    assert cluster.gateway is not None

    def flow(user: str, seed: int) -> Lane:
        return Lane(user, seed, hot_share=1.0, hot=symbol, cold=(symbol,))

    def load() -> None:
        asyncio.run(
            trade(
                cluster.gateway.ws_url,
                cluster.secret,
                clients=4,
                rate=rate,
                duration=600.0,
                seed=size,
                tally=tally,
                refresh=lambda: None,
                done=stop.is_set,
                flow=flow,
            )
        )

    cluster.redis.client().execute_command("LATENCY", "RESET")
    cluster.redis.client().slowlog_reset()
    engine_side = EngineSide(cluster.broker.bootstrap, tally)
    engine_side.start()
    trader = threading.Thread(target=load, daemon=True)
    trader.start()
    # The stream handler reads every event of the pre-loaded books first (an ACCEPTED
    # status per resting order): wait until the symbol's orders come back promptly, at
    # the edge or (the stream handler still behind) at the engines' output.
    deadline = time.time() + CATCH_UP_S
    while time.time() < deadline:
        recent = [lat for sent, lat in list(tally.hot)[-50:] if sent > time.time() - 3]
        ours = [lat for sent, lat in engine_side.samples[-50:] if sent > time.time() - 3]
        if any(len(x) >= 20 and report.percentile(x, 0.9) < READY_MS for x in (recent, ours)):
            break
        time.sleep(0.5)
    began = time.time()
    time.sleep(BEFORE_S)
    arn = cluster.plane.start_execution({"symbol": symbol, "strategy": strategy})
    described = cluster.plane.wait(arn, timeout_s=300)
    time.sleep(AFTER_S)
    stop.set()
    trader.join(60)
    time.sleep(1.0)  # the last orders' statuses
    engine_side.close()
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    output = json.loads(described.get("output") or "{}")
    latest = cluster.redis.client().execute_command("LATENCY", "LATEST")
    slow = cluster.redis.client().slowlog_get(8)
    lost = tally.no_reply + sum(1 for key in tally.waiting if key in tally.acked_ids)
    migration = migration_of(output, str(described["status"]))
    if not migration.get("snapshot_bytes"):
        migration["snapshot_bytes"] = snapshot_bytes(cluster.redis.client(), output)
    recorded = report.Recorded(
        symbol=symbol,
        strategy=strategy,
        # the clients' first orders wait for connections and producer ids: not the symbol's
        # normal latency
        samples=sorted(x for x in tally.hot if x[0] > began + WARM_UP_S),
        steps=steps_of(events),
        migration=migration,
        began_s=began,
        ended_s=time.time(),
        sent=tally.sent,
        acked=tally.acks,
        lost=lost,
    )
    at_engines = dataclasses.replace(
        recorded, samples=sorted(x for x in engine_side.samples if x[0] > began + WARM_UP_S)
    )
    return Move(
        size,
        strategy,
        symbol,
        recorded,
        report.summarize(recorded),
        report.summarize(at_engines),
        pause_steps(output),
        engine_logs(cluster.workdir, symbol, since=began),
        engine_lost=sum(
            1
            for user, oid, _ in tally.sent_log
            if (user, oid) in tally.acked_ids and oid not in engine_side.seen
        ),
        worst_step=worst_step(at_engines),
        marks={
            k: int(v)
            for k, v in {
                "moved": (output.get("switch") or {}).get("moved_ms"),
                "fenced": ((output.get("switch") or {}).get("fence") or {}).get("fenced_ms"),
                "resumed": (output.get("switch") or {}).get("resumed_ms"),
            }.items()
            if v
        },
        redis_slow=[
            (
                datetime.fromtimestamp(int(e["start_time"])).strftime("%H:%M:%S"),
                round(int(e["duration"]) / 1e3, 1),
                " ".join(text(a) for a in (e.get("command") or b"").split()[:2])[:60],
            )
            for e in slow
        ],
        redis_latency={
            text(event): (datetime.fromtimestamp(int(at)).strftime("%H:%M:%S"), int(longest))
            for event, at, _last, longest, *_ in latest
        },
    )


def table(moves: list[Move]) -> list[str]:
    head = (
        f"{'book':>9} {'strategy':<14} {'pause ms':>9} {'total ms':>9} {'snapshot B':>12} "
        f"{'buffered':>8} {'p50/p99 before':>15} {'p50/p99 during':>15} "
        f"{'p50/p99 after':>15} {'worst':>7} {'lost':>4} status | at the engines' output: "
        f"{'p50/p99 before':>15} {'p50/p99 during':>15} {'worst':>7} {'stall/p99':>9} "
        f"{'lost':>4} worst sent in"
    )
    lines = [head]
    for m in moves:
        s = m.summary

        def pair(phase: str, s: report.Summary = s) -> str:
            p = s.latency[phase]
            return f"{p.p50:.0f}/{p.p99:.0f}"

        lines.append(
            f"{m.size:>9,} {m.strategy:<14} {s.pause_ms or float('nan'):>9.0f} "
            f"{s.duration_ms or float('nan'):>9.0f} {s.snapshot_bytes:>12,} "
            f"{s.orders_buffered:>8,} {pair('before'):>15} {pair('during'):>15} "
            f"{pair('after'):>15} {s.latency['during'].worst:>7.0f} {s.lost:>4} {s.status}"
            + engine_columns(m.engine_side)
            + f" {m.engine_lost:>4} {m.worst_step or '-'}"
        )
    return lines


def engine_columns(e: report.Summary | None) -> str:
    if e is None:
        return ""
    before, during = e.latency["before"], e.latency["during"]
    ratio = during.worst / before.p99 if before.p99 else float("nan")
    return (
        f" | {before.p50:.0f}/{before.p99:.0f}".rjust(18)
        + f" {during.p50:.0f}/{during.p99:.0f}".rjust(16)
        + f" {during.worst:>7.0f} {ratio:>9.1f}"
    )


def breakdown(m: Move) -> list[str]:
    """Where the pause went: the state machine's steps, then the engines' own timings."""
    lines = [
        f"  {m.symbol} {m.strategy}: pause {m.summary.pause_ms} ms = "
        + ", ".join(f"{k} {v}" for k, v in m.steps.items())
    ]
    for record in m.logs:
        if record["message"] == "checkpoint" and not near_pause(m, record):
            continue
        timings = {k: v for k, v in record.items() if k.endswith("_ms") or k == "ms"}
        if record["message"] in ("gc", "checkpoint"):
            extra = ("generation",) if record["message"] == "gc" else ("why", "seconds")
            timings = {"at": record["timestamp"], **{k: record.get(k) for k in extra}, **timings}
        lines.append(f"    {record['engine']}: {record['message']} {timings}")
    split = call_split(m)
    if split:
        lines.append(
            "    to the engine / on it / [RPC over on the engine /] back to the task (ms): " + split
        )
    if m.redis_slow:
        lines.append(f"    redis slowlog (at, ms, command): {m.redis_slow}")
    if m.redis_latency:
        lines.append(f"    redis latency (event: last at, max ms): {m.redis_latency}")
    if m.marks:
        lines.append(
            "    marks: "
            + ", ".join(
                f"{k} {datetime.fromtimestamp(v / 1e3).strftime('%H:%M:%S.%f')[:-3]}"
                for k, v in m.marks.items()
            )
        )
    return lines


def near_pause(m: Move, record: dict[str, Any], margin_s: float = 0.5) -> bool:
    """Whether an engine's log line was written within `margin_s` of the pause (the
    switch's marks), e.g. a periodic checkpoint whose fork or flush the pause met."""
    if not m.marks:
        return False
    try:
        stamp = datetime.strptime(record["timestamp"], "%Y-%m-%d %H:%M:%S,%f%z").timestamp()
    except (ValueError, KeyError):
        return False
    first, last = min(m.marks.values()) / 1e3, max(m.marks.values()) / 1e3
    return first - margin_s <= stamp <= last + margin_s


def call_split(m: Move) -> str:
    """Each gRPC call of the pause split by the engine's own wall clock (`at_ms`, when its
    handler began; `ms`, how long it took; "replied": when the RPC was over as the engine's
    server thread saw it, an upper bound of its reply's send, at times after the task had
    it): the task's send -> the engine's handler, the engine's part, -> the RPC over, -> the
    task (the task's marks are whole ms)."""
    calls = (("fence", "Fence", "moved", "fenced"), ("promote", "Promote", "fenced", "resumed"))
    parts: list[str] = []
    if m.strategy != "pre-copy":  # its Fence is WaitForDrain's, before the switch
        return ""
    for message, rpc, sent, answered in calls:
        record = next((r for r in m.logs if r["message"] == message and "at_ms" in r), None)
        if record is None or sent not in m.marks or answered not in m.marks:
            continue
        at, took = float(record["at_ms"]), float(record["ms"])
        replied = next(
            (
                float(r["at_ms"])
                for r in m.logs
                if r["message"] == "replied" and r.get("rpc") == rpc and "at_ms" in r
            ),
            None,
        )
        back = f"{m.marks[answered] - at - took:.1f}"
        if replied is not None:
            back = f"{replied - at - took:.1f} / {m.marks[answered] - replied:.1f}"
        parts.append(f"{message} {at - m.marks[sent]:.1f} / {took:.1f} / {back}")
    return ", ".join(parts)


def pauses(moves: list[Move]) -> list[str]:
    """Per (size, strategy) over its moves: the pause's median, p99 (nearest rank) and
    max, and the engines' CPU on the loop for Fence and Promote (their log lines)."""
    lines = []
    keys = sorted({(m.size, m.strategy) for m in moves})
    for size, strategy in keys:
        ms = [m for m in moves if (m.size, m.strategy) == (size, strategy)]
        done = sorted(m.summary.pause_ms for m in ms if m.summary.pause_ms is not None)
        if not done:
            continue
        cpu = {
            step: sorted(
                float(r.get("loop_cpu_ms", 0.0)) for m in ms for r in m.logs if r["message"] == step
            )
            for step in ("fence", "promote")
        }
        lines.append(
            f"{size:>9,} {strategy:<14} pause over {len(done)} moves: median "
            f"{report.percentile(done, 0.5):.0f}, p99 {report.percentile(done, 0.99):.0f}, "
            f"max {done[-1]} ms; loop CPU fence "
            + "/".join(f"{x:.1f}" for x in cpu["fence"])
            + " ms, promote "
            + "/".join(f"{x:.1f}" for x in cpu["promote"])
            + " ms"
        )
    return lines


def plot(moves: list[Move], path: Path, title: str) -> Path:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    for strategy, colour in zip(STRATEGIES, ("tab:blue", "tab:orange"), strict=True):
        ms = sorted((m for m in moves if m.strategy == strategy), key=lambda m: m.size)
        sizes = [m.size for m in ms]
        left.plot(sizes, [m.summary.pause_ms or 0 for m in ms], "o-", color=colour,
                  label=f"{strategy}: pause")  # fmt: skip
        left.plot(sizes, [m.summary.latency["during"].worst for m in ms], "s--", color=colour,
                  label=f"{strategy}: worst stall")  # fmt: skip
        left.plot(sizes, [m.summary.latency["before"].p99 for m in ms], ":", color=colour,
                  label=f"{strategy}: p99 before")  # fmt: skip
        engine = [m.engine_side.latency["during"].worst if m.engine_side else 0 for m in ms]
        left.plot(sizes, engine, "^-.", color=colour,
                  label=f"{strategy}: worst stall at the engines' output")  # fmt: skip
        right.plot(sizes, [m.summary.duration_ms or 0 for m in ms], "o-", color=colour,
                   label=f"{strategy}: total duration")  # fmt: skip
    left.axhline(50, color="grey", linewidth=0.8, linestyle="--", label="goal: pre-copy 50 ms")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("resting orders in the moved book")
        ax.legend(fontsize=7)
    left.set_ylabel("ms")
    left.set_title("pause and the symbol's worst stall", fontsize=9)
    right.set_title("whole migration (state machine)", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.migration",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--rate", type=float, default=100.0, help="orders/s on the moved symbol")
    p.add_argument("--plot", type=Path, default=Path("bench-migration.png"))
    p.add_argument("--json", type=Path, default=None, help="also write the runs here")
    p.add_argument(
        "--repeat", type=int, default=1, help="moves per (size, strategy), one symbol each"
    )
    p.add_argument(
        "--tasks",
        choices=("processes", "in-process"),
        default="processes",
        help="the state machine's tasks each in a worker process of its own (as Lambdas in "
        "AWS), or on threads of this process beside the trading clients (as before)",
    )
    args = p.parse_args(argv)
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    sizes = [int(s) for s in args.sizes.split(",")]
    strategies = [s for s in args.strategies.split(",") if s]
    load_before = os.getloadavg()
    print(f"load before: {load_before}; tasks: {args.tasks}", flush=True)
    moves: list[Move] = []
    options = UpOptions(
        engines=2,
        warm=1,
        partitions=4,
        symbols=(),
        monitor=False,
        spare=len(sizes) * len(strategies) * args.repeat + 2,
        state_file=Path(".hotshard") / "bench-migration.json",
        task_processes=args.tasks == "processes",
    )
    with up(options, say=lambda line: print(line, flush=True)) as cluster:
        r = cluster.redis.client()
        r.config_set("latency-monitor-threshold", REDIS_LATENCY_MS)
        wanted: dict[str, int] = {}
        runs = [
            (size, strategy, run)
            for size in sizes
            for strategy in strategies
            for run in range(args.repeat)
        ]
        for size, strategy, run in runs:
            symbol = name_of(size, strategy, run)
            found = route.list_symbol(r, symbol)
            began = time.monotonic()
            preload(cluster.broker.bootstrap, symbol, found, size)
            wanted[symbol] = size
            print(f"{symbol}: {size:,} orders to partition {found.partition} "
                  f"({time.monotonic() - began:.1f} s)", flush=True)  # fmt: skip
        wait_resting(cluster, wanted, 900)
        print(f"books loaded: {resting(cluster)}", flush=True)
        for size, strategy, run in runs:
            wait_warm(cluster)
            symbol = name_of(size, strategy, run)
            moved = move_one(cluster, symbol, size, strategy, args.rate)
            moves.append(moved)
            print(table([moved])[-1], flush=True)
            for line in breakdown(moved):
                print(line, flush=True)
    load_after = os.getloadavg()
    print()
    for line in table(moves):
        print(line)
    for m in moves:
        for line in breakdown(m):
            print(line)
    for line in pauses(moves):
        print(line)
    title = (
        f"hotshard migration through the state machine, {args.rate:.0f} orders/s on the moved "
        f"symbol through the edge, tasks {args.tasks}; load {load_before[0]:.1f} -> "
        f"{load_after[0]:.1f} on 2 cores"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "size": m.size,
                        **m.recorded.__dict__,
                        "engine_samples": m.engine_side and m.engine_side.latency,
                        "pause_steps": m.steps,
                        "worst_step": m.worst_step,
                        "engine_logs": m.logs,
                        "redis_latency": m.redis_latency,
                        "redis_slow": m.redis_slow,
                        "marks": m.marks,
                    }
                    for m in moves
                ],
                default=str,
            )
        )
    print(f"load after: {load_after}")
    print(f"plot: {plot(moves, args.plot, title)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
