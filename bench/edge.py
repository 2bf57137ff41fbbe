"""Through the edge, everything on this machine: real WebSocket clients -> the local gateway
(order_router) -> Tansu -> engine processes -> Tansu -> feeder + stream_handler -> pushes
back on the clients' WebSocket connections.

    python -m bench.edge [--rates 100,1000,max] [--seconds 10] [--clients 8] [--symbols 4]
                         [--fanout 500] [--batch] [--profile DIR] [--plot PATH] [--json]

A local cluster (hotshard.local.cluster: Tansu, redis-server, two engine processes, the
local edge) on free 127.0.0.1 ports. Each trading connection is one user sending a seeded
crossing flow on `--symbols` symbols (limit orders a few ticks either side of one price,
so about half trade, and ~15% cancels of the user's own earlier orders); one more
connection per symbol subscribes to it (TRADE, DEPTH). Phases, each with fresh order ids:

- first `--warmup` seconds at 50 orders/s, not reported (producer ids, first books);
- a rate R (orders/s offered, open loop: orders are sent on schedule whatever the replies);
- `max`: saturation, closed loop: each connection keeps `--window` requests in flight;
- `fanout` (with --fanout N > 0): N more connections subscribe to every symbol and orders
  are offered at --fanout-rate: the push path's fan-out rate.

Measured per phase: acks/s (acknowledged orders from the phase's first send to its last
ack, at least the sending time), pushes/s (pushes
received by all connections from the phase's first send to its last push), order sent ->
ack p50/p99, order sent -> its first ORDER_STATUS push p50/p99/max (ADDs only; in the
JSON also from the router's receive time, the ts_ns it stamps, to the ack and to the first
status: how much of each was the frame waiting before the router had it), and what
was lost: acknowledged orders whose status never came, pushes seen twice or out of seq
order on one connection; and per process (all its threads, /proc) the CPU time and the
context switches per acknowledged order. A phase ends when every acknowledged order's first
status came (or nothing came for a few seconds). `--batch` connects with `?pushes=batch`
(opt-in BATCH frames, docs/asyncapi.yaml): a push inside a BATCH frame counts as one push.
`--profile DIR`
runs py-spy on the gateway, stream and engine processes during one phase (`--profile-phase`,
by default the saturation phase `max`) and prints
where their time went. Writes a PNG plot (per-second acks and pushes, latency per phase).
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.pyspy import collapsed_stacks
from hotshard import route
from hotshard.client.session import local_token
from hotshard.local.cluster import local_cluster

MID = 10_000
DRAIN_IDLE_S = 3.0
DRAIN_MAX_S = 30.0
MAX_IN_FLIGHT = 20_000  # open loop, per connection: beyond this the phase is hopeless


PIDS: dict[str, int] = {}
"""The processes whose CPU time each phase reports (name -> pid)."""
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system, all threads) each process has used so far."""
    out = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / TICKS
    return out


def thread_times(pids: dict[str, int]) -> dict[tuple[str, str], float]:
    """CPU seconds per (process, thread kind) so far: threads grouped by their name with
    digits dropped (`invoke_12` -> `invoke_`, librdkafka's `rdk:broker3` -> `rdk:broker`)."""
    out: dict[tuple[str, str], float] = {}
    for name, pid in pids.items():
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            comm = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw.rsplit(")", 1)[1].split()
            kind = "".join(ch for ch in comm if not ch.isdigit()) or comm
            seconds = (int(fields[11]) + int(fields[12])) / TICKS
            out[(name, kind)] = out.get((name, kind), 0.0) + seconds
    return out


def switches(pids: dict[str, int]) -> dict[str, int]:
    """Context switches (voluntary + involuntary, all threads) each process made so far:
    with CPU time, what tells thread hand-offs apart from work (threads that ended are not
    counted)."""
    out = {}
    for name, pid in pids.items():
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        total = 0
        for tid in tids:
            try:
                lines = Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines()
            except OSError:
                continue
            total += sum(int(ln.split()[1]) for ln in lines if "ctxt_switches:" in ln)
        out[name] = total
    return out


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


