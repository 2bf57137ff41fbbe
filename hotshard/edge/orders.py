"""Order records in Redis, `order:{USER}:{ORDER_ID}`: what makes the router idempotent, holds
a balance reservation, and keeps the order's latest status for GET /orders/{id}.

One hash per (user, order_id), written by two parties, each step one Lua script:
- the router: the claim (`queue_claim`, then `claim_of` its reply: route lookup + idempotency +
  reservation in ONE round trip, beside others of a batch), then
  `confirm` once the broker acknowledged the record, or `abandon` if it definitely failed;
- the stream handler: `apply_status` and `apply_fill` as events arrive (at least once, in
  any interleaving of the two topics: each keeps its own per-order sequence guard).

Routing states (`state`): PENDING (claimed, not yet acknowledged; after `inflight_ms` a
retry may take over: the engine's own DUPLICATE_ORDER_ID check is the backstop), ACCEPTED
(acknowledged by the broker: a retry gets the same answer, nothing is produced), RETRY (the
engine answered STALE_ROUTE: a resubmission produces again). A resubmission with different
contents under the same order_id is DUPLICATE_ORDER_ID.

Open orders: `open-orders:{USER}` (sorted set, order_id by claim time) gains the order at its
claim and loses it when it ends (leaves 0) or is abandoned: GET /orders and cancel-all read
it. Fills: each fill applied (once, in the same script) is appended to the user's stream
`fills:{USER}`, capped at FILL_HISTORY entries: GET /fills pages through it.

Reservations (balance checks on): an ADD BUY reserves price x quantity of CASH (a MARKET buy
at the band's max price), a SELL reserves quantity of the symbol, taken from
`balance:{USER}` atomically with the claim. Fills consume it (a BUY filled below its price
gets the difference back, a SELL gets CASH); when the order ends (leaves 0) what no fill
will consume returns to the balance. Amounts are Redis integers (Lua compares them as
doubles: exact below 2^53).
"""

from dataclasses import dataclass
from typing import Any

import redis

from hotshard import names
from hotshard.clients import text
from hotshard.domain import Side, Status
from hotshard.rawpipe import RawPipeline, run_script
from hotshard.reasons import Reason
from hotshard.route import Route, route_from_fields

CASH = "CASH"
FILL_HISTORY = 10_000  # fills kept per user (approximately: the stream is trimmed with ~)

# KEYS: route, order, balance, open orders.
# ARGV: fp, now_ms, inflight_ms, ttl_ms, asset, unit, symbol, side, price, quantity, type,
# order_id.
_CLAIM = """
local route = redis.call('HGETALL', KEYS[1])
if #route == 0 then return {'NO_ROUTE'} end
local rec = redis.call('HMGET', KEYS[2], 'fp', 'state', 'claimed_ms',
                       'topic', 'partition', 'offset', 'epoch')
if rec[1] then
  if rec[1] ~= ARGV[1] then return {'DUPLICATE'} end
  if rec[2] == 'ACCEPTED' then return {'ACCEPTED', rec[4], rec[5], rec[6], rec[7]} end
  if rec[2] == 'PENDING' and tonumber(ARGV[2]) - tonumber(rec[3]) < tonumber(ARGV[3]) then
    return {'IN_FLIGHT'}
  end
else
  if ARGV[5] ~= '' then
    local need = tonumber(ARGV[6]) * tonumber(ARGV[10])
    local have = tonumber(redis.call('HGET', KEYS[3], ARGV[5]) or '0')
    if have < need then return {'INSUFFICIENT', tostring(have), tostring(need)} end
    redis.call('HINCRBY', KEYS[3], ARGV[5], -need)
    redis.call('HSET', KEYS[2], 'asset', ARGV[5], 'unit', ARGV[6], 'reserved', need)
  end
  redis.call('HSET', KEYS[2], 'fp', ARGV[1], 'symbol', ARGV[7], 'side', ARGV[8],
             'price', ARGV[9], 'quantity', ARGV[10], 'type', ARGV[11],
             'filled', 0, 'leaves', ARGV[10], 'fill_qty', 0, 'status_seq', 0, 'fill_seq', 0)
  redis.call('ZADD', KEYS[4], ARGV[2], ARGV[12])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
end
redis.call('HSET', KEYS[2], 'state', 'PENDING', 'claimed_ms', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
local out = {'GO'}
for i = 1, #route do out[#out + 1] = route[i] end
return out
"""

