"""`hotshard demo` (what `make demo` runs): a hot symbol moved live while trading goes on.

`hotshard up` (hotshard.local.up: Tansu, Redis, several engines, a warm engine in the warm
pool, the gateway, moto's Step Functions running the ASL), then WebSocket clients
(hotshard.client) send a paced flow in which one symbol, HOT, takes about half of the
orders. The monitor (hotshard.local.monitor, the alarms' stand-in, thresholds lowered to
the demo's rates) sees HOT's order rate over its threshold and starts the state machine
with the alarm's event, as EventBridge would; the migration moves HOT (the hottest symbol
of the busiest engine) to the warm engine by itself, with pre-copy unless
`--strategy stop-and-copy`. Trading never stops.

The live view shows per-engine CPU and orders/s (their Stats), the hottest symbols' rates
and routes (the routing table), the state machine's steps (its execution history) and
HOT's latency (order sent -> its first ORDER_STATUS push). At the end: the migration's
summary (hotshard.local.demo.report), the edge's figures (acks/s, pushes/s, latency) and a
PNG of HOT's per-order latency over time with the steps marked; the last line is
`plot: PATH`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from hotshard import route
from hotshard.client.frames import Message
from hotshard.client.retry import RetryPolicy
from hotshard.client.session import Client, ClientError, local_token
from hotshard.local.demo import report
from hotshard.local.demo.cluster import latency_table
from hotshard.local.fleet import engine_label
from hotshard.local.monitor import Monitor
from hotshard.local.up import UpOptions, up

HOT = "HOT"
COLD = tuple(f"S{i:02d}" for i in range(11))
HOT_SHARE = 0.5
WINDOW = 64  # requests in flight per client (the gateway's IN_FLIGHT): pacing holds under latency
DRAIN_S = 3.0
VIEW_S = 0.5


# ---------------------------------------------------------------------- the flow


@dataclass
class Lane:
    """One client's part of the flow: passive limits near a mid, cancels of its own live
    orders, marketable IOC orders; HOT gets `hot_share` of them. Deterministic per seed."""

    user: str
    seed: int
    hot_share: float = HOT_SHARE
    hot: str = HOT
    cold: tuple[str, ...] = COLD
    live: dict[str, list[str]] = field(default_factory=dict)
    count: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def next(self) -> Message:
        rng = self.rng
        symbol = self.hot if rng.random() < self.hot_share else rng.choice(self.cold)
        live = self.live.setdefault(symbol, [])
        self.count += 1
        roll = rng.random()
        if roll < 0.25 and live:
            order_id = live.pop(rng.randrange(len(live)))
            return {"action": "cancel", "symbol": symbol, "order_id": order_id}
        order_id = f"{self.user}-{self.hot}-{self.seed}-{self.count}"
        side = "BUY" if rng.random() < 0.5 else "SELL"
        mid = 10_000
        if roll < 0.35:  # marketable: crosses the touch, never rests
            price = mid + 20 if side == "BUY" else mid - 20
            tif = "IOC"
        else:
            away = rng.randint(1, 10)
            price = mid - away if side == "BUY" else mid + away
            tif = "GTC"
            live.append(order_id)
            if len(live) > 200:
                live.pop(0)  # forget the oldest (it may have traded)
        return {
            "action": "order",
            "symbol": symbol,
            "order_id": order_id,
            "side": side,
            "type": "LIMIT",
            "tif": tif,
            "price": price,
            "quantity": rng.randint(1, 10),
        }


# ---------------------------------------------------------------------- the live state


@dataclass
class Tally:
    sent: int = 0
    acks: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    no_reply: int = 0
    pushes: int = 0
    retries: int = 0
    ack_ms: list[float] = field(default_factory=list)
    status_ms: list[float] = field(default_factory=list)
    waiting: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    """(user, order_id) -> (sent at, symbol) of orders with no ORDER_STATUS yet."""
    acked_ids: set[tuple[str, str]] = field(default_factory=set)
    sent_log: list[tuple[str, str, float]] = field(default_factory=list)
    """(user, order_id, sent at) of every order of the watched symbol, in sending order
    (appended only: another thread reads it as it grows)."""
    hot: list[tuple[float, float]] = field(default_factory=list)
    recent_hot: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=4000))
    last_push: float = 0.0
    first_send: float = 0.0
    last_send: float = 0.0
    last_ack: float = 0.0
    offered: float = 0.0
    """Orders/s the clients were paced at."""
    watched: str = HOT
    """The symbol whose per-order latency is kept (`hot`)."""


@dataclass
class View:
    """What the live view shows, refreshed by a background thread (blocking reads)."""

    engines: list[dict[str, Any]] = field(default_factory=list)
    symbols: list[dict[str, Any]] = field(default_factory=list)
    steps: list[report.Step] = field(default_factory=list)
    execution: str = ""
    status: str = "waiting for the monitor's alarm"
    output: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def steps_of(events: list[dict[str, Any]]) -> list[report.Step]:
    """Task/Choice/... states entered and left, in order, from an execution history."""
    entered: dict[str, float] = {}
    out: list[report.Step] = []
    for event in events:
        at = event["timestamp"]
        stamp = at.timestamp() if hasattr(at, "timestamp") else float(at)
        kind = event["type"]
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            entered[name] = stamp
            out.append(report.Step(name, stamp))
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            for k in range(len(out) - 1, -1, -1):
                if out[k].name == name and out[k].exited_s is None:
                    out[k] = report.Step(name, out[k].entered_s, stamp)
                    break
    return out


def snapshot_bytes(r: Any, output: dict[str, Any]) -> int:
    """The size of the snapshot the move transferred, read where it is stored when the
    execution's output does not say (0 if it cannot be read)."""
    snapshot = output.get("snapshot") or {}
    size = int(snapshot.get("size_bytes") or 0)
    location = str(snapshot.get("location") or "")
    if size:
        return size
    with contextlib.suppress(Exception):
        if location.startswith("file://"):
            return os.path.getsize(location.removeprefix("file://"))
        if location.startswith("redis:"):
            return int(r.strlen(location.removeprefix("redis:")))
    return 0


