"""Gap detection for the streams a client receives: each push names the seq of the push
before it on the same stream (`prev_seq`), so a client that saw another seq last knows it
missed something (docs/asyncapi.yaml, "Gaps and resynchronising").

A stream is what one client can receive in order:
- its own ORDER_STATUS pushes of one symbol, and its own FILL pushes of one symbol (two
  streams: the topics are read side by side, one event source mapping each, so their
  pushes interleave freely; a client compares `seq` to order them, as hotshard-client
  does: hotshard.client.ordering);
- the TRADE pushes of one symbol (every subscriber sees the same stream);
- the DEPTH pushes of one symbol (a periodic snapshot may repeat the seq of the change
  before it: its prev_seq is then its own seq).

The stream handler keeps, per stream, the seq it last pushed in Redis (`push-seq:{OWNER}`,
one hash per user, field `<KIND>:<SYMBOL>`; a symbol's trades under `push-seq:@<SYMBOL>`)
and moves it in one script per batch. An event at or below the stored seq was pushed
already (a re-delivered record, another container's retry) and is not pushed again. An
event pushed once and lost on its way (a connection that failed, a crash after the script)
shows as a gap at the next push of that stream. Events no book numbers (seq 0) are on no
stream: they carry no prev_seq.

A retry of the same batch by the same container must not count as "pushed already": the
script may have run and its reply been lost (redis-py re-sends a pipeline whose connection
dropped, as in a Redis restart), or a later step of the batch failed before its posts. So
a chain can name its batch attempt (`token`): the script keeps its answer under
`push-seq-reply:{TOKEN}` for REPLY_TTL_MS and answers the same again for that token.
"""

from collections.abc import Sequence
from typing import Any

import redis

from hotshard import names
from hotshard.rawpipe import run_script

TTL_MS = 7 * 86_400_000
REPLY_TTL_MS = 120_000
CHAIN_CHUNK = 2_000
"""Links per script call. A script holds Redis for its whole run, and every other client
gets `BUSY Redis is busy running a script` once it passes 5 s: one call for a whole batch
of a backlog (124,157 links, the pre-loaded books' ACCEPTED statuses in bench.migration)
ran past that on a loaded machine and stopped the engines' checkpoints and the move."""

# KEYS: one stream hash per item, then the reply key. ARGV: ttl_ms, the reply's ttl_ms
# (0: no token, keep nothing), then per item its field, seq and 1 if the same seq may come
# again (a depth snapshot). Returns per item the seq pushed before on that stream (0:
# none), or -1: already pushed; for a token seen before, what it answered then.
_CHAIN = """
local reply_key = KEYS[#KEYS]
local keep = tonumber(ARGV[2])
if keep > 0 then
  local done = redis.call('GET', reply_key)
  if done then return cjson.decode(done) end
end
local out = {}
for i = 1, #KEYS - 1 do
  local field = ARGV[3 * i]
  local seq = tonumber(ARGV[3 * i + 1])
  local last = tonumber(redis.call('HGET', KEYS[i], field) or '0')
  if seq < last or (seq == last and ARGV[3 * i + 2] ~= '1') then
    out[i] = -1
  else
    redis.call('HSET', KEYS[i], field, seq)
    out[i] = last
  end
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
if keep > 0 then
  redis.call('SET', reply_key, cjson.encode(out), 'PX', keep)
end
return out
"""

Link = tuple[str, str, str, int, bool]
"""(owner, kind, symbol, seq, same seq allowed): owner a user id, or '' for a symbol's
public stream; the flag is set for a depth snapshot."""


def stream_key(owner: str, symbol: str) -> str:
    return names.REDIS_PUSH_SEQ.format(owner or f"@{symbol}")


class StreamSeqs:
    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self._chain = r.register_script(_CHAIN)

    def chain(self, links: Sequence[Link], pipe: Any = None, token: str = "") -> list[int]:
        """Per link, in order: the previous seq of its stream (0: none) and the stream now
        at its seq; -1 for a link at or below what was pushed already. `token` names the
        batch attempt: the same token again gets the same answer. In calls of at most
        CHAIN_CHUNK links (each chunk its own token), in order. With `pipe` the scripts
        are queued there: their replies (`answers` of each, the last `calls(len(links))`
        of the pipeline's) come with the pipeline's, and [] is returned."""
        out: list[int] = []
        for start in range(0, len(links), CHAIN_CHUNK):
            chunk = links[start : start + CHAIN_CHUNK]
            keys = [stream_key(owner, symbol) for owner, _, symbol, _, _ in chunk]
            part = f"{token}:{start // CHAIN_CHUNK}" if token and start else token
            keys.append(names.REDIS_PUSH_REPLY.format(part or "-"))
            args: list[str | int] = [TTL_MS, REPLY_TTL_MS if token else 0]
            for _, kind, symbol, seq, again in chunk:
                args.extend((f"{kind}:{symbol}", seq, int(again)))
            reply = run_script(self._chain, keys=keys, args=args, pipe=pipe)
            if pipe is None:
                out.extend(answers(reply))
        return out


def calls(links: int) -> int:
    """How many script calls `StreamSeqs.chain` makes for this many links."""
    return -(-links // CHAIN_CHUNK)


def answers(reply: Any) -> list[int]:
    """The script's reply as the per-link previous seqs (-1: already pushed)."""
    return [int(v) for v in reply]
