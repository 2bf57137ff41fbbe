"""The migration check's judge (tests/migration/harness.py) on pushes built by hand: it
must replay every command the hot symbol's book decided, acknowledged or in doubt, and
still see a pushed event the replay does not produce.

The case that matters: a router once answered STALE_ROUTE for a pending-orders record
produced while `pending-end:{S}:{E}` held no marker offset yet; that record was before the
PENDING_END marker, so the target replayed it: an order the client was told was refused
took effect, and its retry came back REJECTED(DUPLICATE_ORDER_ID). The router now waits for
the marker's offset (hotshard/route.py pending_ended), and the judge reports both: the
refusal that took effect, and the order decided twice."""

import json
from typing import Any

from engine.book import Market
from engine.replay import ReplayStats, replay_lines
from tests.migration.harness import HOT, Load, judge


def frame(order_id: str, side: str, price: int, quantity: int) -> dict[str, Any]:
    return {
        "action": "order",
        "symbol": HOT,
        "order_id": order_id,
        "user_id": order_id.split("-", maxsplit=1)[0],
        "side": side,
        "type": "LIMIT",
        "tif": "GTC",
        "price": price,
        "quantity": quantity,
    }


def pushes_of(frames: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """What the book pushes applying `frames` in order (to one connection)."""
    lines = [json.dumps({**f, "action": "ADD"}) for f in frames]
    events = replay_lines(lines, Market(open_listing=True), 0, ReplayStats())
    return [(0, {"type": str(e["type"]).upper(), "data": dict(e)}) for e in events]


MAKER = frame("t3-615", "SELL", 100, 1)
TAKER = frame("t2-601", "BUY", 100, 1)  # the one the race closure refused
AFTER = frame("t2-602", "BUY", 99, 2)


def load_of(frames: list[dict[str, Any]], refused: list[str]) -> Load:
    load = Load(pushes=pushes_of(frames))
    for f in frames:
        load.sent[f["order_id"]] = f
        if f["order_id"] not in refused:
            load.acks[f["order_id"]] = (HOT, f)
    load.refused = [
        {"type": "error", "reason": "STALE_ROUTE", "symbol": HOT, "order_id": oid}
        for oid in refused
    ]
    return load


def test_an_order_refused_stale_route_that_the_book_applied_is_reported() -> None:
    load = load_of([MAKER, TAKER, AFTER], refused=[TAKER["order_id"]])
    verdict = judge(load)
    assert any("t2-601 was refused (STALE_ROUTE) but took effect" in p for p in verdict.problems)


def test_its_retry_absorbed_as_a_duplicate_is_reported() -> None:
    """The client retried the refused order and its retry was acknowledged."""
    load = load_of([MAKER, TAKER, TAKER, AFTER], refused=[])
    reasons = [p["data"].get("reason") for _, p in load.pushes]
    assert "DUPLICATE_ORDER_ID" in reasons
    verdict = judge(load)
    assert any("t2-601 decided twice" in p for p in verdict.problems), verdict


def test_an_order_in_doubt_that_the_book_applied_is_replayed() -> None:
    """No answer in time, or NOT_DELIVERED: it may have reached the book (allowed)."""
    for load in (
        load_of([MAKER, TAKER, AFTER], refused=[]),
        load_of([MAKER, TAKER, AFTER], refused=[TAKER["order_id"]]),
    ):
        load.acks.pop(TAKER["order_id"], None)
        for reply in load.refused:
            reply["reason"] = "NOT_DELIVERED"
        verdict = judge(load)
        assert not verdict.problems, verdict
        assert verdict.hot_replayed == verdict.events[HOT] > 3


def test_a_pushed_event_the_replay_does_not_produce_is_reported() -> None:
    load = load_of([MAKER, TAKER, AFTER], refused=[])
    fill = next(p for _, p in load.pushes if p["type"] == "FILL")
    fill["data"]["quantity"] = fill["data"].get("quantity", 1) + 1
    verdict = judge(load)
    assert any("!= pushed" in p for p in verdict.problems), verdict


def test_an_order_applied_twice_is_reported() -> None:
    load = load_of([MAKER, AFTER], refused=[])
    seq = max(int(p["data"]["seq"]) for _, p in load.pushes)
    again = json.loads(json.dumps(next(p for _, p in load.pushes if p["type"] == "ORDER_STATUS")))
    again["data"]["seq"] = seq + 1
    load.pushes.append((0, again))
    verdict = judge(load)
    assert any("decided twice" in p for p in verdict.problems), verdict