@dataclass
class Phase:
    name: str
    rate: float | None  # offered orders/s; None: saturation (closed loop)
    seconds: float
    started: float = 0.0
    send_end: float = 0.0
    last_push: float = 0.0
    last_ack: float = 0.0
    ended: float = 0.0
    sent: int = 0
    adds: int = 0
    acks: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    pushes: int = 0
    frames: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    ack_ms: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    router_ack_ms: list[float] = field(default_factory=list)
    """The router's receive time (the ack's ts_ns) -> the ack read here: with ack_ms, what
    the frame waited before the router had it (wall clocks of one machine)."""
    router_first_ms: list[float] = field(default_factory=list)
    """The router's receive time (the ORDER_STATUS push's ts_ns) -> its first status read
    here: the engine and push path's share of first_ms."""
    acked_adds: set[tuple[str, str]] = field(default_factory=set)
    first_seen: set[tuple[str, str]] = field(default_factory=set)
    per_second_acks: Counter[int] = field(default_factory=Counter)
    per_second_pushes: Counter[int] = field(default_factory=Counter)
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds each process used during the phase (user + system)."""
    thread_s: dict[tuple[str, str], float] = field(default_factory=dict)
    """CPU seconds per (process, thread kind) during the phase (threads that ended during
    it are not counted)."""
    switches: dict[str, int] = field(default_factory=dict)
    """Context switches each process made during the phase."""

    @property
    def waiting(self) -> int:
        return len(self.acked_adds - self.first_seen)

    def summary(self) -> dict[str, Any]:
        send_s = max(self.send_end - self.started, 1e-9)
        ack_s = max(self.last_ack - self.started, send_s)
        push_s = max(self.last_push - self.started, 1e-9)
        return {
            "phase": self.name,
            "offered": self.rate,
            "sent": self.sent,
            "acks": self.acks,
            "refused": dict(self.refused),
            "acks_per_s": round(self.acks / ack_s),
            "pushes": self.pushes,
            "frames": self.frames,
            "pushes_per_s": round(self.pushes / push_s),
            "push_kinds": dict(self.kinds),
            "ack_p50_ms": round(percentile(self.ack_ms, 0.5), 1),
            "ack_p99_ms": round(percentile(self.ack_ms, 0.99), 1),
            "first_status_p50_ms": round(percentile(self.first_ms, 0.5), 1),
            "first_status_p99_ms": round(percentile(self.first_ms, 0.99), 1),
            "first_status_max_ms": round(max(self.first_ms, default=float("nan")), 1),
            "router_to_ack_p50_ms": round(percentile(self.router_ack_ms, 0.5), 1),
            "router_to_ack_p99_ms": round(percentile(self.router_ack_ms, 0.99), 1),
            "router_to_first_status_p50_ms": round(percentile(self.router_first_ms, 0.5), 1),
            "router_to_first_status_p99_ms": round(percentile(self.router_first_ms, 0.99), 1),
            "status_missing": self.waiting,
            "cpu_s": {k: round(v, 2) for k, v in self.cpu_s.items()},
            "cpu_ms_per_order": {
                k: round(1000 * v / max(self.acks, 1), 3) for k, v in self.cpu_s.items()
            },
            "switches_per_order": {
                k: round(v / max(self.acks, 1), 2) for k, v in self.switches.items()
            },
            "thread_ms_per_order": {
                f"{proc}/{kind}": round(1000 * v / max(self.acks, 1), 3)
                for (proc, kind), v in sorted(self.thread_s.items())
                if v > 0
            },
            "send_s": round(send_s, 2),
            "drain_s": round(self.ended - self.send_end, 2),
        }


@dataclass
class Stats:
    """What every connection's reader adds to: the current phase and the checks."""

    phase: Phase | None = None
    duplicates: int = 0
    out_of_order: int = 0
    closed: int = 0
    """Connections closed by the other side before the end."""


