"""One WebSocket connection to the API (docs/asyncapi.yaml), as a library.

    async with await Client.connect(ws_url, token) as client:
        await client.subscribe(["AAPL"])
        ack = await client.place("AAPL", "o-1", "BUY", 10, price=18950)
        async for push in client.pushes(timeout=2):
            print(describe(push))

Replies are matched to requests by `request_id` (the client numbers its frames); pushes
(FILL, ORDER_STATUS, TRADE, DEPTH) go to `pushes()` and the `on_push` callback.
STALE_ROUTE is retried transparently, with full-jitter backoff (hotshard.client.retry).

A dropped connection is reopened by itself (`reconnect`, a ReconnectPolicy: full-jitter
exponential backoff): the symbols subscribed to are subscribed again, and every request
not answered yet is sent again with its own request_id, so its caller gets the reply of
the resend. That is safe: an order is idempotent on (user_id, order_id) at the router (a
resend of an acknowledged order gets the same ack, `duplicate: true`), a cancel or replace
sent twice asks for the same end state. Requests made while it reconnects wait for it.

Statuses pushed while the connection was down went to a dead connection and are never
pushed again. With `http_url` (the HTTP API, docs/openapi.yaml) the client catches up after
each reconnect: it asks GET /orders/{id} for every order it sent that has not ended (its
unanswered requests included) and, where the order's status moved on past the last push it
saw for it, hands out that status as an ORDER_STATUS push marked `"resync": true` (the
latest status only: statuses in between, and fills, are not replayed; GET /fills has the
fills). A live push that repeats what a catch-up already showed (same or an older seq) is
not handed out again. Without `http_url` nothing is caught up.

A user's ORDER_STATUS and FILL pushes of a symbol are handed out in seq order
(hotshard.client.ordering): they come from two topics the stream handler reads side by
side, so a FILL can arrive before the ACCEPTED of its own order; it is held until the
status that follows it arrives, at most `order_hold_s` (ORDER_HOLD_S, 0.25 s; 0: hand
pushes out as they arrive). TRADE and DEPTH pushes go out as they arrive.
"""

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hotshard.client.errors import ClientError
from hotshard.client.frames import ANSWERS, Message, is_stale
from hotshard.client.http import HttpApi
from hotshard.client.ordering import PushOrder
from hotshard.client.retry import Outstanding, ReconnectPolicy, RetryPolicy, Sent
from hotshard.edge.auth import mint_token


@dataclass
class ClientStats:
    requests: int = 0
    acks: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    pushes: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    gave_up: int = 0
    reconnects: int = 0
    """Times the connection was reopened after it dropped."""
    resent: int = 0
    """Requests sent again on a reopened connection."""
    batches: int = 0
    """BATCH frames received (each unpacked into its pushes)."""
    resynced: int = 0
    """ORDER_STATUS pushes made from GET /orders/{id} after a reconnect (missed ones)."""
    repeats: int = 0
    """Live ORDER_STATUS pushes not handed out: a catch-up had shown them already."""
    catch_up_failures: int = 0
    """GET /orders/{id} calls of a catch-up that got no answer."""
    held: int = 0
    """ORDER_STATUS and FILL pushes held back to hand them out in seq order."""
    hold_expired: int = 0
    """Of those, handed out after `order_hold_s` without what they waited for."""


CATCH_UP_CONCURRENCY = 8
"""GET /orders/{id} calls of a catch-up in flight at once."""
ORDER_HOLD_S = 0.25
"""The longest a push waits for one of its symbol with a lower seq (hotshard.client.ordering)."""
ENDED_KEPT = 4096
"""Ended orders remembered (their last seq, so a late repeat of their push is known)."""


@dataclass
class Tracked:
    """What the client last showed of one of its orders."""

    seq: int = 0
    status: str = ""
    ended: bool = False


def local_token(secret: str, user: str, ttl_s: int = 3600) -> str:
    """An HS256 token the local gateway accepts (JWT_SECRET): what Cognito issues in AWS."""
    return mint_token(secret, user, ttl_s)


