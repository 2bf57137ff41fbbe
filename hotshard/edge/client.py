"""A small client of the WebSocket API (docs/asyncapi.yaml), as a library and a CLI.

    async with await Client.connect(ws_url, token) as client:
        await client.subscribe(["AAPL"])
        ack = await client.place("AAPL", "o-1", "BUY", 10, price=18950)
        async for push in client.pushes(timeout=2):
            print(describe(push))

    python -m hotshard.edge.client --url ws://127.0.0.1:PORT/ --secret S --user alice \\
        place AAPL buy 10 18950            (also: replace, cancel, subscribe, send; --help)

Replies are matched to requests by `request_id` (the client numbers its frames); pushes
(FILL, ORDER_STATUS, TRADE, DEPTH) go to `pushes()` and the `on_push` callback.

STALE_ROUTE is retried transparently. The router stamps each order with the route epoch it
read; when a symbol has moved, the engine that gave it away rejects orders stamped with
the old epoch: the router had already answered `ack`, and the rejection arrives later as
an ORDER_STATUS push {status: REJECTED, reason: STALE_ROUTE} (seq 0) for that order_id.
The order had no effect (the router marks its record RETRY), so the client sends the same
frame again (same order_id and contents: the router produces it again, now with the new
route) after a backoff, at most `RetryPolicy.max_retries` times; the rejection is only
shown (pushed) once the retries are used up. An `error` reply with reason STALE_ROUTE is
retried the same way. Which frame a rejection answers is worked out per order_id by
`Outstanding` (the engine answers one order_id's frames in the order they were sent).
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hotshard.edge.auth import mint_token

Message = dict[str, Any]

STALE_ROUTE = "STALE_ROUTE"
PUSH_TYPES = ("FILL", "ORDER_STATUS", "TRADE", "DEPTH")
# Statuses that answer a frame of each action (fills and the fill statuses answer nothing).
ANSWERS = {
    "order": frozenset({"ACCEPTED", "REJECTED", "EXPIRED"}),
    "replace": frozenset({"REPLACED", "REJECTED", "CANCELLED"}),
    "cancel": frozenset({"CANCELLED", "REJECTED"}),
}
ENV_URL = "HOTSHARD_WS_URL"
ENV_TOKEN = "HOTSHARD_TOKEN"
ENV_USER = "HOTSHARD_USER"
ENV_SECRET = "JWT_SECRET"


class ClientError(RuntimeError):
    """The connection failed or was refused (no reply frame to return)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff: retry n (1-based) waits base_s * 2^(n-1), at most
    cap_s; after max_retries retries the rejection stands."""

    max_retries: int = 5
    base_s: float = 0.05
    cap_s: float = 1.0

    def delay(self, retry: int) -> float | None:
        """Seconds before retry number `retry` (1 = the first), None: give up."""
        if retry < 1 or retry > self.max_retries:
            return None
        return float(min(self.cap_s, self.base_s * 2 ** (retry - 1)))


DEFAULT_POLICY = RetryPolicy()


def is_stale(message: Message) -> bool:
    """A STALE_ROUTE refusal: an error reply, or the engine's REJECTED order_status push."""
    if message.get("type") == "error":
        return message.get("reason") == STALE_ROUTE
    if message.get("type") == "ORDER_STATUS":
        data = message.get("data") or {}
        return data.get("status") == "REJECTED" and data.get("reason") == STALE_ROUTE
    return False


@dataclass
class Sent:
    frame: Message  # without request_id
    retries: int  # retries already made for this frame
    at: float  # monotonic time it was (re)sent
    request_id: int = 0