class Conn:
    """One WebSocket connection: a reader that dispatches replies and pushes."""

    def __init__(self, ws: ClientConnection, user: str, stats: Stats) -> None:
        self.ws = ws
        self.user = user
        self.stats = stats
        self.next_id = 0
        self.waiting: dict[int, tuple[float, str, bool, Phase]] = {}
        self.sent_at: dict[str, float] = {}  # order_id -> send time of its ADD
        self.last_seq: dict[tuple[str, str], int] = {}
        self.window: asyncio.Semaphore | None = None
        self.answers: dict[int, asyncio.Future[dict[str, Any]]] = {}  # outside any phase
        self.closing = False
        self.reader = asyncio.create_task(self._read())

    async def send(self, frame: dict[str, Any], phase: Phase) -> None:
        self.next_id += 1
        rid = self.next_id
        now = time.perf_counter()
        is_add = frame.get("action") == "order"
        self.waiting[rid] = (now, str(frame.get("order_id", "")), is_add, phase)
        if is_add:
            self.sent_at[str(frame["order_id"])] = now
            phase.adds += 1
        phase.sent += 1
        frame["request_id"] = rid
        await self.ws.send(json.dumps(frame, separators=(",", ":")))

    async def _read(self) -> None:
        try:
            await self._read_frames()
        finally:
            if not self.closing:
                self.stats.closed += 1

    async def _read_frames(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for text in self.ws:
                now = time.perf_counter()
                message = json.loads(text)
                rid = message.get("request_id")
                if rid is not None:
                    self._reply(rid, message, now)
                    continue
                phase = self.stats.phase
                if phase is None:
                    continue
                phase.frames += 1
                if message.get("type") == "BATCH":
                    for push in message.get("pushes", ()):
                        self._push(push, phase, now)
                else:
                    self._push(message, phase, now)

    def _reply(self, rid: int, message: dict[str, Any], now: float) -> None:
        answer = self.answers.pop(rid, None)
        if answer is not None:
            if not answer.done():
                answer.set_result(message)
            return
        sent = self.waiting.pop(rid, None)
        if self.window is not None:
            self.window.release()
        if sent is None:
            return
        began, order_id, is_add, phase = sent
        if message.get("type") == "ack":
            stamped = message.get("ts_ns")
            if isinstance(stamped, int) and stamped > 0:
                phase.router_ack_ms.append((time.time_ns() - stamped) / 1e6)
            phase.acks += 1
            phase.last_ack = now
            phase.ack_ms.append((now - began) * 1000)
            phase.per_second_acks[int(now - phase.started)] += 1
            if is_add:
                phase.acked_adds.add((self.user, order_id))
        else:
            phase.refused[str(message.get("reason", message.get("message")))] += 1

    def _push(self, push: dict[str, Any], phase: Phase, now: float) -> None:
        kind = str(push.get("type"))
        phase.pushes += 1
        phase.kinds[kind] += 1
        phase.last_push = now
        phase.per_second_pushes[int(now - phase.started)] += 1
        data = push.get("data") or {}
        if kind != "DEPTH":
            key = (kind, str(data.get("symbol")))
            seq = int(data.get("seq", 0))
            last = self.last_seq.get(key, 0)
            if seq and seq == last:
                self.stats.duplicates += 1
            elif seq and seq < last:
                self.stats.out_of_order += 1
            if seq:
                self.last_seq[key] = max(seq, last)
        if kind == "ORDER_STATUS":
            order_id = str(data.get("order_id"))
            began = self.sent_at.pop(order_id, None)
            if began is not None:
                phase.first_ms.append((now - began) * 1000)
                stamped = data.get("ts_ns")
                if isinstance(stamped, int) and stamped > 0:
                    phase.router_first_ms.append((time.time_ns() - stamped) / 1e6)
                phase.first_seen.add((self.user, order_id))

    async def close(self) -> None:
        self.closing = True
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


class Flow:
    """One user's seeded crossing flow: limits around MID on both sides, some cancels."""

    def __init__(self, user: str, symbols: Sequence[str], seed: int, cancel_share: float) -> None:
        self.user = user
        self.symbols = list(symbols)
        self.rng = random.Random(seed)
        self.cancel_share = cancel_share
        self.live: dict[str, list[str]] = {s: [] for s in symbols}
        self.n = 0

    def next(self, tag: str) -> dict[str, Any]:
        rng = self.rng
        symbol = rng.choice(self.symbols)
        live = self.live[symbol]
        if live and rng.random() < self.cancel_share:
            order_id = live.pop(rng.randrange(len(live)))
            return {"action": "cancel", "symbol": symbol, "order_id": order_id}
        self.n += 1
        order_id = f"{tag}-{self.n}"
        buy = rng.random() < 0.5
        price = MID + (rng.randint(-3, 2) if buy else rng.randint(-2, 3))
        live.append(order_id)
        if len(live) > 200:
            del live[0]
        return {
            "action": "order",
            "symbol": symbol,
            "order_id": order_id,
            "user_id": self.user,
            "side": "BUY" if buy else "SELL",
            "type": "LIMIT",
            "tif": "GTC",
            "price": price,
            "quantity": rng.randint(1, 10),
        }


async def open_conn(url: str, secret: str, user: str, stats: Stats, batch: bool) -> Conn:
    target = url + ("?pushes=batch" if batch else "")
    ws = await connect(
        target,
        additional_headers={"Authorization": f"Bearer {local_token(secret, user)}"},
        open_timeout=30,
        proxy=None,
        max_size=1 << 22,
        max_queue=None,
        ping_interval=None,
        compression=None,
    )
    return Conn(ws, user, stats)


async def subscribe(conn: Conn, symbols: Sequence[str]) -> None:
    conn.next_id += 1
    rid = conn.next_id
    answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    conn.answers[rid] = answer
    frame = {"action": "subscribe", "symbols": list(symbols), "request_id": rid}
    await conn.ws.send(json.dumps(frame))
    reply = await asyncio.wait_for(answer, 30)
    if reply.get("type") != "subscribed":
        raise RuntimeError(f"subscribe refused: {reply}")


async def run_phase(
    phase: Phase,
    traders: list[tuple[Conn, Flow]],
    stats: Stats,
    *,
    window: int,
    progress: Progress,
) -> None:
    tag = "".join(c for c in phase.name if c.isalnum())  # ids: letters, digits, - _ . :
    task = progress.add_task(phase.name, total=phase.seconds, acks=0, pushes=0, wait=0)
    stats.phase = phase
    cpu_before = cpu_times(PIDS)
    threads_before = thread_times(PIDS)
    switches_before = switches(PIDS)
    phase.started = time.perf_counter()
    deadline = phase.started + phase.seconds

    async def open_loop(conn: Conn, flow: Flow, rate: float) -> None:
        interval = 1.0 / rate
        n = 0
        while not conn.reader.done():
            now = time.perf_counter()
            if now >= deadline:
                return
            due = int((now - phase.started) / interval) + 1
            try:
                while n < due and len(conn.waiting) < MAX_IN_FLIGHT:
                    await conn.send(flow.next(tag), phase)
                    n += 1
            except ConnectionClosed:
                return  # counted by the connection's reader
            await asyncio.sleep(max(0.0, phase.started + n * interval - time.perf_counter()))

    async def closed_loop(conn: Conn, flow: Flow) -> None:
        conn.window = asyncio.Semaphore(window)
        try:
            while (left := deadline - time.perf_counter()) > 0 and not conn.reader.done():
                try:
                    await asyncio.wait_for(conn.window.acquire(), left)
                except TimeoutError:
                    return
                await conn.send(flow.next(tag), phase)
        except ConnectionClosed:
            pass  # counted by the connection's reader
        finally:
            conn.window = None

    async def ticker() -> None:
        while True:
            progress.update(
                task,
                completed=min(time.perf_counter() - phase.started, phase.seconds),
                acks=phase.acks,
                pushes=phase.pushes,
                wait=phase.waiting,
            )
            await asyncio.sleep(0.25)

    tick = asyncio.create_task(ticker())
    try:
        if phase.rate is None:
            await asyncio.gather(*(closed_loop(c, f) for c, f in traders))
        else:
            per = phase.rate / len(traders)
            await asyncio.gather(*(open_loop(c, f, per) for c, f in traders))
        phase.send_end = time.perf_counter()
        while True:
            now = time.perf_counter()
            replies = sum(len(c.waiting) for c, _ in traders if not c.reader.done())
            if not replies and not phase.waiting and now - phase.last_push > 0.5:
                break
            if now - max(phase.last_push, phase.send_end) > DRAIN_IDLE_S:
                break
            if now - phase.send_end > DRAIN_MAX_S:
                break
            await asyncio.sleep(0.05)
        phase.ended = time.perf_counter()
        cpu_after = cpu_times(PIDS)
        phase.cpu_s = {k: cpu_after[k] - cpu_before[k] for k in cpu_after if k in cpu_before}
        threads_after = thread_times(PIDS)
        phase.thread_s = {k: v - threads_before.get(k, 0.0) for k, v in threads_after.items()}
        switches_after = switches(PIDS)
        phase.switches = {
            k: v - switches_before[k] for k, v in switches_after.items() if k in switches_before
        }
    finally:
        tick.cancel()
        progress.update(task, completed=phase.seconds, acks=phase.acks, pushes=phase.pushes)
        for conn, _ in traders:
            conn.sent_at.clear()
            conn.waiting.clear()


# ------------------------------------------------------------------ profiling (py-spy)


def start_profiles(
    pids: dict[str, int], seconds: float, out: Path
) -> list[subprocess.Popen[bytes]]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for name, pid in pids.items():
        argv = [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(out / f"{name}.txt"),
            "--nonblocking",
            "--gil",
        ]
        procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def profile_table(
    path: Path, top: int = 14, ours: tuple[str, ...] = ("hotshard", "lambdas")
) -> Table:
    """Collapsed stacks -> where the samples' leaf frames are, and the share of samples that
    pass through each of our own functions (frames whose file path contains one of `ours`)."""
    leaf: Counter[str] = Counter()
    through: Counter[str] = Counter()
    total = 0
    for _, frames, n in collapsed_stacks(path):
        # the thread's frame first: skip idle threads waiting on a lock/select at the leaf
        total += n
        leaf[_short(frames[-1])] += n
        for name in {_short(f) for f in frames if any(o in f for o in ours)}:
            through[name] += n
    table = Table(
        title=f"py-spy: {path.stem} ({total:,} samples holding the GIL)", title_justify="left"
    )
    table.add_column("leaf function (self)")
    table.add_column("share", justify="right")
    table.add_column("through our function")
    table.add_column("share", justify="right")
    lefts = leaf.most_common(top)
    rights = through.most_common(top)
    for i in range(max(len(lefts), len(rights))):
        a = lefts[i] if i < len(lefts) else ("", 0)
        b = rights[i] if i < len(rights) else ("", 0)
        table.add_row(
            a[0],
            f"{a[1] / max(total, 1):.1%}" if a[0] else "",
            b[0],
            f"{b[1] / max(total, 1):.1%}" if b[0] else "",
        )
    return table


def _short(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0]
    parts = Path(file).parts
    tail = "/".join(parts[-2:]) if parts else file
    return f"{name} {tail}".strip()


# ------------------------------------------------------------------ plot


def plot(phases: list[Phase], path: Path, title: str) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8))
    origin = phases[0].started
    for phase in phases:
        offset = phase.started - origin
        secs = sorted(set(phase.per_second_acks) | set(phase.per_second_pushes))
        xs = [offset + s for s in secs]
        top.plot(xs, [phase.per_second_acks[s] for s in secs], color="tab:blue")
        top.plot(xs, [phase.per_second_pushes[s] for s in secs], color="tab:orange")
        top.axvline(offset, color="grey", linewidth=0.5)
        top.text(offset, 1, phase.name, fontsize=8, rotation=90, va="bottom")
    top.plot([], [], color="tab:blue", label="acks/s")
    top.plot([], [], color="tab:orange", label="pushes/s")
    top.set_yscale("symlog", linthresh=10)
    top.set_xlabel("s since the first phase began")
    top.legend()
    top.set_title(title, fontsize=9)
    names = [p.name for p in phases]
    slots = list(range(len(phases)))
    for i, (label, values) in enumerate(
        (
            ("ack p50", [percentile(p.ack_ms, 0.5) for p in phases]),
            ("ack p99", [percentile(p.ack_ms, 0.99) for p in phases]),
            ("first status p50", [percentile(p.first_ms, 0.5) for p in phases]),
            ("first status p99", [percentile(p.first_ms, 0.99) for p in phases]),
        )
    ):
        bottom.bar([x + (i - 1.5) * 0.2 for x in slots], values, width=0.2, label=label)
    bottom.axhline(
        50, color="red", linewidth=0.8, linestyle="--", label="goal: p99 50 ms at 1,000/s"
    )
    bottom.set_xticks(slots, names)
    bottom.set_yscale("symlog", linthresh=10)
    bottom.set_ylabel("ms (order sent ->)")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------ main


