"""The local gateway's order of handling a connection's frames: one order's frames (its ADD,
REPLACE, CANCEL: same symbol and order_id) one after another in the order they came,
different orders side by side even on one symbol. A real WebSocket client against the real
gateway; the route handler is a recorder that holds one order until released."""

import asyncio
import json
import threading
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
