"""A deliberately naive book: the specification the fast book is checked against.

Every resting order sits in one list in arrival order; matching sorts candidates by price
then arrival, again after every match. Slow and obvious. It emits the same event tuples as
engine.book.Book, so hypothesis can compare the two streams event for event.

The order types beyond plain limit and market orders, as specified here:
- STOP / STOP_LIMIT wait in `pending` until a trade reaches their stop price (a buy stop at
  s: a trade at >= s; a sell stop: at <= s), or trigger at once if the last trade already
  did. Each trade of a command, in order, elects the pending buy stops it reached (lowest
  stop price first), then the sell stops (highest first), earliest accepted first at one
  price; elected stops then trigger one after the other (TRIGGERED, then they trade as a
  MARKET or a LIMIT order), their trades electing more, all within the same command.
- An iceberg shows `peak` (at most `display`) of its leaves; matching takes at most the
  peak; a peak used up while leaves remain is refreshed and goes to the back of its level.
- An all-or-none order trades only if its whole leaves fill at once: as a taker (tried as
  a dry run on a copy of the book), and as a maker (a taker with less is passed by it).
  Depth does not show it.
"""

import copy
from dataclasses import dataclass

from engine.book import Instrument
from hotshard.commands import Command
from hotshard.domain import Action, Liquidity, OrderType, Side, Status, TimeInForce
from hotshard.events import FILL, STATUS, TRADE, Event
from hotshard.reasons import Reason

STOPS = (OrderType.STOP, OrderType.STOP_LIMIT)


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
    display: int = 0
    peak: int = 0
    aon: bool = False
    stop: int = 0
    tif: int = 1
    limit: bool = True