def parse_rates(text: str) -> list[float | None]:
    return [None if r.strip() == "max" else float(r) for r in text.split(",") if r.strip()]


async def drive(
    ws_url: str,
    secret: str,
    symbols: list[str],
    args: argparse.Namespace,
    console: Console,
    on_phase: Callable[[str, float], None],
) -> tuple[list[Phase], Stats]:
    stats = Stats()
    traders = []
    for k in range(args.clients):
        user = f"trader-{k}"
        conn = await open_conn(ws_url, secret, user, stats, args.batch)
        traders.append((conn, Flow(user, symbols, args.seed * 1000 + k, args.cancels)))
    watchers = [await open_conn(ws_url, secret, f"watch-{s}", stats, args.batch) for s in symbols]
    for conn, symbol in zip(watchers, symbols, strict=True):
        await subscribe(conn, [symbol])
    phases: list[Phase] = []
    extra: list[Conn] = []
    columns = (
        TextColumn("{task.description:>9}"),
        BarColumn(),
        TextColumn("{task.fields[acks]:>8,} acks {task.fields[pushes]:>9,} pushes"),
        TextColumn("{task.fields[wait]:>6,} awaiting status"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console) as progress:
            if args.warmup > 0:  # producer ids, connections, first books: not measured
                warm = Phase("warm-up", 50.0, args.warmup)
                await run_phase(warm, traders, stats, window=args.window, progress=progress)
            for rate in args.rates:
                name = "max" if rate is None else f"{rate:,.0f}/s"
                phase = Phase(name, rate, args.seconds)
                on_phase(name, args.seconds)
                await run_phase(phase, traders, stats, window=args.window, progress=progress)
                phases.append(phase)
            if args.fanout:
                fan = progress.add_task("connect", total=args.fanout, acks=0, pushes=0, wait=0)
                for k in range(args.fanout):
                    conn = await open_conn(ws_url, secret, f"fan-{k}", stats, args.batch)
                    await subscribe(conn, symbols)
                    extra.append(conn)
                    progress.advance(fan)
                phase = Phase(f"fanout {args.fanout}", args.fanout_rate, args.seconds)
                await run_phase(phase, traders, stats, window=args.window, progress=progress)
                phases.append(phase)
    finally:
        stats.phase = None
        for conn in [c for c, _ in traders] + watchers + extra:
            await conn.close()
    return phases, stats


def results_table(phases: list[Phase]) -> Table:
    table = Table(title="through the edge", title_justify="left")
    heads = (
        "phase",
        "sent",
        "acks/s",
        "pushes/s",
        "frames",
        "ack p50",
        "ack p99",
        "status p50",
        "status p99",
        "status max",
        "missing",
        "refused",
    )
    for h in heads:
        table.add_column(h, justify="left" if h == "phase" else "right")
    for p in phases:
        s = p.summary()
        table.add_row(
            p.name,
            f"{p.sent:,}",
            f"{s['acks_per_s']:,}",
            f"{s['pushes_per_s']:,}",
            f"{p.frames:,}",
            f"{s['ack_p50_ms']}",
            f"{s['ack_p99_ms']}",
            f"{s['first_status_p50_ms']}",
            f"{s['first_status_p99_ms']}",
            f"{s['first_status_max_ms']}",
            f"{s['status_missing']:,}",
            f"{sum(p.refused.values()):,}",
        )
    return table


def cpu_table(phases: list[Phase]) -> Table:
    """CPU ms per acknowledged order, per process: what the edge costs whatever the load."""
    names = sorted({n for p in phases for n in p.cpu_s})
    table = Table(title="CPU ms per acknowledged order (user + system)", title_justify="left")
    table.add_column("phase")
    for name in [*names, "all"]:
        table.add_column(name, justify="right")
    for p in phases:
        per = [1000 * p.cpu_s.get(n, 0.0) / max(p.acks, 1) for n in names]
        table.add_row(p.name, *(f"{v:.3f}" for v in per), f"{sum(per):.3f}")
    return table


def switch_table(phases: list[Phase]) -> Table:
    """Context switches per acknowledged order, per process (thread hand-offs, wake-ups)."""
    names = sorted({n for p in phases for n in p.switches})
    table = Table(title="context switches per acknowledged order", title_justify="left")
    table.add_column("phase")
    for name in [*names, "all"]:
        table.add_column(name, justify="right")
    for p in phases:
        per = [p.switches.get(n, 0) / max(p.acks, 1) for n in names]
        table.add_row(p.name, *(f"{v:.1f}" for v in per), f"{sum(per):.1f}")
    return table


def thread_table(phase: Phase, top: int = 24) -> Table:
    """CPU ms per acknowledged order of each (process, thread kind) in one phase."""
    table = Table(
        title=f"CPU ms per acknowledged order by thread, phase {phase.name}", title_justify="left"
    )
    for column in ("process", "threads", "ms/order", "share"):
        table.add_column(column, justify="left" if column in ("process", "threads") else "right")
    total = sum(phase.thread_s.values()) or 1e-9
    ranked = sorted(
        ((k, v) for k, v in phase.thread_s.items() if 1000 * v / max(phase.acks, 1) >= 0.001),
        key=lambda kv: -kv[1],
    )[:top]
    for (process, kind), seconds in ranked:
        per = 1000 * seconds / max(phase.acks, 1)
        table.add_row(process, kind, f"{per:.3f}", f"{seconds / total:.1%}")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.edge",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rates", type=parse_rates, default=parse_rates("100,1000,max"))
    p.add_argument("--seconds", type=float, default=10.0, help="sending time per phase")
    p.add_argument("--clients", type=int, default=8, help="trading connections (one user each)")
    p.add_argument("--symbols", type=int, default=4)
    p.add_argument("--window", type=int, default=32, help="in flight per connection at max")
    p.add_argument("--cancels", type=float, default=0.15, help="share of cancels in the flow")
    p.add_argument("--fanout", type=int, default=0, help="extra subscribers of every symbol")
    p.add_argument("--fanout-rate", type=float, default=200.0)
    p.add_argument("--batch", action="store_true", help="opt in to BATCH push frames")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--warmup", type=float, default=3.0, help="seconds at 50 orders/s first, not reported"
    )
    p.add_argument("--profile", type=Path, default=None, help="py-spy output folder")
    p.add_argument(
        "--profile-phase",
        default="max",
        help="the phase py-spy records, by name as the table shows it (max, 1,000/s, ...)",
    )
    p.add_argument("--plot", type=Path, default=Path("bench-edge.png"))
    p.add_argument("--json", action="store_true", help="last line: the results as JSON")
    args = p.parse_args(argv)
    console = Console(stderr=args.json, width=170)
    symbols = [f"E{i:02d}" for i in range(args.symbols)]
    load_before = os.getloadavg()
    began = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    profiles: list[subprocess.Popen[bytes]] = []
    with local_cluster(say=console.print) as cluster:
        assert cluster.gateway is not None
        r = cluster.redis.client()
        for symbol in symbols:
            route.list_symbol(r, symbol)
        pids = {proc.name: proc.popen.pid for proc in cluster.processes()}
        pids["bench"] = os.getpid()
        PIDS.update(pids)
        PIDS["redis"] = cluster.redis.process.popen.pid
        if cluster.broker.process is not None:
            PIDS["tansu"] = cluster.broker.process.popen.pid

        def on_phase(name: str, seconds: float) -> None:
            if args.profile is not None and name == args.profile_phase:
                profiles.extend(start_profiles(pids, seconds, args.profile))

        phases, stats = asyncio.run(
            drive(cluster.gateway.ws_url, cluster.secret, symbols, args, console, on_phase)
        )
        for proc in profiles:
            proc.wait(60)
        died = cluster.died()
    load_after = os.getloadavg()
    console.print(results_table(phases))
    console.print(cpu_table(phases))
    console.print(switch_table(phases))
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"load {load_before[0]:.1f} before / {load_after[0]:.1f} after"
    )
    console.print(
        f"{began}; {machine}; {args.clients} trading connections, {args.symbols} symbols, "
        f"batch frames {'on' if args.batch else 'off'}; pushes seen twice on a connection: "
        f"{stats.duplicates}, out of seq order: {stats.out_of_order}; connections closed by "
        f"the gateway: {stats.closed}"
    )
    if args.profile is not None:
        for phase in phases:
            if phase.name == args.profile_phase:
                console.print(thread_table(phase))
        for name in pids:
            path = args.profile / f"{name}.txt"
            if path.exists():
                console.print(profile_table(path))
    title = (
        f"bench.edge {began}, {args.clients} clients, {args.symbols} symbols, "
        f"batch {'on' if args.batch else 'off'}, load {load_before[0]:.1f}-{load_after[0]:.1f}"
    )
    plot(phases, args.plot, title)
    console.print(f"plot: {args.plot}")
    for process in died:
        console.print(f"[red]{process.name} exited:[/]\n{process.log_tail(20)}")
    if args.json:
        out = {
            "when": began,
            "load": [round(load_before[0], 2), round(load_after[0], 2)],
            "batch": args.batch,
            "phases": [ph.summary() for ph in phases],
            "duplicates": stats.duplicates,
            "out_of_order": stats.out_of_order,
            "closed": stats.closed,
        }
        print(json.dumps(out))
    bad = died or stats.duplicates or stats.out_of_order or stats.closed
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