def migration_of(output: dict[str, Any], status: str) -> dict[str, Any]:
    """The demo's migration record from the execution's final state: the Cleanup summary
    plus when the pause began and matching resumed."""
    summary = dict(output.get("cleanup") or {})
    summary.setdefault("status", status)
    if status != "SUCCEEDED":
        summary["status"] = status
    switch = output.get("switch") or {}
    pause = output.get("pause") or {}
    migration = output.get("migration") or {}
    summary.setdefault("symbol", migration.get("symbol"))
    summary.setdefault("strategy", migration.get("strategy"))
    summary.setdefault("from", (migration.get("source") or {}).get("instance"))
    summary.setdefault("to", (output.get("target") or {}).get("instance"))
    summary["switched_ms"] = switch.get("switched_ms")
    summary["resumed_ms"] = switch.get("resumed_ms")
    summary["paused_ms"] = pause.get("paused_ms")
    return summary


# ---------------------------------------------------------------------- rendering


def engines_table(view: View) -> Table:
    table = Table(title="engines (their Stats)", title_justify="left")
    for column in ("engine", "partitions", "CPU %", "orders/s", "symbols", "shadows"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for e in view.engines:
        table.add_row(
            engine_label(e),  # (warm) while idle in the pool: the moved symbol's target is not
            ",".join(str(p) for p in e["partitions"]),
            f"{e['cpu']:.0f}",
            f"{e['rate']:,.0f}",
            str(e["symbols"]),
            e["shadows"],
        )
    return table


def symbols_table(view: View) -> Table:
    table = Table(title="hottest symbols", title_justify="left")
    for column in ("symbol", "orders/s", "route", "engine", "status", "epoch"):
        table.add_column(column, justify="left" if column in ("symbol", "engine") else "right")
    for s in view.symbols:
        table.add_row(
            s["symbol"], f"{s['rate']:,.0f}", str(s["partition"]), s["instance"], s["status"],
            str(s["epoch"]),
        )  # fmt: skip
    return table


def steps_table(view: View, now: float) -> Table:
    title = f"state machine: {view.status}"
    table = Table(title=title, title_justify="left")
    for column in ("step", "ms"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for step in view.steps:
        took = ((step.exited_s or now) - step.entered_s) * 1000
        mark = "" if step.exited_s is not None else "  <- now"
        table.add_row(step.name + mark, f"{took:,.0f}")
    return table


def hot_line(tally: Tally, now: float, began: float) -> str:
    latest = max((sent for sent, _ in tally.recent_hot), default=now)
    recent = [lat for sent, lat in tally.recent_hot if sent > min(now, latest) - 2.0]
    p50 = report.percentile(recent, 0.5)
    p99 = report.percentile(recent, 0.99)
    elapsed = max(now - began, 1e-9)
    return (
        f"{tally.watched} latency, last 2 s: p50 {p50:,.1f} ms, p99 {p99:,.1f} ms "
        f"({len(recent)} orders)"
        f"   |   {tally.sent:,} sent, {tally.acks:,} acks ({tally.acks / elapsed:,.0f}/s), "
        f"{tally.pushes:,} pushes ({tally.pushes / elapsed:,.0f}/s), "
        f"{tally.retries} STALE_ROUTE retries, {elapsed:.0f} s"
    )


def render(view: View, tally: Tally, began: float) -> Group:
    now = time.time()
    with view.lock:
        return Group(
            engines_table(view), symbols_table(view), steps_table(view, now),
            hot_line(tally, now, began),
        )  # fmt: skip


# ---------------------------------------------------------------------- the run


def watch(cluster: Any, monitor: Monitor, view: View, stop: threading.Event) -> None:
    """Refresh the view: engines' Stats, routes, the execution's history."""
    sfn = cluster.plane.client("stepfunctions")
    r = cluster.redis.client()
    while not stop.wait(VIEW_S):
        with contextlib.suppress(Exception):
            stats = {s.instance_id: s for s in cluster.read_stats()}
            with cluster.lock:
                slots = list(cluster.slots.values())
            engines, rates = [], Counter[str]()
            for slot in slots:
                st = stats.get(slot.instance)
                for sym in st.symbols if st is not None else ():
                    rates[sym.symbol] += sym.orders_per_second
                engines.append(
                    {
                        "id": slot.instance,
                        "partitions": slot.partitions,
                        "warm": slot.warm,
                        "cpu": st.cpu_percent if st is not None else 0.0,
                        "rate": st.orders_per_second if st is not None else 0.0,
                        "symbols": len(st.symbols) if st is not None else 0,
                        "shadows": ", ".join(
                            f"{s.symbol} lag {s.lag}" for s in (st.shadows if st else ())
                        ),
                    }
                )
            symbols = []
            for symbol, rate in rates.most_common(6):
                found = route.lookup(r, symbol)
                symbols.append(
                    {
                        "symbol": symbol,
                        "rate": rate,
                        "partition": found.partition if found else -1,
                        "instance": found.instance if found else "-",
                        "status": found.status if found else "-",
                        "epoch": found.epoch if found else 0,
                    }
                )
            with view.lock:
                view.engines, view.symbols = engines, symbols
        if monitor.started and not view.execution:
            view.execution = monitor.started[0]
        if view.execution and view.status not in ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"):
            with contextlib.suppress(Exception):
                described = sfn.describe_execution(executionArn=view.execution)
                events = sfn.get_execution_history(executionArn=view.execution, maxResults=1000)[
                    "events"
                ]
                with view.lock:
                    view.steps = steps_of(events)
                    view.status = str(described["status"])
                    if described.get("output"):
                        view.output = json.loads(described["output"])


async def trade(
    ws_url: str,
    secret: str,
    *,
    clients: int,
    rate: float,
    duration: float,
    seed: int,
    tally: Tally,
    refresh: Callable[[], None],
    done: Callable[[], bool],
    flow: Callable[[str, int], Lane] | None = None,
) -> None:
    """Paced clients (rate/clients orders/s each) for `duration` s, or until `done()` and
    at least 15 s after the migration ended."""
    users = [f"trader-{k}" for k in range(clients)]

    def on_push(user: str) -> Callable[[Message], None]:
        def seen(push: Message) -> None:
            now = time.time()
            tally.pushes += 1
            tally.last_push = now
            if push.get("type") != "ORDER_STATUS":
                return
            data = push.get("data") or {}
            key = (user, str(data.get("order_id")))
            waiting = tally.waiting.pop(key, None)
            if waiting is None:
                return
            sent, symbol = waiting
            latency = (now - sent) * 1000
            tally.status_ms.append(latency)
            if symbol == tally.watched:
                tally.hot.append((sent, latency))
                tally.recent_hot.append((sent, latency))

        return seen

    def on_retry(_frame: Message, _n: int, _delay: float) -> None:
        tally.retries += 1

    conns = [
        await Client.connect(
            ws_url,
            local_token(secret, user),
            policy=RetryPolicy(),
            on_push=on_push(user),
            on_retry=on_retry,
            queue_pushes=False,
            batch=True,
        )
        for user in users
    ]
    began = time.time()
    deadline = began + duration

    async def lane(client: Client, user: str, k: int) -> None:
        lane_flow = (flow or Lane)(user, seed * 1000 + k)
        pending: set[asyncio.Future[Message]] = set()
        period = clients / rate
        next_at = time.monotonic() + k * period / clients

        def record(frame: Message, sent: float, future: asyncio.Future[Message]) -> None:
            if future.cancelled() or future.exception() is not None:
                tally.no_reply += 1
                return
            reply = future.result()
            if reply.get("type") == "ack":
                tally.acks += 1
                tally.last_ack = time.time()
                tally.ack_ms.append((time.time() - sent) * 1000)
                if frame["action"] == "order":
                    tally.acked_ids.add((user, str(frame["order_id"])))
            else:
                tally.refused[str(reply.get("reason", reply.get("message")))] += 1
                tally.waiting.pop((user, str(frame.get("order_id"))), None)

        while time.time() < deadline and not done():
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += period
            if len(pending) >= WINDOW:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            frame = lane_flow.next()
            sent = time.time()
            if frame["action"] == "order":
                tally.waiting[(user, str(frame["order_id"]))] = (sent, str(frame["symbol"]))
                if frame["symbol"] == tally.watched:
                    tally.sent_log.append((user, str(frame["order_id"]), sent))
            try:
                future = await client.send(frame)
            except ClientError:
                tally.no_reply += 1
                break
            tally.sent += 1
            tally.last_send = time.time()
            if not tally.first_send:
                tally.first_send = tally.last_send
            future.add_done_callback(functools.partial(record, frame, sent))
            pending.add(future)
        if pending:
            await asyncio.wait(pending, timeout=30)

    async def show() -> None:
        while True:
            refresh()
            await asyncio.sleep(VIEW_S)

    ticker = asyncio.create_task(show())
    try:
        await asyncio.gather(
            *(lane(c, u, k) for k, (c, u) in enumerate(zip(conns, users, strict=True)))
        )
        drained = time.time()
        while time.time() - max(tally.last_push, drained) < DRAIN_S:
            if not any(key in tally.acked_ids for key in tally.waiting):
                break
            await asyncio.sleep(0.1)
    finally:
        ticker.cancel()
        for conn in conns:
            await conn.close()


@dataclass
class DemoOptions:
    strategy: str = "pre-copy"
    engines: int = 3
    warm: int = 1
    partitions: int = 6
    clients: int = 6
    rate: float = 300.0
    duration: float = 60.0
    after_s: float = 20.0
    seed: int = 7
    rate_threshold: float = 60.0
    monitor_period_s: float = 2.0
    out: Path = Path(".hotshard")


def edge_lines(tally: Tally, offered: float, lost: int) -> list[str]:
    """The edge's figures: how fast the flow was sent against its pacing, acks/s from the
    first order sent to the last ack, pushes/s to the last push (the cluster's start and
    stop are not in them)."""
    start = tally.first_send
    send_s = max(tally.last_send - start, 1e-9)
    ack_s = max(tally.last_ack - start, send_s)
    push_s = max(tally.last_push - start, 1e-9)
    return [
        f"edge: {tally.sent:,} orders sent in {send_s:,.1f} s ({tally.sent / send_s:,.0f}/s "
        f"of {offered:,.0f}/s offered), {tally.acks:,} acknowledged "
        f"({tally.acks / ack_s:,.0f} acks/s), {tally.pushes:,} pushes "
        f"({tally.pushes / push_s:,.0f} pushes/s), {tally.retries} STALE_ROUTE retries, "
        f"refused {dict(tally.refused) or 0}, lost {lost}",
    ]


def run(options: DemoOptions, console: Console) -> int:
    """The whole demo; 0 when HOT moved, trading went on and nothing was lost."""
    say = console.print
    # The task handlers' step logs stay out of the live view (their worker processes
    # inherit this).
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    symbols = (HOT, *COLD)
    up_options = UpOptions(
        engines=options.engines,
        warm=options.warm,
        partitions=options.partitions,
        symbols=symbols,
        monitor=False,  # the demo's own monitor below: one execution, the demo's strategy
        state_file=options.out / "demo-cluster.json",
        # each task in a process of its own, as a Lambda: on a thread of this process its
        # round trips inside the pause waited for the GIL behind the demo's clients and view
        task_processes=True,
    )
    tally = Tally()
    view = View()
    with up(up_options, say=say) as cluster:
        assert cluster.gateway is not None
        sfn = cluster.plane.client("stepfunctions")

        def start_once(event: dict[str, Any]) -> str:
            if monitor.started:
                return monitor.started[0]
            return cluster.plane.start_execution({**event, "strategy": options.strategy})

        def running(arn: str) -> bool:
            return bool(sfn.describe_execution(executionArn=arn)["status"] == "RUNNING")

        monitor = Monitor(
            cluster.read_stats,
            start_once,
            running,
            period_s=options.monitor_period_s,
            cpu_threshold=10_000.0,  # the demo moves on the symbol-rate alarm only
            rate_threshold=options.rate_threshold,
            say=lambda line: say(f"[bold yellow]{line}"),
        )
        stop = threading.Event()
        watcher = threading.Thread(
            target=watch, args=(cluster, monitor, view, stop), daemon=True, name="view"
        )
        watcher.start()
        monitor.start_thread()
        ended: list[float] = []

        def done() -> bool:
            if view.status in ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"):
                if not ended:
                    ended.append(time.time())
                return time.time() - ended[0] > options.after_s
            return False

        say(
            f"{options.clients} WebSocket clients, {options.rate:,.0f} orders/s, {HOT} "
            f"~{HOT_SHARE:.0%} of them; the monitor moves the hottest symbol when its rate "
            f"passes {options.rate_threshold:,.0f}/s ({options.strategy})"
        )
        began = time.time()
        try:
            with Live(render(view, tally, began), console=console, refresh_per_second=4) as live:
                asyncio.run(
                    trade(
                        cluster.gateway.ws_url,
                        cluster.secret,
                        clients=options.clients,
                        rate=options.rate,
                        duration=options.duration,
                        seed=options.seed,
                        tally=tally,
                        refresh=lambda: live.update(render(view, tally, began)),
                        done=done,
                    )
                )
                if view.execution and view.status == "RUNNING":
                    with contextlib.suppress(TimeoutError):
                        cluster.plane.wait(view.execution, timeout_s=30)
                time.sleep(VIEW_S * 3)
                live.update(render(view, tally, began))
        finally:
            stop.set()
            monitor.stop()
            watcher.join(10)
        died = [s.instance for s in cluster.slots.values() if s.restarts]
        moved_record: dict[str, Any] = {}
        if view.execution:
            moved_record = migration_of(view.output, view.status)
            if not moved_record.get("snapshot_bytes"):
                moved_record["snapshot_bytes"] = snapshot_bytes(cluster.redis.client(), view.output)
        ended_s = time.time()
    lost = tally.no_reply + sum(1 for key in tally.waiting if key in tally.acked_ids)
    recorded = report.Recorded(
        symbol=HOT,
        strategy=options.strategy,
        samples=sorted(tally.hot),
        steps=view.steps,
        migration=moved_record,
        began_s=began,
        ended_s=ended_s,
        sent=tally.sent,
        acked=tally.acks,
        lost=lost,
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report.save(recorded, options.out / f"demo-{stamp}.json")
    summary = report.summarize(recorded)
    for line in report.summary_lines(summary, HOT):
        say(line)
    for line in edge_lines(tally, options.rate, lost):
        say(line)
    say(latency_table(tally.ack_ms, tally.status_ms, report.percentile))
    if died:
        say(f"[red]engines restarted by the supervisor: {died}")
    path = report.plot(recorded, options.out / f"demo-{stamp}.png")
    moved = summary.status == "SUCCEEDED"
    print(f"plot: {path}", flush=True)
    return 0 if moved and lost == 0 and tally.acks > 0 else 1
