"""Pre-trade checks the router applies before an order reaches Kafka.

A limits file is JSON keyed by symbol, with "*" for every other symbol:

    {"*": {"max_quantity": 1000000}, "AAPL": {"tick": 5, "lot": 1, "price_min": 1,
     "price_max": 100000, "max_quantity": 10000, "max_notional": 500000000}}

Every key is optional. The same file can be the engine's symbols config (`--symbols`): the
engine ignores `max_notional` and "*", the router the engine's own keys
(`self_trade_prevention`, `dedup_window`). Besides these, the router refuses what no book
could accept, as the book's instrument rules refuse it, in the book's order (size, then
price) and with the book's reason codes, so it never reaches the broker: non-positive
quantity, a quantity above hotshard.domain.MAX_QUANTITY (VALUE_OUT_OF_RANGE) or off the
lot, a LIMIT without a positive price, a price off the tick or outside the band (the book's
[1, MAX_PRICE] without a price_max). A router's own `max_quantity` tighter than the book's
is QUANTITY_ABOVE_MAX. GET /instruments answers these rules for every listed symbol.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hotshard.commands import Command
from hotshard.domain import MAX_PRICE, MAX_QUANTITY, Action, OrderType
from hotshard.reasons import Reason

DEFAULT = "*"
ENGINE_ONLY = ("self_trade_prevention", "dedup_window")


@dataclass(frozen=True, slots=True)
class Limits:
    tick: int = 1
    lot: int = 1
    price_min: int = 1
    price_max: int = 0  # 0: no band of its own (the book's MAX_PRICE)
    max_quantity: int = 0  # 0: the book's MAX_QUANTITY
    max_notional: int = 0  # price * quantity in ticks * lots; 0: unlimited

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{f.name} must be an integer >= 0, got {value!r}")
        if self.tick < 1 or self.lot < 1:
            raise ValueError(f"tick and lot must be >= 1, got {self.tick}, {self.lot}")
        if self.price_max and self.price_max < self.price_min:
            raise ValueError(f"price_max {self.price_max} is below price_min {self.price_min}")


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class PreTradeLimits:
    """The pre-trade limits of every symbol (a default for the unnamed ones), and the check
    the router applies before an order reaches Kafka."""

    by_symbol: Mapping[str, Limits]
    default: Limits = Limits()

    @classmethod
    def from_json(cls, raw: Any) -> "PreTradeLimits":
        if not isinstance(raw, dict):
            raise ValueError("limits must be a JSON object keyed by symbol")
        table = {}
        for symbol, spec in raw.items():
            try:
                rules = {k: v for k, v in (spec or {}).items() if k not in ENGINE_ONLY}
                table[str(symbol)] = Limits(**rules)
            except TypeError as exc:
                raise ValueError(f"limits of {symbol}: {exc}") from exc
        default = table.pop(DEFAULT, Limits())
        return cls(table, default)

    @classmethod
    def load(cls, path: Path | None) -> "PreTradeLimits":
        if path is None:
            return cls({})
        return cls.from_json(json.loads(path.read_text()))

    def of(self, symbol: str) -> Limits:
        return self.by_symbol.get(symbol, self.default)

    def check(self, symbol: str, command: Command) -> Refusal | None:
        """None if the command passes; otherwise why not (the book's rules first, in its
        order: size, then price, then the stop price; then the router's own)."""
        action, _, _, _, order_type, _, _, price, quantity = command[:9]
        stop = command[9] if len(command) > 9 else 0
        if action == Action.CANCEL:
            return None
        limits = self.of(symbol)
        if quantity <= 0:
            return Refusal(Reason.NON_POSITIVE_QUANTITY, "quantity must be > 0")
        if quantity > MAX_QUANTITY:
            return Refusal(
                Reason.VALUE_OUT_OF_RANGE, f"quantity {quantity} is above {MAX_QUANTITY}"
            )
        if quantity % limits.lot:
            return Refusal(
                Reason.QUANTITY_OFF_LOT, f"quantity must be a multiple of the lot {limits.lot}"
            )
        priced = action == Action.REPLACE or order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        if priced and price <= 0:
            return Refusal(Reason.NON_POSITIVE_PRICE, "price must be > 0")
        if priced and price % limits.tick:
            return Refusal(
                Reason.PRICE_OFF_TICK, f"price must be a multiple of the tick {limits.tick}"
            )
        price_max = limits.price_max or MAX_PRICE
        if priced and not limits.price_min <= price <= price_max:
            band = f"[{limits.price_min}, {price_max}]"
            return Refusal(Reason.PRICE_OUTSIDE_BAND, f"price {price} is outside the band {band}")
        if order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and (
            stop <= 0 or stop % limits.tick or not limits.price_min <= stop <= price_max
        ):
            return Refusal(
                Reason.BAD_STOP_PRICE,
                f"stop_price must be a multiple of {limits.tick} in [{limits.price_min}, "
                f"{price_max}]",
            )
        if limits.max_quantity and quantity > limits.max_quantity:
            return Refusal(
                Reason.QUANTITY_ABOVE_MAX,
                f"quantity {quantity} is above the maximum {limits.max_quantity}",
            )
        if priced and limits.max_notional and price * quantity > limits.max_notional:
            return Refusal(
                Reason.NOTIONAL_ABOVE_MAX,
                f"notional {price * quantity} is above the maximum {limits.max_notional}",
            )
        return None


def instrument_json(symbol: str, limits: Limits) -> dict[str, Any]:
    """A symbol's trading rules as GET /instruments answers them (0: no limit)."""
    return {
        "symbol": symbol,
        "tick": limits.tick,
        "lot": limits.lot,
        "price_min": limits.price_min,
        "price_max": limits.price_max,
        "max_quantity": limits.max_quantity,
        "max_notional": limits.max_notional,
    }
