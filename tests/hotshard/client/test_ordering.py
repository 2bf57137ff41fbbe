"""hotshard.client.ordering: a user's ORDER_STATUS and FILL pushes of a symbol handed out in
seq order, whatever the interleaving of the two topics; the events come from the real book."""

import random
from typing import Any

import pytest

from engine.book import add, cancel, replace
from hotshard.client.ordering import PushOrder
from hotshard.codec import event_json
from hotshard.domain import OrderType, Side, TimeInForce
from hotshard.events import FILL, STATUS
from tests.builders import SYMBOL, book

Push = dict[str, Any]


def push(kind: str, seq: int, order_id: str = "o", **data: Any) -> Push:
    return {"type": kind, "data": {"symbol": SYMBOL, "seq": seq, "order_id": order_id, **data}}


def status(seq: int, state: str, filled: int, leaves: int, order_id: str = "o") -> Push:
    return push("ORDER_STATUS", seq, order_id, status=state, filled=filled, leaves=leaves)


def fill(seq: int, quantity: int, order_id: str = "o") -> Push:
    return push("FILL", seq, order_id, quantity=quantity)


def test_a_fill_waits_for_the_status_that_follows_it():
    order = PushOrder(hold_s=1.0)
    accepted, filled, done = status(1, "ACCEPTED", 0, 5), fill(4, 5), status(5, "FILLED", 5, 0)
    assert order.add(filled, 0.0) == []
    assert order.add(accepted, 0.0) == [accepted]  # an ACCEPTED never waits
    assert order.add(done, 0.0) == [filled, done]
    assert (order.held, order.expired, order.next_due()) == (1, 0, None)


def test_a_status_waits_for_the_fills_it_counts_and_later_statuses_behind_it():
    order = PushOrder(hold_s=1.0)
    part = status(6, "PARTIALLY_FILLED", 2, 3)
    other = status(8, "ACCEPTED", 0, 4, order_id="p")
    assert order.add(status(1, "ACCEPTED", 0, 5), 0.0)
    assert order.add(part, 0.0) == []
    assert order.add(other, 0.0) == []  # seq 8 after seq 6, which waits
    first = fill(4, 2)
    assert order.add(first, 0.1) == [first, part, other]


def test_a_push_waits_at_most_the_hold_then_goes_in_seq_order():
    order = PushOrder(hold_s=0.25)
    late, later = fill(4, 1), fill(9, 1)
    assert order.add(late, 10.0) == [] and order.add(later, 10.1) == []
    assert order.next_due() == 10.25
    assert order.due(10.2) == []
    assert order.due(10.25) == [late]
    assert order.due(10.35) == [later] and order.expired == 2 and order.next_due() is None
    assert order.add(fill(7, 1), 11.0) == []  # below a fill handed out: still waits for a status


def test_pushes_of_no_stream_go_at_once():
    order = PushOrder()
    assert order.add(fill(4, 1), 0.0) == []
    for other in (
        {"type": "TRADE", "data": {"symbol": SYMBOL, "seq": 3}},
        {"type": "DEPTH", "data": {"symbol": SYMBOL, "seq": 3}},
        status(0, "REJECTED", 0, 0) | {"data": {"seq": 0, "status": "REJECTED"}},
        status(2, "CANCELLED", 0, 0) | {"resync": True},
        {"type": "ack", "order_id": "o"},
    ):
        assert order.add(other, 0.0) == [other]
    assert order.flush() == [fill(4, 1)]


def pushes_of(events: list[Any], user: str) -> tuple[list[Push], list[Push]]:
    """A user's ORDER_STATUS and FILL pushes, each kind in seq order (as its topic has it)."""
    kinds: dict[int, list[Push]] = {STATUS: [], FILL: []}
    for event in events:
        if event[0] in kinds and event[3] == user:
            name = "ORDER_STATUS" if event[0] == STATUS else "FILL"
            kinds[event[0]].append({"type": name, "data": event_json(SYMBOL, event)})
    return kinds[STATUS], kinds[FILL]


def flow(rng: random.Random, n: int, both_sides: bool, stp: bool = False) -> list[Any]:
    """Seeded crossing flow on the real book: limits, icebergs, IOC markets, stops, replaces
    and cancels of 4 users, each on one side unless `both_sides`."""
    b = book(self_trade_prevention=stp)
    events: list[Any] = []
    for i in range(n):
        user, roll = f"u{rng.randrange(4)}", rng.random()
        buy = rng.random() < 0.5 if both_sides else user in ("u0", "u1")
        side, price, qty = Side.BUY if buy else Side.SELL, 100 + rng.randrange(-3, 4), 1 + i % 8
        if roll < 0.15 and i:
            command = cancel(f"o{rng.randrange(i)}", user)
        elif roll < 0.3 and i:
            command = replace(f"o{rng.randrange(i)}", user, price, qty)
        elif roll < 0.4:
            command = add(
                f"o{i}", user, side, 0, qty, order_type=OrderType.MARKET, tif=TimeInForce.IOC
            )
        elif roll < 0.45:
            command = add(f"o{i}", user, side, 0, qty, order_type=OrderType.STOP, stop_price=price)
        else:
            command = add(f"o{i}", user, side, price, qty, display_quantity=2 * (roll > 0.9))
        events.extend(b.apply(command))
    return events


def interleave(
    rng: random.Random, order: PushOrder, statuses: list[Push], fills: list[Push]
) -> list[Push]:
    """Feed both kinds, each in its order, at random relative positions; what came out."""
    out: list[Push] = []
    queues = [list(statuses), list(fills)]
    while any(queues):
        q = rng.choice([q for q in queues if q])
        out.extend(order.add(q.pop(0), 0.0))
    return out


def test_real_book_flows_come_out_in_seq_order_whatever_the_interleaving():
    rng = random.Random(12)
    events = flow(rng, 600, both_sides=False)
    for user in ("u0", "u1", "u2", "u3"):
        statuses, fills = pushes_of(events, user)
        assert len(fills) > 20
        for _ in range(20):
            order = PushOrder(hold_s=1.0)
            out = interleave(rng, order, statuses, fills)
            assert order.next_due() is None, "something waited for the bound"
            assert out == sorted(statuses + fills, key=lambda p: p["data"]["seq"])
            assert order.expired == 0


@pytest.mark.parametrize("stp", [False, True])
def test_self_trades_keep_each_order_in_seq_order_and_every_push_once(stp):
    rng = random.Random(7)
    events = flow(rng, 600, both_sides=True, stp=stp)
    for user in ("u0", "u1", "u2", "u3"):
        statuses, fills = pushes_of(events, user)
        for _ in range(20):
            order = PushOrder(hold_s=1.0)
            out = interleave(rng, order, statuses, fills) + order.flush()
            seqs = [p["data"]["seq"] for p in out]
            assert sorted(seqs) == sorted(p["data"]["seq"] for p in statuses + fills)
            assert len(set(seqs)) == len(seqs)
            per_order: dict[str, list[int]] = {}
            for p in out:
                per_order.setdefault(p["data"]["order_id"], []).append(p["data"]["seq"])
            assert all(s == sorted(s) for s in per_order.values())
