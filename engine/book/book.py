"""The order book of one symbol: price-time priority matching, pure and deterministic.

`Book.apply(command) -> list[Event]`. Nothing here reads a clock, draws a random number or
depends on dict order for matching; ids and sequence numbers derive from the input, so the
same commands give byte-identical events.

Both sides share one matching loop through a comparable key: a bid rests under key
`price`, an ask under key `-price`, so on either side the best level is the largest key,
kept last in an ascending list (`keys[-1]`), and a taker with limit price L crosses every
level whose key is >= its limit key (`-L` for a buy taking asks, `L` for a sell taking bids).

This module is the source of the compiled build too (mypyc, `make native`): the types are
exact (`i64` fields, `Final` constants, `@final` classes), and the hot path avoids what
compiles to slow generic calls (enum members, closures, generators).
"""

from bisect import bisect_left, insort
from collections.abc import Iterable
from typing import Any, Final, final

from mypy_extensions import i64

from engine.book.ended import EndedOrders
from engine.book.index import OrderIndex
from engine.book.instrument import Instrument
from engine.book.level import COMPACT_SLACK, Level
from engine.book.order import Order, Special
from engine.book.packed import packed_at, packed_count
from hotshard.commands import Command
from hotshard.domain import MAX_PRICE, Action, Liquidity, OrderType, Side, Status, TimeInForce
from hotshard.events import FILL, STATUS, TRADE, DepthUpdate, Event
from hotshard.reasons import Reason

# Plain ints on the hot path: CPython compares exact ints much faster than IntEnum members,
# and the compiled build reads Final ints as C constants. Events carry plain ints; codecs
# turn them back into names.
ADD: Final = int(Action.ADD)
CANCEL: Final = int(Action.CANCEL)
REPLACE: Final = int(Action.REPLACE)
BUY: Final = int(Side.BUY)
SELL: Final = int(Side.SELL)
LIMIT: Final = int(OrderType.LIMIT)
MARKET: Final = int(OrderType.MARKET)
STOP: Final = int(OrderType.STOP)
STOP_LIMIT: Final = int(OrderType.STOP_LIMIT)
GTC: Final = int(TimeInForce.GTC)
IOC: Final = int(TimeInForce.IOC)
FOK: Final = int(TimeInForce.FOK)
MAKER: Final = int(Liquidity.MAKER)
TAKER: Final = int(Liquidity.TAKER)
_STATUS: Final = STATUS
_FILL: Final = FILL
_TRADE: Final = TRADE
ACCEPTED: Final = int(Status.ACCEPTED)
REJECTED: Final = int(Status.REJECTED)
PARTIALLY_FILLED: Final = int(Status.PARTIALLY_FILLED)
FILLED: Final = int(Status.FILLED)
CANCELLED: Final = int(Status.CANCELLED)
REPLACED: Final = int(Status.REPLACED)
EXPIRED: Final = int(Status.EXPIRED)
TRIGGERED: Final = int(Status.TRIGGERED)
NO_REASON: Final = int(Reason.NONE)
_BAD_ACTION: Final = int(Reason.BAD_ACTION)
_BAD_SIDE: Final = int(Reason.BAD_SIDE)
_BAD_TYPE: Final = int(Reason.BAD_TYPE)
_BAD_TIF: Final = int(Reason.BAD_TIME_IN_FORCE)
_MARKET_NOT_ALLOWED: Final = int(Reason.MARKET_ORDER_NOT_ALLOWED)
_NON_POSITIVE_QUANTITY: Final = int(Reason.NON_POSITIVE_QUANTITY)
_OUT_OF_RANGE: Final = int(Reason.VALUE_OUT_OF_RANGE)
_OFF_LOT: Final = int(Reason.QUANTITY_OFF_LOT)
_NON_POSITIVE_PRICE: Final = int(Reason.NON_POSITIVE_PRICE)
_OFF_TICK: Final = int(Reason.PRICE_OFF_TICK)
_OUTSIDE_BAND: Final = int(Reason.PRICE_OUTSIDE_BAND)
_DUPLICATE: Final = int(Reason.DUPLICATE_ORDER_ID)
_POST_ONLY_WOULD_CROSS: Final = int(Reason.POST_ONLY_WOULD_CROSS)
_FILL_OR_KILL: Final = int(Reason.FILL_OR_KILL)
_NO_LIQUIDITY: Final = int(Reason.NO_LIQUIDITY)
_IMMEDIATE_OR_CANCEL: Final = int(Reason.IMMEDIATE_OR_CANCEL)
_SELF_TRADE_PREVENTED: Final = int(Reason.SELF_TRADE_PREVENTED)
_UNKNOWN_ORDER: Final = int(Reason.UNKNOWN_ORDER)
_ORDER_NOT_OPEN: Final = int(Reason.ORDER_NOT_OPEN)
_REPLACED_TO_ZERO: Final = int(Reason.REPLACED_TO_ZERO)
_BAD_STOP_PRICE: Final = int(Reason.BAD_STOP_PRICE)
_BAD_DISPLAY: Final = int(Reason.BAD_DISPLAY_QUANTITY)
_DISPLAY_NOT_ALLOWED: Final = int(Reason.DISPLAY_QUANTITY_NOT_ALLOWED)
_AON_NOT_ALLOWED: Final = int(Reason.ALL_OR_NONE_NOT_ALLOWED)
_POST_ONLY_NOT_ALLOWED: Final = int(Reason.POST_ONLY_NOT_ALLOWED)
_STOP_NOT_REPLACEABLE: Final = int(Reason.STOP_NOT_REPLACEABLE)

_ANY_KEY: Final[i64] = -MAX_PRICE - 1
"""Limit key of a market order: at or below every level's key, so it crosses all of them."""

OrderColumns = tuple[list[int], list[int], list[int], list[int], list[bool], list[str], list[str]]
"""Live orders as columns (side, price, leaves, filled, post_only, order_id, user_id), in
snapshot order: bids best level first, then asks best level first, FIFO within a level."""

OrderExtras = tuple[list[int], list[int], list[bool]]
"""The same orders' (display, peak, aon): icebergs and all-or-none orders; all empty when
the book rests none."""

