"""Client JSON <-> book commands, and book events -> client JSON. The only home of dicts.

Client order (one JSON object): action ADD|CANCEL|REPLACE, symbol, order_id, user_id, side
BUY|SELL, type LIMIT|MARKET|STOP|STOP_LIMIT, tif GTC|IOC|FOK, post_only, price, quantity,
stop_price (STOP, STOP_LIMIT), display_quantity (an iceberg), all_or_none. Omitted optional
fields take LIMIT, GTC, false, 0. Enum names are case-insensitive; ids may be strings or
integers (kept as strings); price and quantity must be JSON integers.
"""

import json
from dataclasses import dataclass
from typing import Any

from hotshard import commands
from hotshard.commands import Command
from hotshard.domain import (
    MAX_ID_LENGTH,
    Action,
    Liquidity,
    OrderType,
    Side,
    Status,
    TimeInForce,
    is_id,
)
from hotshard.events import FILL, STATUS, TRADE, DepthUpdate, Event
from hotshard.reasons import HotshardError, Reason

MAX_VALUE = (1 << 62) - 1


class InvalidOrderError(HotshardError):
    """A client order that cannot become a command. Carries what could be read of it, so
    the rejection can still name the order."""

    def __init__(
        self,
        reason: Reason,
        detail: str,
        *,
        symbol: str = "",
        order_id: str = "",
        user_id: str = "",
    ) -> None:
        super().__init__(reason, detail)
        self.symbol = symbol
        self.order_id = order_id
        self.user_id = user_id


@dataclass(frozen=True, slots=True)
class OrderRequest:
    symbol: str
    command: Command


def decode_order_json(text: str | bytes) -> OrderRequest:
    """Parse one JSON order; raises InvalidOrderError with a reason code."""
    try:
        obj = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidOrderError(Reason.MALFORMED, f"not JSON: {exc}") from exc
    return decode_order(obj)


def decode_order(obj: Any) -> OrderRequest:
    if not isinstance(obj, dict):
        raise InvalidOrderError(Reason.MALFORMED, "an order must be a JSON object")
    symbol = _text(obj, "symbol")
    order_id = _text(obj, "order_id")
    user_id = _text(obj, "user_id")

    def fail(reason: Reason, detail: str) -> InvalidOrderError:
        return InvalidOrderError(reason, detail, symbol=symbol, order_id=order_id, user_id=user_id)

    for name, value in (("symbol", symbol), ("order_id", order_id), ("user_id", user_id)):
        if not value:
            reason = Reason.MISSING_FIELD if obj.get(name) is None else Reason.BAD_ID
            raise fail(reason, f"{name} is required: 1-{MAX_ID_LENGTH} printable characters")
    action = _enum(obj, "action", Action, Action.ADD, Reason.BAD_ACTION, fail)
    if action == Action.CANCEL:
        return OrderRequest(symbol, commands.cancel(order_id, user_id))
    if action == Action.REPLACE:
        price = _int(obj, "price", fail)
        quantity = _int(obj, "quantity", fail)
        return OrderRequest(symbol, commands.replace(order_id, user_id, price, quantity))
    if "side" not in obj:
        raise fail(Reason.MISSING_FIELD, "side is required")
    side = _enum(obj, "side", Side, None, Reason.BAD_SIDE, fail)
    order_type = _enum(obj, "type", OrderType, OrderType.LIMIT, Reason.BAD_TYPE, fail)
    tif = _enum(obj, "tif", TimeInForce, TimeInForce.GTC, Reason.BAD_TIME_IN_FORCE, fail)
    post_only = obj.get("post_only", False)
    if not isinstance(post_only, bool):
        raise fail(Reason.MALFORMED, "post_only must be true or false")
    unpriced = order_type in (OrderType.MARKET, OrderType.STOP)
    price = 0 if unpriced and "price" not in obj else _int(obj, "price", fail)
    quantity = _int(obj, "quantity", fail)
    stop = order_type in (OrderType.STOP, OrderType.STOP_LIMIT)
    stop_price = _int(obj, "stop_price", fail) if stop or "stop_price" in obj else 0
    display_quantity = _int(obj, "display_quantity", fail) if "display_quantity" in obj else 0
    all_or_none = obj.get("all_or_none", False)
    if not isinstance(all_or_none, bool):
        raise fail(Reason.MALFORMED, "all_or_none must be true or false")
    command = commands.add(
        order_id,
        user_id,
        side,
        price,
        quantity,
        order_type=order_type,
        tif=tif,
        post_only=post_only,
        stop_price=stop_price,
        display_quantity=display_quantity,
        all_or_none=all_or_none,
    )
    return OrderRequest(symbol, command)


