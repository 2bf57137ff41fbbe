"""The demo through real services and the edge: a local cluster (hotshard.local.cluster:
Tansu, redis-server, two engine processes and the local edge), all on free 127.0.0.1
ports. Symbols are listed through hotshard.route (the router and the engines agree on
partitions); the generated flow is sent by several WebSocket clients
(hotshard.client), one per group of the flow's users; every reply and push is counted.
Sending stops after `duration` seconds (or when the flow is done), pushes are drained for
a few seconds, and everything is stopped. Clients keep WINDOW requests in flight each and
take their pushes in BATCH frames; the summary shows acks/s, pushes/s and the latency from
an order's sending to its ack and to its first ORDER_STATUS push (p50/p90/p99/max).

    hotshard demo [--orders N] [--symbols K] [--clients C] [--duration S] ...
"""

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hotshard import route
from hotshard.client.frames import Message
from hotshard.client.retry import RetryPolicy
from hotshard.client.session import Client, ClientError, local_token
from hotshard.commands import ORDER_ID, PRICE, QUANTITY, SIDE, TIF, TYPE, USER_ID
from hotshard.domain import Action, OrderType, Side, TimeInForce
from hotshard.local.cluster import local_cluster
from hotshard.local.flow import Stream, zipf_stream
from hotshard.route import Route

WATCHED = 5  # the watcher subscribes to the hottest symbols
WINDOW = 32  # requests in flight per connection
DRAIN_IDLE_S = 2.0  # pushes are drained until none came for this long ...
DRAIN_MAX_S = 20.0  # ... or this long after the last reply


@dataclass
class ClientTally:
    user: str
    sent: int = 0
    acks: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    lost: int = 0  # no reply (timeout, connection closed)
    pushes: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    retries: int = 0


@dataclass
class SymbolTally:
    sent: int = 0
    acks: int = 0
    fills: int = 0
    rejected: int = 0


@dataclass
class Run:
    clients: list[ClientTally]
    symbols: dict[str, SymbolTally]
    send_s: float
    drain_s: float
    last_push: float = 0.0
    began: float = 0.0
    ack_ms: list[float] = field(default_factory=list)
    """Order sent -> its ack, per acknowledged request."""
    first_status_ms: list[float] = field(default_factory=list)
    """Order (ADD) sent -> its first ORDER_STATUS push."""
    sent_at: dict[tuple[str, str], float] = field(default_factory=dict)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def frame_of(symbol: str, command: Any, user: str) -> Message:
    """A generated command as the WebSocket frame a client sends (as `user`)."""
    action = Action(command[0])
    if action == Action.CANCEL:
        return {"action": "cancel", "symbol": symbol, "order_id": command[ORDER_ID]}
    if action == Action.REPLACE:
        return {
            "action": "replace",
            "symbol": symbol,
            "order_id": command[ORDER_ID],
            "price": command[PRICE],
            "quantity": command[QUANTITY],
        }
    frame: Message = {
        "action": "order",
        "symbol": symbol,
        "order_id": command[ORDER_ID],
        "user_id": user,
        "side": Side(command[SIDE]).name,
        "type": OrderType(command[TYPE]).name,
        "tif": TimeInForce(command[TIF]).name,
        "quantity": command[QUANTITY],
    }
    if command[PRICE] > 0:
        frame["price"] = command[PRICE]
    return frame


def lanes(stream: Stream, clients: int) -> list[list[tuple[str, Message]]]:
    """The flow split by user: the flow's user uK trades through client K mod `clients`
    (so an order and its cancel travel the same connection, in order)."""
    out: list[list[tuple[str, Message]]] = [[] for _ in range(clients)]
    for symbol, command in stream:
        k = int(str(command[USER_ID]).lstrip("u") or 0) % clients
        out[k].append((symbol, frame_of(symbol, command, trader(k))))
    return out


def trader(k: int) -> str:
    return f"trader-{k}"


def list_symbols(r: Any, stream: Stream) -> dict[str, Route]:
    """List every symbol of the flow through the routing table (least-loaded partition
    owned by a live engine), hottest first."""
    heat = Counter(symbol for symbol, _ in stream)
    return {symbol: route.list_symbol(r, symbol) for symbol, _ in heat.most_common()}