StopColumns = tuple[
    list[int],
    list[int],
    list[int],
    list[int],
    list[int],
    list[int],
    list[bool],
    list[str],
    list[str],
]
"""Pending stops as columns (side, stop price, limit price (0: STOP), quantity, tif,
display, aon, order_id, user_id) in trigger priority: buy stops lowest stop price first,
then sell stops highest first, earliest accepted first at one stop price."""


@final
class Book:
    __slots__ = (
        "ask_keys",
        "asks",
        "bid_keys",
        "bids",
        "dedup_window",
        "dirty",
        "ended",
        "index",
        "instrument",
        "last_price",
        "lot",
        "max_quantity",
        "price_max",
        "price_min",
        "seq",
        "stop_ask_keys",
        "stop_asks",
        "stop_bid_keys",
        "stop_bids",
        "stops",
        "stp",
        "symbol",
        "tick",
    )

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.symbol: str = instrument.symbol
        # The instrument's rules, copied into slots the hot path reads directly.
        # (ints, not i64: commands are Python ints of any size, and these check them)
        self.tick: int = instrument.tick
        self.lot: int = instrument.lot
        self.max_quantity: int = instrument.max_quantity
        self.price_min: int = instrument.price_min
        self.price_max: int = instrument.price_max
        self.stp: bool = instrument.self_trade_prevention
        self.dedup_window: i64 = instrument.dedup_window
        self.seq: i64 = 0
        self.last_price: i64 = 0
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        self.bid_keys: list[int] = []
        self.ask_keys: list[int] = []
        # The live orders by (user_id, order_id) (pending stops too), and the last
        # `dedup_window` ended ones apart, compact (engine.book.ended): an order that ends
        # leaves the index for the ring.
        self.index = OrderIndex()
        self.ended = EndedOrders(instrument.dedup_window)
        self.dirty: list[Level] = []
        # Pending stops by trigger price, like the levels: a buy stop under key -stop, a sell
        # stop under key stop, so on either side the next to trigger is the largest key,
        # kept last; FIFO within a key. `stops` counts them: while 0, no command looks.
        self.stop_bids: dict[int, list[Order]] = {}
        self.stop_asks: dict[int, list[Order]] = {}
        self.stop_bid_keys: list[int] = []
        self.stop_ask_keys: list[int] = []
        self.stops: i64 = 0

    # ------------------------------------------------------------------ commands

    def apply(self, command: Command) -> list[Event]:
        """Apply one command; return its events in order. Never raises on bad values."""
        out: list[Event] = []
        self._apply(command, out)
        return out

    def apply_all(self, commands: Iterable[Command], ends: list[int] | None = None) -> list[Event]:
        """Apply commands in order; return all their events in one list. If `ends` is given,
        the position just past each command's events is appended to it."""
        out: list[Event] = []
        if ends is None:
            for command in commands:
                self._apply(command, out)
        else:
            for command in commands:
                self._apply(command, out)
                ends.append(len(out))
        return out

    def _apply(self, command: Command, out: list[Event]) -> None:
        (
            action,
            order_id,
            user_id,
            side,
            otype,
            tif,
            post_only,
            price,
            qty,
            stop,
            display,
            aon,
        ) = command
        start = len(out)
        if action == ADD:
            if otype <= MARKET and not stop and not display and not aon:
                self._add(order_id, user_id, side, otype, tif, post_only, price, qty, out)
            else:
                self._add_special(
                    order_id,
                    user_id,
                    side,
                    otype,
                    tif,
                    post_only,
                    price,
                    qty,
                    stop,
                    display,
                    aon,
                    out,
                )
        elif action == CANCEL:
            self._cancel(order_id, user_id, out)
        elif action == REPLACE:
            self._replace(order_id, user_id, price, qty, out)
        else:
            self.reject(order_id, user_id, _BAD_ACTION, out)
        if self.stops:
            self._trigger_stops(out, start)

    def reject(self, order_id: str, user_id: str, reason: int, out: list[Event]) -> None:
        """Emit REJECTED for input refused before or by the book; the book is unchanged."""
        seq = self.seq + 1
        self.seq = seq
        out.append((_STATUS, seq, order_id, user_id, REJECTED, int(reason), 0, 0))

    def _status(self, order: Order, status: int, reason: int, out: list[Event]) -> None:
        """Emit `status` for `order` as it stands now (its filled and leaves)."""
        seq = self.seq + 1
        self.seq = seq
        out.append(
            (
                _STATUS,
                seq,
                order.order_id,
                order.user_id,
                status,
                reason,
                order.filled,
                order.leaves,
            )
        )

    def _add_reason(
        self, side: int, otype: int, tif: int, post_only: bool, price: int, qty: int
    ) -> int:
        """Why an ADD is invalid (NONE if it is not): the first failed rule, in a fixed order."""
        if side != BUY and side != SELL:  # noqa: PLR1714 - cheaper than a set lookup
            return _BAD_SIDE
        if otype != LIMIT and otype != MARKET:  # noqa: PLR1714
            return _BAD_TYPE
        if tif != GTC and tif != IOC and tif != FOK:  # noqa: PLR1714
            return _BAD_TIF
        if otype == MARKET and post_only:
            return _MARKET_NOT_ALLOWED
        reason = self._check_size(qty)
        if reason or otype != LIMIT:
            return reason
        return self._check_price(price)

    def _check_size(self, qty: int) -> int:
        if qty <= 0:
            return _NON_POSITIVE_QUANTITY
        if qty > self.max_quantity:
            return _OUT_OF_RANGE
        if qty % self.lot:
            return _OFF_LOT
        return NO_REASON

    def _check_price(self, price: int) -> int:
        if price <= 0:
            return _NON_POSITIVE_PRICE
        if price % self.tick:
            return _OFF_TICK
        if price < self.price_min or price > self.price_max:
            return _OUTSIDE_BAND
        return NO_REASON

    def _add(
        self,
        order_id: str,
        user_id: str,
        side: int,
        otype: int,
        tif: int,
        post_only: bool,
        price: int,
        qty: int,
        out: list[Event],
    ) -> None:
        """Any ADD: validation, duplicate, post-only and FOK checks, matching, then the
        remainder rests (GTC limit) or expires."""
        reason = self._add_reason(side, otype, tif, post_only, price, qty)
        if reason:
            self.reject(order_id, user_id, reason, out)
            return
        limit = otype == LIMIT
        rests = limit and tif == GTC
        order = Order(qty, 0, order_id, user_id, side, price if limit else 0, post_only)
        # A taker is indexed too: it ends, and is remembered, within this command.
        if not self._admit(order):
            self.reject(order_id, user_id, _DUPLICATE, out)
            return
        buy = side == BUY
        limit_key: i64 = (-price if buy else price) if limit else _ANY_KEY
        opp_keys = self.ask_keys if buy else self.bid_keys
        crosses = len(opp_keys) > 0 and opp_keys[-1] >= limit_key
        if crosses and post_only:
            self.index.remove(order)
            self.reject(order_id, user_id, _POST_ONLY_WOULD_CROSS, out)
            return
        if tif == FOK and not self._can_fill(buy, user_id, limit_key, qty):
            # a killed FOK leaves no trace, not even its id
            self.index.remove(order)
            seq = self.seq + 1
            self.seq = seq
            out.append((_STATUS, seq, order_id, user_id, EXPIRED, _FILL_OR_KILL, 0, 0))
            return
        seq = self.seq + 1
        self.seq = seq
        out.append((_STATUS, seq, order_id, user_id, ACCEPTED, NO_REASON, 0, qty))
        if crosses:
            self._take(order, limit_key, out)
        if rests:
            self._rest_remainder(order, 0, out)
        else:
            self._end_taker(order, _NO_LIQUIDITY if not limit else _IMMEDIATE_OR_CANCEL, out)

    def _special_reason(
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
    ) -> int:
        """Why an ADD of a stop, an iceberg or an all-or-none order is invalid (NONE if it
        is not): the rules of `_add_reason`, then those of the new fields, in this order."""
        if side != BUY and side != SELL:  # noqa: PLR1714
            return _BAD_SIDE
        if otype != LIMIT and otype != MARKET and otype != STOP and otype != STOP_LIMIT:  # noqa: PLR1714
            return _BAD_TYPE
        if tif != GTC and tif != IOC and tif != FOK:  # noqa: PLR1714
            return _BAD_TIF
        is_stop = otype == STOP or otype == STOP_LIMIT  # noqa: PLR1714
        if post_only:
            if otype == MARKET:
                return _MARKET_NOT_ALLOWED
            if is_stop:
                return _POST_ONLY_NOT_ALLOWED
        reason = self._check_size(qty)
        if reason:
            return reason
        limit = otype == LIMIT or otype == STOP_LIMIT  # noqa: PLR1714
        if limit:
            reason = self._check_price(price)
            if reason:
                return reason
        if is_stop:
            if self._check_price(stop):
                return _BAD_STOP_PRICE
        elif stop:
            return _BAD_STOP_PRICE
        rests = limit and tif == GTC
        if display:
            if not rests or aon:
                return _DISPLAY_NOT_ALLOWED
            if display < 0 or display > qty or display % self.lot:
                return _BAD_DISPLAY
        if aon and not rests:
            return _AON_NOT_ALLOWED
        return NO_REASON

    def _add_special(
        self,
        order_id: str,
        user_id: str,
        side: int,
        otype: int,
        tif: int,
        post_only: bool,
        price: int,
        qty: int,
        stop: int,
        display: int,
        aon: bool,
        out: list[Event],
    ) -> None:
        """An ADD of a STOP / STOP_LIMIT, an iceberg or an all-or-none order (or one with an
        invalid type): the plain `_add` stays free of their checks."""
        reason = self._special_reason(side, otype, tif, post_only, price, qty, stop, display, aon)
        if reason:
            self.reject(order_id, user_id, reason, out)
            return
        is_stop = otype == STOP or otype == STOP_LIMIT  # noqa: PLR1714
        limit = otype == LIMIT or otype == STOP_LIMIT  # noqa: PLR1714
        order = Order(qty, 0, order_id, user_id, side, price if limit else 0, post_only)
        ext = Special(display, aon, 0, tif)
        order.ext = ext
        if not self._admit(order):
            self.reject(order_id, user_id, _DUPLICATE, out)
            return
        if not is_stop:
            self._enter(order, limit, tif, False, out)
            return
        seq = self.seq + 1
        self.seq = seq
        out.append((_STATUS, seq, order_id, user_id, ACCEPTED, NO_REASON, 0, qty))
        last = self.last_price
        if last and (stop <= last if side == BUY else stop >= last):
            # the last trade already reached the stop price: it triggers at once
            self._enter(order, limit, tif, True, out)
        else:
            ext.stop = stop
            self._pend(order, stop)

    def _enter(
        self, order: Order, limit: bool, tif: i64, triggered: bool, out: list[Event]
    ) -> None:
        """A valid order that is not plain (or a stop just triggered) meets the book:
        post-only and FOK checks, ACCEPTED (TRIGGERED for a stop), matching (an all-or-none
        order only if it fills completely), then the remainder rests or expires. A new
        order is in the index already (so is a triggered stop)."""
        buy = order.side == BUY
        price = order.price
        limit_key: i64 = (-price if buy else price) if limit else _ANY_KEY
        opp_keys = self.ask_keys if buy else self.bid_keys
        crosses = len(opp_keys) > 0 and opp_keys[-1] >= limit_key
        rests = limit and tif == GTC
        ext = order.ext
        aon = ext is not None and ext.aon
        if triggered:
            if ext is not None and not ext.display and not aon:
                order.ext = None  # from now on a plain order
            self._status(order, TRIGGERED, NO_REASON, out)
            if tif == FOK and not self._can_fill(buy, order.user_id, limit_key, order.leaves):
                order.leaves = 0
                self._status(order, EXPIRED, _FILL_OR_KILL, out)
                self._ended(order)
                return
        else:
            if crosses and order.post_only:
                self.index.remove(order)
                self.reject(order.order_id, order.user_id, _POST_ONLY_WOULD_CROSS, out)
                return
            if tif == FOK and not self._can_fill(buy, order.user_id, limit_key, order.leaves):
                # as in `_add`: no trace, not even its id
                self.index.remove(order)
                order.leaves = 0
                self._status(order, EXPIRED, _FILL_OR_KILL, out)
                return
            self._status(order, ACCEPTED, NO_REASON, out)
        if crosses and (not aon or self._can_fill(buy, order.user_id, limit_key, order.leaves)):
            self._take(order, limit_key, out)
        if rests:
            self._rest_remainder(order, 0, out)
            return
        self._end_taker(order, _NO_LIQUIDITY if not limit else _IMMEDIATE_OR_CANCEL, out)

    def _pend(self, order: Order, stop: i64) -> None:
        """Put a stop in its side's queue for its trigger price."""
        if order.side == BUY:
            stops = self.stop_bids
            keys = self.stop_bid_keys
            key: i64 = -stop
        else:
            stops = self.stop_asks
            keys = self.stop_ask_keys
            key = stop
        queue = stops.get(key)
        if queue is None:
            stops[key] = [order]
            insort(keys, key)
        else:
            queue.append(order)
        self.stops += 1

    def _unpend(self, order: Order, ext: Special) -> None:
        """Take a pending stop out of its queue (a cancel)."""
        if order.side == BUY:
            stops = self.stop_bids
            keys = self.stop_bid_keys
            key: i64 = -ext.stop
        else:
            stops = self.stop_asks
            keys = self.stop_ask_keys
            key = ext.stop
        queue = stops[key]
        queue.remove(order)
        if not queue:
            del stops[key]
            del keys[bisect_left(keys, key)]
        self.stops -= 1
        ext.stop = 0

    def _trigger_stops(self, out: list[Event], start: int) -> None:
        """Trigger the stops the trades among `out[start:]` reached, then those their own
        trades reach, and so on, all inside the command that moved the price.

        Trigger order: by the trades, in order; a trade at price p elects every pending buy
        stop at <= p (lowest stop price first), then every pending sell stop at >= p
        (highest first); earliest accepted first at one stop price. Elected stops trigger
        one after the other, each trading completely before the next."""
        elected: list[Order] = []
        done = 0
        at = start
        while True:
            end = len(out)
            while at < end and self.stops:
                event = out[at]
                if event[0] == _TRADE:
                    self._elect(event[4], elected)
                at += 1
            at = end
            if done == len(elected):
                return
            order = elected[done]
            done += 1
            ext = order.ext
            self._enter(order, order.price != 0, ext.tif if ext is not None else GTC, True, out)

    def _elect(self, price: int, elected: list[Order]) -> None:
        keys = self.stop_bid_keys
        while keys and keys[-1] >= -price:
            queue = self.stop_bids.pop(keys.pop())
            for order in queue:
                self._unstop(order)
            self.stops -= len(queue)
            elected.extend(queue)
        keys = self.stop_ask_keys
        while keys and keys[-1] >= price:
            queue = self.stop_asks.pop(keys.pop())
            for order in queue:
                self._unstop(order)
            self.stops -= len(queue)
            elected.extend(queue)

    def _unstop(self, order: Order) -> None:
        ext = order.ext
        if ext is not None:
            ext.stop = 0

    def _end_taker(self, order: Order, reason: int, out: list[Event]) -> None:
        """A taker that may not rest: FILLED, or EXPIRED with what is left cancelled."""
        if order.leaves:
            order.leaves = 0
            self._status(order, EXPIRED, reason, out)
        else:
            self._status(order, FILLED, NO_REASON, out)
        self._ended(order)

    def _rest_remainder(self, order: Order, filled_before: i64, out: list[Event]) -> None:
        """A GTC limit after matching: rests what is left (PARTIALLY_FILLED if it traded
        just now) or is FILLED."""
        if not order.leaves:
            self._status(order, FILLED, NO_REASON, out)
            self._ended(order)
            return
        self._rest(order)
        if order.filled != filled_before:
            self._status(order, PARTIALLY_FILLED, NO_REASON, out)

    def _new_level(self, side: i64, price: i64) -> Level:
        level = Level(price, side)
        if side == BUY:
            self.bids[price] = level
            keys = self.bid_keys
            key = price
        else:
            self.asks[-price] = level
            keys = self.ask_keys
            key = -price
        if not keys or key > keys[-1]:
            keys.append(key)
        else:
            insort(keys, key)
        return level

    def _touch(self, level: Level) -> None:
        if not level.dirty:
            level.dirty = True
            self.dirty.append(level)

    def _rest(self, order: Order) -> None:
        price = order.price
        level = self.bids.get(price) if order.side == BUY else self.asks.get(-price)
        if level is None:
            level = self._new_level(order.side, price)
        level.orders.append(order)
        level.total += order.leaves
        ext = order.ext
        if ext is not None:
            self._hide(level, order, ext)
        if not level.dirty:
            level.dirty = True
            self.dirty.append(level)

    def _hide(self, level: Level, order: Order, ext: Special) -> None:
        """Count a resting iceberg or all-or-none order in its level's hidden quantity."""
        display = ext.display
        if display:
            peak = display if display < order.leaves else order.leaves
            ext.peak = peak
            level.hidden += order.leaves - peak
        else:
            level.hidden += order.leaves
        level.special += 1

    def _rehide(self, level: Level, order: Order, ext: Special) -> None:
        """`_hide` keeping the order's current peak (a replace that kept its place)."""
        level.hidden += order.leaves - ext.peak if ext.display else order.leaves
        level.special += 1

    def _unhide(self, level: Level, order: Order, ext: Special) -> None:
        """The opposite of `_hide`, for an order leaving its level (before leaves is 0)."""
        if ext.display:
            level.hidden -= order.leaves - ext.peak
        else:
            level.hidden -= order.leaves
        level.special -= 1

    def _can_fill(self, buy: bool, user_id: str, limit_key: i64, qty: i64) -> bool:
        """Would a FOK of `qty` fill completely? Own orders don't count under self-trade
        prevention, since matching would cancel them instead of filling against them."""
        keys = self.ask_keys if buy else self.bid_keys
        levels = self.asks if buy else self.bids
        i = len(keys) - 1
        while i >= 0:
            key = keys[i]
            if key < limit_key:
                return False
            level = levels[key]
            if level.special:
                qty = self._level_fill(level, user_id, qty)
            elif self.stp:
                queue = level.orders
                for j in range(level.head, len(queue)):
                    maker = queue[j]
                    if maker.user_id != user_id:
                        qty -= maker.leaves
            else:
                qty -= level.total
            if qty <= 0:
                return True
            i -= 1
        return False

    def _level_fill(self, level: Level, user_id: str, qty: i64) -> i64:
        """What of `qty` would be left after matching this level (with icebergs or
        all-or-none orders): `_take_special` played on copies, so the order the refreshed
        peaks take and the all-or-none orders skipped are exactly matching's."""
        makers: list[tuple[i64, i64, i64, bool]] = []
        queue = level.orders
        stp = self.stp
        for j in range(level.head, len(queue)):
            maker = queue[j]
            if maker.leaves and not (stp and maker.user_id == user_id):
                ext = maker.ext
                if ext is None:
                    makers.append((maker.leaves, maker.leaves, 0, False))
                else:
                    peak = ext.peak if ext.display else maker.leaves
                    makers.append((maker.leaves, peak, ext.display, ext.aon))
        j = 0
        while j < len(makers) and qty > 0:
            leaves, peak, display, aon = makers[j]
            j += 1
            if aon and leaves > qty:
                continue
            take = peak if peak < qty else qty
            qty -= take
            leaves -= take
            if display and leaves and take == peak:
                makers.append((leaves, display if display < leaves else leaves, display, False))
        return qty

    def _take(self, taker: Order, limit_key: i64, out: list[Event]) -> None:
        """Match `taker` against the opposite side while it crosses; updates taker in place.

        Per match: TRADE (its seq is the trade id), the maker's FILL, the taker's FILL, the
        maker's status. The taker's own final status is its caller's to emit."""
        if taker.side == BUY:
            keys = self.ask_keys
            levels = self.asks
        else:
            keys = self.bid_keys
            levels = self.bids
        rem = taker.leaves
        taker_id = taker.order_id
        taker_user = taker.user_id
        taker_side = taker.side
        stp = self.stp
        seq = self.seq
        last_price = self.last_price
        k = len(keys) - 1
        while rem and k >= 0:
            key = keys[k]
            if key < limit_key:
                break
            level = levels[key]
            if level.special:
                # icebergs or all-or-none orders here: the general loop
                self.seq = seq
                self.last_price = last_price
                rem = self._take_special(taker, level, rem, out)
                seq = self.seq
                last_price = self.last_price
                if not level.total:
                    del keys[k]
                    del levels[key]
                else:
                    level.drop_head()
                k -= 1
                continue
            queue = level.orders
            head = level.head
            price = level.price
            boxed_price: Any = price
            traded: i64 = 0
            while head < len(queue):
                maker = queue[head]
                left = maker.leaves
                if not left:
                    head += 1
                    level.dead -= 1
                    continue
                if stp and maker.user_id == taker_user:
                    head += 1
                    level.total -= left
                    maker.leaves = 0
                    seq += 1
                    out.append(
                        (
                            _STATUS,
                            seq,
                            maker.order_id,
                            maker.user_id,
                            CANCELLED,
                            _SELF_TRADE_PREVENTED,
                            maker.filled,
                            0,
                        )
                    )
                    self._ended(maker)
                    continue
                qty = left if left <= rem else rem
                rem -= qty
                left -= qty
                traded += qty
                maker.leaves = left
                filled = maker.filled + qty
                maker.filled = filled
                maker_id = maker.order_id
                maker_user = maker.user_id
                # Boxed once for the three events that carry them (Any: no unboxing)
                trade_id: Any = seq + 1
                size: Any = qty
                out.append(
                    (_TRADE, trade_id, maker_id, taker_id, boxed_price, size, taker_side, trade_id)
                )
                out.append(
                    (_FILL, seq + 2, maker_id, maker_user, boxed_price, size, MAKER, trade_id)
                )
                out.append(
                    (_FILL, seq + 3, taker_id, taker_user, boxed_price, size, TAKER, trade_id)
                )
                seq += 4
                last_price = price
                if left:
                    out.append(
                        (
                            _STATUS,
                            seq,
                            maker_id,
                            maker_user,
                            PARTIALLY_FILLED,
                            NO_REASON,
                            filled,
                            left,
                        )
                    )
                    break
                out.append((_STATUS, seq, maker_id, maker_user, FILLED, NO_REASON, filled, 0))
                head += 1
                self._ended(maker)
                if not rem:
                    break
            level.head = head
            level.total -= traded
            if not level.dirty:
                level.dirty = True
                self.dirty.append(level)
            if not level.total:
                del keys[k]
                del levels[key]
            else:
                level.drop_head()
            k -= 1
        self.seq = seq
        self.last_price = last_price
        taker.filled += taker.leaves - rem
        taker.leaves = rem

    def _take_special(self, taker: Order, level: Level, rem: i64, out: list[Event]) -> i64:
        """`_take` at a level with icebergs or all-or-none orders; returns the taker's rem.

        An all-or-none maker is skipped (it keeps its place) unless rem covers its leaves.
        An iceberg trades at most its peak; a peak used up while leaves remain is refreshed,
        min(display, leaves), as a new object at the back of the level (so this taker may
        meet it again there), the old one left dead in its slot. Consumed slots past a
        skipped order count as dead, like cancelled ones."""
        queue = level.orders
        head = level.head
        i = head
        price = level.price
        boxed_price: Any = price
        taker_id = taker.order_id
        taker_user = taker.user_id
        taker_side = taker.side
        stp = self.stp
        traded: i64 = 0
        while i < len(queue) and rem:
            maker = queue[i]
            left = maker.leaves
            if not left:
                if i == head:
                    head += 1
                    level.dead -= 1
                i += 1
                continue
            ext = maker.ext
            if stp and maker.user_id == taker_user:
                if ext is not None:
                    self._unhide(level, maker, ext)
                level.total -= left
                maker.leaves = 0
                if i == head:
                    head += 1
                else:
                    level.dead += 1
                i += 1
                self._status(maker, CANCELLED, _SELF_TRADE_PREVENTED, out)
                self._ended(maker)
                continue
            aon = False
            display: i64 = 0
            avail = left
            if ext is not None:
                aon = ext.aon
                display = ext.display
                if display:
                    avail = ext.peak
            if aon and left > rem:
                i += 1
                continue
            qty = avail if avail < rem else rem
            rem -= qty
            left -= qty
            traded += qty
            maker.leaves = left
            filled = maker.filled + qty
            maker.filled = filled
            if ext is not None and display:
                ext.peak -= qty
            elif aon:
                level.hidden -= qty
            maker_id = maker.order_id
            maker_user = maker.user_id
            seq = self.seq
            trade_id: Any = seq + 1
            size: Any = qty
            out.append(
                (_TRADE, trade_id, maker_id, taker_id, boxed_price, size, taker_side, trade_id)
            )
            out.append((_FILL, seq + 2, maker_id, maker_user, boxed_price, size, MAKER, trade_id))
            out.append((_FILL, seq + 3, taker_id, taker_user, boxed_price, size, TAKER, trade_id))
            self.seq = seq + 3
            self.last_price = price
            if not left:
                self._status(maker, FILLED, NO_REASON, out)
                if display or aon:
                    level.special -= 1
                if i == head:
                    head += 1
                else:
                    level.dead += 1
                i += 1
                self._ended(maker)
                continue
            self._status(maker, PARTIALLY_FILLED, NO_REASON, out)
            if ext is not None and display and not ext.peak:
                # refresh: the next peak goes to the back of the level
                fresh = Order(
                    left, filled, maker_id, maker_user, maker.side, price, maker.post_only
                )
                peak = display if display < left else left
                ext.peak = peak
                fresh.ext = ext
                maker.ext = None
                level.hidden -= peak
                self.index.swap(maker, fresh)
                maker.leaves = 0
                if i == head:
                    head += 1
                else:
                    level.dead += 1
                i += 1
                queue.append(fresh)
        level.head = head
        level.total -= traded
        self._touch(level)
        return rem

    def _cancel(self, order_id: str, user_id: str, out: list[Event]) -> None:
        order = self._find(order_id, user_id, out)
        if order is None:
            return
        ext = order.ext
        if ext is not None and ext.stop:
            self._unpend(order, ext)
            order.leaves = 0
        else:
            self._unlink(order)
        self._status(order, CANCELLED, NO_REASON, out)
        self._ended(order)

    def _replace(self, order_id: str, user_id: str, price: int, qty: int, out: list[Event]) -> None:
        """FIX-style amend: `qty` is the new total quantity, leaves = qty - filled. Lowering
        it keeps time priority; raising it or changing the price loses priority."""
        order = self._find(order_id, user_id, out)
        if order is None:
            return
        ext = order.ext
        if ext is not None and ext.stop:
            self._status(order, REJECTED, _STOP_NOT_REPLACEABLE, out)
            return
        reason = self._check_size(qty)
        if not reason:
            reason = self._check_price(price)
        if reason:
            self._status(order, REJECTED, reason, out)
            return
        leaves: i64 = qty - order.filled
        if leaves <= 0:
            self._unlink(order)
            self._status(order, CANCELLED, _REPLACED_TO_ZERO, out)
            self._ended(order)
        elif price == order.price and leaves <= order.leaves:
            self._reduce(order, order.leaves - leaves)
            self._status(order, REPLACED, NO_REASON, out)
        else:
            self._requeue(order, price, leaves, out)

    def _requeue(self, order: Order, price: i64, leaves: i64, out: list[Event]) -> None:
        """Replace that loses priority: the order leaves its queue and enters again at
        `price` as a new arrival, matching first if it now crosses."""
        buy = order.side == BUY
        opp_keys = self.ask_keys if buy else self.bid_keys
        limit_key: i64 = -price if buy else price
        crosses = len(opp_keys) > 0 and opp_keys[-1] >= limit_key
        if order.post_only and crosses:
            self._status(order, REJECTED, _POST_ONLY_WOULD_CROSS, out)
            return
        self._unlink(order)
        # A fresh object: the old one may still sit, dead, in its former queue.
        filled = order.filled
        moved = Order(
            leaves, filled, order.order_id, order.user_id, order.side, price, order.post_only
        )
        ext = order.ext
        moved.ext = ext
        order.ext = None
        self.index.swap(order, moved)
        self._status(moved, REPLACED, NO_REASON, out)
        aon = ext is not None and ext.aon
        if crosses and (not aon or self._can_fill(buy, moved.user_id, limit_key, leaves)):
            self._take(moved, limit_key, out)
        self._rest_remainder(moved, filled, out)

    def _admit(self, order: Order) -> bool:
        """Index a new order; False (nothing changes) if its (user_id, order_id) is live or
        remembered as ended."""
        if not self.index.insert(order):
            return False
        if self.ended.find(order.order_id, order.user_id) >= 0:
            self.index.remove(order)
            return False
        return True

    def _find(self, order_id: str, user_id: str, out: list[Event]) -> Order | None:
        """The live order (user_id, order_id), or None after emitting why not."""
        order = self.index.get(order_id, user_id)
        if order is not None:
            return order
        ended = self.ended
        slot = ended.find(order_id, user_id)
        seq = self.seq + 1
        self.seq = seq
        if slot < 0:
            out.append((_STATUS, seq, order_id, user_id, REJECTED, _UNKNOWN_ORDER, 0, 0))
        else:  # ended, still remembered
            filled: int = ended.filled[slot]
            out.append((_STATUS, seq, order_id, user_id, REJECTED, _ORDER_NOT_OPEN, filled, 0))
        return None

    def _level_of(self, order: Order) -> Level:
        return self.bids[order.price] if order.side == BUY else self.asks[-order.price]

    def _unlink(self, order: Order) -> None:
        """Take a live order off its level (lazily: it stays queued with leaves 0)."""
        level = self._level_of(order)
        ext = order.ext
        if ext is not None:
            self._unhide(level, order, ext)
        level.total -= order.leaves
        order.leaves = 0
        self._touch(level)
        if not level.total:
            if order.side == BUY:
                keys = self.bid_keys
                key: i64 = order.price
                del self.bids[key]
            else:
                keys = self.ask_keys
                key = -order.price
                del self.asks[key]
            del keys[bisect_left(keys, key)]
        else:
            level.dead += 1
            if level.dead > (len(level.orders) - level.head) // 2 + COMPACT_SLACK:
                level.compact()

    def _reduce(self, order: Order, by: i64) -> None:
        level = self._level_of(order)
        level.total -= by
        ext = order.ext
        if ext is not None:
            self._unhide(level, order, ext)
            order.leaves -= by
            if ext.peak > order.leaves:  # noqa: PLR1730 - no generic min() on i64
                ext.peak = order.leaves
            self._rehide(level, order, ext)
        else:
            order.leaves -= by
        self._touch(level)

    def _ended(self, order: Order) -> None:
        """An order (in the index, leaves 0 now) has ended: it leaves the index and is
        remembered for duplicate rejection within the window. A replace that re-queues an
        order never ends the old object (the new one takes its place)."""
        self.index.remove(order)
        self.ended.add(order.order_id, order.user_id, order.filled)

    # ------------------------------------------------------------------ queries

    def depth(self, levels: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Top `levels` per side as (price, shown quantity), best first. Shown: icebergs
        count their peak only, all-or-none orders not at all (a level of nothing else is
        not shown); pending stops are not on any level."""
        return self._side_depth(self.bid_keys, self.bids, levels), self._side_depth(
            self.ask_keys, self.asks, levels
        )

    def _side_depth(
        self, keys: list[int], by_key: dict[int, Level], levels: int
    ) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        i = len(keys) - 1
        while i >= 0 and len(out) < levels:
            level = by_key[keys[i]]
            shown = level.total - level.hidden
            if shown:
                out.append((level.price, shown))
            i -= 1
        return out

    def bbo(self) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """Best bid and best ask as (price, total quantity), or None for an empty side."""
        bids, asks = self.depth(1)
        return (bids[0] if bids else None, asks[0] if asks else None)

    def dirty_prices(self) -> tuple[list[int], list[int]]:
        """Prices of the levels changed since the last depth update: bids, asks, ascending."""
        bids: set[int] = set()
        asks: set[int] = set()
        for level in self.dirty:
            if level.side == BUY:
                bids.add(level.price)
            else:
                asks.add(level.price)
        return sorted(bids), sorted(asks)

    def mark_dirty(self, side: i64, price: i64) -> None:
        """Record `price` on `side` as changed (restoring a snapshot's pending depth)."""
        level = self.bids.get(price) if side == BUY else self.asks.get(-price)
        self._touch(level if level is not None else Level(price, side))

    def depth_update(self) -> DepthUpdate | None:
        """Levels changed since the last call (quantity 0: level gone), best first; None if
        nothing changed. Conflates any number of commands into one update."""
        dirty = self.dirty
        if not dirty:
            return None
        self.dirty = []
        # A price's levels are created one after another (a new one only once the last is
        # gone, total 0) and each is listed at its first touch, so the last listed level of
        # a price is its current state: its shown quantity, or 0 if it is gone.
        shown_bids: dict[int, int] = {}
        shown_asks: dict[int, int] = {}
        for level in dirty:
            level.dirty = False
            shown = level.total - level.hidden if level.total else 0
            if level.side == BUY:
                shown_bids[level.price] = shown
            else:
                shown_asks[level.price] = shown
        bids = sorted(shown_bids.items(), reverse=True)
        asks = sorted(shown_asks.items())
        return DepthUpdate(self.seq, bids, asks)

    def depth_snapshot(self, levels: int) -> DepthUpdate:
        """The top `levels` per side as a DepthUpdate that replaces, not merges."""
        bids, asks = self.depth(levels)
        return DepthUpdate(self.seq, bids, asks, snapshot=True)

    def resting(self) -> int:
        """Number of live resting orders."""
        count: i64 = 0
        for level in self.bids.values():
            count += level.live()
        for level in self.asks.values():
            count += level.live()
        return count

    def open_order(self, order_id: str, user_id: str) -> Order | None:
        return self.index.get(order_id, user_id)

    def remembered(self) -> int:
        """Number of ended orders remembered for duplicate rejection."""
        return self.ended.count()

    # ------------------------------------------------------------------ state

    def live_orders(self) -> list[Order]:
        """Bids best level first, then asks best level first; FIFO within a level."""
        out: list[Order] = []
        for key in reversed(self.bid_keys):
            out.extend(self.bids[key].live_orders())
        for key in reversed(self.ask_keys):
            out.extend(self.asks[key].live_orders())
        return out

    def order_columns(self) -> OrderColumns:
        """The live orders (as `live_orders`) one column per attribute, for snapshots."""
        live = self.live_orders()
        return (
            [o.side for o in live],
            [o.price for o in live],
            [o.leaves for o in live],
            [o.filled for o in live],
            [o.post_only for o in live],
            [o.order_id for o in live],
            [o.user_id for o in live],
        )

    def order_extras(self) -> OrderExtras:
        """(display, peak, aon) of the live orders, as `order_columns`; all three empty if
        no resting order is an iceberg or all-or-none (so a plain book's snapshot does not
        change)."""
        display: list[int] = []
        peak: list[int] = []
        aon: list[bool] = []
        special = False
        for level in self.bids.values():
            if level.special:
                special = True
        for level in self.asks.values():
            if level.special:
                special = True
        if special:
            for o in self.live_orders():
                display.append(o.display)
                peak.append(o.peak)
                aon.append(o.aon)
        return display, peak, aon

    def pending_stops(self) -> list[Order]:
        """Pending stops in trigger priority (see StopColumns)."""
        out: list[Order] = []
        for key in reversed(self.stop_bid_keys):
            out.extend(self.stop_bids[key])
        for key in reversed(self.stop_ask_keys):
            out.extend(self.stop_asks[key])
        return out

    def stop_columns(self) -> StopColumns:
        stops = self.pending_stops()
        return (
            [o.side for o in stops],
            [o.stop for o in stops],
            [o.price for o in stops],
            [o.leaves for o in stops],
            [o.tif for o in stops],
            [o.display for o in stops],
            [o.aon for o in stops],
            [o.order_id for o in stops],
            [o.user_id for o in stops],
        )

    def restore_stops(self, columns: StopColumns) -> None:
        """Pending stops back from `stop_columns` (after `restore_orders`). Raises
        ValueError on a stop that `_special_reason` would have refused."""
        sides, stops, prices, qtys, tifs, displays, aons, order_ids, user_ids = columns
        count = len(sides)
        if not all(len(c) == count for c in (stops, prices, qtys, tifs, displays, aons)) or not (
            len(order_ids) == len(user_ids) == count
        ):
            raise ValueError("stop columns differ in length")
        for i in range(count):
            side = sides[i]
            price = prices[i]
            qty = qtys[i]
            order_id = order_ids[i]
            user_id = user_ids[i]
            otype = STOP_LIMIT if price else STOP
            if qty > MAX_PRICE or self._special_reason(
                side, otype, tifs[i], False, price, qty, stops[i], displays[i], aons[i]
            ):
                raise ValueError(f"stop {user_id}/{order_id} invalid")
            order = Order(qty, 0, order_id, user_id, side, price, False)
            order.ext = Special(displays[i], aons[i], stops[i], tifs[i])
            if not self.index.insert(order):
                raise ValueError(f"order {user_id}/{order_id} twice")
            self._pend(order, stops[i])

    def ended_orders(self) -> list[Order]:
        """The ended orders remembered for duplicate rejection, oldest first (built on
        demand: the book keeps only their ids and filled quantity)."""
        order_ids, user_ids, filled = self.ended.columns()
        return [
            Order(0, filled[i], order_ids[i], user_ids[i], 0, 0, False)
            for i in range(len(order_ids))
        ]

    def unindexed(self) -> i64:
        """Restored orders not indexed yet (`restore_orders` with a rank): `build_index`
        indexes them; the book answers the same meanwhile."""
        return self.index.unindexed()

    def build_index(self, limit: i64) -> bool:
        """Index up to `limit` more restored orders; True while some are left."""
        return self.index.build(limit)

    def restore_orders(
        self,
        columns: OrderColumns,
        extras: OrderExtras | None = None,
        rank: bytes | None = None,
    ) -> None:
        """Rebuild queues from `order_columns` (and `order_extras`) output. Raises
        ValueError naming the first order that makes no sense (checksums catch accident,
        not a wrong writer). `rank`: the orders' positions sorted by order id, ties by
        position (sorted() is stable), packed as a snapshot's `order_rank_le` (engine.book.packed);
        with it the orders are not indexed here but later (`build_index`), and `rank` is
        checked instead (one pass, no hashing)."""
        sides, prices, leaves, filled, post_only, order_ids, user_ids = columns
        deferred: list[Order] = []
        if rank is not None:
            if self.index.unindexed() or len(self.index):
                raise ValueError("orders restored into a book that has some")
            _check_rank(order_ids, user_ids, rank)
        displays, peaks, aons = extras if extras is not None else ([], [], [])
        special = len(displays) > 0
        if special and not len(displays) == len(peaks) == len(aons) == len(sides):
            raise ValueError("order extras differ in length from the orders")
        count = len(sides)
        if not (
            len(prices) == len(leaves) == len(filled) == len(post_only) == count
            and len(order_ids) == len(user_ids) == count
        ):
            raise ValueError("order columns differ in length")
        level: Level | None = None
        for i in range(count):
            side = sides[i]
            price = prices[i]
            qty = leaves[i]
            done = filled[i]
            order_id = order_ids[i]
            user_id = user_ids[i]
            if side != BUY and side != SELL:  # noqa: PLR1714
                raise ValueError(f"order {user_id}/{order_id} has side {side}")
            if qty <= 0 or qty > MAX_PRICE or done < 0 or done > MAX_PRICE:
                raise ValueError(f"order {user_id}/{order_id} invalid")
            if self._check_price(price):
                raise ValueError(f"order {user_id}/{order_id} invalid")
            order = Order(qty, done, order_id, user_id, side, price, post_only[i])
            if rank is not None:
                deferred.append(order)
            elif not self.index.insert(order):
                raise ValueError(f"order {user_id}/{order_id} twice")
            if level is None or level.price != price or level.side != side:
                known = self.bids.get(price) if side == BUY else self.asks.get(-price)
                if known is not None:
                    raise ValueError(f"level {price} split in two")
                level = self._new_level(side, price)
            level.orders.append(order)
            level.total += qty
            if special and (displays[i] or aons[i]):
                display = displays[i]
                peak = peaks[i]
                if display < 0 or display > MAX_PRICE or (display and aons[i]):
                    raise ValueError(f"order {user_id}/{order_id} invalid")
                if display and not 0 < peak <= min(display, qty):
                    raise ValueError(f"order {user_id}/{order_id} invalid")
                ext = Special(display, aons[i], 0, GTC)
                ext.peak = peak if display else 0
                order.ext = ext
                self._rehide(level, order, ext)
        if rank is not None:
            self.index.defer(deferred, order_ids, rank)

    def restore_ended(self, order_ids: list[str], user_ids: list[str], filled: list[int]) -> None:
        """Remember ended orders, oldest first (from `ended_orders`). Raises ValueError."""
        if not len(order_ids) == len(user_ids) == len(filled):
            raise ValueError("ended-order columns differ in length")
        if len(order_ids) > self.dedup_window:
            raise ValueError(f"{len(order_ids)} ended orders, the window is {self.dedup_window}")
        for i in range(len(order_ids)):
            order_id = order_ids[i]
            user_id = user_ids[i]
            done = filled[i]
            if done < 0 or done > MAX_PRICE:
                raise ValueError(f"ended order {user_id}/{order_id} invalid")
            if self.index.get(order_id, user_id) is not None or (
                self.ended.find(order_id, user_id) >= 0
            ):
                raise ValueError(f"order {user_id}/{order_id} twice")
            self.ended.add(order_id, user_id, done)


def _check_rank(order_ids: list[str], user_ids: list[str], rank: bytes) -> None:
    """`rank` holds each position of `order_ids` once, sorted by id, ties by position, and
    no user holds one id twice; else ValueError. Strictly increasing (id, position) pairs
    in range, one per order, are each position once: no table of the positions seen."""
    count: i64 = len(order_ids)
    if packed_count(rank) != count:
        raise ValueError(f"{packed_count(rank)} ranks for {count} orders")
    previous: i64 = -1
    run: i64 = 0  # where the run of equal ids that `previous` ends began
    before = ""
    for k in range(count):
        position = packed_at(rank, k)
        if position < 0 or position >= count:
            raise ValueError(f"rank {k} is not a position of an order")
        order_id = order_ids[position]
        if previous >= 0 and order_id <= before:  # one comparison while the ids increase
            if order_id != before or position <= previous:
                raise ValueError(f"rank {k} is out of order")
            user_id = user_ids[position]
            for j in range(run, k):
                if user_ids[packed_at(rank, j)] == user_id:
                    raise ValueError(f"order {user_id}/{order_id} twice")
        else:
            run = k
        previous = position
        before = order_id
