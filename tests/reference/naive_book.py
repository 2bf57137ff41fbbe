"""A deliberately naive book: the specification the fast book is checked against.

Every resting order sits in one list in arrival order; matching sorts candidates by price
then arrival. Slow and obvious. It emits the same event tuples as engine.book.Book, so
hypothesis can compare the two streams event for event.
"""

from dataclasses import dataclass

from engine.book import Instrument
from hotshard.commands import Command
from hotshard.domain import Action, Liquidity, OrderType, Side, Status, TimeInForce
from hotshard.events import FILL, STATUS, TRADE, Event
from hotshard.reasons import Reason


@dataclass
class Naive:
    order_id: str
    user_id: str
    side: int
    price: int
    leaves: int
    filled: int
    post_only: bool
    arrival: int


class NaiveBook:
    def __init__(self, instrument: Instrument) -> None:
        self.inst = instrument
        self.seq = 0
        self.arrivals = 0
        self.resting: list[Naive] = []
        self.known: dict[tuple[str, str], Naive] = {}
        self.ended: list[tuple[str, str]] = []
        self.out: list[Event] = []

    def emit(self, *fields: object) -> None:
        self.seq += 1
        self.out.append((fields[0], self.seq, *fields[1:]))  # type: ignore[arg-type]

    def status(
        self, o: Naive | tuple[str, str], status: Status, reason: Reason, filled: int, leaves: int
    ) -> None:
        oid, uid = (o.order_id, o.user_id) if isinstance(o, Naive) else o
        self.emit(STATUS, oid, uid, int(status), int(reason), filled, leaves)

    def end(self, o: Naive) -> None:
        o.leaves = 0
        if o in self.resting:
            self.resting.remove(o)
        self.ended.append((o.user_id, o.order_id))

    def apply(self, c: Command) -> list[Event]:
        self.out = []
        action, oid, uid, side, otype, tif, post_only, price, qty = c
        if action == Action.ADD:
            self.add(oid, uid, side, otype, tif, post_only, price, qty)
        elif action in (Action.CANCEL, Action.REPLACE):
            o = self.find(oid, uid)
            if o is not None:
                if action == Action.CANCEL:
                    filled = o.filled
                    self.end(o)
                    self.status(o, Status.CANCELLED, Reason.NONE, filled, 0)
                else:
                    self.replace(o, price, qty)
        else:
            self.status((oid, uid), Status.REJECTED, Reason.BAD_ACTION, 0, 0)
        while len(self.ended) > self.inst.dedup_window:
            self.known.pop(self.ended.pop(0), None)
        return self.out

    def size_reason(self, qty: int) -> Reason:
        if qty <= 0:
            return Reason.NON_POSITIVE_QUANTITY
        if qty > self.inst.max_quantity:
            return Reason.VALUE_OUT_OF_RANGE
        return Reason.QUANTITY_OFF_LOT if qty % self.inst.lot else Reason.NONE

    def price_reason(self, price: int) -> Reason:
        if price <= 0:
            return Reason.NON_POSITIVE_PRICE
        if price % self.inst.tick:
            return Reason.PRICE_OFF_TICK
        if not self.inst.price_min <= price <= self.inst.price_max:
            return Reason.PRICE_OUTSIDE_BAND
        return Reason.NONE

    def add_reason(
        self, side: int, otype: int, tif: int, post_only: bool, price: int, qty: int
    ) -> Reason:
        if side not in (Side.BUY, Side.SELL):
            return Reason.BAD_SIDE
        if otype not in (OrderType.LIMIT, OrderType.MARKET):
            return Reason.BAD_TYPE
        if tif not in (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK):
            return Reason.BAD_TIME_IN_FORCE
        if otype == OrderType.MARKET and post_only:
            return Reason.MARKET_ORDER_NOT_ALLOWED
        return self.size_reason(qty) or (
            self.price_reason(price) if otype == OrderType.LIMIT else Reason.NONE
        )

    def crossing(self, side: int, price: int | None, user_id: str | None = None) -> list[Naive]:
        """Opposite orders this taker may meet, in priority order."""
        opp = [o for o in self.resting if o.side != side]
        if price is not None:
            opp = [o for o in opp if (o.price <= price if side == Side.BUY else o.price >= price)]
        if user_id is not None:
            opp = [o for o in opp if o.user_id != user_id]
        return sorted(opp, key=lambda o: (o.price if side == Side.BUY else -o.price, o.arrival))

    def add(
        self,
        oid: str,
        uid: str,
        side: int,
        otype: int,
        tif: int,
        post_only: bool,
        price: int,
        qty: int,
    ) -> None:
        reason = self.add_reason(side, otype, tif, post_only, price, qty)
        if reason:
            self.status((oid, uid), Status.REJECTED, reason, 0, 0)
            return
        if (uid, oid) in self.known:
            self.status((oid, uid), Status.REJECTED, Reason.DUPLICATE_ORDER_ID, 0, 0)
            return
        limit = None if otype == OrderType.MARKET else price
        crosses = bool(self.crossing(side, limit))
        if post_only and crosses:
            self.status((oid, uid), Status.REJECTED, Reason.POST_ONLY_WOULD_CROSS, 0, 0)
            return
        if tif == TimeInForce.FOK:
            others = self.crossing(side, limit, uid if self.inst.self_trade_prevention else None)
            if sum(o.leaves for o in others) < qty:
                self.status((oid, uid), Status.EXPIRED, Reason.FILL_OR_KILL, 0, 0)
                return
        o = Naive(oid, uid, side, price if otype == OrderType.LIMIT else 0, qty, 0, post_only, 0)
        self.known[uid, oid] = o
        self.status(o, Status.ACCEPTED, Reason.NONE, 0, qty)
        self.take(o, limit)
        if o.leaves and otype == OrderType.LIMIT and tif == TimeInForce.GTC:
            self.rest(o, 0)
        elif o.leaves:
            filled = o.filled
            self.end(o)
            why = Reason.NO_LIQUIDITY if otype == OrderType.MARKET else Reason.IMMEDIATE_OR_CANCEL
            self.status(o, Status.EXPIRED, why, filled, 0)
        else:
            self.end(o)
            self.status(o, Status.FILLED, Reason.NONE, o.filled, 0)

    def rest(self, o: Naive, filled_before: int) -> None:
        if not o.leaves:
            self.end(o)
            self.status(o, Status.FILLED, Reason.NONE, o.filled, 0)
            return
        self.arrivals += 1
        o.arrival = self.arrivals
        self.resting.append(o)
        if o.filled != filled_before:
            self.status(o, Status.PARTIALLY_FILLED, Reason.NONE, o.filled, o.leaves)

    def take(self, taker: Naive, limit: int | None) -> None:
        for maker in self.crossing(taker.side, limit):
            if not taker.leaves:
                break
            if self.inst.self_trade_prevention and maker.user_id == taker.user_id:
                self.end(maker)
                self.status(maker, Status.CANCELLED, Reason.SELF_TRADE_PREVENTED, maker.filled, 0)
                continue
            qty = min(maker.leaves, taker.leaves)
            maker.leaves -= qty
            maker.filled += qty
            taker.leaves -= qty
            taker.filled += qty
            trade_id = self.seq + 1
            self.emit(TRADE, maker.order_id, taker.order_id, maker.price, qty, taker.side, trade_id)
            self.emit(
                FILL,
                maker.order_id,
                maker.user_id,
                maker.price,
                qty,
                int(Liquidity.MAKER),
                trade_id,
            )
            self.emit(
                FILL,
                taker.order_id,
                taker.user_id,
                maker.price,
                qty,
                int(Liquidity.TAKER),
                trade_id,
            )
            if maker.leaves:
                self.status(maker, Status.PARTIALLY_FILLED, Reason.NONE, maker.filled, maker.leaves)
            else:
                self.end(maker)
                self.status(maker, Status.FILLED, Reason.NONE, maker.filled, 0)

    def find(self, oid: str, uid: str) -> Naive | None:
        o = self.known.get((uid, oid))
        if o is None:
            self.status((oid, uid), Status.REJECTED, Reason.UNKNOWN_ORDER, 0, 0)
            return None
        if not o.leaves:
            self.status(o, Status.REJECTED, Reason.ORDER_NOT_OPEN, o.filled, 0)
            return None
        return o

    def replace(self, o: Naive, price: int, qty: int) -> None:
        reason = self.size_reason(qty) or self.price_reason(price)
        if reason:
            self.status(o, Status.REJECTED, reason, o.filled, o.leaves)
            return
        leaves = qty - o.filled
        if leaves <= 0:
            self.end(o)
            self.status(o, Status.CANCELLED, Reason.REPLACED_TO_ZERO, o.filled, 0)
            return
        if price == o.price and leaves <= o.leaves:
            o.leaves = leaves
            self.status(o, Status.REPLACED, Reason.NONE, o.filled, leaves)
            return
        if o.post_only and self.crossing(o.side, price):
            self.status(o, Status.REJECTED, Reason.POST_ONLY_WOULD_CROSS, o.filled, o.leaves)
            return
        self.resting.remove(o)
        o.price, o.leaves = price, leaves
        self.status(o, Status.REPLACED, Reason.NONE, o.filled, leaves)
        filled_before = o.filled
        self.take(o, price)
        self.rest(o, filled_before)

    def depth(self, n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        def side_levels(side: int, best_first: bool) -> list[tuple[int, int]]:
            totals: dict[int, int] = {}
            for o in self.resting:
                if o.side == side:
                    totals[o.price] = totals.get(o.price, 0) + o.leaves
            return sorted(totals.items(), reverse=best_first)[:n]

        return side_levels(Side.BUY, True), side_levels(Side.SELL, False)
