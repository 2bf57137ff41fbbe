"""Pre-trade checks the router applies before an order reaches Kafka.

A limits file is JSON keyed by symbol, with "*" for every other symbol:

    {"*": {"max_quantity": 1000000}, "AAPL": {"tick": 5, "lot": 1, "price_min": 1,
     "price_max": 100000, "max_quantity": 10000, "max_notional": 500000000}}

Every key is optional. The same file can be the engine's symbols config (`--symbols`): the
engine ignores `max_notional` and "*", the router the engine's own keys
(`self_trade_prevention`, `dedup_window`). Besides these, the router refuses what no book
could accept (non-positive quantity, a LIMIT without a positive price, a price off the tick
or a quantity off the lot) so it never reaches the broker. GET /instruments answers these
rules for every listed symbol.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hotshard.commands import Command
from hotshard.domain import Action, OrderType
from hotshard.reasons import Reason

DEFAULT = "*"
ENGINE_ONLY = ("self_trade_prevention", "dedup_window")


@dataclass(frozen=True, slots=True)
class Limits:
    tick: int = 1
    lot: int = 1
    price_min: int = 1
    price_max: int = 0  # 0: no upper band
    max_quantity: int = 0  # 0: unlimited
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
        """None if the command passes; otherwise why not."""
        action, _, _, _, order_type, _, _, price, quantity = command[:9]
        if action == Action.CANCEL:
            return None
        if quantity <= 0:
            return Refusal(Reason.NON_POSITIVE_QUANTITY, "quantity must be > 0")
        priced = (
            action == Action.REPLACE
            or order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT)
            or price != 0
        )
        if priced and price <= 0:
            return Refusal(Reason.NON_POSITIVE_PRICE, "price must be > 0")
        limits = self.of(symbol)
        if quantity % limits.lot:
            return Refusal(
                Reason.QUANTITY_OFF_LOT, f"quantity must be a multiple of the lot {limits.lot}"
            )
        if priced and price % limits.tick:
            return Refusal(
                Reason.PRICE_OFF_TICK, f"price must be a multiple of the tick {limits.tick}"
            )
        if limits.max_quantity and quantity > limits.max_quantity:
            return Refusal(
                Reason.QUANTITY_ABOVE_MAX,
                f"quantity {quantity} is above the maximum {limits.max_quantity}",
            )
        if priced:
            if price < limits.price_min or (limits.price_max and price > limits.price_max):
                band = f"[{limits.price_min}, {limits.price_max or 'no max'}]"
                return Refusal(
                    Reason.PRICE_OUTSIDE_BAND, f"price {price} is outside the band {band}"
                )
            if limits.max_notional and price * quantity > limits.max_notional:
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