# KEYS: order, balance, open orders. ARGV: fp, order_id. A claim whose record definitely
# never reached the broker.
_ABANDON = """
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'PENDING' then return 0 end
local asset = redis.call('HGET', KEYS[1], 'asset')
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
if asset and reserved > 0 then redis.call('HINCRBY', KEYS[2], asset, reserved) end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
"""

# A PENDING claim made to lapse at ARGV[2] (its claimed_ms moved back). KEYS: order.
# ARGV: fp, claimed_ms.
_LAPSE = """
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'PENDING' then return 0 end
redis.call('HSET', KEYS[1], 'claimed_ms', ARGV[2])
return 1
"""

# Release what no fill will consume once the order has ended (leaves 0). KEYS: order, balance.
_RELEASE_FN = """
local function release_rest(filled)
  local asset = redis.call('HGET', KEYS[1], 'asset')
  if not asset then return end
  local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
  local unit = tonumber(redis.call('HGET', KEYS[1], 'unit') or '0')
  local fill_qty = tonumber(redis.call('HGET', KEYS[1], 'fill_qty') or '0')
  local owed = (filled - fill_qty) * unit
  if owed < 0 then owed = 0 end
  local give = reserved - owed
  if give > 0 then
    redis.call('HINCRBY', KEYS[2], asset, give)
    redis.call('HSET', KEYS[1], 'reserved', reserved - give)
  end
end
"""

# KEYS: order, balance, open orders.
# ARGV: seq, status, reason, filled, leaves, stale_code, rejected_code, order_id,
# duplicate_code. A REJECTED(DUPLICATE_ORDER_ID) after the record had a status is about a
# second copy of the order (a resend the router produced again after it lost track of the
# first, e.g. Redis went away between produce and confirm): the record is the first
# copy's and keeps its status, open order and reservation. As the record's first status
# (an id the engine remembers from an order whose record is gone) it is the answer.
_STATUS = (
    _RELEASE_FN
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local seq = tonumber(ARGV[1])
local decided = tonumber(redis.call('HGET', KEYS[1], 'status_seq') or '0')
if ARGV[2] == ARGV[7] and ARGV[3] == ARGV[9] and decided > 0 then return 0 end
if seq > 0 and seq <= decided then return 0 end
local leaves = tonumber(ARGV[5])
if ARGV[2] == ARGV[7] and ARGV[3] == ARGV[6] then
  redis.call('HSET', KEYS[1], 'state', 'RETRY', 'status', ARGV[2], 'reason', ARGV[3])
  return 1
end
if seq > 0 then redis.call('HSET', KEYS[1], 'status_seq', seq) end
if ARGV[2] == ARGV[7] and leaves > 0 then
  redis.call('HSET', KEYS[1], 'last_reject', ARGV[3])
  return 1
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'reason', ARGV[3], 'filled', ARGV[4],
           'leaves', ARGV[5], 'seq', seq)
if leaves == 0 then
  release_rest(tonumber(ARGV[4]))
  redis.call('ZREM', KEYS[3], ARGV[8])
end
return 1
"""
)

# KEYS: order, balance, fills. ARGV: seq, price, quantity, the BUY side's number, cash asset,
# symbol, history cap, order_id, liquidity, trade_id, ts_ns.
_FILL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local seq = tonumber(ARGV[1])
if seq <= tonumber(redis.call('HGET', KEYS[1], 'fill_seq') or '0') then return 0 end
local qty = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'fill_seq', seq)
redis.call('HINCRBY', KEYS[1], 'fill_qty', qty)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'symbol', ARGV[6], 'seq', ARGV[1],
           'order_id', ARGV[8], 'side', redis.call('HGET', KEYS[1], 'side') or '0',
           'price', ARGV[2], 'quantity', ARGV[3], 'liquidity', ARGV[9], 'trade_id', ARGV[10],
           'ts_ns', ARGV[11])
local asset = redis.call('HGET', KEYS[1], 'asset')
if not asset then return 1 end
local unit = tonumber(redis.call('HGET', KEYS[1], 'unit'))
local price = tonumber(ARGV[2])
redis.call('HINCRBY', KEYS[1], 'reserved', -(qty * unit))
if redis.call('HGET', KEYS[1], 'side') == ARGV[4] then
  if unit > price then redis.call('HINCRBY', KEYS[2], ARGV[5], (unit - price) * qty) end
  redis.call('HINCRBY', KEYS[2], ARGV[6], qty)
else
  redis.call('HINCRBY', KEYS[2], ARGV[5], price * qty)
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim found. outcome: GO (produce to `route`), ACCEPTED (already acknowledged:
    answer with topic/partition/offset/epoch again), NO_ROUTE, DUPLICATE, IN_FLIGHT,
    INSUFFICIENT (have/need in `detail`)."""

    outcome: str
    route: Route | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    epoch: int = 0
    detail: str = ""


