"""The local API Gateway: a real WebSocket endpoint, the HTTP API and the Management API
on 127.0.0.1, invoking the same Lambda handlers in-process with the event shapes AWS sends.

- WebSocket (`ws://127.0.0.1:PORT/`): the handshake becomes `$connect` (headers and query
  string as API Gateway passes them; a non-2xx answer refuses the handshake with that
  status); each text frame is routed on its JSON `action` (`$request.body.action`) to a
  configured route, else answered like API Gateway does without a `$default` route; the
  route's response body is sent back (a two-way route); closing sends `$disconnect`.
  Given a batch handler (`batch_router`, order_router's handler_many), the order frames
  (`order`, `replace`, `cancel`) that arrive while `batch_workers` batches are in hand go
  to it together, each answered as the route handler answers it alone: API Gateway's
  many Lambda containers at once, without a thread and a Redis round trip per frame.
- HTTP API (`http://127.0.0.1:PORT/`): POST /orders, GET|DELETE /orders/{id},
  GET /depth/{symbol}, behind a local JWT authorizer that puts the token's claims where
  API Gateway's JWT authorizer does (401 {"message": "Unauthorized"} otherwise).
- Management API (`management_url`: its own port, always on 127.0.0.1, never the public
  HTTP port): POST /@connections/{id} (post_to_connection), DELETE /@connections/{id}
  (delete_connection), GET /@connections/{id}; an unknown connection answers 410
  GoneException. Every request must carry the gateway's shared secret in
  X-Hotshard-Management-Secret (403 otherwise): only the local stream handler, which is
  given it, may push. boto3's `apigatewaymanagementapi` client works against it
  (hotshard.edge.push.management_client adds the header).

Whatever a client sends, the answer is a 4xx or a 2xx, never a 5xx or a dropped
connection (a body over MAX_BODY is refused 413, the documented size limit).

The handlers run side by side on the gateway's threads (a thread per HTTP request, the
WebSocket handler and batch threads), sharing their module's Powertools Logger, which
Lambda uses one invocation at a time: each handler keeps its log lines' request id and
correlation id per thread (hotshard.edge.runtime.logs_own_request).

hotshard.local.edge runs it with the Lambda handlers and the feeder (hotshard.local.feeder)
in one process (`python -m hotshard.local.edge`, what `hotshard demo` starts); tests start
`LocalGateway` in-process or that process.
"""

import asyncio
import base64
import contextlib
import functools
import hmac
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from hotshard.edge.api import not_found_json
from hotshard.edge.auth import AuthError, TokenVerifier, bearer, user_of
from hotshard.local.shapes import http_event, websocket_event
from hotshard.names import MANAGEMENT_SECRET_HEADER, WEBSOCKET_ROUTES

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
BatchHandler = Callable[[list[dict[str, Any]], Any], list[dict[str, Any]]]
"""Several events -> their responses, in order, each as the Handler would answer it
(lambdas/order_router/handler.py: handler_many)."""

WS_ROUTES = WEBSOCKET_ROUTES
HTTP_ROUTES = (
    ("POST", "/orders"),
    ("GET", "/orders"),
    ("DELETE", "/orders"),
    ("GET", "/orders/{id}"),
    ("DELETE", "/orders/{id}"),
    ("GET", "/fills"),
    ("GET", "/instruments"),
    ("GET", "/balance"),
    ("GET", "/depth/{symbol}"),
)
STAGE = "live"
SEND_TIMEOUT_S = 5.0
HANDLER_THREADS = 64
"""Handler invocations at once (each waits mostly on Redis and the broker's ack)."""
IN_FLIGHT = 64
"""Frames of one connection being handled at once."""
BATCH_ROUTES = frozenset(("order", "replace", "cancel"))
"""The WebSocket routes whose frames go to the batch handler, when there is one."""
BATCH_WORKERS = 2
"""Batches being handled at once (each waits on one Redis round trip and one broker ack)."""
MAX_BATCH = 256
"""The most frames in one batch."""
MAX_BODY = 1 << 20
PONG_TIMEOUT_S = 600.0


@dataclass
class LambdaContext:
    """What a handler may read of its context (Powertools' logger does)."""

    function_name: str
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = ""
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    deadline_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000 + 30_000)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - time.time_ns() // 1_000_000)


