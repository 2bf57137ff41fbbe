"""The local gateway's order of handling a connection's frames: one order's frames (its ADD,
REPLACE, CANCEL: same symbol and order_id) one after another in the order they came,
different orders side by side even on one symbol. A real WebSocket client against the real
gateway; the route handler is a recorder that holds one order until released."""

import asyncio
import json
import threading
import time
from typing import Any

from websockets.asyncio.client import connect

from hotshard.edge.auth import TokenVerifier
from hotshard.local.gateway import LocalGateway


class Recorder:
    """A route handler: answers every frame with what it was; an ADD of `held` waits for
    `release` first."""

    def __init__(self, held: str) -> None:
        self.held = held
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.started: list[tuple[str, str]] = []

    def __call__(self, event: dict[str, Any], _context: Any) -> dict[str, Any]:
        route = event["requestContext"]["routeKey"]
        if route in ("$connect", "$disconnect"):
            return {"statusCode": 200}
        frame = json.loads(event["body"])
        with self.lock:
            self.started.append((frame["action"], frame["order_id"]))
        if route == "order" and frame["order_id"] == self.held:
            assert self.release.wait(10), "never released"
        reply = {"action": frame["action"], "order_id": frame["order_id"]}
        return {"statusCode": 200, "body": json.dumps(reply)}


def test_one_orders_frames_keep_their_order_while_other_orders_pass() -> None:
    handler = Recorder(held="slow")
    with LocalGateway(handler, TokenVerifier(secret="lanes-secret-0123456789")) as gateway:

        async def run() -> list[dict[str, Any]]:
            async with connect(gateway.ws_url) as ws:
                for action, order_id in (("order", "slow"), ("cancel", "slow"), ("order", "fast")):
                    frame = {"action": action, "symbol": "AAPL", "order_id": order_id}
                    await ws.send(json.dumps(frame))
                # Another order on the same symbol is answered while "slow" is held...
                first = json.loads(await asyncio.wait_for(ws.recv(), 5))
                # ...and the held order's cancel has not been handled before it.
                with handler.lock:
                    assert ("cancel", "slow") not in handler.started
                handler.release.set()
                rest = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
                return [first, *rest]

        replies = asyncio.run(run())
    assert replies == [
        {"action": "order", "order_id": "fast"},
        {"action": "order", "order_id": "slow"},
        {"action": "cancel", "order_id": "slow"},
    ]
    assert handler.started.index(("order", "slow")) < handler.started.index(("cancel", "slow"))


class BatchRecorder:
    """A batch handler: answers every frame with what it was, after a pause (a busy
    router: the frames that come meanwhile queue for the next batch)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: list[list[tuple[str, str]]] = []

    def __call__(self, events: list[dict[str, Any]], _context: Any) -> list[dict[str, Any]]:
        time.sleep(0.05)
        frames = [json.loads(event["body"]) for event in events]
        with self.lock:
            self.batches.append([(f["action"], f["order_id"]) for f in frames])
        return [
            {"statusCode": 200, "body": json.dumps([f["action"], f["order_id"]])} for f in frames
        ]


def test_order_frames_that_come_together_are_batched_but_never_one_orders_frames() -> None:
    batched = BatchRecorder()
    verifier = TokenVerifier(secret="lanes-secret-0123456789")
    sent = [("order", "a"), ("cancel", "a"), *(("order", f"o{i}") for i in range(40))]
    sent.append(("replace", "a"))
    with LocalGateway(Recorder(held=""), verifier, batch_router=batched) as gateway:

        async def run() -> list[tuple[str, str]]:
            async with connect(gateway.ws_url) as ws:
                for action, order_id in sent:
                    frame = {"action": action, "symbol": "AAPL", "order_id": order_id}
                    await ws.send(json.dumps(frame))
                return [tuple(json.loads(await asyncio.wait_for(ws.recv(), 5))) for _ in sent]

        replies = asyncio.run(run())
        assert gateway.batches == len(batched.batches)
    assert sorted(replies) == sorted(sent)  # each frame answered once, with its own answer
    assert [r for r in replies if r[1] == "a"] == [
        ("order", "a"),
        ("cancel", "a"),
        ("replace", "a"),
    ]
    handled = [frame for batch in batched.batches for frame in batch]
    assert sorted(handled) == sorted(sent)
    batch_of = {frame: i for i, batch in enumerate(batched.batches) for frame in batch}
    assert batch_of[("order", "a")] < batch_of[("cancel", "a")] < batch_of[("replace", "a")]
    assert len(batched.batches) < len(sent) / 2, batched.batches  # most frames shared one