def claim_outcome(reply: Any) -> str:
    """The outcome the claim script's reply names ('' for anything else, e.g. an error
    reply). GO: this request took the claim (the record is PENDING under its fingerprint),
    whatever the rest of the reply holds; whoever then fails to send it must abandon it."""
    return text(reply[0]) if isinstance(reply, list | tuple) and reply else ""


def claim_of(symbol: str, reply: Any) -> Claim:
    """The claim script's reply as a Claim."""
    outcome = claim_outcome(reply)
    if outcome == "GO":
        return Claim(outcome, route_from_fields(symbol, list(reply[1:])))
    if outcome == "ACCEPTED":
        topic, partition, offset, epoch = (text(v) for v in reply[1:5])
        return Claim(outcome, None, topic, int(partition), int(offset), int(epoch))
    if outcome == "INSUFFICIENT":
        return Claim(outcome, detail=f"available {text(reply[1])}, needed {text(reply[2])}")
    return Claim(outcome)


def order_key(user_id: str, order_id: str) -> str:
    return names.REDIS_ORDER.format(user_id, order_id)


def balance_key(user_id: str) -> str:
    return names.REDIS_BALANCE.format(user_id)


def open_key(user_id: str) -> str:
    return names.REDIS_OPEN_ORDERS.format(user_id)


def fills_key(user_id: str) -> str:
    return names.REDIS_FILLS.format(user_id)


def fund(r: redis.Redis, user_id: str, asset: str, amount: int) -> int:
    """Add `amount` (negative: take) of `asset` to the user's balance; the new balance. An
    operator's tool (hotshard fund), never reachable through the API."""
    return int(r.hincrby(balance_key(user_id), asset, amount))


def balances(r: redis.Redis, user_id: str) -> dict[str, int]:
    return {text(k): int(v) for k, v in r.hgetall(balance_key(user_id)).items()}


