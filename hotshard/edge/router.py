"""The order path (docs/ARCHITECTURE.md): validate, pre-trade checks, route lookup, epoch stamp,
produce to the symbol's partition with delivery confirmed, then answer.

    router = OrderRouter(redis_client, producer, limits=PreTradeLimits.load(path))
    ack = router.submit("alice", {"symbol": "AAPL", "order_id": "o-1", "side": "BUY",
                                  "price": 18950, "quantity": 10})

An ADD costs one Redis round trip before the produce (route + idempotency + reservation in
one script, hotshard.edge.orders) and one write after the acknowledgement. CANCEL and
REPLACE read the route only. While a symbol is MIGRATING its orders go to `pending-orders`
(same partition number) to be replayed by the migration. Every refusal is an exception
with a Reason (hotshard.reasons) and the order's ids, and nothing refused reaches Kafka.
"""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from hotshard import route
from hotshard.codec import InvalidOrderError, decode_order
from hotshard.commands import Command
from hotshard.domain import Action, OrderType, Side
from hotshard.edge.limits import PreTradeLimits
from hotshard.edge.orders import CASH, OrderRecords
from hotshard.names import TOPIC_ORDERS, TOPIC_PENDING_ORDERS
from hotshard.reasons import HotshardError, Reason
from hotshard.route import MIGRATING, Route
from hotshard.wire import encode_order


class RefusedError(HotshardError):
    """An order the router will not send; names it as far as it was read."""

    def __init__(
        self, reason: Reason, detail: str, *, symbol: str = "", order_id: str = ""
    ) -> None:
        super().__init__(reason, detail)
        self.symbol = symbol
        self.order_id = order_id


@dataclass(frozen=True, slots=True)
class Ack:
    """The broker acknowledged the order: it will be matched (or rejected by the book, which
    the order_status stream reports). `duplicate`: an earlier identical submission was
    acknowledged and this one produced nothing."""

    action: str
    symbol: str
    order_id: str
    user_id: str
    topic: str
    partition: int
    offset: int
    route_epoch: int
    duplicate: bool = False

    def json(self) -> dict[str, Any]:
        return {
            "type": "ack",
            "status": "ACCEPTED",
            "action": self.action,
            "symbol": self.symbol,
            "order_id": self.order_id,
            "user_id": self.user_id,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "route_epoch": self.route_epoch,
            "duplicate": self.duplicate,
        }


def fingerprint(symbol: str, command: Command) -> str:
    """Identifies an order's contents: a retry has the same, a reused id another."""
    return hashlib.blake2b(repr((symbol, command)).encode(), digest_size=16).hexdigest()