def _text(obj: dict[str, Any], name: str) -> str:
    """A short printable string field (an integer counts as its decimal text), or '' when
    absent or unusable: the caller rejects it, still naming what it could read."""
    value = obj.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value if isinstance(value, str) and is_id(value) else ""


def _enum(
    obj: dict[str, Any], name: str, enum: Any, default: Any, reason: Reason, fail: Any
) -> Any:
    value = obj.get(name)
    if value is None:
        if default is None:
            raise fail(Reason.MISSING_FIELD, f"{name} is required")
        return default
    if isinstance(value, str):
        member = enum.__members__.get(value.upper())
        if member is not None:
            return member
    choices = "|".join(enum.__members__)
    raise fail(reason, f"{name} must be one of {choices}")


def _int(obj: dict[str, Any], name: str, fail: Any) -> int:
    if name not in obj:
        raise fail(Reason.MISSING_FIELD, f"{name} is required")
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(Reason.MALFORMED, f"{name} must be an integer (ticks or lots)")
    if not -MAX_VALUE <= value <= MAX_VALUE:
        raise fail(Reason.VALUE_OUT_OF_RANGE, f"{name} is out of range")
    return value


def event_json(symbol: str, event: Event) -> dict[str, Any]:
    """A book event as the client sees it (field names as in docs/FORMATS.md)."""
    kind = event[0]
    if kind == STATUS:
        _, seq, order_id, user_id, status, reason, filled, leaves = event
        out: dict[str, Any] = {
            "type": "order_status",
            "symbol": symbol,
            "seq": seq,
            "order_id": order_id,
            "user_id": user_id,
            "status": Status(status).name,
        }
        if reason:
            out["reason"] = Reason(reason).name
        out["filled"] = filled
        out["leaves"] = leaves
        return out
    if kind == FILL:
        _, seq, order_id, user_id, price, qty, liquidity, trade_id = event
        return {
            "type": "fill",
            "symbol": symbol,
            "seq": seq,
            "order_id": order_id,
            "user_id": user_id,
            "price": price,
            "quantity": qty,
            "liquidity": Liquidity(liquidity).name,
            "trade_id": trade_id,
        }
    if kind == TRADE:
        _, seq, maker, taker, price, qty, taker_side, _trade_id = event
        return {
            "type": "trade",
            "symbol": symbol,
            "seq": seq,
            "price": price,
            "quantity": qty,
            "maker_order_id": maker,
            "taker_order_id": taker,
            "taker_side": Side(taker_side).name,
        }
    raise ValueError(f"unknown event kind {kind}")


def depth_json(
    symbol: str, seq: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]]
) -> dict[str, Any]:
    return {
        "type": "depth",
        "symbol": symbol,
        "seq": seq,
        "bids": [list(level) for level in bids],
        "asks": [list(level) for level in asks],
    }


def depth_update_json(symbol: str, update: DepthUpdate) -> dict[str, Any]:
    """Changed levels; a periodic top-N snapshot says so (`snapshot`: replace, not merge)."""
    out = depth_json(symbol, update.seq, update.bids, update.asks)
    if update.snapshot:
        out["snapshot"] = True
    return out


def dumps(obj: dict[str, Any]) -> str:
    """Compact, stable JSON: the same event is always the same bytes."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