class OrderRecords:
    """The scripts, registered once per Redis client."""

    def __init__(self, r: redis.Redis, *, ttl_ms: int = 7 * 86_400_000) -> None:
        self.r = r
        self.ttl_ms = ttl_ms
        self._claim = r.register_script(_CLAIM)
        self._abandon = r.register_script(_ABANDON)
        self._lapse = r.register_script(_LAPSE)
        self._status = r.register_script(_STATUS)
        self._fill = r.register_script(_FILL)

    def queue_claim(
        self,
        pipe: RawPipeline,
        *,
        symbol: str,
        user_id: str,
        order_id: str,
        fingerprint: str,
        now_ms: int,
        inflight_ms: int,
        side: int,
        price: int,
        quantity: int,
        order_type: int,
        reserve_asset: str = "",
        reserve_unit: int = 0,
    ) -> None:
        """The claim's script call queued on `pipe`; its reply -> `claim_of`."""
        pipe.script(
            self._claim,
            [
                names.REDIS_ROUTE.format(symbol),
                order_key(user_id, order_id),
                balance_key(user_id),
                open_key(user_id),
            ],
            [
                fingerprint,
                now_ms,
                inflight_ms,
                self.ttl_ms,
                reserve_asset,
                reserve_unit,
                symbol,
                side,
                price,
                quantity,
                order_type,
                order_id,
            ],
        )

    @staticmethod
    def queue_confirm(
        pipe: RawPipeline,
        user_id: str,
        order_id: str,
        topic: str,
        partition: int,
        offset: int,
        epoch: int,
    ) -> None:
        """`confirm`'s write queued on `pipe`."""
        pipe.command(
            "HSET",
            order_key(user_id, order_id),
            "state",
            "ACCEPTED",
            "topic",
            topic,
            "partition",
            partition,
            "offset",
            offset,
            "epoch",
            epoch,
        )

    def confirm(
        self, user_id: str, order_id: str, topic: str, partition: int, offset: int, epoch: int
    ) -> None:
        # Not waited for (its reply is read with this thread's next command's): the request
        # answers one Redis round trip sooner. Lost only with the connection, like a confirm
        # that failed: a resend then finds the claim PENDING (see the module docstring).
        pipe = RawPipeline(self.r)  # this thread's connection, no pool lock
        self.queue_confirm(pipe, user_id, order_id, topic, partition, offset, epoch)
        pipe.send_only()

    def abandon(self, user_id: str, order_id: str, fingerprint: str) -> bool:
        done = self._abandon(
            keys=[order_key(user_id, order_id), balance_key(user_id), open_key(user_id)],
            args=[fingerprint, order_id],
        )
        return bool(done)

    def lapse_at(self, user_id: str, order_id: str, fingerprint: str, claimed_ms: int) -> bool:
        """A PENDING claim (of these contents) dated `claimed_ms`, so it lapses `inflight_ms`
        after that: a retry takes over sooner (the engine's DUPLICATE_ORDER_ID check stays
        the backstop, as for any lapsed claim)."""
        done = self._lapse(keys=[order_key(user_id, order_id)], args=[fingerprint, claimed_ms])
        return bool(done)

    def apply_status(
        self,
        user_id: str,
        order_id: str,
        *,
        seq: int,
        status: int,
        reason: int,
        filled: int,
        leaves: int,
        pipe: Any = None,
    ) -> bool:
        """Apply one order_status; with `pipe` (a redis pipeline) the script is queued there
        and the answer comes with the pipeline's (True is returned)."""
        done = run_script(
            self._status,
            keys=[order_key(user_id, order_id), balance_key(user_id), open_key(user_id)],
            args=[
                seq,
                Status(status).name,
                Reason(reason).name,
                filled,
                leaves,
                Reason.STALE_ROUTE.name,
                Status.REJECTED.name,
                order_id,
                Reason.DUPLICATE_ORDER_ID.name,
            ],
            pipe=pipe,
        )
        return pipe is not None or bool(done)

    def apply_fill(
        self,
        user_id: str,
        order_id: str,
        *,
        symbol: str,
        seq: int,
        price: int,
        quantity: int,
        liquidity: int = 0,
        trade_id: int = 0,
        ts_ns: int = 0,
        pipe: Any = None,
    ) -> bool:
        """Apply one fill (queued on `pipe` if given, like apply_status)."""
        done = run_script(
            self._fill,
            keys=[order_key(user_id, order_id), balance_key(user_id), fills_key(user_id)],
            args=[
                seq,
                price,
                quantity,
                int(Side.BUY),
                CASH,
                symbol,
                FILL_HISTORY,
                order_id,
                liquidity,
                trade_id,
                ts_ns,
            ],
            pipe=pipe,
        )
        return pipe is not None or bool(done)

    def open_orders(self, user_id: str, limit: int) -> tuple[list[str], bool]:
        """The user's open order ids, oldest first (at most `limit`), and whether more exist."""
        ids = self.r.zrange(open_key(user_id), 0, limit)
        return [text(i) for i in ids[:limit]], len(ids) > limit

    def read_many(self, user_id: str, order_ids: list[str]) -> list[dict[str, str] | None]:
        with self.r.pipeline(transaction=False) as pipe:
            for order_id in order_ids:
                pipe.hgetall(order_key(user_id, order_id))
            replies = pipe.execute()
        return [{text(k): text(v) for k, v in raw.items()} or None for raw in replies]

    def forget_open(self, user_id: str, order_ids: list[str]) -> None:
        """Drop ids whose record expired from the open set."""
        if order_ids:
            self.r.zrem(open_key(user_id), *order_ids)

    def fills(
        self, user_id: str, limit: int, before: str = ""
    ) -> tuple[list[tuple[str, dict[str, str]]], str]:
        """The user's fills, newest first: (stream id, fields) pairs, at most `limit`,
        older than the id `before`; and the cursor of the next page ('' if none)."""
        high = f"({before}" if before else "+"
        entries: Any = self.r.xrevrange(fills_key(user_id), high, "-", count=limit + 1)
        out = [(text(i), {text(k): text(v) for k, v in f.items()}) for i, f in entries or ()]
        more = len(out) > limit
        out = out[:limit]
        return out, (out[-1][0] if more and out else "")

    def read(self, user_id: str, order_id: str) -> dict[str, str] | None:
        raw = self.r.hgetall(order_key(user_id, order_id))
        return {text(k): text(v) for k, v in raw.items()} or None
