"""The migration check's judge (tests/migration/harness.py) on pushes built by hand: it
must replay every command the hot symbol's book decided, acknowledged or not, and still
see a pushed event the replay does not produce.

The case that matters: the router's race closure (hotshard/route.py pending_ended) answers
STALE_ROUTE for a pending-orders record produced while `pending-end:{S}:{E}` holds no
marker offset yet; that record is before the PENDING_END marker, so the target replays it:
an order never acknowledged takes effect (HANDOVER.md allows it; a retry is absorbed as
DUPLICATE_ORDER_ID). A judge replaying acknowledged orders only reports such a move as
diverging at the first event of that order ("replay t2-602 != pushed t3-615")."""

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


def test_an_order_refused_stale_route_that_the_book_applied_is_replayed() -> None:
    load = load_of([MAKER, TAKER, AFTER], refused=[TAKER["order_id"]])
    verdict = judge(load)
    assert not verdict.problems, verdict
    assert verdict.hot_replayed == verdict.events[HOT] > 3


def test_its_retry_absorbed_as_a_duplicate_is_no_second_effect() -> None:
    load = load_of([MAKER, TAKER, TAKER, AFTER], refused=[TAKER["order_id"]])
    reasons = [p["data"].get("reason") for _, p in load.pushes]
    assert "DUPLICATE_ORDER_ID" in reasons
    verdict = judge(load)
    assert not verdict.problems, verdict


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