class Outstanding:
    """Order frames the engine has not answered yet, per order_id, oldest first: what a
    STALE_ROUTE rejection (which names only the order_id) refers to. Entries older than
    `ttl_s` are forgotten (an answer that never came must not pin memory)."""

    def __init__(self, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._by_order: dict[str, deque[Sent]] = {}

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_order.values())

    def sent(self, frame: Message, retries: int = 0, request_id: int = 0) -> None:
        order_id = str(frame.get("order_id", ""))
        entry = Sent(frame, retries, self.clock(), request_id)
        self._by_order.setdefault(order_id, deque()).append(entry)

    def refused(self, order_id: str, request_id: int) -> None:
        """The router refused the frame (an error reply): it never reached an engine."""
        queue = self._by_order.get(order_id, deque())
        for sent in queue:
            if sent.request_id == request_id:
                queue.remove(sent)
                break
        self._tidy(order_id)

    def answered(self, order_id: str, status: str) -> Sent | None:
        """A non-stale status for the order: drop the oldest frame it answers."""
        queue = self._live(order_id)
        for sent in queue:
            if status in ANSWERS.get(str(sent.frame.get("action")), frozenset()):
                queue.remove(sent)
                self._tidy(order_id)
                return sent
        return None

    def stale(self, order_id: str) -> Sent | None:
        """A STALE_ROUTE rejection for the order: the oldest frame sent for it, removed."""
        queue = self._live(order_id)
        sent = queue.popleft() if queue else None
        self._tidy(order_id)
        return sent

    def _live(self, order_id: str) -> deque[Sent]:
        queue = self._by_order.get(order_id, deque())
        horizon = self.clock() - self.ttl_s
        while queue and queue[0].at < horizon:
            queue.popleft()
        return queue

    def _tidy(self, order_id: str) -> None:
        if not self._by_order.get(order_id):
            self._by_order.pop(order_id, None)


@dataclass
class ClientStats:
    requests: int = 0
    acks: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    pushes: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    gave_up: int = 0


def local_token(secret: str, user: str, ttl_s: int = 3600) -> str:
    """An HS256 token the local gateway accepts (JWT_SECRET): what Cognito issues in AWS."""
    return mint_token(secret, user, ttl_s)


