"""The latest depth per symbol in Redis, for polling clients and new subscribers.

The engine publishes changed levels with absolute quantities (0: level gone) and the seq
they are consistent with (hotshard.wire DepthBatch), and periodically the whole top N as a
snapshot. `apply` keeps a change only if its seq is beyond the one stored, and a snapshot
also at the same seq, replacing both sides (one Lua script, so replays and out-of-order
deliveries are harmless); `read` returns the top levels as client JSON (hotshard.codec.depth_json).
"""

from typing import Any

import redis

from hotshard import names
from hotshard.codec import depth_json
from hotshard.events import DepthUpdate
from hotshard.rawpipe import run_script

# KEYS: depth, bids, asks. ARGV: seq, snapshot (1: replace both sides), number of bid values,
# bid price, qty, ..., ask price, qty, ...
_APPLY = """
local seq = tonumber(ARGV[1])
local stored = tonumber(redis.call('HGET', KEYS[1], 'seq') or '-1')
if seq < stored or (seq == stored and ARGV[2] ~= '1') then return 0 end
redis.call('HSET', KEYS[1], 'seq', seq)
if ARGV[2] == '1' then redis.call('DEL', KEYS[2], KEYS[3]) end
local nb = tonumber(ARGV[3])
local i = 4
while i < #ARGV do
  local side = KEYS[3]
  if i < 4 + nb then side = KEYS[2] end
  if ARGV[i + 1] == '0' then redis.call('HDEL', side, ARGV[i])
  else redis.call('HSET', side, ARGV[i], ARGV[i + 1]) end
  i = i + 2
end
return 1
"""


class DepthStore:
    def __init__(self, r: redis.Redis, *, levels: int = 10) -> None:
        self.r = r
        self.levels = levels
        self._apply = r.register_script(_APPLY)

    def apply(self, symbol: str, update: DepthUpdate, pipe: Any = None) -> bool:
        """Keep the update if it is newer; with `pipe` it is queued there (True returned)."""
        bids = [v for level in update.bids for v in level]
        asks = [v for level in update.asks for v in level]
        done = run_script(
            self._apply,
            keys=[
                names.REDIS_DEPTH.format(symbol),
                names.REDIS_DEPTH_SIDE.format(symbol, "bids"),
                names.REDIS_DEPTH_SIDE.format(symbol, "asks"),
            ],
            args=[update.seq, int(update.snapshot), len(bids), *bids, *asks],
            pipe=pipe,
        )
        return pipe is not None or bool(done)

    def read(self, symbol: str) -> dict[str, Any]:
        with self.r.pipeline(transaction=True) as pipe:
            pipe.hget(names.REDIS_DEPTH.format(symbol), "seq")
            pipe.hgetall(names.REDIS_DEPTH_SIDE.format(symbol, "bids"))
            pipe.hgetall(names.REDIS_DEPTH_SIDE.format(symbol, "asks"))
            seq, raw_bids, raw_asks = pipe.execute()
        bids = sorted(((int(p), int(q)) for p, q in raw_bids.items()), reverse=True)
        asks = sorted((int(p), int(q)) for p, q in raw_asks.items())
        return depth_json(symbol, int(seq or 0), bids[: self.levels], asks[: self.levels])
