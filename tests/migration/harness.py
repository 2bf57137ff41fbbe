"""The migration's correctness check through the public surface (issue 10 goal 5):
`hotshard up` as a user starts it, WebSocket clients (hotshard.client) send a seeded
concurrent load of orders on several symbols while `hotshard migrate` moves the hot one,
and everything is judged from the pushes alone:

- every acknowledged order took effect exactly once (one ACCEPTED or one REJECTED that is
  not STALE_ROUTE, never two), and no order the client was told was refused took effect
  (only an answer in doubt - none in time, NOT_DELIVERED - may have);
- each symbol's sequence numbers are 1..N, no gap, no repeat (the union of what the
  owners and a watcher subscribed to every symbol were pushed);
- the hot symbol's events equal, event for event, a replay (engine.replay) of the same
  commands in the order its book applied them (by the seq of each order's ACCEPTED), as
  if it had never moved;
- the other symbols did not stall (their longest gap between two acks during the move).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.book import Market
from engine.replay import ReplayStats, replay_lines
from hotshard.client.retry import RetryPolicy
from hotshard.client.session import Client, local_token
from hotshard.local.up import wait_state

HOT = "HOT"
OTHERS = ("AAA", "BBB", "CCC")
SYMBOLS = (HOT, *OTHERS)
REPO = Path(__file__).resolve().parents[2]
IN_DOUBT = ("NOT_DELIVERED", "ORDER_IN_FLIGHT")
"""Refusals that leave the outcome open: the order may have reached the book."""
HOTSHARD = [sys.executable, "-m", "hotshard.cli"]


@contextlib.contextmanager
def hotshard_up(tmp: Path, *args: str) -> Iterator[tuple[dict[str, Any], subprocess.Popen[bytes]]]:
    """`hotshard up` as a child process with its state file in `tmp`."""
    state_file = tmp / "cluster.json"
    log = open(tmp / "up.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [*HOTSHARD, "up", "--state-file", str(state_file), "--symbols", ",".join(SYMBOLS), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
        env={**os.environ, "PYTHONPATH": str(REPO), "POWERTOOLS_LOG_LEVEL": "WARNING"},
        start_new_session=True,
    )
    try:
        state = wait_state(state_file, 120)
        yield state, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


MIGRATE_WATCH_S = 270
"""`hotshard migrate --timeout`: it stops watching (and says so) before the harness kills it."""
MIGRATE_KILL_S = 300


def migrate(state_file: Path, symbol: str, strategy: str) -> tuple[int, dict[str, Any], str]:
    """`hotshard migrate SYMBOL --json`: (exit code, its last line, all it printed)."""
    command = [
        *HOTSHARD,
        "migrate",
        symbol,
        "--strategy",
        strategy,
        "--json",
        "--state-file",
        str(state_file),
        "--timeout",
        str(MIGRATE_WATCH_S),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=MIGRATE_KILL_S, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:  # what it printed so far says where it stood
        printed = _text(exc.stdout) + _text(exc.stderr)
        return -1, {}, f"{printed}\n[hotshard migrate killed after {MIGRATE_KILL_S} s]"
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return done.returncode, summary, done.stdout + done.stderr


def _text(out: str | bytes | None) -> str:
    return out.decode(errors="replace") if isinstance(out, bytes) else out or ""


@dataclass
class Load:
    acks: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)  # id -> (sym, frame)
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> frame, every one sent
    ack_times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    pushes: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (connection, push)
    refused: list[dict[str, Any]] = field(default_factory=list)
    retries: int = 0
    lost: int = 0


def order_frame(rng: random.Random, symbol: str, order_id: str, user: str) -> dict[str, Any]:
    side = rng.choice(("BUY", "SELL"))
    price = 100 + rng.randint(-3, 3)
    return {
        "action": "order",
        "symbol": symbol,
        "order_id": order_id,
        "user_id": user,
        "side": side,
        "type": "LIMIT",
        "tif": "GTC",
        "price": price,
        "quantity": rng.randint(1, 5),
    }


async def drive(
    state: dict[str, Any],
    *,
    seed: int,
    seconds: float,
    traders: int = 4,
    window: int = 4,
    hot_share: float = 0.6,
    stop: threading.Event | None = None,
) -> Load:
    """Send orders from `traders` clients for `seconds` (or until `stop` is set, at least
    `seconds`), then drain pushes until none came for 3 s."""
    load = Load()
    last_push = [time.monotonic()]

    def on_push(conn: int) -> Any:
        def push_to(push: dict[str, Any]) -> None:
            load.pushes.append((conn, push))
            last_push[0] = time.monotonic()

        return push_to

    def on_retry(*_args: Any) -> None:
        load.retries += 1

    ws, secret = state["ws_url"], state["jwt_secret"]
    users = [f"t{k}" for k in range(traders)]
    clients = [
        await Client.connect(
            ws,
            local_token(secret, u),
            policy=RetryPolicy(max_retries=50),
            on_push=on_push(k),
            on_retry=on_retry,
            queue_pushes=False,
        )
        for k, u in enumerate([*users, "watcher"])
    ]
    await clients[-1].subscribe(list(SYMBOLS))
    began = time.monotonic()

    async def lane(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        client, user = clients[k], users[k]
        pending: set[asyncio.Future[Any]] = set()
        n = 0
        while time.monotonic() - began < seconds or (stop is not None and not stop.is_set()):
            if len(pending) >= window:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            symbol = HOT if rng.random() < hot_share else rng.choice(OTHERS)
            n += 1
            frame = order_frame(rng, symbol, f"{user}-{n}", user)
            future = await client.send(frame)
            load.sent[frame["order_id"]] = frame

            def record(f: asyncio.Future[Any], frame: dict[str, Any] = frame) -> None:
                if f.exception() is not None:
                    load.lost += 1
                    return
                reply = f.result()
                if reply.get("type") == "ack":
                    load.acks[frame["order_id"]] = (frame["symbol"], frame)
                    load.ack_times[frame["symbol"]].append(time.monotonic())
                else:
                    load.refused.append(reply)

            future.add_done_callback(record)
            pending.add(future)
            await asyncio.sleep(rng.uniform(0.002, 0.01))
        if pending:
            await asyncio.wait(pending)

    try:
        await asyncio.gather(*(lane(k) for k in range(traders)))
        drained = time.monotonic()
        while (
            time.monotonic() - max(last_push[0], drained) < 3.0 and time.monotonic() - drained < 30
        ):
            await asyncio.sleep(0.1)
    finally:
        for client in clients:
            await client.close()
    return load


@dataclass
class Verdict:
    problems: list[str]
    events: dict[str, int]  # symbol -> N
    hot_replayed: int
    stall_s: float
    route: Any = None  # the hot symbol's route once it all ended

    def __str__(self) -> str:
        return "; ".join(self.problems[:20]) or "ok"


def judge(
    load: Load,
    *,
    window: tuple[float, float] | None = None,
    resent: frozenset[str] = frozenset(),
) -> Verdict:
    """`resent`: orders sent again after an answer in doubt (tests/faults' traders do):
    a later REJECTED(DUPLICATE_ORDER_ID) of one is the book absorbing the second copy."""
    problems: list[str] = []
    by_symbol: dict[str, dict[int, str]] = defaultdict(dict)  # symbol -> seq -> event
    per_connection: set[tuple[int, str]] = set()
    first: dict[str, tuple[int, str]] = {}  # order id -> (seq, reason) of its decision
    decisions: dict[tuple[str, int], tuple[str, str]] = {}  # (symbol, seq) -> (id, reason)
    seen_events: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for conn, push in load.pushes:
        kind = str(push.get("type"))
        data = push.get("data") or {}
        if kind not in ("ORDER_STATUS", "FILL", "TRADE"):
            continue
        symbol, seq = str(data.get("symbol")), int(data.get("seq") or 0)
        if not seq:
            continue
        if kind == "ORDER_STATUS" and data.get("reason") == "STALE_ROUTE":
            by_symbol[symbol].setdefault(seq, "STALE_ROUTE")  # in the stream: seqs 1..N
            continue  # a refusal the client retried: no effect on the book
        key = f"{kind}:{json.dumps(data, sort_keys=True)}"
        if (conn, key) in per_connection:
            problems.append(f"{symbol} seq {seq} pushed twice to one connection: {key[:100]}")
        per_connection.add((conn, key))
        previous = by_symbol[symbol].setdefault(seq, key)
        if previous != key:
            problems.append(f"{symbol} seq {seq} is two events: {previous[:90]} / {key[:90]}")
        seen_events[symbol].setdefault(seq, {"kind": kind, **data})
        if kind == "ORDER_STATUS" and data.get("status") in ("ACCEPTED", "REJECTED"):
            decisions[(symbol, seq)] = (str(data.get("order_id")), str(data.get("reason", "")))
    # Each order id is sent once (the client library resends it only after a STALE_ROUTE
    # refusal, which must have had no effect): a second decision - a REJECTED
    # (DUPLICATE_ORDER_ID) included - means a refused attempt took effect after all.
    for (_symbol, seq), (oid, reason) in sorted(decisions.items(), key=lambda d: d[0][1]):
        if oid in first and oid in resent and reason == "DUPLICATE_ORDER_ID":
            continue
        if oid in first:
            problems.append(
                f"{oid} decided twice: seq {first[oid][0]} and {seq} ({reason or 'ACCEPTED'}):"
                " an attempt the client was told was refused took effect"
            )
            continue
        first[oid] = (seq, reason)
    for oid, (symbol, _frame) in load.acks.items():
        if oid not in first:
            problems.append(f"acknowledged {oid} ({symbol}) never took effect")
    for reply in load.refused:
        oid, reason = str(reply.get("order_id")), str(reply.get("reason"))
        if reason not in IN_DOUBT and oid in first and oid not in load.acks:
            problems.append(f"{oid} was refused ({reason}) but took effect at seq {first[oid][0]}")
    events = {}
    for symbol, seqs in by_symbol.items():
        n = max(seqs)
        missing = sorted(set(range(1, n + 1)) - set(seqs))
        if missing:
            problems.append(f"{symbol}: seqs missing {missing[:10]} of 1..{n}")
        events[symbol] = n
    # The hot symbol as if it had never moved.
    # Every order the book decided, acknowledged or not (one whose answer was in doubt - no
    # answer in time, NOT_DELIVERED - may still have reached the book: allowed, replayed).
    hot_orders = sorted(
        (seq, oid)
        for (sym, seq), (oid, _reason) in decisions.items()
        if sym == HOT and oid in load.sent
    )
    lines = [json.dumps({**load.sent[oid], "action": "ADD"}) for _, oid in hot_orders]
    replayed = list(replay_lines(lines, Market(open_listing=True), 0, ReplayStats()))
    expected = {int(e["seq"]): e for e in replayed if e.get("seq")}
    got = seen_events.get(HOT, {})
    for seq in sorted(set(expected) | set(got)):
        e, g = expected.get(seq), got.get(seq)
        if e is None or g is None:
            problems.append(f"HOT seq {seq}: replay {e} / pushed {g}")
            continue
        ek = {k: v for k, v in e.items() if k != "type"}
        gk = {k: v for k, v in g.items() if k != "kind"}
        if e["type"].upper() != g["kind"] or ek != {k: gk.get(k) for k in ek}:
            problems.append(f"HOT seq {seq}: replay {e} != pushed {g}")
    stall = 0.0
    if window is not None:
        for symbol in OTHERS:
            times = sorted(t for t in load.ack_times.get(symbol, []) if window[0] <= t <= window[1])
            gaps = [b - a for a, b in itertools.pairwise(times)]
            stall = max([stall, *gaps])
    return Verdict(problems, events, len(expected), stall)