async def drive(
    ws_url: str,
    secret: str,
    stream: Stream,
    hottest: list[str],
    *,
    clients: int,
    duration: float,
    progress: Progress,
) -> Run:
    work = lanes(stream, clients)
    tallies = [ClientTally(trader(k)) for k in range(clients)] + [ClientTally("watcher")]
    symbols: dict[str, SymbolTally] = {}
    run = Run(tallies, symbols, 0.0, 0.0, time.monotonic())
    task = progress.add_task("orders", total=sum(len(lane) for lane in work), pushes=0)
    pushed = [0]

    def on_push(tally: ClientTally) -> Callable[[Message], None]:
        def count(push: Message) -> None:
            kind = str(push.get("type", push.get("message", "?")))
            tally.pushes[kind] += 1
            pushed[0] += 1
            run.last_push = time.monotonic()
            data = push.get("data") or {}
            if kind == "ORDER_STATUS":
                sent = run.sent_at.pop((tally.user, str(data.get("order_id"))), None)
                if sent is not None:
                    run.first_status_ms.append((run.last_push - sent) * 1000)
            sym = symbols.get(str(data.get("symbol")))
            if kind == "FILL" and sym is not None and tally.user != "watcher":
                sym.fills += 1
            if kind == "ORDER_STATUS" and data.get("status") == "REJECTED":
                tally.rejected[str(data.get("reason"))] += 1
                if sym is not None:
                    sym.rejected += 1

        return count

    def on_retry(tally: ClientTally) -> Callable[[Message, int, float], None]:
        def count(_frame: Message, _n: int, _delay: float) -> None:
            tally.retries += 1

        return count

    conns = [
        await Client.connect(
            ws_url,
            local_token(secret, tally.user),
            policy=RetryPolicy(),
            on_push=on_push(tally),
            on_retry=on_retry(tally),
            queue_pushes=False,
            batch=True,  # BATCH frames (docs/asyncapi.yaml), unpacked by the client
        )
        for tally in tallies
    ]
    began = run.began = time.monotonic()
    deadline = began + duration

    async def lane(client: Client, tally: ClientTally, frames: list[tuple[str, Message]]) -> None:
        pending: set[asyncio.Future[Message]] = set()

        def record(symbol: str, sent: float, future: "asyncio.Future[Message]") -> None:
            progress.advance(task)
            sym = symbols.setdefault(symbol, SymbolTally())
            if future.exception() is not None:
                tally.lost += 1
                return
            reply = future.result()
            if reply.get("type") == "ack":
                tally.acks += 1
                sym.acks += 1
                run.ack_ms.append((time.monotonic() - sent) * 1000)
            else:
                tally.errors[str(reply.get("reason", reply.get("message")))] += 1

        for symbol, frame in frames:
            if time.monotonic() > deadline:
                break
            if len(pending) >= WINDOW:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            sent = time.monotonic()
            if frame.get("action") == "order":
                run.sent_at[(tally.user, str(frame["order_id"]))] = sent
            try:
                future = await client.send(frame)
            except ClientError:
                tally.lost += 1
                break
            tally.sent += 1
            symbols.setdefault(symbol, SymbolTally()).sent += 1
            future.add_done_callback(functools.partial(record, symbol, sent))
            pending.add(future)
        if pending:
            await asyncio.wait(pending)

    async def show_pushes() -> None:
        while True:
            progress.update(task, pushes=pushed[0])
            await asyncio.sleep(0.25)

    ticker = asyncio.create_task(show_pushes())
    try:
        watcher = conns[-1]
        await watcher.subscribe(hottest)
        await asyncio.gather(
            *(lane(c, t, w) for c, t, w in zip(conns, tallies, work, strict=False))
        )
        run.send_s = time.monotonic() - began
        drained = time.monotonic()
        while time.monotonic() - drained < DRAIN_MAX_S:
            if time.monotonic() - max(run.last_push, drained) > DRAIN_IDLE_S:
                break
            await asyncio.sleep(0.1)
        run.drain_s = time.monotonic() - drained
    finally:
        ticker.cancel()
        progress.update(task, pushes=pushed[0])
        for conn in conns:
            await conn.close()
    return run


