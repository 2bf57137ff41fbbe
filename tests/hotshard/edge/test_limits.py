"""One symbols file for the engine (--symbols) and the router (EDGE_LIMITS): each reads its
own keys; the router checks tick and lot before the broker."""

import json
from pathlib import Path

from engine.replay import load_symbols
from hotshard.commands import Command
from hotshard.domain import Action, OrderType, Side, TimeInForce
from hotshard.edge.limits import PreTradeLimits
from hotshard.reasons import Reason

FILE = {
    "*": {"max_quantity": 100},
    "AAPL": {
        "tick": 5,
        "lot": 10,
        "price_min": 5,
        "price_max": 1000,
        "max_notional": 10**6,
        "self_trade_prevention": True,
        "dedup_window": 50,
    },
}


def add(price: int, quantity: int) -> Command:
    return (
        Action.ADD,
        "o",
        "u",
        Side.BUY,
        OrderType.LIMIT,
        TimeInForce.GTC,
        False,
        price,
        quantity,
        0,
        0,
        False,
    )


def test_one_file_serves_engine_and_router(tmp_path: Path) -> None:
    path = tmp_path / "symbols.json"
    path.write_text(json.dumps(FILE))
    instruments = load_symbols(path)
    assert set(instruments) == {"AAPL"}
    assert (instruments["AAPL"].tick, instruments["AAPL"].lot) == (5, 10)
    assert instruments["AAPL"].self_trade_prevention
    limits = PreTradeLimits.load(path)
    assert (limits.of("AAPL").tick, limits.of("AAPL").max_notional) == (5, 10**6)
    assert limits.of("MSFT").max_quantity == 100
    assert limits.check("AAPL", add(10, 20)) is None
    off_tick = limits.check("AAPL", add(12, 20))
    off_lot = limits.check("AAPL", add(10, 15))
    assert off_tick is not None and off_tick.reason == Reason.PRICE_OFF_TICK
    assert off_lot is not None and off_lot.reason == Reason.QUANTITY_OFF_LOT
