"""One user's ORDER_STATUS and FILL pushes of a symbol, handed out in seq order.

The engine numbers all of a symbol's events in one sequence (`seq`), but a status and a
fill travel on two topics, each read by its own event source mapping (one per topic in
AWS, as in the local feeder), so a connection gets each kind in seq order and the two
kinds interleaved by which topic's invocation posted first: a FILL often before the
ACCEPTED of its own order. `PushOrder` merges the two back by seq, using what the engine
guarantees (engine/book): every FILL is followed, in the same command, by a status of its
own order whose `filled` counts it. A push is handed out as soon as it is the lowest seq
held for its symbol and one of these holds:
- the other kind has already arrived beyond its seq (each kind comes in seq order, so
  nothing of the other kind before it is still on its way);
- it is a status whose `filled` the fills of its order handed out so far account for (no
  fill of its order before it is missing: an ACCEPTED never waits), or a REJECTED (a
  refused frame changes nothing: it reports no new fill);
- it has been held `hold_s`: a push it waits for may never come (posted to a connection
  that dropped, or to a client that joined mid-stream), so it goes anyway.
So a FILL waits for the status of its order that follows it (the other topic's record of
the same engine batch), and a status waits only for the fills it reports. The one order it
cannot see coming: a status of one order ahead of a fill of another order of the same user
with a lower seq, when that fill's own status comes later (a user's taker meeting its own
resting orders: self-trade, or self-trade prevention cancelling them).

Pushes without a seq (a STALE_ROUTE refusal: seq 0) and every other push are no stream's:
they are handed out at once. Nothing is dropped or repeated: what is added comes out once,
at the latest by `flush()`.
"""

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from hotshard.client.frames import Message

STATUS = "ORDER_STATUS"
FILL = "FILL"
OTHER = {STATUS: FILL, FILL: STATUS}
ENDS = frozenset({"FILLED", "CANCELLED", "EXPIRED"})
"""Statuses that end an order (a REJECTED may refuse a frame for a live one)."""
ORDERS_KEPT = 65_536
"""Orders whose fills handed out are remembered (ended ones are forgotten at once)."""


@dataclass(slots=True)
class Held:
    push: Message
    seq: int
    due: float


@dataclass(slots=True)
class _Symbol:
    held: dict[str, deque[Held]] = field(default_factory=lambda: {STATUS: deque(), FILL: deque()})
    arrived: dict[str, int] = field(default_factory=lambda: {STATUS: 0, FILL: 0})
    """The highest seq that arrived per kind."""


@dataclass(slots=True)
class _Order:
    filled: int = 0
    """Quantity of the order's FILLs handed out, or the `filled` of its last status handed
    out if that is more (a status handed out by the bound, or one from before this client)."""


@dataclass
class PushOrder:
    hold_s: float = 0.25
    held: int = 0
    """Pushes that waited (were not handed out as they arrived)."""
    expired: int = 0
    """Pushes handed out by the bound, with what they waited for not there."""
    _symbols: dict[str, _Symbol] = field(default_factory=dict)
    _orders: OrderedDict[tuple[str, str], _Order] = field(default_factory=OrderedDict)

    def add(self, push: Message, now: float) -> list[Message]:
        """Take one push as it arrived; returns the pushes to hand out now, in order."""
        kind = push.get("type")
        data = push.get("data")
        if kind not in OTHER or not isinstance(data, dict) or push.get("resync"):
            return [push]
        seq = data.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq <= 0:
            return [push]
        state = self._symbols.setdefault(str(data.get("symbol", "")), _Symbol())
        state.arrived[kind] = max(state.arrived[kind], seq)
        state.held[kind].append(Held(push, seq, now + self.hold_s))
        out = self._release(state, now)
        if not any(p is push for p in out):
            self.held += 1
        return out

    def due(self, now: float) -> list[Message]:
        """The pushes to hand out at `now` (their wait is over, and those behind them)."""
        out: list[Message] = []
        for state in self._symbols.values():  # kept when empty: `arrived` still counts
            out.extend(self._release(state, now))
        return out

    def next_due(self) -> float | None:
        """When the first held push's wait ends (None: nothing held)."""
        dues = [q[0].due for s in self._symbols.values() for q in s.held.values() if q]
        return min(dues, default=None)

    def flush(self) -> list[Message]:
        """Everything held, in the order it would go (the connection is closing)."""
        return self.due(float("inf"))

    def _release(self, state: _Symbol, now: float) -> list[Message]:
        out: list[Message] = []
        while True:
            heads = [(q[0].seq, kind) for kind, q in state.held.items() if q]
            if not heads:
                return out
            _, kind = min(heads)
            head = state.held[kind][0]
            if not self._ready(state, kind, head, now):
                return out
            state.held[kind].popleft()
            self._handed_out(kind, head.push["data"])
            out.append(head.push)

    def _ready(self, state: _Symbol, kind: str, head: Held, now: float) -> bool:
        if state.arrived[OTHER[kind]] > head.seq:
            return True
        if kind == STATUS and self._counted(head.push["data"]):
            return True
        if now >= head.due:
            self.expired += 1
            return True
        return False

    def _counted(self, data: Message) -> bool:
        """The fills this status reports are handed out (a refusal reports none new)."""
        return data.get("status") == "REJECTED" or _filled(data) <= self._order(data).filled

    def _order(self, data: Message) -> _Order:
        key = (str(data.get("symbol", "")), str(data.get("order_id", "")))
        order = self._orders.get(key)
        if order is None:
            order = self._orders[key] = _Order()
            if len(self._orders) > ORDERS_KEPT:
                self._orders.popitem(last=False)
        return order

    def _handed_out(self, kind: str, data: Message) -> None:
        order = self._order(data)
        if kind == FILL:
            order.filled += _int(data.get("quantity"))
            return
        order.filled = max(order.filled, _filled(data))
        if data.get("status") in ENDS and data.get("leaves") == 0:  # no fill of it comes now
            del self._orders[(str(data.get("symbol", "")), str(data.get("order_id", "")))]


def _filled(data: Message) -> int:
    return _int(data.get("filled"))


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
