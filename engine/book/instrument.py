"""What the book needs to know about a symbol: tick, lot, price band, self-trade rule."""

from dataclasses import dataclass

from hotshard.domain import MAX_PRICE, MAX_QUANTITY

DEFAULT_DEDUP_WINDOW = 10_000


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    tick: int = 1
    lot: int = 1
    price_min: int = 1
    price_max: int = MAX_PRICE
    self_trade_prevention: bool = False
    max_quantity: int = MAX_QUANTITY
    """Largest order quantity (lots) accepted; above it VALUE_OUT_OF_RANGE. Keeps every
    level's total far inside the wire format's int64."""
    dedup_window: int = DEFAULT_DEDUP_WINDOW
    """How many ended orders' ids the book remembers to reject a reused order_id (live
    orders are always remembered); the book reserves this many from its Market's
    DedupBudget (engine.book.market)."""

    def __post_init__(self) -> None:
        if not self.symbol:
            raise ValueError("symbol must not be empty")
        if self.tick < 1 or self.lot < 1:
            raise ValueError(f"tick and lot must be >= 1, got tick={self.tick} lot={self.lot}")
        if not 1 <= self.price_min <= self.price_max <= MAX_PRICE:
            raise ValueError(
                f"price band must satisfy 1 <= min <= max <= {MAX_PRICE}, "
                f"got [{self.price_min}, {self.price_max}]"
            )
        if not 1 <= self.max_quantity <= MAX_PRICE:
            raise ValueError(f"max_quantity must be in [1, {MAX_PRICE}], got {self.max_quantity}")
        if self.dedup_window < 0:
            raise ValueError(f"dedup_window must be >= 0, got {self.dedup_window}")