def connection_id() -> str:
    """An id like API Gateway's (12 base64 characters, ending in '=')."""
    return base64.b64encode(secrets.token_bytes(10)).decode()[:15] + "="


@dataclass
class _Client:
    connection: ServerConnection
    connected_at_ms: int
    source_ip: str
    user_agent: str
    last_active_ms: int = 0


class LocalGateway:
    def __init__(
        self,
        router: Handler,
        verifier: TokenVerifier,
        *,
        host: str = "127.0.0.1",
        ws_port: int = 0,
        http_port: int = 0,
        management_port: int = 0,
        management_secret: str = "",
        batch_router: BatchHandler | None = None,
        batch_workers: int = BATCH_WORKERS,
    ) -> None:
        self.router = router
        self.batch_router = batch_router
        """With it, order frames that arrive while the batch workers are busy are handed
        to it together (BATCH_ROUTES; `_call_batched`), the rest go to `router` alone."""
        self.verifier = verifier
        self.host = host
        self._ws_port = ws_port
        self._http_port = http_port
        self._management_port = management_port
        self.management_secret = management_secret or secrets.token_urlsafe(32)
        self._management_server: asyncio.Server | None = None
        self._management_tasks: set[asyncio.Task[None]] = set()  # its kept-alive connections
        self.management_port = 0
        self._clients: dict[str, _Client] = {}
        self._ids: dict[int, str] = {}  # id(ServerConnection) -> connection id
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._executor = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="invoke")
        self._answers: list[tuple[asyncio.Future[dict[str, Any]], dict[str, Any]]] = []
        self._answers_lock = threading.Lock()
        self._settle_pending = False
        self._batch: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = []
        self._batch_busy = 0
        self.batch_workers = max(1, batch_workers)
        self._batch_executor = ThreadPoolExecutor(self.batch_workers, thread_name_prefix="batch")
        self.batches = 0
        """Batches handed to the batch handler so far (with `batched`: their mean size)."""
        self.batched = 0
        self.ws_port = 0
        self.http_port = 0

    # ------------------------------------------------------------------ life cycle

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}/"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def management_url(self) -> str:
        """endpoint_url for boto3's apigatewaymanagementapi client (127.0.0.1 only)."""
        return f"http://127.0.0.1:{self.management_port}"

    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start_ws())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        thread = threading.Thread(target=run, name="gateway-ws", daemon=True)
        thread.start()
        self._threads.append(thread)
        if not ready.wait(10) or failure:
            raise RuntimeError(f"WebSocket server did not start: {failure}")
        self._http = self._serve_http(self.host, self._http_port, self.http_request)
        self.http_port = int(self._http.server_address[1])

    def _serve_http(self, host: str, port: int, serve: "HttpServe") -> ThreadingHTTPServer:
        server = ThreadingHTTPServer((host, port), _http_handler(serve))
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        thread.start()
        self._threads.append(thread)
        return server

    async def _start_ws(self) -> None:
        self._server = await serve(
            self._session,
            self.host,
            self._ws_port,
            process_request=self._handshake,
            ping_interval=20,
            # A client answers a ping only after the frames queued before it: one reading a
            # backlog of pushes would be closed after 20 s. API Gateway closes only idle
            # connections (10 minutes): a pong that late closes it here.
            ping_timeout=PONG_TIMEOUT_S,
            max_size=128 * 1024,
            compression=None,  # API Gateway does not negotiate permessage-deflate either
        )
        sockets = list(self._server.sockets)
        self.ws_port = int(sockets[0].getsockname()[1])
        # The Management API on the same loop as the WebSocket connections it posts to: a
        # post is parsed and its frame sent without a thread of its own or a hand-over to
        # the loop and back (with http.server and a thread per stream-handler connection,
        # the ingress was ~20% of this process's GIL time at 300 orders/s).
        self._management_server = await asyncio.start_server(
            self._management_connection, "127.0.0.1", self._management_port, limit=MAX_HEAD
        )
        self.management_port = int(next(iter(self._management_server.sockets)).getsockname()[1])

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        loop = self._loop
        if loop is not None and self._server is not None:
            server, management = self._server, self._management_server

            async def close() -> None:
                if management is not None:
                    management.close()
                for task in list(self._management_tasks):
                    task.cancel()
                await asyncio.gather(*self._management_tasks, return_exceptions=True)
                server.close()
                await server.wait_closed()

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        for thread in self._threads:
            thread.join(10)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._batch_executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "LocalGateway":
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ WebSocket

    def _invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.router(event, LambdaContext("order_router"))
        except Exception as exc:  # a crashed invocation: API Gateway answers 502/500
            return {"statusCode": 502, "body": json.dumps({"message": f"{type(exc).__name__}"})}

    async def _handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        conn_id = connection_id()
        now_ms = time.time_ns() // 1_000_000
        query = dict(parse_qsl(urlsplit(request.path).query))
        headers = dict(request.headers.raw_items())
        peer = connection.remote_address[0] if connection.remote_address else "127.0.0.1"
        event = websocket_event(
            "$connect",
            conn_id,
            domain=f"{self.host}:{self.ws_port}",
            stage=STAGE,
            connected_at_ms=now_ms,
            headers=headers,
            query=query,
            source_ip=str(peer),
        )
        reply = await self._call(event)
        status = int(reply.get("statusCode", 200))
        if not 200 <= status < 300:
            body = (reply.get("body") or HTTPStatus(status).phrase).encode()
            hdrs = Headers(
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return Response(status, HTTPStatus(status).phrase, hdrs, body)
        self._ids[id(connection)] = conn_id
        self._clients[conn_id] = _Client(
            connection, now_ms, str(peer), headers.get("User-Agent", ""), now_ms
        )
        return None

    async def _session(self, connection: ServerConnection) -> None:
        conn_id = self._ids.pop(id(connection), None)
        if conn_id is None:
            return
        client = self._clients[conn_id]
        # Frames are handled side by side (API Gateway invokes the integration for each
        # message on its own, in no promised order), except that frames naming the same
        # order (symbol and order_id) are handled in the order they came, so an order and
        # its replace or cancel reach the broker in that order. Different orders of one
        # symbol do not wait for each other: a lane per symbol capped a connection at one
        # order per request latency per symbol (~410 acks/s at 1,000/s offered, load ~10).
        # At most IN_FLIGHT frames per connection are being handled; reading waits beyond.
        lanes: dict[str, asyncio.Task[None]] = {}
        room = asyncio.Semaphore(IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        try:
            async for message in connection:
                client.last_active_ms = time.time_ns() // 1_000_000
                text = message if isinstance(message, str) else message.decode(errors="replace")
                await room.acquire()
                lane, route_key = _lane_and_route(text)
                task = asyncio.create_task(
                    self._message_after(lanes.get(lane), conn_id, client, text, route_key, room)
                )
                lanes[lane] = task
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(functools.partial(_forget, lanes, lane))
        except ConnectionClosed:
            pass
        finally:
            if tasks:
                await asyncio.wait(tasks, timeout=SEND_TIMEOUT_S)
            self._clients.pop(conn_id, None)
            code = connection.close_code or 1006
            event = websocket_event(
                "$disconnect",
                conn_id,
                domain=f"{self.host}:{self.ws_port}",
                stage=STAGE,
                connected_at_ms=client.connected_at_ms,
                disconnect_status=code,
            )
            await self._call(event)

    async def _call(self, event: dict[str, Any]) -> dict[str, Any]:
        """The handler's answer to `event`, invoked on a handler thread. Answers come back
        to the loop in batches: a thread that finishes appends its answer and wakes the
        loop only if no wake-up is pending (run_in_executor wakes it once per call: a
        write to its self-pipe, a callback handle and a chained future each, ~10% of this
        process's GIL samples at 1,000 orders/s)."""
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._executor.submit(self._invoke_into, event, answer)
        return await answer

    def _invoke_into(self, event: dict[str, Any], answer: "asyncio.Future[dict[str, Any]]") -> None:
        reply = self._invoke(event)
        with self._answers_lock:
            self._answers.append((answer, reply))
            if self._settle_pending:
                return
            self._settle_pending = True
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        """On the loop: hand every answer that came back since the last wake-up to its
        waiter (one whose request was cancelled meanwhile is skipped)."""
        with self._answers_lock:
            answers, self._answers = self._answers, []
            self._settle_pending = False
        for answer, reply in answers:
            if not answer.done():
                answer.set_result(reply)

    async def _call_batched(self, event: dict[str, Any]) -> dict[str, Any]:
        """The batch handler's answer to `event`. Events queue while `batch_workers` batches
        are being handled; a worker that is free takes all that queued (up to MAX_BATCH):
        one frame alone when the gateway is idle, more the busier it is. Per batch, not
        per frame: one hand-over to a thread and back, one Redis round trip, one wait for
        the broker (with 64 handler threads each frame cost ~20 context switches, most of
        them threads handing the GIL to each other). Frames of one order never share a
        batch: a lane's next frame is queued only once the one before it was answered."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._batch.append((event, answer))
        if len(self._batch) == 1:
            loop.call_soon(self._dispatch)
        return await answer

    def _dispatch(self) -> None:
        """On the loop: what is queued to free batch workers, up to MAX_BATCH each."""
        while self._batch and self._batch_busy < self.batch_workers:
            batch, self._batch = self._batch[:MAX_BATCH], self._batch[MAX_BATCH:]
            self._batch_busy += 1
            self.batches += 1
            self.batched += len(batch)
            try:
                self._batch_executor.submit(self._invoke_batch, batch)
            except RuntimeError:  # shut down: nobody waits any more
                return

    def _invoke_batch(
        self, batch: list[tuple[dict[str, Any], "asyncio.Future[dict[str, Any]]"]]
    ) -> None:
        assert self.batch_router is not None
        try:
            replies = self.batch_router(
                [event for event, _ in batch], LambdaContext("order_router")
            )
        except Exception as exc:  # a crashed invocation: API Gateway answers 502/500
            crashed = {"statusCode": 502, "body": json.dumps({"message": type(exc).__name__})}
            replies = [crashed] * len(batch)
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
                loop.call_soon_threadsafe(self._batch_done, batch, replies)

    def _batch_done(
        self,
        batch: list[tuple[dict[str, Any], "asyncio.Future[dict[str, Any]]"]],
        replies: list[dict[str, Any]],
    ) -> None:
        self._batch_busy -= 1
        for (_, answer), reply in zip(batch, replies, strict=True):
            if not answer.done():
                answer.set_result(reply)
        self._dispatch()

    async def _message_after(
        self,
        before: "asyncio.Task[None] | None",
        conn_id: str,
        client: _Client,
        text: str,
        route_key: str,
        room: asyncio.Semaphore,
    ) -> None:
        try:
            if before is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(before)
            with contextlib.suppress(ConnectionClosed):
                await self._message(conn_id, client, text, route_key)
        finally:
            room.release()

    async def _message(self, conn_id: str, client: _Client, text: str, route_key: str) -> None:
        event = websocket_event(
            route_key,
            conn_id,
            domain=f"{self.host}:{self.ws_port}",
            stage=STAGE,
            connected_at_ms=client.connected_at_ms,
            body=text,
            source_ip=client.source_ip,
        )
        if route_key == "$default":  # no $default route: what API Gateway answers
            reply = {
                "message": "Forbidden",
                "connectionId": conn_id,
                "requestId": event["requestContext"]["requestId"],
            }
            await client.connection.send(json.dumps(reply))
            return
        if self.batch_router is not None and route_key in BATCH_ROUTES:
            response = await self._call_batched(event)
        else:
            response = await self._call(event)
        body = response.get("body")
        if body:
            await client.connection.send(body)

    # ------------------------------------------------------------------ Management API

    async def _management_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One HTTP/1.1 connection to the Management API: requests one after another,
        kept alive until the client closes (or a request leaves no way to read the next)."""
        task = asyncio.current_task()
        if task is not None:
            self._management_tasks.add(task)
            task.add_done_callback(self._management_tasks.discard)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return  # closed between requests
                except asyncio.LimitOverrunError:
                    writer.write(_response(*_bad_request("request head too long"), close=True))
                    return
                parsed = _request_head(head)
                if parsed is None:
                    writer.write(_response(*_bad_request("bad request line"), close=True))
                    return
                method, target, headers, keep_alive = parsed
                raw = headers.get("content-length")
                chunked = "chunked" in headers.get("transfer-encoding", "").lower()
                if chunked or (raw is not None and not raw.strip().isdigit()):
                    bad = _bad_request("Content-Length must be a number >= 0")
                    writer.write(_response(*bad, close=True))
                    return
                length = int(raw or 0)
                if length > MAX_BODY:
                    too_large = _json(413, {"message": "Request Entity Too Large"})
                    writer.write(_response(*too_large, close=True))
                    return
                body = await reader.readexactly(length) if length else b""
                answer = await self._management_async(method, target, headers, body)
                writer.write(_response(*answer, close=not keep_alive, head=method == "HEAD"))
                await writer.drain()
                if not keep_alive:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def _management_async(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """management_request on the loop: a post's frame is sent from here."""
        given = headers.get(_SECRET_LOWER, "")
        if not hmac.compare_digest(given.encode(), self.management_secret.encode()):
            return _json(403, {"message": "Forbidden"})
        path = unquote(urlsplit(target).path)
        if not path.startswith("/@connections/") or path == "/@connections/":
            return _json(404, not_found_json())
        conn_id = path[len("/@connections/") :]
        if method == "POST":
            client = self._clients.get(conn_id)
            if client is not None:
                try:
                    payload: str | bytes = body.decode()
                except UnicodeDecodeError:
                    payload = body
                sending = asyncio.ensure_future(client.connection.send(payload))
                sending.add_done_callback(_retrieved)
                try:  # a frame half written is not taken back: the send goes on regardless
                    await asyncio.wait_for(asyncio.shield(sending), SEND_TIMEOUT_S)
                except ConnectionClosed:
                    return _gone(conn_id)
                except TimeoutError:
                    return _json(504, {"message": "the connection is not reading"})
                return 200, {}, b""
            return _gone(conn_id)
        if method == "DELETE":
            client = self._clients.get(conn_id)
            if client is None:
                return _gone(conn_id)
            await asyncio.wait_for(client.connection.close(1000), SEND_TIMEOUT_S)
            return 204, {}, b""
        if method == "GET":
            info = self.connection_info(conn_id)
            return _json(200, info) if info is not None else _gone(conn_id)
        return _json(405, {"message": "Method Not Allowed"})

    def post_to_connection(self, conn_id: str, data: bytes) -> bool:
        """False if the connection is gone."""
        client = self._clients.get(conn_id)
        if client is None or self._loop is None:
            return False
        try:
            payload: str | bytes = data.decode()
        except UnicodeDecodeError:
            payload = data
        future = asyncio.run_coroutine_threadsafe(client.connection.send(payload), self._loop)
        try:
            future.result(SEND_TIMEOUT_S)
        except ConnectionClosed:
            return False
        return True

    def delete_connection(self, conn_id: str) -> bool:
        client = self._clients.get(conn_id)
        if client is None or self._loop is None:
            return False
        asyncio.run_coroutine_threadsafe(client.connection.close(1000), self._loop).result(
            SEND_TIMEOUT_S
        )
        return True

    def connection_info(self, conn_id: str) -> dict[str, Any] | None:
        client = self._clients.get(conn_id)
        if client is None:
            return None
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(client.connected_at_ms / 1000))
        last = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(client.last_active_ms / 1000))
        return {
            "connectedAt": iso,
            "identity": {"sourceIp": client.source_ip, "userAgent": client.user_agent},
            "lastActiveAt": last,
        }

    # ------------------------------------------------------------------ HTTP

    def http_request(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """One request to the HTTP API: (status, headers, body)."""
        split = urlsplit(target)
        path = unquote(split.path)
        match = _match(method, path)
        if match is None:
            if any(_match(other, path) for other, _ in HTTP_ROUTES if other != method):
                return _json(405, _error(405, "METHOD_NOT_ALLOWED", f"{method} is not allowed"))
            return _json(404, not_found_json())
        route_key, params = match
        try:
            token = bearer(headers, None)
            claims = self.verifier.claims(token)
            user_of(claims, self.verifier.user_claim)  # the authorizer refuses no user
        except AuthError:
            return _json(401, {"message": "Unauthorized"})
        query = dict(parse_qsl(split.query))
        event = http_event(
            method,
            path,
            route_key,
            domain=f"{self.host}:{self.http_port}",
            headers=headers,
            query=query,
            raw_query=split.query,
            path_parameters=params,
            body=body,
            claims=claims,
        )
        reply = self._invoke(event)
        status = int(reply.get("statusCode", 200))
        out_headers = {str(k): str(v) for k, v in (reply.get("headers") or {}).items()}
        raw = reply.get("body") or ""
        data = base64.b64decode(raw) if reply.get("isBase64Encoded") else str(raw).encode()
        return status, out_headers, data


HttpServe = Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]
"""(method, target, headers, body) -> (status, headers, body)."""

_SECRET_LOWER = MANAGEMENT_SECRET_HEADER.lower()
MAX_HEAD = 64 * 1024
"""The most bytes of a Management API request's line and headers (http.server's limits)."""


def _request_head(head: bytes) -> tuple[str, str, dict[str, str], bool] | None:
    """(method, target, headers with lower-case names, keep alive) of a request's head
    (through its blank line); None if its request line is not one."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
    return method, target, headers, keep_alive


def _response(
    status: int, headers: dict[str, str], data: bytes, *, close: bool = False, head: bool = False
) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(data)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else data)


def _retrieved(done: "asyncio.Future[None]") -> None:
    """Take a send's outcome that nobody awaits any more (a post answered 504)."""
    if not done.cancelled():
        done.exception()


def _bad_request(detail: str) -> tuple[int, dict[str, str], bytes]:
    return _json(400, _error(400, "BAD_REQUEST", detail))


def _gone(conn_id: str) -> tuple[int, dict[str, str], bytes]:
    status, headers, data = _json(410, {"message": f"connection {conn_id} is gone"})
    headers["x-amzn-ErrorType"] = "GoneException"
    return status, headers, data


def _error(status: int, reason: str, detail: str) -> dict[str, Any]:
    return {"type": "error", "reason": reason, "code": status, "detail": detail}


def _http_handler(serve: HttpServe) -> type[BaseHTTPRequestHandler]:
    class HttpHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # TCP_NODELAY: a response's head and body are two writes; on a kept-alive
        # connection Nagle held the body back until the client's delayed ACK of the head
        # (~40 ms a request, measured: 1,500 requests 6.8 s on a connection each, 146 s on
        # one kept alive)
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            raw = self.headers.get("Content-Length")
            length = -1 if raw is not None and not raw.strip().isdigit() else int(raw or 0)
            if length < 0 or "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                # no length to read by (or one that is not a number): answer, then close
                self.close_connection = True
                status, headers, data = _json(
                    400, _error(400, "BAD_REQUEST", "Content-Length must be a number >= 0")
                )
            elif length > MAX_BODY:
                self.close_connection = True
                status, headers, data = _json(413, {"message": "Request Entity Too Large"})
            else:
                body = self.rfile.read(length) if length else b""
                hdrs = dict(self.headers.items())
                status, headers, data = serve(self.command, self.path, hdrs, body)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def __getattr__(self, name: str) -> Any:
            # every method (TRACE, OPTIONS, made-up ones) reaches _serve: 404/405, not 501
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            # what http.server itself refuses (a bad request line, headers too long)
            self.close_connection = True
            self.request_version = "HTTP/1.1"  # a status line even to what it took for 0.9
            status = code if 400 <= code < 500 else 400
            data = json.dumps(_error(status, "BAD_REQUEST", message or "bad request")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return HttpHandler


def _forget(lanes: dict[str, "asyncio.Task[None]"], lane: str, done: "asyncio.Task[None]") -> None:
    if lanes.get(lane) is done:
        del lanes[lane]


def _lane_and_route(text: str) -> tuple[str, str]:
    """(lane, route key) of a frame, from one parse: the order it names, symbol and
    order_id ("" for what cannot be read; frames of one lane are handled in order), and its
    `action` if that is a route (`$request.body.action`), else "$default". The route
    handler parses the text itself."""
    with contextlib.suppress(ValueError, RecursionError):  # too deep to parse: no lane
        frame = json.loads(text)
        if isinstance(frame, dict):
            action = frame.get("action")
            route_key = action if isinstance(action, str) and action in WS_ROUTES else "$default"
            named = (frame.get("symbol"), frame.get("order_id"))
            return "\0".join(v if isinstance(v, str) else "" for v in named), route_key
    return "", "$default"


def _json(status: int, obj: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(obj).encode()


def _match(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    parts = path.strip("/").split("/")
    for route_method, template in HTTP_ROUTES:
        if route_method != method:
            continue
        want = template.strip("/").split("/")
        if len(want) != len(parts):
            continue
        params: dict[str, str] = {}
        for w, p in zip(want, parts, strict=True):
            if w.startswith("{") and w.endswith("}"):
                if not p:
                    break
                params[w[1:-1]] = p
            elif w != p:
                break
        else:
            return f"{method} {template}", params
    return None


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the handlers' cold start, restore afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
