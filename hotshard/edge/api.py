"""API Gateway events -> router calls -> API Gateway responses: the whole of order_router
except its Powertools decorators (lambdas/order_router/handler.py).

WebSocket API (route selection `$request.body.action`):
- `$connect`: token in `Authorization: Bearer ...` or `?token=...`; no valid token -> 401
  (API Gateway refuses the handshake). Records connection -> user, and `?pushes=batch`
  (opt-in: several pushes per BATCH frame, docs/asyncapi.yaml).
- `order` (ADD), `replace`, `cancel`: the frame is the order's JSON (docs/FORMATS.md) with
  `action` naming the route; an optional `request_id` is echoed. The route response is an
  `ack` or an `error` frame.
- `subscribe` / `unsubscribe`: {"action": "subscribe", "symbols": ["AAPL", ...]}: depth and
  trades of those symbols are pushed to the connection.
- `cancel_all` ({"symbol": optional}): cancel the user's open orders -> `cancel_all` reply.
- `cancel_on_disconnect` ({"enabled": true|false}): opt this connection in: when it closes
  (`$disconnect`), all the user's open orders are cancelled.
- `ping` -> `pong` (with the gateway's time `ts_ns`): keeps an idle connection open.
- `$disconnect`: forgets the connection and its subscriptions (cancel-on-disconnect first).

HTTP API (payload format 2.0, JWT authorizer in front): POST /orders, GET /orders (open
orders, ?symbol= &limit=), DELETE /orders (cancel all, ?symbol=), DELETE /orders/{id}
(?symbol= optional), GET /orders/{id}, GET /fills (?symbol= &limit= &before=),
GET /instruments (?symbol=), GET /balance, GET /depth/{symbol}.

Every refusal is a JSON error with the reason's name and number and a detail; an input
problem is a 4xx, never a 500 or a stack trace.
"""

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent

from hotshard import kafka
from hotshard.clients import redis_client
from hotshard.codec import InvalidOrderError
from hotshard.domain import Action, is_id
from hotshard.edge.auth import AuthError, TokenVerifier, bearer, user_of
from hotshard.edge.depth import DepthStore
from hotshard.edge.limits import PreTradeLimits
from hotshard.edge.router import MAX_PAGE, RETRY_AFTER_MS, Ack, OrderRouter, RefusedError
from hotshard.edge.sessions import BATCH, Sessions
from hotshard.edge.settings import EdgeSettings, order_producer
from hotshard.names import TOPIC_ORDERS, TOPIC_PENDING_ORDERS, WEBSOCKET_ROUTES
from hotshard.reasons import HotshardError, Reason

JSON = "application/json"
ORDER_ROUTES = {"order": Action.ADD, "replace": Action.REPLACE, "cancel": Action.CANCEL}
ROUTES = ("$connect", "$disconnect", *WEBSOCKET_ROUTES)
MAX_SUBSCRIPTIONS = 100

_STATUS = {
    Reason.UNAUTHENTICATED: 401,
    Reason.USER_MISMATCH: 403,
    Reason.UNKNOWN_ORDER: 404,
    Reason.DUPLICATE_ORDER_ID: 409,
    Reason.ORDER_IN_FLIGHT: 409,
    Reason.STALE_ROUTE: 409,
    Reason.PRICE_OUTSIDE_BAND: 422,
    Reason.QUANTITY_ABOVE_MAX: 422,
    Reason.NOTIONAL_ABOVE_MAX: 422,
    Reason.INSUFFICIENT_BALANCE: 422,
    Reason.NOT_DELIVERED: 503,
}


def http_status(reason: Reason) -> int:
    return _STATUS.get(reason, 400)


def error_json(exc: HotshardError) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "error",
        "reason": exc.reason.name,
        "code": int(exc.reason),
        "detail": exc.detail,
    }
    if isinstance(exc, InvalidOrderError | RefusedError):
        if exc.symbol:
            out["symbol"] = exc.symbol
        if exc.order_id:
            out["order_id"] = exc.order_id
    if isinstance(exc, RefusedError) and exc.retry_after_ms:
        out["retry_after_ms"] = exc.retry_after_ms
    return out


REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)
"""Redis unreachable even after the client's own reconnect attempts (a restart or a
failover that takes longer than they do)."""


_RESOLVING = threading.Lock()
"""Powertools' resolvers keep the request being resolved in a class attribute
(BaseRouter.current_event) that routing and the routes read: two requests resolved side by
side (the local gateway serves HTTP from threads), by one EdgeApi or two (concurrent cold
starts), could be routed and answered with each other's event. One at a time in the
process, as in a Lambda container."""


def redis_unavailable(exc: Exception) -> RefusedError:
    """A request that met an unreachable Redis: nothing was sent, the client may send the
    same request again (503 NOT_DELIVERED with a retry hint)."""
    return RefusedError(
        Reason.NOT_DELIVERED,
        f"state store unreachable ({type(exc).__name__}); send the same request again",
        retry_after_ms=RETRY_AFTER_MS,
    )


def _body_of(event: Any) -> str:
    """The request's body as text; bytes that are not UTF-8 (API Gateway passes them
    base64-encoded) are MALFORMED, not an exception."""
    try:
        return str(event.decoded_body or "")
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidOrderError(Reason.MALFORMED, "the body must be UTF-8 JSON") from exc


def not_found_json(detail: str = "no such route") -> dict[str, Any]:
    """A 404 of the HTTP API: the documented error body (docs/openapi.yaml, Error)."""
    return {"type": "error", "reason": "NOT_FOUND", "code": 404, "detail": detail}


def loads(text: str | bytes, what: str) -> Any:
    """JSON from a client; anything that is not (bad bytes, too deeply nested to parse)
    is MALFORMED, never an exception of another kind."""
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidOrderError(Reason.MALFORMED, f"{what} must be JSON") from exc


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"))