class Client:
    """One WebSocket connection. Use `await Client.connect(...)`; close with `close()` or
    `async with`. Request methods return the reply frame (`ack`, `error`, `subscribed`,
    `unsubscribed`, or API Gateway's `{"message": "Forbidden", ...}`); they raise
    ClientError only when no reply can come (connection lost, timeout). Pushes go to
    `on_push` and, unless `queue_pushes` is False (a caller that only counts them), to
    `pushes()`."""

    def __init__(
        self,
        ws: ClientConnection,
        *,
        policy: RetryPolicy | None = None,
        reply_timeout_s: float = 15.0,
        on_push: Callable[[Message], None] | None = None,
        on_retry: Callable[[Message, int, float], None] | None = None,
        queue_pushes: bool = True,
    ) -> None:
        self.ws = ws
        self.queue_pushes = queue_pushes
        self.policy = policy or RetryPolicy()
        self.reply_timeout_s = reply_timeout_s
        self.on_push = on_push
        self.on_retry = on_retry
        self.stats = ClientStats()
        self.outstanding = Outstanding()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Message]] = {}
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        *,
        open_timeout_s: float = 10.0,
        **kwargs: Any,
    ) -> "Client":
        """Open the connection ($connect with `Authorization: Bearer <token>`). A refused
        handshake (401: no valid token) raises ClientError."""
        try:
            ws = await connect(
                url,
                additional_headers={"Authorization": f"Bearer {token}"},
                open_timeout=open_timeout_s,
                proxy=None,
                max_size=1 << 20,
                max_queue=1024,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = exc.response.body.decode(errors="replace") if exc.response.body else ""
            raise ClientError(f"connection refused: HTTP {status} {body}".strip()) from exc
        except (OSError, TimeoutError) as exc:
            raise ClientError(f"cannot connect to {url}: {exc}") from exc
        return cls(ws, **kwargs)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    # ------------------------------------------------------------------ requests

    async def place(
        self,
        symbol: str,
        order_id: str,
        side: str,
        quantity: int,
        *,
        price: int | None = None,
        order_type: str = "LIMIT",
        tif: str = "GTC",
        post_only: bool = False,
    ) -> Message:
        frame: Message = {
            "action": "order",
            "symbol": symbol,
            "order_id": order_id,
            "side": side.upper(),
            "type": order_type.upper(),
            "tif": tif.upper(),
            "quantity": quantity,
        }
        if price is not None:
            frame["price"] = price
        if post_only:
            frame["post_only"] = True
        return await self.request(frame)

    async def replace(self, symbol: str, order_id: str, price: int, quantity: int) -> Message:
        frame = {
            "action": "replace",
            "symbol": symbol,
            "order_id": order_id,
            "price": price,
            "quantity": quantity,
        }
        return await self.request(frame)

    async def cancel(self, symbol: str, order_id: str) -> Message:
        return await self.request({"action": "cancel", "symbol": symbol, "order_id": order_id})

    async def subscribe(self, symbols: Sequence[str]) -> Message:
        return await self.request({"action": "subscribe", "symbols": list(symbols)})

    async def unsubscribe(self, symbols: Sequence[str]) -> Message:
        return await self.request({"action": "unsubscribe", "symbols": list(symbols)})

    async def request(self, frame: Message, *, retries: int = 0) -> Message:
        """Send one frame and wait for its reply; a STALE_ROUTE error reply is retried."""
        while True:
            reply = await (await self.send(frame, retries=retries))
            if not (is_stale(reply) and frame.get("action") in ANSWERS):
                return reply
            retries += 1
            delay = self.policy.delay(retries)
            if delay is None:
                self.stats.gave_up += 1
                return reply
            self._retrying(frame, retries, delay)
            await asyncio.sleep(delay)

    async def send(self, frame: Message, *, retries: int = 0) -> "asyncio.Future[Message]":
        """Send without waiting (pipelining): the future resolves with the reply."""
        request_id = next(self._ids)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        body = {k: v for k, v in frame.items() if k != "request_id"}
        if body.get("action") in ANSWERS:
            self.outstanding.sent(body, retries, request_id)
        try:
            await self.ws.send(json.dumps({**body, "request_id": request_id}))
        except ConnectionClosed as exc:
            self._waiting.pop(request_id, None)
            raise ClientError(f"connection closed: {exc}") from exc
        self.stats.requests += 1
        return asyncio.ensure_future(self._reply(request_id, future))

    async def _reply(self, request_id: int, future: "asyncio.Future[Message]") -> Message:
        try:
            async with asyncio.timeout(self.reply_timeout_s):
                return await future
        except TimeoutError as exc:
            raise ClientError(f"no reply to request {request_id}") from exc
        finally:
            self._waiting.pop(request_id, None)

    # ------------------------------------------------------------------ pushes

    async def pushes(self, timeout: float | None = None) -> AsyncIterator[Message]:
        """Pushes as they arrive; ends when the connection closes or, with `timeout`, once
        that many seconds have passed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return
            try:
                async with asyncio.timeout(wait):
                    push = await self._queue.get()
            except TimeoutError:
                return
            if push is None:
                self._queue.put_nowait(None)  # stays closed for later readers
                return
            yield push

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                try:
                    message = json.loads(text)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    self._dispatch(message)
        except ConnectionClosed:
            pass
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ClientError("connection closed"))
            self._queue.put_nowait(None)

    def _dispatch(self, message: Message) -> None:
        request_id = message.get("request_id")
        future = self._waiting.get(request_id) if isinstance(request_id, int) else None
        if future is not None and isinstance(request_id, int):
            if message.get("type") == "ack":
                self.stats.acks += 1
            elif message.get("type") == "error":
                self.stats.errors[str(message.get("reason"))] += 1
                if message.get("order_id") is not None:
                    self.outstanding.refused(str(message["order_id"]), request_id)
            if not future.done():
                future.set_result(message)
            return
        if message.get("type") == "ORDER_STATUS":
            data = message.get("data") or {}
            order_id = str(data.get("order_id", ""))
            if is_stale(message):
                sent = self.outstanding.stale(order_id)
                if sent is not None and self._retry_later(sent):
                    return
            else:
                self.outstanding.answered(order_id, str(data.get("status")))
        self._deliver(message)

    def _deliver(self, message: Message) -> None:
        self.stats.pushes[str(message.get("type", message.get("message", "?")))] += 1
        if self.queue_pushes:
            self._queue.put_nowait(message)
        if self.on_push is not None:
            self.on_push(message)

    def _retry_later(self, sent: Sent) -> bool:
        """Schedule a resend of a frame the engine refused as STALE_ROUTE; False if its
        retries are used up."""
        retry = sent.retries + 1
        delay = self.policy.delay(retry)
        if delay is None:
            self.stats.gave_up += 1
            return False
        self._retrying(sent.frame, retry, delay)
        task = asyncio.get_running_loop().create_task(self._resend(sent.frame, retry, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def _retrying(self, frame: Message, retry: int, delay: float) -> None:
        self.stats.retries += 1
        if self.on_retry is not None:
            self.on_retry(frame, retry, delay)

    async def _resend(self, frame: Message, retry: int, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            reply = await self.request(frame, retries=retry)
        except ClientError:
            return
        if reply.get("type") != "ack":  # the resubmission itself was refused: show it
            self._deliver({**reply, "retry_of": frame.get("order_id")})


# ---------------------------------------------------------------------- printing


def _levels(levels: Any) -> str:
    return " ".join(f"{p}x{q}" for p, q in levels) if levels else "-"


def describe(message: Message) -> str:
    """One readable line for a reply or a push."""
    kind = message.get("type")
    data = message.get("data") or {}
    if kind == "ack":
        dup = " (duplicate)" if message.get("duplicate") else ""
        return (
            f"ack     {message.get('action')} {message.get('symbol')} {message.get('order_id')}"
            f" -> {message.get('topic')}[{message.get('partition')}]@{message.get('offset')}"
            f" epoch {message.get('route_epoch')}{dup}"
        )
    if kind == "error":
        ids = "".join(f" {message[k]}" for k in ("symbol", "order_id") if k in message)
        return (
            f"error   {message.get('reason')} ({message.get('code')}){ids}: "
            f"{message.get('detail', '')}"
        )
    if kind in ("subscribed", "unsubscribed"):
        return f"{kind} {', '.join(message.get('symbols') or [])}"
    if kind == "FILL":
        return (
            f"FILL    {data.get('symbol')} {data.get('order_id')} {data.get('quantity')} @ "
            f"{data.get('price')} {data.get('liquidity')} trade {data.get('trade_id')}"
            f" seq {data.get('seq')}"
        )
    if kind == "ORDER_STATUS":
        reason = f" {data['reason']}" if data.get("reason") else ""
        return (
            f"STATUS  {data.get('symbol')} {data.get('order_id')} {data.get('status')}{reason}"
            f" filled {data.get('filled')} leaves {data.get('leaves')} seq {data.get('seq')}"
        )
    if kind == "TRADE":
        return (
            f"TRADE   {data.get('symbol')} {data.get('quantity')} @ {data.get('price')} "
            f"maker {data.get('maker_order_id')} taker {data.get('taker_order_id')} "
            f"({data.get('taker_side')}) seq {data.get('seq')}"
        )
    if kind == "DEPTH":
        return (
            f"DEPTH   {data.get('symbol')} bids {_levels(data.get('bids'))} | "
            f"asks {_levels(data.get('asks'))} seq {data.get('seq')}"
        )
    return json.dumps(message, separators=(",", ":"))


# ---------------------------------------------------------------------- CLI

EXAMPLES = """\
examples (a local gateway: `python -m hotshard.edge.local ...` prints its ws_url):
  export HOTSHARD_WS_URL=ws://127.0.0.1:PORT/ JWT_SECRET=... HOTSHARD_USER=alice
  hotshard-client place AAPL buy 10 18950            limit buy 10 lots at 18950 ticks
  hotshard-client place AAPL sell 5 --type market --tif ioc
  hotshard-client replace AAPL o-1 18960 6           new price and total quantity
  hotshard-client cancel AAPL o-1
  hotshard-client subscribe AAPL MSFT --wait 0       print depth and trades until Ctrl-C
  echo '{"action":"order",...}' | hotshard-client send -
exit status: 0 every request acknowledged, 1 a request refused, 2 usage or connection error.
"""


def _options(q: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The connection and output options; also accepted after the command (there with
    SUPPRESS defaults, so that they only override what was given)."""

    def d(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    q.add_argument(
        "--url",
        default=d(os.environ.get(ENV_URL, "")),
        help=f"WebSocket URL of the API, e.g. ws://127.0.0.1:PORT/ (env {ENV_URL})",
    )
    auth = q.add_argument_group(
        "authentication", "either a token, or a local HS256 secret and a user to mint one"
    )
    auth.add_argument(
        "--token", default=d(os.environ.get(ENV_TOKEN, "")), help=f"a JWT (env {ENV_TOKEN})"
    )
    auth.add_argument(
        "--secret",
        default=d(os.environ.get(ENV_SECRET, "")),
        help=f"the local gateway's HS256 secret, to mint a token (env {ENV_SECRET})",
    )
    auth.add_argument(
        "--user",
        default=d(os.environ.get(ENV_USER, "")),
        help=f"the user (`sub` claim) of a minted token (env {ENV_USER})",
    )
    auth.add_argument(
        "--ttl", type=int, default=d(3600), help="lifetime of a minted token, seconds (3600)"
    )
    q.add_argument(
        "--wait",
        type=float,
        default=d(2.0),
        help="after the request, print pushes for this many seconds; 0: until Ctrl-C (2)",
    )
    q.add_argument(
        "--retries",
        type=int,
        default=d(DEFAULT_POLICY.max_retries),
        help=f"STALE_ROUTE retries per frame ({DEFAULT_POLICY.max_retries})",
    )
    q.add_argument(
        "--backoff-ms",
        type=float,
        default=d(DEFAULT_POLICY.base_s * 1000),
        help="first retry's delay; each next one doubles (50)",
    )
    q.add_argument(
        "--max-backoff-ms",
        type=float,
        default=d(DEFAULT_POLICY.cap_s * 1000),
        help="longest delay between retries (1000)",
    )
    q.add_argument(
        "--json", action="store_true", default=d(False), help="print frames as raw JSON lines"
    )
    q.add_argument(
        "--timeout", type=float, default=d(15.0), help="seconds to wait for a reply (15)"
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hotshard-client",
        description="Trade against a hotshard WebSocket API: place, replace and cancel "
        "orders, subscribe to symbols, print replies and pushes. STALE_ROUTE rejections "
        "(a symbol that moved while the order was on its way) are retried transparently.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _options(p, suppress=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    place = sub.add_parser("place", help="place an order (ADD)", description="Place an order.")
    place.add_argument("symbol", help="the symbol, e.g. AAPL")
    place.add_argument(
        "side", type=str.upper, choices=("BUY", "SELL"), metavar="SIDE", help="buy or sell"
    )
    place.add_argument("quantity", type=int, help="lots")
    place.add_argument("price", type=int, nargs="?", help="ticks (a LIMIT order needs one)")
    place.add_argument(
        "--type",
        dest="order_type",
        type=str.upper,
        choices=("LIMIT", "MARKET"),
        default="LIMIT",
        help="LIMIT (default) or MARKET",
    )
    place.add_argument(
        "--tif",
        type=str.upper,
        choices=("GTC", "IOC", "FOK"),
        default="GTC",
        help="time in force: GTC (default), IOC or FOK",
    )
    place.add_argument("--post-only", action="store_true", help="reject if it would trade")
    place.add_argument("--order-id", default="", help="your id for it (default: generated)")

    replace = sub.add_parser(
        "replace", help="change an order's price and total quantity", description="REPLACE."
    )
    replace.add_argument("symbol", help="the order's symbol")
    replace.add_argument("order_id", help="the order's id")
    replace.add_argument("price", type=int, help="the new price, ticks")
    replace.add_argument("quantity", type=int, help="the new TOTAL quantity (filled included)")

    cancel = sub.add_parser("cancel", help="cancel an order", description="CANCEL.")
    cancel.add_argument("symbol", help="the order's symbol")
    cancel.add_argument("order_id", help="the order's id")

    subscribe = sub.add_parser(
        "subscribe",
        help="print depth and trades of symbols",
        description="Subscribe and print DEPTH and TRADE pushes (and your own fills).",
    )
    subscribe.add_argument("symbols", nargs="+", help="symbols to watch")

    send = sub.add_parser(
        "send",
        help="send JSON frames, one per line, from a file or - (stdin)",
        description="Send each line of FILE as a frame (request_id is set by the client).",
    )
    send.add_argument("file", type=argparse.FileType("r"), help="a file of frames, or -")
    for command in (place, replace, cancel, subscribe, send):
        _options(command, suppress=True)
    return p


def _token(args: argparse.Namespace, p: argparse.ArgumentParser) -> str:
    if args.token:
        return str(args.token)
    if args.secret and args.user:
        return local_token(args.secret, args.user, args.ttl)
    p.error("give --token, or --secret and --user (or their environment variables)")
    raise AssertionError("unreachable")


async def _run(args: argparse.Namespace, token: str) -> int:
    def show(message: Message) -> None:
        print(json.dumps(message) if args.json else describe(message), flush=True)

    def retrying(frame: Message, retry: int, delay: float) -> None:
        if not args.json:
            print(
                f"retry   {frame.get('action')} {frame.get('symbol')} {frame.get('order_id')}: "
                f"STALE_ROUTE, resending in {delay * 1000:.0f} ms ({retry}/{args.retries})",
                flush=True,
            )

    policy = RetryPolicy(args.retries, args.backoff_ms / 1000, args.max_backoff_ms / 1000)
    client = await Client.connect(
        args.url, token, policy=policy, reply_timeout_s=args.timeout, on_retry=retrying
    )
    refused = False
    async with client:
        if args.command == "place":
            order_id = args.order_id or f"c-{uuid.uuid4().hex[:12]}"
            replies = [
                await client.place(
                    args.symbol,
                    order_id,
                    args.side,
                    args.quantity,
                    price=args.price,
                    order_type=args.order_type,
                    tif=args.tif,
                    post_only=args.post_only,
                )
            ]
        elif args.command == "replace":
            replies = [await client.replace(args.symbol, args.order_id, args.price, args.quantity)]
        elif args.command == "cancel":
            replies = [await client.cancel(args.symbol, args.order_id)]
        elif args.command == "subscribe":
            replies = [await client.subscribe(args.symbols)]
        else:
            futures = []
            for line in args.file:
                if line.strip():
                    try:
                        frame = json.loads(line)
                    except ValueError:
                        print(f"not JSON, skipped: {line.strip()[:80]}", file=sys.stderr)
                        continue
                    futures.append(await client.send(frame))
            replies = [await f for f in futures]
        for reply in replies:
            show(reply)
            refused = refused or reply.get("type") not in ("ack", "subscribed", "unsubscribed")
        async for push in client.pushes(timeout=args.wait if args.wait > 0 else None):
            show(push)
    return 1 if refused else 0


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not args.url:
        p.error(f"--url (or {ENV_URL}) is required")
    token = _token(args, p)
    try:
        return asyncio.run(_run(args, token))
    except ClientError as exc:
        print(f"hotshard-client: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