class NaiveBook:
    def __init__(self, instrument: Instrument) -> None:
        self.inst = instrument
        self.seq = 0
        self.arrivals = 0
        self.last = 0
        self.resting: list[Naive] = []
        self.pending: list[Naive] = []
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
        if o in self.pending:
            self.pending.remove(o)
        self.ended.append((o.user_id, o.order_id))

    def apply(self, c: Command) -> list[Event]:
        self.out = []
        action, oid, uid, side, otype, tif, post_only, price, qty, stop, display, aon = c
        if action == Action.ADD:
            self.add(oid, uid, side, otype, tif, post_only, price, qty, stop, display, aon)
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
        self.trigger_stops()
        while len(self.ended) > self.inst.dedup_window:
            self.known.pop(self.ended.pop(0), None)
        return self.out

    def trigger_stops(self) -> None:
        elected: list[Naive] = []
        at = 0
        while True:
            while at < len(self.out):
                event = self.out[at]
                at += 1
                if event[0] == TRADE:
                    p = event[4]
                    buys = [o for o in self.pending if o.side == Side.BUY and o.stop <= p]
                    sells = [o for o in self.pending if o.side == Side.SELL and o.stop >= p]
                    buys.sort(key=lambda o: (o.stop, o.arrival))
                    sells.sort(key=lambda o: (-o.stop, o.arrival))
                    for o in buys + sells:
                        self.pending.remove(o)
                        elected.append(o)
            if not elected:
                return
            self.enter(elected.pop(0), triggered=True)

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
        self,
        side: int,
        otype: int,
        tif: int,
        post_only: bool,
        price: int,
        qty: int,
        stop: int,
        display: int,
        aon: bool,
    ) -> Reason:
        if side not in (Side.BUY, Side.SELL):
            return Reason.BAD_SIDE
        if otype not in (OrderType.LIMIT, OrderType.MARKET, *STOPS):
            return Reason.BAD_TYPE
        if tif not in (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK):
            return Reason.BAD_TIME_IN_FORCE
        if otype == OrderType.MARKET and post_only:
            return Reason.MARKET_ORDER_NOT_ALLOWED
        if otype in STOPS and post_only:
            return Reason.POST_ONLY_NOT_ALLOWED
        limit = otype in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        reason = self.size_reason(qty) or (self.price_reason(price) if limit else Reason.NONE)
        if reason:
            return reason
        if (otype in STOPS and self.price_reason(stop)) or (otype not in STOPS and stop):
            return Reason.BAD_STOP_PRICE
        rests = limit and tif == TimeInForce.GTC
        if display:
            if not rests or aon:
                return Reason.DISPLAY_QUANTITY_NOT_ALLOWED
            if not 0 < display <= qty or display % self.inst.lot:
                return Reason.BAD_DISPLAY_QUANTITY
        if aon and not rests:
            return Reason.ALL_OR_NONE_NOT_ALLOWED
        return Reason.NONE

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
        stop: int,
        display: int,
        aon: bool,
    ) -> None:
        reason = self.add_reason(side, otype, tif, post_only, price, qty, stop, display, aon)
        if reason:
            self.status((oid, uid), Status.REJECTED, reason, 0, 0)
            return
        if (uid, oid) in self.known:
            self.status((oid, uid), Status.REJECTED, Reason.DUPLICATE_ORDER_ID, 0, 0)
            return
        limit = otype in (OrderType.LIMIT, OrderType.STOP_LIMIT)
        o = Naive(oid, uid, side, price if limit else 0, qty, 0, post_only, 0)
        o.display, o.aon, o.tif, o.limit = display, aon, tif, limit
        if otype in STOPS:
            self.known[uid, oid] = o
            self.status(o, Status.ACCEPTED, Reason.NONE, 0, qty)
            if self.last and (stop <= self.last if side == Side.BUY else stop >= self.last):
                self.enter(o, triggered=True)
            else:
                o.stop = stop
                self.arrivals += 1
                o.arrival = self.arrivals
                self.pending.append(o)
            return
        self.enter(o, triggered=False)

    def fillable(self, o: Naive) -> bool:
        """Would `o` fill completely now? A dry run on a copy of the book."""
        dry = copy.deepcopy(self)
        taker = copy.copy(o)
        dry.take(taker, taker.price if taker.limit else None)
        return taker.leaves == 0

    def enter(self, o: Naive, triggered: bool) -> None:
        limit = o.price if o.limit else None
        crosses = bool(self.crossing(o.side, limit))
        if triggered:
            o.stop = 0
            self.status(o, Status.TRIGGERED, Reason.NONE, 0, o.leaves)
            if o.tif == TimeInForce.FOK and not self.fillable(o):
                self.end(o)
                self.status(o, Status.EXPIRED, Reason.FILL_OR_KILL, 0, 0)
                return
        else:
            if o.post_only and crosses:
                self.status(o, Status.REJECTED, Reason.POST_ONLY_WOULD_CROSS, 0, 0)
                return
            if o.tif == TimeInForce.FOK and not self.fillable(o):
                self.status(o, Status.EXPIRED, Reason.FILL_OR_KILL, 0, 0)
                return
            self.known[o.user_id, o.order_id] = o
            self.status(o, Status.ACCEPTED, Reason.NONE, 0, o.leaves)
        if crosses and (not o.aon or self.fillable(o)):
            self.take(o, limit)
        if o.leaves and o.limit and o.tif == TimeInForce.GTC:
            self.rest(o, 0)
        elif o.leaves:
            filled = o.filled
            self.end(o)
            why = Reason.IMMEDIATE_OR_CANCEL if o.limit else Reason.NO_LIQUIDITY
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
        o.peak = min(o.display, o.leaves) if o.display else 0
        self.resting.append(o)
        if o.filled != filled_before:
            self.status(o, Status.PARTIALLY_FILLED, Reason.NONE, o.filled, o.leaves)

    def take(self, taker: Naive, limit: int | None) -> None:
        stp = self.inst.self_trade_prevention
        while taker.leaves:
            for maker in self.crossing(taker.side, limit):
                if stp and maker.user_id == taker.user_id:
                    break
                if not (maker.aon and maker.leaves > taker.leaves):
                    break
            else:
                return
            if stp and maker.user_id == taker.user_id:
                self.end(maker)
                self.status(maker, Status.CANCELLED, Reason.SELF_TRADE_PREVENTED, maker.filled, 0)
                continue
            qty = min(maker.peak if maker.display else maker.leaves, taker.leaves)
            maker.leaves -= qty
            maker.filled += qty
            if maker.display:
                maker.peak -= qty
            taker.leaves -= qty
            taker.filled += qty
            self.last = maker.price
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
                if maker.display and not maker.peak:
                    maker.peak = min(maker.display, maker.leaves)
                    self.arrivals += 1
                    maker.arrival = self.arrivals  # the refreshed peak: back of the level
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
        if o.stop:
            self.status(o, Status.REJECTED, Reason.STOP_NOT_REPLACEABLE, o.filled, o.leaves)
            return
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
            o.peak = min(o.peak, leaves)
            self.status(o, Status.REPLACED, Reason.NONE, o.filled, leaves)
            return
        crosses = bool(self.crossing(o.side, price))
        if o.post_only and crosses:
            self.status(o, Status.REJECTED, Reason.POST_ONLY_WOULD_CROSS, o.filled, o.leaves)
            return
        self.resting.remove(o)
        o.price, o.leaves = price, leaves
        self.status(o, Status.REPLACED, Reason.NONE, o.filled, leaves)
        filled_before = o.filled
        if crosses and (not o.aon or self.fillable(o)):
            self.take(o, price)
        self.rest(o, filled_before)

    def shown(self, o: Naive) -> int:
        return 0 if o.aon else o.peak if o.display else o.leaves

    def depth(self, n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        def side_levels(side: int, best_first: bool) -> list[tuple[int, int]]:
            totals: dict[int, int] = {}
            for o in self.resting:
                if o.side == side and self.shown(o):
                    totals[o.price] = totals.get(o.price, 0) + self.shown(o)
            return sorted(totals.items(), reverse=best_first)[:n]

        return side_levels(Side.BUY, True), side_levels(Side.SELL, False)
