"""Every push exactly once, in order, through the whole edge: real WebSocket clients, the local
gateway and order_router, Tansu, an engine process that is killed with -9 mid-flow and
restarted (it publishes the events after its checkpoint again), the feeder and the
stream_handler with its SequenceGuard.

Each connection must receive exactly the events it is owed, as the de-duplicated event
topics hold them (hotshard.local.traffic.EventReader is the truth): every ORDER_STATUS and
FILL of its user, every TRADE of the symbols it subscribed to, none twice, in seq order per
symbol; a connection that opted in to BATCH frames gets the very same pushes as one that
did not, unpacked from BATCH frames."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from hotshard.client.session import Client, local_token
from hotshard.events import FILL, STATUS, TRADE
from hotshard.local.edge import local_edge
from hotshard.local.traffic import EventReader
from lambdas.stream_handler import handler as stream_handler
from tests.integration.conftest import PARTITIONS
from tests.integration.helpers import listed_edge

pytestmark = pytest.mark.integration

SECRET = "test-secret-of-at-least-32-bytes-long"
SYMBOLS = ("PA", "PB")
KIND_NAME = {STATUS: "ORDER_STATUS", FILL: "FILL", TRADE: "TRADE"}

Key = tuple[str, str]  # (push type, symbol)


def flow(user: str, tag: str, n: int) -> list[dict[str, Any]]:
    """Crossing limits on both symbols, and a cancel of every fifth order."""
    frames: list[dict[str, Any]] = []
    for i in range(n):
        symbol = SYMBOLS[i % 2]
        buy = (i // 2 + (user == "bob")) % 2 == 0
        frames.append(
            {
                "action": "order",
                "symbol": symbol,
                "order_id": f"{tag}-{i}",
                "side": "BUY" if buy else "SELL",
                "price": 100 + (i % 3 if buy else -(i % 3)),
                "quantity": 1 + i % 4,
            }
        )
        if i % 5 == 4:
            frames.append({"action": "cancel", "symbol": symbol, "order_id": f"{tag}-{i - 2}"})
    return frames


def owed(reader: EventReader, user: str | None, symbols: tuple[str, ...]) -> dict[Key, list[int]]:
    """Per (push type, symbol), the seqs a connection is owed, in order: its user's
    statuses and fills (user None: none), the trades of `symbols`."""
    out: dict[Key, list[int]] = {}
    for symbol, events in reader.events.items():
        for event in sorted(events, key=lambda e: e[1]):
            kind = event[0]
            if kind == TRADE and symbol in symbols:
                out.setdefault(("TRADE", symbol), []).append(event[1])
            elif kind in (STATUS, FILL) and user is not None and event[3] == user:
                out.setdefault((KIND_NAME[kind], symbol), []).append(event[1])
    return out


def received(pushes: list[dict[str, Any]]) -> dict[Key, list[int]]:
    out: dict[Key, list[int]] = {}
    for push in pushes:
        if push.get("type") in ("ORDER_STATUS", "FILL", "TRADE"):
            data = push["data"]
            out.setdefault((push["type"], data["symbol"]), []).append(data["seq"])
    return out


async def connect(url: str, user: str, batch: bool, into: list[dict[str, Any]]) -> Client:
    return await Client.connect(
        url, local_token(SECRET, user), batch=batch, on_push=into.append, queue_pushes=False
    )


async def send_all(client: Client, frames: list[dict[str, Any]]) -> None:
    replies = await asyncio.gather(*[await client.send(f) for f in frames])
    assert all(r.get("type") == "ack" for r in replies), [r for r in replies if r["type"] != "ack"]


def test_every_push_once_in_order_across_an_engine_kill_9(broker, redis_server, engines):
    extra = ("--snapshot-interval-s", "60")  # the restart replays everything from the start
    engine = engines("0-3", "edge", *extra)
    settings = listed_edge(broker, redis_server, SYMBOLS, SECRET)
    reader = EventReader(broker.bootstrap, PARTITIONS, group="push-once-truth")
    pushes: dict[str, list[dict[str, Any]]] = {
        n: [] for n in ("alice", "alice-batch", "bob", "watch-all", "watch-pa")
    }
    with local_edge(settings) as edge:

        async def run() -> dict[str, Client]:
            url = edge.gateway.ws_url
            clients = {
                "alice": await connect(url, "alice", False, pushes["alice"]),
                "alice-batch": await connect(url, "alice", True, pushes["alice-batch"]),
                "bob": await connect(url, "bob", False, pushes["bob"]),
                "watch-all": await connect(url, "watcher", True, pushes["watch-all"]),
                "watch-pa": await connect(url, "watcher2", False, pushes["watch-pa"]),
            }
            await clients["watch-all"].subscribe(list(SYMBOLS))
            await clients["watch-pa"].subscribe(["PA"])
            await asyncio.gather(
                send_all(clients["alice"], flow("alice", "a1", 40)),
                send_all(clients["bob"], flow("bob", "b1", 40)),
            )
            assert await wait_for(lambda: len(pushes["bob"]) > 20, 30)
            await asyncio.to_thread(engine.process.kill)  # kill -9, mid-flow
            restarted = asyncio.create_task(asyncio.to_thread(engines, "0-3", "edge", *extra))
            await asyncio.gather(
                send_all(clients["alice-batch"], flow("alice", "a2", 40)),
                send_all(clients["bob"], flow("bob", "b2", 40)),
            )
            await restarted
            return clients

        async def settle(clients: dict[str, Client]) -> None:
            def owed_all() -> dict[str, dict[Key, list[int]]]:
                return {
                    "alice": owed(reader, "alice", ()),
                    "alice-batch": owed(reader, "alice", ()),
                    "bob": owed(reader, "bob", ()),
                    "watch-all": owed(reader, None, SYMBOLS),
                    "watch-pa": owed(reader, None, ("PA",)),
                }

            def done() -> bool:
                reader.poll(0.05)
                statuses = sum(len(v) for k, v in owed(reader, "bob", ()).items())
                return statuses > 0 and all(
                    received(pushes[name]) == want for name, want in owed_all().items()
                )

            if await wait_for(done, 60):
                await asyncio.sleep(1.0)  # a duplicate would arrive now
            reader.poll(0.2)
            for name, want in owed_all().items():
                assert received(pushes[name]) == want, name
            assert clients["alice-batch"].stats.batches > 0, "no BATCH frame: batching untested"
            assert clients["watch-all"].stats.batches > 0
            assert clients["alice"].stats.batches == clients["bob"].stats.batches == 0
            for client in clients.values():
                await client.close()

        async def main() -> None:
            clients = await run()
            await settle(clients)

        asyncio.run(main())
        guards = [pusher.guard for pusher in stream_handler.pusher.built()]  # one a topic
        dropped = sum(guard.dropped for guard in guards)
        assert dropped > 0, "the restart re-published nothing: the guard was not tested"
        assert not any(guard.gaps for guard in guards)
    assert not reader.guard.gaps
    reader.close()


async def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
