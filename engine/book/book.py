"""The order book of one symbol: price-time priority matching, pure and deterministic.

`Book.apply(command) -> list[Event]`. Nothing here reads a clock, draws a random number or
depends on dict order for matching; ids and sequence numbers derive from the input, so the
same commands give byte-identical events.

Both sides share one matching loop through a comparable key: a bid rests under key
`price`, an ask under key `-price`, so on either side the best level is the largest key,
kept last in an ascending list (`keys[-1]`), and a taker with limit price L crosses every
level whose key is >= its limit key (`-L` for a buy taking asks, `L` for a sell taking bids).
"""

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable

from engine.book.instrument import MAX_PRICE, Instrument
from engine.book.level import Level
from engine.book.order import FILLED_QTY, LEAVES, ORDER_ID, POST_ONLY, PRICE, SIDE, USER_ID, Order
from hotshard.commands import Command
from hotshard.domain import Action, Liquidity, OrderType, Side, Status, TimeInForce
from hotshard.events import FILL, STATUS, TRADE, DepthUpdate, Event
from hotshard.reasons import Reason

# Plain ints on the hot path: CPython compares exact ints much faster than IntEnum members.
# Events therefore carry plain ints; codecs turn them back into names.
ADD, CANCEL, REPLACE = int(Action.ADD), int(Action.CANCEL), int(Action.REPLACE)
BUY, SELL = int(Side.BUY), int(Side.SELL)
LIMIT, MARKET = int(OrderType.LIMIT), int(OrderType.MARKET)
GTC, IOC, FOK = int(TimeInForce.GTC), int(TimeInForce.IOC), int(TimeInForce.FOK)
MAKER, TAKER = int(Liquidity.MAKER), int(Liquidity.TAKER)
ACCEPTED = int(Status.ACCEPTED)
REJECTED = int(Status.REJECTED)
PARTIALLY_FILLED = int(Status.PARTIALLY_FILLED)
FILLED = int(Status.FILLED)
CANCELLED = int(Status.CANCELLED)
REPLACED = int(Status.REPLACED)
EXPIRED = int(Status.EXPIRED)
NO_REASON = Reason.NONE

_ANY_KEY = -MAX_PRICE - 1
"""Limit key of a market order: at or below every level's key, so it crosses all of them."""

# A level whose queue is more than half dead entries (plus this slack) is compacted on
# cancel: memory stays bounded while cancel stays amortised O(1).
_COMPACT_SLACK = 32


