"""PreTradeLimits.check at every boundary, written against the mutants mutation testing
left alive (docs/MUTATION.md): each rule's edge is accepted on one side and refused, with
its own reason, on the other; rules apply in the book's order."""

import pytest

from hotshard.commands import Command, add, cancel, replace
from hotshard.domain import MAX_PRICE, MAX_QUANTITY, OrderType, Side
from hotshard.edge.limits import Limits, PreTradeLimits, instrument_json
from hotshard.reasons import Reason

BUY = Side.BUY
RULES = PreTradeLimits.from_json(
    {
        "AAPL": {"tick": 5, "lot": 10, "price_min": 100, "price_max": 1000},
        "CAP": {"max_quantity": 50, "max_notional": 5000},
    }
)


def reason(symbol: str, command: Command) -> Reason | None:
    refusal = RULES.check(symbol, command)
    return None if refusal is None else refusal.reason


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (add("o", "u", BUY, 100, 10), None),  # both band ends are inside
        (add("o", "u", BUY, 1000, 10), None),
        (add("o", "u", BUY, 95, 10), Reason.PRICE_OUTSIDE_BAND),
        (add("o", "u", BUY, 1005, 10), Reason.PRICE_OUTSIDE_BAND),
        (add("o", "u", BUY, 102, 10), Reason.PRICE_OFF_TICK),
        (add("o", "u", BUY, 100, 15), Reason.QUANTITY_OFF_LOT),
        (add("o", "u", BUY, 100, 0), Reason.NON_POSITIVE_QUANTITY),
        (add("o", "u", BUY, 100, -10), Reason.NON_POSITIVE_QUANTITY),
        (add("o", "u", BUY, 0, 10), Reason.NON_POSITIVE_PRICE),
        (add("o", "u", BUY, -5, 10), Reason.NON_POSITIVE_PRICE),
        # size is judged before price, as the book does
        (add("o", "u", BUY, 102, 15), Reason.QUANTITY_OFF_LOT),
        (add("o", "u", BUY, 0, 0), Reason.NON_POSITIVE_QUANTITY),
        # a MARKET order has no price to judge
        (add("o", "u", BUY, 0, 10, order_type=OrderType.MARKET), None),
        (add("o", "u", BUY, 3, 10, order_type=OrderType.MARKET), None),
        (replace("o", "u", 100, 10), None),
        (replace("o", "u", 1005, 10), Reason.PRICE_OUTSIDE_BAND),
        (replace("o", "u", 100, 2**40), Reason.VALUE_OUT_OF_RANGE),
        (cancel("o", "u"), None),
    ],
)
def test_instrument_rules_at_their_edges(command, expected):
    assert reason("AAPL", command) == expected


def test_the_books_own_ceilings_apply_without_a_limits_file():
    rules = PreTradeLimits({})
    assert rules.check("ANY", add("o", "u", BUY, 1, MAX_QUANTITY)) is None
    over = rules.check("ANY", add("o", "u", BUY, 1, MAX_QUANTITY + 1))
    assert over is not None and over.reason == Reason.VALUE_OUT_OF_RANGE
    assert rules.check("ANY", add("o", "u", BUY, MAX_PRICE, 1)) is None


def test_the_routers_own_caps_are_inclusive_and_come_after_the_books_rules():
    assert reason("CAP", add("o", "u", BUY, 100, 50)) is None  # 50 lots, notional 5000
    assert reason("CAP", add("o", "u", BUY, 100, 51)) == Reason.QUANTITY_ABOVE_MAX
    assert reason("CAP", add("o", "u", BUY, 101, 50)) == Reason.NOTIONAL_ABOVE_MAX
    assert reason("CAP", add("o", "u", BUY, 0, 51)) == Reason.NON_POSITIVE_PRICE
    market = add("o", "u", BUY, 0, 50, order_type=OrderType.MARKET)
    assert reason("CAP", market) is None  # no price, no notional


def test_stop_prices_follow_the_tick_and_band():
    stop = OrderType.STOP
    assert reason("AAPL", add("o", "u", BUY, 0, 10, order_type=stop, stop_price=500)) is None
    for bad in (0, 502, 95, 1005):
        got = reason("AAPL", add("o", "u", BUY, 0, 10, order_type=stop, stop_price=bad))
        assert got == Reason.BAD_STOP_PRICE, bad
    limit = add("o", "u", BUY, 500, 10, order_type=OrderType.STOP_LIMIT, stop_price=1000)
    assert reason("AAPL", limit) is None


def test_limits_are_validated_when_read():
    for bad in (
        {"tick": 0},
        {"lot": 0},
        {"price_min": -1},
        {"max_quantity": True},
        {"price_min": 10, "price_max": 5},
        {"unknown": 1},
    ):
        with pytest.raises(ValueError):
            PreTradeLimits.from_json({"S": bad})
    with pytest.raises(ValueError):
        PreTradeLimits.from_json(["not", "an", "object"])
    table = PreTradeLimits.from_json({"*": {"lot": 2}, "S": None, "B": {"dedup_window": 9}})
    assert table.of("OTHER") == Limits(lot=2)
    assert table.of("S") == Limits() and table.of("B") == Limits()
    assert Limits(price_min=5, price_max=5).price_max == 5  # a one-price band is allowed