class Delivery:
    """Waits for one record's acknowledgement, serving the producer's callbacks meanwhile
    (several threads may wait at once: whichever polls runs everyone's callbacks)."""

    __slots__ = ("error", "offset", "partition")

    def __init__(self) -> None:
        self.error: Any = None
        self.offset = -1
        self.partition = -1

    def __call__(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.error = err
        else:
            self.partition = msg.partition()
            self.offset = msg.offset()

    @property
    def done(self) -> bool:
        return self.error is not None or self.offset >= 0


def produce_confirmed(
    producer: Any, topic: str, partition: int, key: bytes, value: bytes, timeout_s: float
) -> tuple[int, int]:
    """Produce and wait for the broker's acknowledgement: (partition, offset). Raises
    TimeoutError (outcome unknown) or RuntimeError (definitely not written)."""
    delivery = Delivery()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            producer.produce(topic, value, key, partition, on_delivery=delivery)
            break
        except BufferError:
            if time.monotonic() > deadline:
                raise RuntimeError("producer queue full") from None
            producer.poll(0.01)
    while not delivery.done:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no acknowledgement within {timeout_s:.1f} s")
        producer.poll(min(remaining, 0.005))
    if delivery.error is not None:
        raise RuntimeError(str(delivery.error))
    return delivery.partition, delivery.offset


class OrderRouter:
    def __init__(
        self,
        r: redis.Redis,
        producer: Any,
        *,
        limits: PreTradeLimits | None = None,
        balance_check: bool = False,
        auto_list: bool = False,
        delivery_timeout_s: float = 5.0,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.r = r
        self.producer = producer
        self.records = OrderRecords(r)
        self.limits = limits or PreTradeLimits({})
        self.balance_check = balance_check
        self.auto_list = auto_list
        self.delivery_timeout_s = delivery_timeout_s
        self.inflight_ms = int(delivery_timeout_s * 2000)
        self.clock_ns = clock_ns

    # ------------------------------------------------------------------ requests

    def submit(self, user_id: str, payload: Any, action: Action | None = None) -> Ack:
        """An ADD or REPLACE (or, with `action`, whatever it says) from `user_id`."""
        if not isinstance(payload, dict):
            raise InvalidOrderError(Reason.MALFORMED, "an order must be a JSON object")
        obj = dict(payload)
        if action is not None:
            obj["action"] = action.name
        if obj.get("user_id") is None:
            obj["user_id"] = user_id
        request = decode_order(obj)
        symbol, command = request.symbol, request.command
        action_code, order_id, named_user = command[0], command[1], command[2]
        if named_user != user_id:
            raise RefusedError(
                Reason.USER_MISMATCH,
                "user_id must be the authenticated user",
                symbol=symbol,
                order_id=order_id,
            )
        refusal = self.limits.check(symbol, command)
        if refusal is not None:
            raise RefusedError(refusal.reason, refusal.detail, symbol=symbol, order_id=order_id)
        ts = obj.get("client_ts_ns")
        client_ts = ts if isinstance(ts, int) and not isinstance(ts, bool) and ts > 0 else 0
        if action_code == Action.ADD:
            return self._add(symbol, command, client_ts)
        if action_code == Action.REPLACE and self.balance_check:
            raise RefusedError(
                Reason.INSUFFICIENT_BALANCE,
                "REPLACE is not available with balance checks: cancel and add",
                symbol=symbol,
                order_id=order_id,
            )
        return self._send(symbol, command, client_ts, self._route(symbol, order_id))

    def cancel(self, user_id: str, order_id: str, symbol: str = "") -> Ack:
        """Cancel one of the user's orders; without `symbol` it comes from the order's
        record (orders placed through this router)."""
        if not symbol:
            record = self.records.read(user_id, order_id)
            if record is None:
                raise RefusedError(
                    Reason.UNKNOWN_ORDER, "no such order of this user", order_id=order_id
                )
            symbol = record["symbol"]
        return self.submit(user_id, {"symbol": symbol, "order_id": order_id}, action=Action.CANCEL)

    def status(self, user_id: str, order_id: str) -> dict[str, Any]:
        """The order's record as the client sees it (GET /orders/{id})."""
        record = self.records.read(user_id, order_id)
        if record is None:
            raise RefusedError(
                Reason.UNKNOWN_ORDER, "no such order of this user", order_id=order_id
            )
        out: dict[str, Any] = {
            "type": "order",
            "order_id": order_id,
            "user_id": user_id,
            "symbol": record.get("symbol", ""),
            "side": Side(int(record["side"])).name if record.get("side") else None,
            "order_type": (OrderType(int(record["type"])).name if record.get("type") else None),
            "price": int(record.get("price", 0)),
            "quantity": int(record.get("quantity", 0)),
            "routing": record.get("state", ""),
            "status": record.get("status"),
            "filled": int(record.get("filled", 0)),
            "leaves": int(record.get("leaves", 0)),
            "seq": int(record.get("seq", 0)),
        }
        if record.get("reason") and record["reason"] != Reason.NONE.name:
            out["reason"] = record["reason"]
        if "offset" in record:
            out.update(
                partition=int(record["partition"]),
                offset=int(record["offset"]),
                route_epoch=int(record["epoch"]),
            )
        return out

    # ------------------------------------------------------------------ the path

    def _add(self, symbol: str, command: Command, client_ts: int) -> Ack:
        _, order_id, user_id, side, order_type, _, _, price, quantity = command
        asset, unit = self._reservation(symbol, command) if self.balance_check else ("", 0)
        fp = fingerprint(symbol, command)
        claim = None
        for _ in range(2):
            claim = self.records.claim(
                symbol=symbol,
                user_id=user_id,
                order_id=order_id,
                fingerprint=fp,
                now_ms=self.clock_ns() // 1_000_000,
                inflight_ms=self.inflight_ms,
                side=side,
                price=price,
                quantity=quantity,
                order_type=order_type,
                reserve_asset=asset,
                reserve_unit=unit,
            )
            if claim.outcome != "NO_ROUTE" or not self.auto_list:
                break
            self._list(symbol, order_id)
        assert claim is not None
        outcome = claim.outcome
        if outcome == "ACCEPTED":
            return Ack(
                "ADD",
                symbol,
                order_id,
                user_id,
                claim.topic,
                claim.partition,
                claim.offset,
                claim.epoch,
                duplicate=True,
            )
        if outcome != "GO":
            reason, detail = {
                "NO_ROUTE": (Reason.UNKNOWN_SYMBOL, f"{symbol} is not listed"),
                "DUPLICATE": (
                    Reason.DUPLICATE_ORDER_ID,
                    "order_id already used by this user for another order",
                ),
                "IN_FLIGHT": (
                    Reason.ORDER_IN_FLIGHT,
                    "this order is being submitted by another request; retry",
                ),
                "INSUFFICIENT": (Reason.INSUFFICIENT_BALANCE, claim.detail),
            }[outcome]
            raise RefusedError(reason, detail, symbol=symbol, order_id=order_id)
        assert claim.route is not None
        try:
            ack = self._send(symbol, command, client_ts, claim.route)
        except RefusedError:
            self.records.abandon(user_id, order_id, fp)
            raise
        except TimeoutError as exc:  # may yet be written: keep the claim until it lapses
            raise RefusedError(
                Reason.NOT_DELIVERED, str(exc), symbol=symbol, order_id=order_id
            ) from exc
        self.records.confirm(
            user_id, order_id, ack.topic, ack.partition, ack.offset, ack.route_epoch
        )
        return ack

    def _reservation(self, symbol: str, command: Command) -> tuple[str, int]:
        """(asset, amount per lot) an ADD reserves."""
        _, order_id, _, side, order_type, _, _, price, _ = command
        if side == Side.SELL:
            return symbol, 1
        if order_type == OrderType.MARKET:
            ceiling = self.limits.of(symbol).price_max
            if not ceiling:
                raise RefusedError(
                    Reason.INSUFFICIENT_BALANCE,
                    "a MARKET buy needs a price_max in the limits to reserve against",
                    symbol=symbol,
                    order_id=order_id,
                )
            return CASH, ceiling
        return CASH, price

    def _route(self, symbol: str, order_id: str) -> Route:
        found = route.lookup(self.r, symbol)
        if found is None and self.auto_list:
            found = self._list(symbol, order_id)
        if found is None:
            raise RefusedError(
                Reason.UNKNOWN_SYMBOL, f"{symbol} is not listed", symbol=symbol, order_id=order_id
            )
        return found

    def _list(self, symbol: str, order_id: str) -> Route:
        try:
            return route.list_symbol(self.r, symbol)
        except route.NoEngineError as exc:
            raise RefusedError(exc.reason, exc.detail, symbol=symbol, order_id=order_id) from exc

    def _send(self, symbol: str, command: Command, client_ts: int, found: Route) -> Ack:
        action, order_id, user_id = command[0], command[1], command[2]
        topic = TOPIC_PENDING_ORDERS if found.status == MIGRATING else TOPIC_ORDERS
        value = encode_order(
            symbol,
            command,
            route_epoch=found.epoch,
            client_ts_ns=client_ts or self.clock_ns(),
        )
        try:
            partition, offset = produce_confirmed(
                self.producer,
                topic,
                found.partition,
                symbol.encode(),
                value,
                self.delivery_timeout_s,
            )
        except RuntimeError as exc:
            raise RefusedError(
                Reason.NOT_DELIVERED, str(exc), symbol=symbol, order_id=order_id
            ) from exc
        return Ack(
            Action(action).name,
            symbol,
            order_id,
            user_id,
            topic,
            partition,
            offset,
            found.epoch,
        )


__all__ = ["Ack", "OrderRouter", "RefusedError", "fingerprint", "produce_confirmed"]