def run(
    orders: int,
    symbols: int,
    seed: int,
    top: int,
    console: Console,
    *,
    clients: int = 8,
    duration: float = 30.0,
) -> int:
    stream = zipf_stream(orders, seed=seed, symbols=symbols)
    with local_cluster(say=console.print) as cluster:
        assert cluster.gateway is not None
        routes = list_symbols(cluster.redis.client(), stream)
        console.print(placement(routes))
        console.print(f"{clients} trading clients + 1 watcher, at most {duration:.0f} s of sending")
        with Progress(
            TextColumn("{task.description:>8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("replies, {task.fields[pushes]:,} pushes"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            result = asyncio.run(
                drive(
                    cluster.gateway.ws_url,
                    cluster.secret,
                    stream,
                    list(routes)[:WATCHED],
                    clients=clients,
                    duration=duration,
                    progress=progress,
                )
            )
        died = cluster.died()
        for process in died:
            console.print(f"[red]{process.name} exited:[/]\n{process.log_tail(20)}")
    console.print(client_table(result))
    console.print(symbol_table(result, routes, top))
    console.print(reason_table(result))
    sent = sum(t.sent for t in result.clients)
    acks = sum(t.acks for t in result.clients)
    pushes = sum(sum(t.pushes.values()) for t in result.clients)
    lost = sum(t.lost for t in result.clients)
    stopped = f" (sending stopped after {duration:.0f} s)" if sent < len(stream) else ""
    push_s = max(result.last_push - result.began, result.send_s, 1e-9)
    console.print(
        f"[bold]{sent:,}[/] of {len(stream):,} generated orders{stopped} sent through the "
        f"gateway by "
        f"{clients} WebSocket clients in {result.send_s:.1f} s "
        f"([bold]{acks / max(result.send_s, 1e-9):,.0f}[/] acks/s); {acks:,} acknowledged, "
        f"{pushes:,} pushes received ([bold]{pushes / push_s:,.0f}[/] pushes/s; drained for "
        f"{result.drain_s:.1f} s), "
        f"{sum(t.retries for t in result.clients)} STALE_ROUTE retries, {lost} lost."
    )
    console.print(latency_table(result.ack_ms, result.first_status_ms))
    return 0 if acks > 0 and pushes > 0 and lost == 0 and not died else 1


def latency_table(
    ack_ms: list[float],
    status_ms: list[float],
    pct: Callable[[list[float], float], float] = percentile,
) -> Table:
    """p50/p90/p99/max of order sent -> its ack and -> its first ORDER_STATUS push (both
    demos; `pct` is the percentile each computes)."""
    table = Table(title="latency (ms), order sent ->", title_justify="left")
    for column in ("", "p50", "p90", "p99", "max", "of"):
        table.add_column(column, justify="left" if not column else "right")
    for name, values in (
        ("its ack", ack_ms),
        ("its first ORDER_STATUS push", status_ms),
    ):
        cells = [pct(values, p) for p in (0.5, 0.9, 0.99)] + [max(values, default=0.0)]
        table.add_row(name, *(f"{v:,.1f}" for v in cells), f"{len(values):,}")
    return table


def placement(routes: dict[str, Route]) -> Table:
    table = Table(title="symbols listed through hotshard.route", title_justify="left")
    for column in ("partition", "engine", "symbols", "hottest"):
        table.add_column(column, justify="left" if column in ("engine", "hottest") else "right")
    by_partition: dict[int, list[str]] = {}
    owner: dict[int, str] = {}
    for symbol, found in routes.items():
        by_partition.setdefault(found.partition, []).append(symbol)
        owner[found.partition] = found.instance
    for partition in sorted(by_partition):
        listed = by_partition[partition]
        table.add_row(str(partition), owner[partition], str(len(listed)), ", ".join(listed[:4]))
    return table


def client_table(result: Run) -> Table:
    table = Table(title="per client", title_justify="left")
    columns = ("client", "sent", "acks", "refused", "ORDER_STATUS", "FILL", "TRADE", "DEPTH")
    for column in (*columns, "rejected", "retries"):
        table.add_column(column, justify="left" if column == "client" else "right")
    for t in result.clients:
        table.add_row(
            t.user,
            f"{t.sent:,}",
            f"{t.acks:,}",
            f"{sum(t.errors.values()):,}",
            *(f"{t.pushes[kind]:,}" for kind in columns[4:]),
            f"{sum(t.rejected.values()):,}",
            f"{t.retries:,}",
        )
    return table


def symbol_table(result: Run, routes: dict[str, Route], top: int) -> Table:
    table = Table(title=f"hottest {top} symbols of {len(routes)}", title_justify="left")
    for column in ("symbol", "partition", "engine", "sent", "acks", "acks/s", "fills", "rejected"):
        table.add_column(column, justify="left" if column in ("symbol", "engine") else "right")
    ranked = sorted(result.symbols.items(), key=lambda item: (-item[1].sent, item[0]))[:top]
    for symbol, t in ranked:
        found = routes[symbol]
        table.add_row(
            symbol,
            str(found.partition),
            found.instance,
            f"{t.sent:,}",
            f"{t.acks:,}",
            f"{t.acks / max(result.send_s, 1e-9):,.1f}",
            f"{t.fills:,}",
            f"{t.rejected:,}",
        )
    return table


def reason_table(result: Run) -> Table:
    refused: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    for t in result.clients:
        refused.update(t.errors)
        rejected.update(t.rejected)
    table = Table(title="rejects by reason", title_justify="left")
    for column in ("reason", "refused by the router", "rejected by the engine"):
        table.add_column(column, justify="left" if column == "reason" else "right")
    for reason in sorted(set(refused) | set(rejected)):
        table.add_row(reason, f"{refused[reason]:,}", f"{rejected[reason]:,}")
    if not refused and not rejected:
        table.add_row("(none)", "0", "0")
    return table