# ------------------------------------------------------------------ what a client reads
# (the second mutation run's survivors, docs/MUTATION.md)

TOO_MANY, TOO_HIGH = MAX_QUANTITY + 1, MAX_PRICE + 1


@pytest.mark.parametrize(
    ("symbol", "command", "detail"),
    [
        ("AAPL", add("o", "u", BUY, 100, 0), "quantity must be > 0"),
        ("ANY", add("o", "u", BUY, 1, TOO_MANY), f"quantity {TOO_MANY} is above {MAX_QUANTITY}"),
        ("AAPL", add("o", "u", BUY, 100, 15), "quantity must be a multiple of the lot 10"),
        ("AAPL", add("o", "u", BUY, 0, 10), "price must be > 0"),
        ("AAPL", add("o", "u", BUY, 102, 10), "price must be a multiple of the tick 5"),
        ("AAPL", add("o", "u", BUY, 1005, 10), "price 1005 is outside the band [100, 1000]"),
        (
            "ANY",
            add("o", "u", BUY, TOO_HIGH, 1),
            f"price {TOO_HIGH} is outside the band [1, {MAX_PRICE}]",
        ),
        (
            "AAPL",
            add("o", "u", BUY, 0, 10, order_type=OrderType.STOP, stop_price=95),
            "stop_price must be a multiple of 5 in [100, 1000]",
        ),
        ("CAP", add("o", "u", BUY, 100, 51), "quantity 51 is above the maximum 50"),
        ("CAP", add("o", "u", BUY, 101, 50), "notional 5050 is above the maximum 5000"),
    ],
)
def test_each_refusal_says_what_the_rule_is(symbol, command, detail):
    refusal = RULES.check(symbol, command)
    assert refusal is not None and refusal.detail == detail


def test_the_default_limits_apply_to_every_symbol_not_named():
    rules = PreTradeLimits.from_json({"*": {"lot": 5, "max_quantity": 20}, "S": {}})
    assert reason("X", add("o", "u", BUY, 1, 7)) is None  # RULES has no default of its own
    refusal = rules.check("X", add("o", "u", BUY, 1, 7))
    assert refusal is not None and refusal.reason == Reason.QUANTITY_OFF_LOT
    assert rules.check("S", add("o", "u", BUY, 1, 7)) is None  # a named symbol: its own
    assert "*" not in rules.by_symbol and rules.default == Limits(lot=5, max_quantity=20)
    assert PreTradeLimits.load(None).check("X", add("o", "u", BUY, 1, 7)) is None


def test_a_limits_file_names_the_symbol_whose_rules_are_wrong():
    with pytest.raises(ValueError, match=r"^limits of S: ") as caught:
        PreTradeLimits.from_json({"S": {"tick": 1, "unknown": 1}})
    assert "unknown" in str(caught.value)
    with pytest.raises(ValueError, match=r"^limits must be a JSON object keyed by symbol$"):
        PreTradeLimits.from_json([])
    for bad, message in (
        ({"tick": -1}, "tick must be an integer >= 0, got -1"),
        ({"lot": "2"}, "lot must be an integer >= 0, got '2'"),
        ({"tick": 0}, "tick and lot must be >= 1, got 0, 1"),
        ({"lot": 0}, "tick and lot must be >= 1, got 1, 0"),
        ({"price_min": 10, "price_max": 9}, "price_max 9 is below price_min 10"),
    ):
        with pytest.raises(ValueError) as caught:
            Limits(**bad)
        assert str(caught.value) == message
    assert Limits(price_min=10, price_max=0).price_max == 0  # 0: no band of its own


def test_the_engines_keys_are_ignored_by_the_router():
    rules = PreTradeLimits.from_json({"S": {"self_trade_prevention": True, "dedup_window": 5}})
    assert rules.of("S") == Limits()


def test_instruments_answer_every_rule_of_a_symbol():
    limits = Limits(tick=5, lot=10, price_min=100, price_max=1000, max_quantity=50, max_notional=9)
    assert instrument_json("AAPL", limits) == {
        "symbol": "AAPL",
        "tick": 5,
        "lot": 10,
        "price_min": 100,
        "price_max": 1000,
        "max_quantity": 50,
        "max_notional": 9,
    }


def test_without_a_default_every_unnamed_symbol_has_the_books_rules_only():
    rules = PreTradeLimits.from_json({"S": {"lot": 5}})
    assert rules.of("X") == Limits()
    assert rules.check("X", add("o", "u", BUY, 7, 3)) is None


def test_a_stop_price_is_accepted_at_both_ends_of_the_band_and_never_at_zero():
    stop = OrderType.STOP
    for at in (100, 1000):  # AAPL's band [100, 1000], tick 5
        assert reason("AAPL", add("o", "u", BUY, 0, 10, order_type=stop, stop_price=at)) is None
    assert (
        PreTradeLimits({}).check("X", add("o", "u", BUY, 0, 1, order_type=stop, stop_price=1))
        is None
    )
    free = PreTradeLimits({}, Limits(price_min=0))  # a band from 0 still needs a stop > 0
    refusal = free.check("X", add("o", "u", BUY, 0, 1, order_type=stop, stop_price=0))
    assert refusal is not None and refusal.reason == Reason.BAD_STOP_PRICE