class EdgeApi:
    def __init__(
        self,
        router: OrderRouter,
        sessions: Sessions,
        verifier: TokenVerifier,
        depth: DepthStore,
        *,
        logger: Logger | None = None,
        count: Callable[[str], None] = lambda _name: None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.clock_ns = clock_ns
        self.router = router
        self.sessions = sessions
        self.verifier = verifier
        self.depth = depth
        self.log = logger or Logger(service="order_router")
        self.count = count
        self.http = self._http_app()

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event.get("version") == "2.0":
            with _RESOLVING:
                return self.http.resolve(event, context)
        if "eventType" in event.get("requestContext", {}):
            return self.websocket(APIGatewayWebSocketEvent(event))
        self.log.warning("unknown event shape", extra={"keys": sorted(event)[:10]})
        return {"statusCode": 400, "body": _dumps({"type": "error", "detail": "unknown event"})}

    # ------------------------------------------------------------------ WebSocket

    def handle_many(self, events: Sequence[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        """`handle` of several events at once, each answered as `handle` answers it alone
        (the local gateway's concurrent frames; API Gateway invokes a Lambda once per
        request). The WebSocket order frames (`order`, `replace`, `cancel`) go to the
        router together (OrderRouter.submit_many: one Redis round trip and one broker
        wait for all of them); anything else is handled on its own, in turn."""
        out: list[dict[str, Any] | None] = [None] * len(events)
        orders: list[tuple[int, Any, str, str, Action, dict[str, Any]]] = []
        for i, event in enumerate(events):
            context_of = event.get("requestContext") or {}
            ws_order = "eventType" in context_of and context_of.get("routeKey") in ORDER_ROUTES
            if event.get("version") == "2.0" or not ws_order:
                out[i] = self.handle(event, context)
                continue
            ws = APIGatewayWebSocketEvent(event)
            connection = ws.request_context.connection_id
            request_id, request = self._ws_request(ws)
            if isinstance(request, BaseException):
                out[i] = self._ws_reply(connection, request_id, request)
                continue
            user, name, frame = request
            if name not in ORDER_ROUTES:  # the body names another action than the route
                out[i] = self._ws_reply(connection, request_id, self._ws_route(ws, request))
                continue
            orders.append((i, request_id, connection, user, ORDER_ROUTES[name], frame))
        results = self.router.submit_many([(u, frame, a) for _, _, _, u, a, frame in orders])
        for (i, request_id, connection, *_), result in zip(orders, results, strict=True):
            if isinstance(result, Ack):
                self.count("Duplicates" if result.duplicate else "Accepted")
                out[i] = self._ws_reply(connection, request_id, result.json())
            else:
                out[i] = self._ws_reply(connection, request_id, result)
        answered = [reply for reply in out if reply is not None]
        assert len(answered) == len(out), "an event of the batch was not answered"
        return answered

    def websocket(self, event: APIGatewayWebSocketEvent) -> dict[str, Any]:
        ctx = event.request_context
        route, connection = ctx.route_key, ctx.connection_id
        if route == "$connect":
            return self._connect(event, connection)
        if route == "$disconnect":
            self._disconnect(connection)
            return {"statusCode": 200}
        request_id, request = self._ws_request(event)
        if isinstance(request, BaseException):
            return self._ws_reply(connection, request_id, request)
        return self._ws_reply(connection, request_id, self._ws_route(event, request))

    def _ws_request(
        self, event: APIGatewayWebSocketEvent
    ) -> tuple[Any, "tuple[str, str, dict[str, Any]] | Exception"]:
        """A frame's request id (echoed in the reply) and (user, action, frame), or what
        refuses it: not a JSON object, a connection nobody authenticated."""
        request_id: Any = None
        try:
            frame = self._frame(event)
            request_id = frame.pop("request_id", None)
            name = frame.pop("action", None)
            self._registry_check()
            user = self.sessions.user_of(event.request_context.connection_id)
            if user is None:
                raise AuthError("connection is not authenticated; reconnect")
        except Exception as exc:
            return request_id, exc
        return request_id, (user, name if isinstance(name, str) else "", frame)

    def _ws_route(
        self, event: APIGatewayWebSocketEvent, request: tuple[str, str, dict[str, Any]]
    ) -> dict[str, Any] | Exception:
        """The reply to a frame's action, or the exception that refuses it."""
        user, name, frame = request
        connection = event.request_context.connection_id
        try:
            if name in ORDER_ROUTES:
                return self._order(user, ORDER_ROUTES[name], frame)
            if name in ("subscribe", "unsubscribe"):
                return self._subscription(connection, name, frame)
            if name == "cancel_all":
                return self.router.cancel_all(user, _symbol(frame.get("symbol")))
            if name == "cancel_on_disconnect":
                enabled = frame.get("enabled", True)
                if not isinstance(enabled, bool):
                    raise InvalidOrderError(Reason.MALFORMED, "enabled must be true or false")
                self.sessions.set_cancel_on_disconnect(connection, enabled)
                return {"type": "cancel_on_disconnect", "enabled": enabled}
            if name == "ping":
                return {"type": "pong", "ts_ns": self.clock_ns()}
            raise InvalidOrderError(
                Reason.MALFORMED, f"action must be one of {', '.join(ROUTES[2:])}"
            )
        except Exception as exc:
            return exc

    def _ws_reply(
        self, connection: str, request_id: Any, reply: dict[str, Any] | BaseException
    ) -> dict[str, Any]:
        """The route response: the reply, or the error frame of what refused the request
        (a 4xx, 503 for an unreachable Redis, 500 for anything else), its request id
        echoed."""
        status = 200
        if isinstance(reply, HotshardError):
            body, status = error_json(reply), http_status(reply.reason)
            self.count("Refused")
        elif isinstance(reply, REDIS_DOWN):
            body, status = error_json(redis_unavailable(reply)), 503
            self.count("Refused")
        elif isinstance(reply, Exception):
            self.log.exception(
                "request failed", extra={"connection_id": connection}, exc_info=reply
            )
            body, status = {"type": "error", "reason": "INTERNAL", "detail": "internal error"}, 500
        elif isinstance(reply, BaseException):
            raise reply
        else:
            body = reply
        if request_id is not None:
            body["request_id"] = request_id
        try:
            text = _dumps(body)
        except (ValueError, RecursionError):  # a request_id too deeply nested to echo
            bad = InvalidOrderError(Reason.MALFORMED, "request_id is too deeply nested")
            text, status = _dumps(error_json(bad)), 400
        return {"statusCode": status, "body": text}

    def _registry_check(self) -> None:
        """Redis came back empty: register again the connections this container knows (a
        frame of any of them triggers it, at most once a second)."""
        again = self.sessions.register_again_if_forgotten()
        if again:
            self.log.warning(
                "connection registry was lost: registered again", extra={"connections": again}
            )
            self.count("Reregistered")

    def _disconnect(self, connection: str) -> None:
        cancel = self.sessions.cancels_on_disconnect(connection)
        user = self.sessions.disconnect(connection)
        if cancel and user is not None:
            try:
                done = self.router.cancel_all(user)
            except Exception:
                self.log.exception("cancel on disconnect failed", extra={"user_id": user})
                return
            self.log.info(
                "cancelled on disconnect",
                extra={"user_id": user, "cancelled": len(done["cancelled"])},
            )

    def _connect(self, event: APIGatewayWebSocketEvent, connection: str) -> dict[str, Any]:
        try:
            user = self.verifier.user(bearer(event.headers, event.query_string_parameters))
        except AuthError as exc:
            self.count("ConnectRefused")
            return {"statusCode": 401, "body": _dumps(error_json(exc))}
        query = event.query_string_parameters or {}
        pushes = BATCH if query.get("pushes") == BATCH else ""
        self.sessions.connect(connection, user, time.time_ns() // 1_000_000, pushes=pushes)
        self.log.info("connected", extra={"connection_id": connection, "user_id": user})
        return {"statusCode": 200}

    def close(self) -> None:
        """Close the router's producer (a warm container that is shut down, a test)."""
        self.router.close()

    @staticmethod
    def _frame(event: APIGatewayWebSocketEvent) -> dict[str, Any]:
        frame = loads(_body_of(event), "a frame")
        if not isinstance(frame, dict):
            raise InvalidOrderError(Reason.MALFORMED, "a frame must be a JSON object")
        return frame

    def _order(self, user: str, action: Action, payload: dict[str, Any]) -> dict[str, Any]:
        ack = self.router.submit(user, payload, action)
        self.count("Duplicates" if ack.duplicate else "Accepted")
        return ack.json()

    def _subscription(self, connection: str, name: str, frame: dict[str, Any]) -> dict[str, Any]:
        symbols = frame.get("symbols", [frame["symbol"]] if "symbol" in frame else None)
        if (
            not isinstance(symbols, list)
            or not symbols
            or len(symbols) > MAX_SUBSCRIPTIONS
            or not all(isinstance(s, str) and is_id(s) for s in symbols)
        ):
            raise InvalidOrderError(
                Reason.MALFORMED,
                f"symbols must be a list of 1-{MAX_SUBSCRIPTIONS} symbol names",
            )
        if name == "unsubscribe":
            return {
                "type": "unsubscribed",
                "symbols": self.sessions.unsubscribe(connection, symbols),
            }
        done = self.sessions.subscribe(connection, symbols)
        return {
            "type": "subscribed",
            "symbols": done,
            "depth": [self.depth.read(symbol) for symbol in done],
        }

    # ------------------------------------------------------------------ HTTP

    def _http_app(self) -> APIGatewayHttpResolver:
        app = APIGatewayHttpResolver()

        def user() -> str:
            authorizer = app.current_event.request_context.authorizer
            claims = authorizer.jwt_claim if authorizer is not None else None
            return user_of(claims or {}, self.verifier.user_claim)

        def body() -> Any:
            return loads(_body_of(app.current_event), "the body")

        def reply(
            status: int, obj: dict[str, Any], headers: dict[str, str] | None = None
        ) -> Response[str]:
            return Response(
                status_code=status, content_type=JSON, body=_dumps(obj), headers=headers
            )

        @app.post("/orders")
        def post_order() -> Response[str]:
            ack = self.router.submit(user(), body())
            self.count("Duplicates" if ack.duplicate else "Accepted")
            return reply(202, ack.json())

        def query(name: str) -> str:
            return app.current_event.get_query_string_value(name, "") or ""

        def limit(default: int) -> int:
            raw = query("limit")
            if not raw:
                return default
            if not raw.isdigit():
                raise InvalidOrderError(Reason.MALFORMED, "limit must be a positive integer")
            return int(raw)

        @app.get("/orders")
        def open_orders() -> Response[str]:
            found = self.router.open_orders(user(), _symbol(query("symbol")), limit(MAX_PAGE))
            return reply(200, found)

        @app.delete("/orders")
        def cancel_all() -> Response[str]:
            return reply(202, self.router.cancel_all(user(), _symbol(query("symbol"))))

        @app.get("/fills")
        def fills() -> Response[str]:
            found = self.router.fills(user(), _symbol(query("symbol")), limit(100), query("before"))
            return reply(200, found)

        @app.get("/instruments")
        def instruments() -> Response[str]:
            return reply(200, self.router.instruments(_symbol(query("symbol"))))

        @app.get("/balance")
        def balance() -> Response[str]:
            return reply(200, self.router.balance(user()))

        @app.delete("/orders/<order_id>")
        def delete_order(order_id: str) -> Response[str]:
            symbol = app.current_event.get_query_string_value("symbol", "") or ""
            return reply(202, self.router.cancel(user(), order_id, symbol).json())

        @app.get("/orders/<order_id>")
        def get_order(order_id: str) -> Response[str]:
            return reply(200, self.router.status(user(), order_id))

        @app.get("/depth/<symbol>")
        def get_depth(symbol: str) -> Response[str]:
            user()  # a token without the user claim reads nothing either
            return reply(200, self.depth.read(symbol))

        @app.exception_handler(HotshardError)  # type: ignore[untyped-decorator]
        def refused(exc: HotshardError) -> Response[str]:
            self.count("Refused")
            out = error_json(exc)
            retry = out.get("retry_after_ms")
            headers = {"Retry-After": str(max(1, -(-retry // 1000)))} if retry else None
            return reply(http_status(exc.reason), out, headers)

        @app.exception_handler(list(REDIS_DOWN))  # type: ignore[untyped-decorator]
        def redis_down(exc: Exception) -> Response[str]:
            out: Response[str] = refused(redis_unavailable(exc))
            return out

        @app.not_found
        def not_found(_exc: Exception) -> Response[str]:
            return reply(404, not_found_json())

        return app


def _symbol(value: Any) -> str:
    """An optional symbol parameter: absent -> ''."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not is_id(value):
        raise InvalidOrderError(Reason.MALFORMED, "symbol must be a symbol name")
    return value


def build(
    settings: EdgeSettings,
    *,
    logger: Logger | None = None,
    count: Callable[[str], None] = lambda _n: None,
) -> EdgeApi:
    """Everything order_router needs, from its settings (once per cold start)."""
    r = redis_client(settings)
    producer = order_producer(settings)
    if not kafka.warm_producer(producer, (TOPIC_ORDERS, TOPIC_PENDING_ORDERS)):
        log = logger or Logger(service="order_router")
        log.warning("the broker did not answer the router's new producer: its first orders wait")
    router = OrderRouter(
        r,
        producer,
        new_producer=lambda: order_producer(settings),
        limits=PreTradeLimits.load(settings.limits_path),
        balance_check=settings.balance_check,
        auto_list=settings.auto_list,
        delivery_timeout_s=settings.delivery_timeout_ms / 1000,
    )
    verifier = TokenVerifier(
        secret=settings.jwt_secret,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        user_claim=settings.jwt_user_claim,
    )
    return EdgeApi(router, Sessions(r), verifier, DepthStore(r), logger=logger, count=count)