class Book:
    __slots__ = (
        "ask_keys",
        "asks",
        "bid_keys",
        "bids",
        "dedup_window",
        "dirty_asks",
        "dirty_bids",
        "done",
        "instrument",
        "last_price",
        "lot",
        "max_quantity",
        "orders",
        "price_max",
        "price_min",
        "seq",
        "stp",
        "symbol",
        "tick",
    )

    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        # The instrument's rules, copied into slots the hot path reads directly.
        self.tick = instrument.tick
        self.lot = instrument.lot
        self.max_quantity = instrument.max_quantity
        self.price_min = instrument.price_min
        self.price_max = instrument.price_max
        self.stp = instrument.self_trade_prevention
        self.dedup_window = instrument.dedup_window
        self.seq = 0
        self.last_price = 0
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        self.bid_keys: list[int] = []
        self.ask_keys: list[int] = []
        # user_id -> order_id -> Order: live orders and the last `dedup_window` ended ones.
        self.orders: dict[str, dict[str, Order]] = {}
        self.done: deque[Order] = deque()
        self.dirty_bids: set[int] = set()
        self.dirty_asks: set[int] = set()

    # ------------------------------------------------------------------ commands

    def apply(self, command: Command) -> list[Event]:
        """Apply one command; return its events in order. Never raises on bad values."""
        return self.apply_all((command,))

    def apply_all(self, commands: Iterable[Command], ends: list[int] | None = None) -> list[Event]:
        """Apply commands in order; return all their events in one list. If `ends` is given,
        the position just past each command's events is appended to it.

        The passive GTC limit, most of any real flow, is written out inline with the book's
        state in locals: at a million commands a second each Python call or attribute load
        is a measurable share of the budget. Everything else goes through `_apply_one`.
        """
        out: list[Event] = []
        append = out.append
        orders = self.orders
        bids, asks, bid_keys, ask_keys = self.bids, self.asks, self.bid_keys, self.ask_keys
        dirty_bids, dirty_asks = self.dirty_bids, self.dirty_asks
        lot, tick, price_min, price_max = self.lot, self.tick, self.price_min, self.price_max
        max_quantity = self.max_quantity
        seq = self.seq
        for command in commands:
            action, order_id, user_id, side, otype, tif, post_only, price, qty = command
            fast = (
                action == ADD
                and otype == LIMIT
                and tif == GTC
                and 0 < qty <= max_quantity
                and price_min <= price <= price_max
                and not qty % lot
                and not price % tick
            )
            checked = fast  # valid; it may still cross, be a duplicate or have a bad side
            if fast:
                if side == BUY:
                    fast = not ask_keys or ask_keys[-1] < -price
                    levels, key, dirty = bids, price, dirty_bids
                else:
                    fast = side == SELL and (not bid_keys or bid_keys[-1] < price)
                    levels, key, dirty = asks, -price, dirty_asks
                if fast:
                    order = [qty, 0, order_id, user_id, side, price, post_only]
                    user_orders = orders.get(user_id)
                    if user_orders is None:
                        user_orders = orders[user_id] = {}
                    # one hash lookup both checks for a duplicate and indexes the order
                    fast = user_orders.setdefault(order_id, order) is order
            if fast:
                seq += 1
                append((STATUS, seq, order_id, user_id, ACCEPTED, NO_REASON, 0, qty))
                level = levels.get(key)
                if level is None:
                    level = self._new_level(side, price)
                level.orders.append(order)
                level.total += qty
                dirty.add(price)
            elif action == ADD:
                self.seq = seq
                self._add(command, out, checked)
                if len(self.done) > self.dedup_window:
                    self._forget_ended()
                seq = self.seq
            else:
                self.seq = seq
                self._apply_one(command, out)
                seq = self.seq
            if ends is not None:
                ends.append(len(out))
        self.seq = seq
        return out

    def _apply_one(self, command: Command, out: list[Event]) -> None:
        action, order_id, user_id, _, _, _, _, price, qty = command
        if action == ADD:
            self._add(command, out, False)
        elif action == CANCEL:
            self._cancel(order_id, user_id, out)
        elif action == REPLACE:
            self._replace(order_id, user_id, price, qty, out)
        else:
            self.reject(order_id, user_id, Reason.BAD_ACTION, out)
        if len(self.done) > self.dedup_window:
            self._forget_ended()

    def reject(self, order_id: str, user_id: str, reason: Reason, out: list[Event]) -> None:
        """Emit REJECTED for input refused before or by the book; the book is unchanged."""
        self.seq += 1
        out.append((STATUS, self.seq, order_id, user_id, REJECTED, reason, 0, 0))

    def _status(self, order: Order, status: int, reason: int, out: list[Event]) -> None:
        """Emit `status` for `order` as it stands now (its filled and leaves)."""
        self.seq += 1
        out.append(
            (
                STATUS,
                self.seq,
                order[ORDER_ID],
                order[USER_ID],
                status,
                reason,
                order[FILLED_QTY],
                order[LEAVES],
            )
        )

    def _add_reason(self, command: Command) -> Reason:
        """Why an ADD is invalid (NONE if it is not): the first failed rule, in a fixed order."""
        _, _, _, side, otype, tif, post_only, price, qty = command
        if side != BUY and side != SELL:  # noqa: PLR1714 - cheaper than a set lookup
            return Reason.BAD_SIDE
        if otype != LIMIT and otype != MARKET:  # noqa: PLR1714
            return Reason.BAD_TYPE
        if tif != GTC and tif != IOC and tif != FOK:  # noqa: PLR1714
            return Reason.BAD_TIME_IN_FORCE
        if otype == MARKET and post_only:
            return Reason.MARKET_ORDER_NOT_ALLOWED
        return self._check_size(qty) or (self._check_price(price) if otype == LIMIT else NO_REASON)

    def _check_size(self, qty: int) -> Reason:
        if qty <= 0:
            return Reason.NON_POSITIVE_QUANTITY
        if qty > self.max_quantity:
            return Reason.VALUE_OUT_OF_RANGE
        if qty % self.lot:
            return Reason.QUANTITY_OFF_LOT
        return NO_REASON

    def _check_price(self, price: int) -> Reason:
        if price <= 0:
            return Reason.NON_POSITIVE_PRICE
        if price % self.tick:
            return Reason.PRICE_OFF_TICK
        if price < self.price_min or price > self.price_max:
            return Reason.PRICE_OUTSIDE_BAND
        return NO_REASON

    def _add(self, command: Command, out: list[Event], checked: bool) -> None:
        """Any ADD: validation (unless `checked` says the size, price, type and tif rules
        already passed), duplicate, post-only and FOK checks, matching, then the remainder
        rests (GTC limit) or expires."""
        _, order_id, user_id, side, otype, tif, post_only, price, qty = command
        reason = (
            self._add_reason(command)
            if not checked or (side != BUY and side != SELL)  # noqa: PLR1714
            else NO_REASON
        )
        if reason:
            self.reject(order_id, user_id, reason, out)
            return
        order: Order = [qty, 0, order_id, user_id, side, price if otype == LIMIT else 0, post_only]
        user_orders = self.orders.setdefault(user_id, {})
        if user_orders.setdefault(order_id, order) is not order:
            self.reject(order_id, user_id, Reason.DUPLICATE_ORDER_ID, out)
            return
        limit_key = _ANY_KEY if otype == MARKET else (-price if side == BUY else price)
        opp_keys = self.ask_keys if side == BUY else self.bid_keys
        crosses = bool(opp_keys) and opp_keys[-1] >= limit_key
        if post_only and crosses:
            del user_orders[order_id]
            self.reject(order_id, user_id, Reason.POST_ONLY_WOULD_CROSS, out)
            return
        if tif == FOK and not self._can_fill(side, user_id, limit_key, qty):
            del user_orders[order_id]  # a killed FOK leaves no trace, not even its id
            self.seq += 1
            out.append((STATUS, self.seq, order_id, user_id, EXPIRED, Reason.FILL_OR_KILL, 0, 0))
            return
        self.seq += 1
        out.append((STATUS, self.seq, order_id, user_id, ACCEPTED, NO_REASON, 0, qty))
        if crosses:
            self._take(order, limit_key, out)
        if order[LEAVES] and otype == LIMIT and tif == GTC:
            self._rest_remainder(order, 0, out)
        else:
            why = Reason.NO_LIQUIDITY if otype == MARKET else Reason.IMMEDIATE_OR_CANCEL
            self._end_taker(order, why, out)

    def _end_taker(self, order: Order, reason: Reason, out: list[Event]) -> None:
        """A taker that may not rest: FILLED, or EXPIRED with what is left cancelled."""
        if order[LEAVES]:
            order[LEAVES] = 0
            self._status(order, EXPIRED, reason, out)
        else:
            self._status(order, FILLED, NO_REASON, out)
        self.done.append(order)

    def _rest_remainder(self, order: Order, filled_before: int, out: list[Event]) -> None:
        """A GTC limit after matching: rests what is left (PARTIALLY_FILLED if it traded
        just now) or is FILLED."""
        if not order[LEAVES]:
            self._end_taker(order, NO_REASON, out)
            return
        self._rest(order)
        if order[FILLED_QTY] != filled_before:
            self._status(order, PARTIALLY_FILLED, NO_REASON, out)

    def _new_level(self, side: int, price: int) -> Level:
        if side == BUY:
            levels, keys, key = self.bids, self.bid_keys, price
        else:
            levels, keys, key = self.asks, self.ask_keys, -price
        level = levels[key] = Level(price)
        if not keys or key > keys[-1]:
            keys.append(key)
        else:
            insort(keys, key)
        return level

    def _rest(self, order: Order) -> None:
        price = order[PRICE]
        if order[SIDE] == BUY:
            level = self.bids.get(price)
            self.dirty_bids.add(price)
        else:
            level = self.asks.get(-price)
            self.dirty_asks.add(price)
        if level is None:
            level = self._new_level(order[SIDE], price)
        level.orders.append(order)
        level.total += order[LEAVES]

    def _can_fill(self, side: int, user_id: str, limit_key: int, qty: int) -> bool:
        """Would a FOK of `qty` fill completely? Own orders don't count under self-trade
        prevention, since matching would cancel them instead of filling against them."""
        keys, levels = (self.ask_keys, self.asks) if side == BUY else (self.bid_keys, self.bids)
        for key in reversed(keys):
            if key < limit_key:
                return False
            level = levels[key]
            if self.stp:
                qty -= sum(o[LEAVES] for o in level.orders if o[USER_ID] != user_id)
            else:
                qty -= level.total
            if qty <= 0:
                return True
        return False

    def _take(self, taker: Order, limit_key: int, out: list[Event]) -> None:
        """Match `taker` against the opposite side while it crosses; updates taker in place.

        Per match: TRADE (its seq is the trade id), the maker's FILL, the taker's FILL, the
        maker's status. The taker's own final status is its caller's to emit."""
        if taker[SIDE] == BUY:
            keys, levels, dirty = self.ask_keys, self.asks, self.dirty_asks
        else:
            keys, levels, dirty = self.bid_keys, self.bids, self.dirty_bids
        rem = taker[LEAVES]
        taker_id = taker[ORDER_ID]
        taker_user = taker[USER_ID]
        taker_side = taker[SIDE]
        stp = self.stp
        done = self.done
        append = out.append
        seq = self.seq
        last_price = self.last_price
        while rem and keys:
            key = keys[-1]
            if key < limit_key:
                break
            level = levels[key]
            queue = level.orders
            price = level.price
            traded = 0
            while queue:
                maker = queue[0]
                left = maker[LEAVES]
                if not left:
                    queue.popleft()
                    level.dead -= 1
                    continue
                if stp and maker[USER_ID] == taker_user:
                    queue.popleft()
                    level.total -= left
                    maker[LEAVES] = 0
                    seq += 1
                    append(
                        (
                            STATUS,
                            seq,
                            maker[ORDER_ID],
                            maker[USER_ID],
                            CANCELLED,
                            Reason.SELF_TRADE_PREVENTED,
                            maker[FILLED_QTY],
                            0,
                        )
                    )
                    done.append(maker)
                    continue
                qty = left if left <= rem else rem
                rem -= qty
                left -= qty
                traded += qty
                maker[LEAVES] = left
                maker[FILLED_QTY] += qty
                trade_id = seq + 1
                append(
                    (TRADE, trade_id, maker[ORDER_ID], taker_id, price, qty, taker_side, trade_id)
                )
                append(
                    (FILL, seq + 2, maker[ORDER_ID], maker[USER_ID], price, qty, MAKER, trade_id)
                )
                append((FILL, seq + 3, taker_id, taker_user, price, qty, TAKER, trade_id))
                seq += 4
                last_price = price
                if left:
                    append(
                        (
                            STATUS,
                            seq,
                            maker[ORDER_ID],
                            maker[USER_ID],
                            PARTIALLY_FILLED,
                            NO_REASON,
                            maker[FILLED_QTY],
                            left,
                        )
                    )
                    break
                append(
                    (
                        STATUS,
                        seq,
                        maker[ORDER_ID],
                        maker[USER_ID],
                        FILLED,
                        NO_REASON,
                        maker[FILLED_QTY],
                        0,
                    )
                )
                queue.popleft()
                done.append(maker)
                if not rem:
                    break
            level.total -= traded
            dirty.add(price)
            if not level.total:
                keys.pop()
                del levels[key]
        self.last_price = last_price
        taker[FILLED_QTY] += taker[LEAVES] - rem
        taker[LEAVES] = rem
        self.seq = seq

    def _cancel(self, order_id: str, user_id: str, out: list[Event]) -> None:
        order = self._find(order_id, user_id, out)
        if order is None:
            return
        self._unlink(order)
        self.done.append(order)
        self._status(order, CANCELLED, NO_REASON, out)

    def _replace(self, order_id: str, user_id: str, price: int, qty: int, out: list[Event]) -> None:
        """FIX-style amend: `qty` is the new total quantity, leaves = qty - filled. Lowering
        it keeps time priority; raising it or changing the price loses priority."""
        order = self._find(order_id, user_id, out)
        if order is None:
            return
        reason = self._check_size(qty) or self._check_price(price)
        if reason:
            self._status(order, REJECTED, reason, out)
            return
        leaves = qty - order[FILLED_QTY]
        if leaves <= 0:
            self._unlink(order)
            self.done.append(order)
            self._status(order, CANCELLED, Reason.REPLACED_TO_ZERO, out)
        elif price == order[PRICE] and leaves <= order[LEAVES]:
            self._reduce(order, order[LEAVES] - leaves)
            self._status(order, REPLACED, NO_REASON, out)
        else:
            self._requeue(order, price, leaves, out)

    def _requeue(self, order: Order, price: int, leaves: int, out: list[Event]) -> None:
        """Replace that loses priority: the order leaves its queue and enters again at
        `price` as a new arrival, matching first if it now crosses."""
        side = order[SIDE]
        opp_keys = self.ask_keys if side == BUY else self.bid_keys
        limit_key = -price if side == BUY else price
        crosses = bool(opp_keys) and opp_keys[-1] >= limit_key
        if order[POST_ONLY] and crosses:
            self._status(order, REJECTED, Reason.POST_ONLY_WOULD_CROSS, out)
            return
        self._unlink(order)
        # A fresh object: the old one may still sit, dead, in its former queue.
        moved = [
            leaves,
            order[FILLED_QTY],
            order[ORDER_ID],
            order[USER_ID],
            side,
            price,
            order[POST_ONLY],
        ]
        filled = order[FILLED_QTY]
        self.orders[order[USER_ID]][order[ORDER_ID]] = moved
        self._status(moved, REPLACED, NO_REASON, out)
        if crosses:
            self._take(moved, limit_key, out)
        self._rest_remainder(moved, filled, out)

    def _find(self, order_id: str, user_id: str, out: list[Event]) -> Order | None:
        """The live order (user_id, order_id), or None after emitting why not."""
        user_orders = self.orders.get(user_id)
        order = user_orders.get(order_id) if user_orders is not None else None
        if order is None:
            self.reject(order_id, user_id, Reason.UNKNOWN_ORDER, out)
            return None
        if not order[LEAVES]:
            self._status(order, REJECTED, Reason.ORDER_NOT_OPEN, out)
            return None
        return order

    def _level_of(self, order: Order) -> tuple[dict[int, Level], list[int], int, set[int]]:
        if order[SIDE] == BUY:
            return self.bids, self.bid_keys, order[PRICE], self.dirty_bids
        return self.asks, self.ask_keys, -order[PRICE], self.dirty_asks

    def _unlink(self, order: Order) -> None:
        """Take a live order off its level (lazily: it stays queued with leaves 0)."""
        levels, keys, key, dirty = self._level_of(order)
        level = levels[key]
        level.total -= order[LEAVES]
        order[LEAVES] = 0
        dirty.add(order[PRICE])
        if not level.total:
            del keys[bisect_left(keys, key)]
            del levels[key]
        else:
            level.dead += 1
            if level.dead > len(level.orders) // 2 + _COMPACT_SLACK:
                level.compact()

    def _reduce(self, order: Order, by: int) -> None:
        levels, _, key, dirty = self._level_of(order)
        levels[key].total -= by
        order[LEAVES] -= by
        dirty.add(order[PRICE])

    def _forget_ended(self) -> None:
        """Drop the oldest ended orders beyond the dedup window. An ended order is still the
        one its (user_id, order_id) maps to: the id can only be reused once it is dropped
        here, and a replace that re-queues an order never puts the old object in `done`."""
        done, orders, window = self.done, self.orders, self.dedup_window
        while len(done) > window:
            order = done.popleft()
            user_orders = orders[order[USER_ID]]
            del user_orders[order[ORDER_ID]]
            if not user_orders:
                del orders[order[USER_ID]]

    # ------------------------------------------------------------------ queries

    def depth(self, levels: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Top `levels` per side as (price, total quantity), best first."""
        if levels <= 0:
            return [], []
        bids = [(self.bids[k].price, self.bids[k].total) for k in reversed(self.bid_keys[-levels:])]
        asks = [(self.asks[k].price, self.asks[k].total) for k in reversed(self.ask_keys[-levels:])]
        return bids, asks

    def bbo(self) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """Best bid and best ask as (price, total quantity), or None for an empty side."""
        bids, asks = self.depth(1)
        return (bids[0] if bids else None, asks[0] if asks else None)

    def depth_update(self) -> DepthUpdate | None:
        """Levels changed since the last call (quantity 0: level gone), best first; None if
        nothing changed. Conflates any number of commands into one update."""
        if not self.dirty_bids and not self.dirty_asks:
            return None
        bids = [
            (p, level.total if (level := self.bids.get(p)) is not None else 0)
            for p in sorted(self.dirty_bids, reverse=True)
        ]
        asks = [
            (p, level.total if (level := self.asks.get(-p)) is not None else 0)
            for p in sorted(self.dirty_asks)
        ]
        self.dirty_bids.clear()
        self.dirty_asks.clear()
        return DepthUpdate(self.seq, bids, asks)

    def depth_snapshot(self, levels: int) -> DepthUpdate:
        """The top `levels` per side as a DepthUpdate that replaces, not merges."""
        bids, asks = self.depth(levels)
        return DepthUpdate(self.seq, bids, asks, snapshot=True)

    def resting(self) -> int:
        """Number of live resting orders."""
        return sum(level.live() for level in self.bids.values()) + sum(
            level.live() for level in self.asks.values()
        )

    def open_order(self, order_id: str, user_id: str) -> Order | None:
        user_orders = self.orders.get(user_id)
        order = user_orders.get(order_id) if user_orders is not None else None
        return order if order is not None and order[LEAVES] else None
