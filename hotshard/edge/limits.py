"""Pre-trade checks the router applies before an order reaches Kafka.

A limits file is JSON keyed by symbol, with "*" for every other symbol:

    {"*": {"max_quantity": 1000000}, "AAPL": {"price_min": 1, "price_max": 100000,
     "max_quantity": 10000, "max_notional": 500000000}}

Every key is optional. Besides these, the router refuses what no book could accept
(non-positive quantity, a LIMIT without a positive price) so it never reaches the broker;
tick, lot and the book's own band stay the engine's to judge.
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


@dataclass(frozen=True, slots=True)
class Limits:
    price_min: int = 1
    price_max: int = 0  # 0: no upper band
    max_quantity: int = 0  # 0: unlimited
    max_notional: int = 0  # price * quantity in ticks * lots; 0: unlimited

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{f.name} must be an integer >= 0, got {value!r}")
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
                table[str(symbol)] = Limits(**(spec or {}))
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
        action, _, _, _, order_type, _, _, price, quantity = command
        if action == Action.CANCEL:
            return None
        if quantity <= 0:
            return Refusal(Reason.NON_POSITIVE_QUANTITY, "quantity must be > 0")
        priced = action == Action.REPLACE or order_type == OrderType.LIMIT or price != 0
        if priced and price <= 0:
            return Refusal(Reason.NON_POSITIVE_PRICE, "price must be > 0")
        limits = self.of(symbol)
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