class Client:
    """One WebSocket connection. Use `await Client.connect(...)`; close with `close()` or
    `async with`. Request methods return the reply frame (`ack`, `error`, `subscribed`,
    `unsubscribed`, or API Gateway's `{"message": "Forbidden", ...}`); they raise
    ClientError only when no reply can come (connection lost, timeout). Pushes go to
    `on_push` and, unless `queue_pushes` is False (a caller that only counts them), to
    `pushes()`; a user's ORDER_STATUS and FILL pushes of a symbol in seq order, each held
    at most `order_hold_s` for that (0: as they arrive)."""

    def __init__(
        self,
        ws: ClientConnection,
        *,
        policy: RetryPolicy | None = None,
        reply_timeout_s: float = 15.0,
        on_push: Callable[[Message], None] | None = None,
        on_retry: Callable[[Message, int, float], None] | None = None,
        queue_pushes: bool = True,
        dial: Callable[[], Awaitable[ClientConnection]] | None = None,
        reconnect: ReconnectPolicy | None = None,
        http: HttpApi | None = None,
        order_hold_s: float = ORDER_HOLD_S,
    ) -> None:
        self.ws = ws
        self.http = http
        """The HTTP API of the same user: where a reconnect catches up on missed statuses."""
        self.orders: OrderedDict[str, Tracked] = OrderedDict()
        """The orders this client sent frames for, by order_id (ended ones: the last few)."""
        self._ended: OrderedDict[str, None] = OrderedDict()  # ended ones, oldest end first
        self.dial = dial
        self.reconnect = reconnect if dial is not None else None
        self.subscriptions: set[str] = set()
        self._frames: dict[int, Message] = {}  # request_id -> frame, until answered
        self._silent: set[int] = set()  # the client's own resubscriptions
        self._closing = False
        self._connected = asyncio.Event()
        self._connected.set()
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
        self._order = PushOrder(order_hold_s) if order_hold_s > 0 else None
        self._timer: asyncio.TimerHandle | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        *,
        open_timeout_s: float = 10.0,
        batch: bool = False,
        http_url: str = "",
        **kwargs: Any,
    ) -> "Client":
        """Open the connection ($connect with `Authorization: Bearer <token>`). A refused
        handshake (401: no valid token) raises ClientError. `batch`: opt in to BATCH frames
        (`?pushes=batch`, docs/asyncapi.yaml); they are unpacked here, so `pushes()` and
        `on_push` see one push at a time either way. `http_url`: the HTTP API (same
        token), asked after a reconnect for the statuses pushed while it was down."""
        if batch:
            url += ("&" if "?" in url else "?") + "pushes=batch"

        async def dial() -> ClientConnection:
            try:
                return await connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {token}"},
                    open_timeout=open_timeout_s,
                    proxy=None,
                    max_size=1 << 20,
                    max_queue=1024,
                    compression=None,  # API Gateway negotiates none
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                body = exc.response.body.decode(errors="replace") if exc.response.body else ""
                raise ClientError(f"connection refused: HTTP {status} {body}".strip()) from exc
            except (OSError, TimeoutError) as exc:
                raise ClientError(f"cannot connect to {url}: {exc}") from exc

        kwargs.setdefault("reconnect", ReconnectPolicy())
        if http_url:
            kwargs.setdefault("http", HttpApi(http_url, token, timeout_s=open_timeout_s))
        return cls(await dial(), dial=dial, **kwargs)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closing = True
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
        stop_price: int | None = None,
        display_quantity: int | None = None,
        all_or_none: bool = False,
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
        if stop_price is not None:
            frame["stop_price"] = stop_price
        if display_quantity is not None:
            frame["display_quantity"] = display_quantity
        if all_or_none:
            frame["all_or_none"] = True
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
        reply = await self.request({"action": "subscribe", "symbols": list(symbols)})
        if reply.get("type") == "subscribed":
            self.subscriptions.update(str(s) for s in reply.get("symbols") or ())
        return reply

    async def unsubscribe(self, symbols: Sequence[str]) -> Message:
        reply = await self.request({"action": "unsubscribe", "symbols": list(symbols)})
        self.subscriptions.difference_update(symbols)
        return reply

    async def cancel_all(self, symbol: str = "") -> Message:
        """Cancel all the user's open orders (of `symbol` only): a `cancel_all` reply."""
        frame: Message = {"action": "cancel_all"}
        if symbol:
            frame["symbol"] = symbol
        return await self.request(frame)

    async def cancel_on_disconnect(self, enabled: bool = True) -> Message:
        """Opt this connection in (or out): closing it cancels the user's open orders."""
        return await self.request({"action": "cancel_on_disconnect", "enabled": enabled})

    async def ping(self) -> Message:
        """A `pong` (keeps the connection from API Gateway's 10-minute idle timeout)."""
        return await self.request({"action": "ping"})

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
            self._track(str(body.get("order_id", "")))
        self._frames[request_id] = body
        reply = asyncio.ensure_future(self._reply(request_id, future))
        if not self._connected.is_set():  # reconnecting: it goes out with the resends
            self.stats.requests += 1
            return reply
        try:
            await self.ws.send(json.dumps({**body, "request_id": request_id}))
        except ConnectionClosed as exc:
            if self.reconnect is None or self._closing:
                self._waiting.pop(request_id, None)
                self._frames.pop(request_id, None)
                reply.cancel()
                raise ClientError(f"connection closed: {exc}") from exc
            # the reader sees the close too and resends it once reconnected
        self.stats.requests += 1
        return reply

    async def _reply(self, request_id: int, future: "asyncio.Future[Message]") -> Message:
        try:
            async with asyncio.timeout(self.reply_timeout_s):
                return await future
        except TimeoutError as exc:
            raise ClientError(f"no reply to request {request_id}") from exc
        finally:
            self._waiting.pop(request_id, None)
            self._frames.pop(request_id, None)

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
            while True:
                try:
                    async for text in self.ws:
                        self._receive(text)
                except ConnectionClosed:
                    pass
                if self._closing or self.reconnect is None or not await self._reopen():
                    return
                self._spawn(self._catch_up())
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ClientError("connection closed"))
            self._flush()
            self._queue.put_nowait(None)

    def _receive(self, text: str | bytes) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if message.get("type") == "BATCH" and isinstance(message.get("pushes"), list):
            self.stats.batches += 1
            for push in message["pushes"]:
                if isinstance(push, dict):
                    self._dispatch(push)
        else:
            self._dispatch(message)

    async def _reopen(self) -> bool:
        """The connection dropped: dial again with full-jitter backoff, then subscribe
        again and resend what is unanswered. False if the policy gave up."""
        assert self.reconnect is not None and self.dial is not None
        self._connected.clear()
        attempt = 0
        while not self._closing:
            attempt += 1
            delay = self.reconnect.delay(attempt)
            if delay is None:
                return False
            await asyncio.sleep(delay)
            try:
                ws = await self.dial()
            except ClientError:
                continue
            self.ws = ws
            self.stats.reconnects += 1
            try:
                if self.subscriptions:
                    frame = {"action": "subscribe", "symbols": sorted(self.subscriptions)}
                    silent = next(self._ids)
                    self._silent.add(silent)  # its reply is nobody's: not a push either
                    await ws.send(json.dumps({**frame, "request_id": silent}))
                done: set[int] = set()
                while todo := [i for i in sorted(self._frames) if i not in done]:
                    for request_id in todo:  # requests made meanwhile join the next round
                        body = self._frames.get(request_id)
                        done.add(request_id)
                        if body is not None:
                            await ws.send(json.dumps({**body, "request_id": request_id}))
                            self.stats.resent += 1
            except ConnectionClosed:
                continue  # dropped again at once: next attempt
            self._connected.set()
            return True
        return False

    def _dispatch(self, message: Message) -> None:
        request_id = message.get("request_id")
        if request_id in self._silent:
            self._silent.discard(request_id)
            return
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
            if not self._shown(order_id, data, message):
                self.stats.repeats += 1
                return
            if is_stale(message):
                sent = self.outstanding.stale(order_id)
                if sent is not None and self._retry_later(sent):
                    return
            else:
                self.outstanding.answered(order_id, str(data.get("status")))
        self._hand_out(message)

    def _hand_out(self, message: Message) -> None:
        """Deliver a push in seq order among the user's pushes of its symbol: now, with
        those it released, or later (`_expire`)."""
        if self._order is None:
            self._deliver(message)
            return
        loop = asyncio.get_running_loop()
        for push in self._order.add(message, loop.time()):
            self._deliver(push)
        self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._order is not None
        self.stats.held, self.stats.hold_expired = self._order.held, self._order.expired
        due = self._order.next_due()
        timer = self._timer
        if timer is not None:
            if timer.when() == due:
                return
            timer.cancel()
        self._timer = None if due is None else loop.call_at(due, self._expire, due)

    def _expire(self, due: float) -> None:
        assert self._order is not None
        self._timer = None
        loop = asyncio.get_running_loop()
        for push in self._order.due(max(loop.time(), due)):  # the loop may run it early
            self._deliver(push)
        self._arm(loop)

    def _flush(self) -> None:
        """The connection is done: hand out whatever is held."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._order is not None:
            for push in self._order.flush():
                self._deliver(push)
            self.stats.held, self.stats.hold_expired = self._order.held, self._order.expired

    def _deliver(self, message: Message) -> None:
        self.stats.pushes[str(message.get("type", message.get("message", "?")))] += 1
        if self.queue_pushes:
            self._queue.put_nowait(message)
        if self.on_push is not None:
            self.on_push(message)

    # ------------------------------------------------------------------ catching up

    def _track(self, order_id: str) -> None:
        tracked = self.orders.get(order_id)
        if tracked is None:
            self.orders[order_id] = Tracked()
        elif tracked.ended:
            tracked.ended = False  # a new frame for it: it may answer again
            self._ended.pop(order_id, None)
        self.orders.move_to_end(order_id)

    def _shown(self, order_id: str, data: Message, message: Message) -> bool:
        """Note an ORDER_STATUS push of one of the client's orders; False if it repeats
        what the client showed already (a live push a catch-up came before)."""
        tracked = self.orders.get(order_id)
        seq = data.get("seq")
        seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else 0
        if tracked is None:
            return True  # not sent by this client (another connection of the user)
        if seq and seq <= tracked.seq:
            return False
        tracked.seq = max(tracked.seq, seq)
        tracked.status = str(data.get("status", ""))
        leaves = data.get("leaves")
        tracked.ended = leaves in (0, None) and not is_stale(message)
        if tracked.ended:
            self._ended[order_id] = None
            self._ended.move_to_end(order_id)
            self._forget_ended()
        else:
            self._ended.pop(order_id, None)
        return True

    def _forget_ended(self) -> None:
        """Keep the ENDED_KEPT orders that ended last (O(1) per end: was a scan of all)."""
        while len(self._ended) > ENDED_KEPT:
            order_id, _ = self._ended.popitem(last=False)
            del self.orders[order_id]

    async def _catch_up(self) -> None:
        """After a reconnect: GET /orders/{id} for every order not ended, and hand out as a
        push each status that moved on while the connection was down."""
        if self.http is None:
            return
        http = self.http
        gate = asyncio.Semaphore(CATCH_UP_CONCURRENCY)

        async def one(order_id: str) -> None:
            async with gate:
                try:
                    status, record = await asyncio.to_thread(http.order, order_id)
                except ClientError:
                    self.stats.catch_up_failures += 1
                    return
            if status == 200:
                self._caught_up(order_id, record)

        await asyncio.gather(*(one(o) for o, t in list(self.orders.items()) if not t.ended))

    def _caught_up(self, order_id: str, record: Message) -> None:
        tracked = self.orders.get(order_id)
        status = record.get("status")
        if tracked is None or not status:
            return  # not decided yet: its push comes to the new connection
        seq = record.get("seq") if isinstance(record.get("seq"), int) else 0
        if (seq and seq <= tracked.seq) or (not seq and status == tracked.status):
            return  # nothing missed
        data: Message = {
            "type": "order_status",
            "symbol": record.get("symbol", ""),
            "seq": seq,
            "order_id": order_id,
            "user_id": record.get("user_id", ""),
            "status": status,
            "filled": record.get("filled", 0),
            "leaves": record.get("leaves", 0),
        }
        if record.get("reason"):
            data["reason"] = record["reason"]
        self.stats.resynced += 1
        self._dispatch({"type": "ORDER_STATUS", "data": data, "resync": True})

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _retry_later(self, sent: Sent) -> bool:
        """Schedule a resend of a frame the engine refused as STALE_ROUTE; False if its
        retries are used up."""
        retry = sent.retries + 1
        delay = self.policy.delay(retry)
        if delay is None:
            self.stats.gave_up += 1
            return False
        self._retrying(sent.frame, retry, delay)
        self._spawn(self._resend(sent.frame, retry, delay))
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


__all__ = ["Client", "ClientError", "ClientStats", "Tracked", "local_token"]
