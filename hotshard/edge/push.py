"""The stream handler's work: event records from the broker -> JSON pushes to WebSocket
connections through the API Gateway Management API, plus the Redis state polling clients
read (order records, latest depth).

- order_status, fills -> the owning user's connections ({"type": "ORDER_STATUS" | "FILL",
  "data": <docs/FORMATS.md event>}); each also updates order:{USER}:{ORDER_ID}
  (hotshard.edge.orders: status, fills, reservation release), guarded per order so
  replays change nothing.
- trades, depth -> the symbol's subscribers ({"type": "TRADE" | "DEPTH", "data": ...});
  depth is the levels changed (absolute quantities, 0 = gone) and also updates the latest
  depth kept in Redis (hotshard.edge.depth).
- A connection that answers 410 (GoneException) is forgotten (hotshard.edge.sessions).
- Per batch of records: the Redis writes go out in one pipeline (one round trip), the
  connections to post to looked up at its end; each connection's pushes are posted in order,
  connections side by side, and a connection that opted in (`?pushes=batch`) gets them
  coalesced into BATCH frames (docs/asyncapi.yaml): one post instead of one per push.
- Each push names the seq of the push before it on its stream, `prev_seq`
  (hotshard.edge.streams, chained in the same pipeline), and carries the event's `ts_ns`
  (the router's receive time of the order that caused it) when the engine stamped one.
Records re-emitted after an engine restart are dropped (hotshard.dedupe guards, kept per
warm Lambda container; the Redis writes have their own sequence guards).
"""

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis

from hotshard.codec import depth_update_json, dumps, event_json
from hotshard.dedupe import DepthGuard, SequenceGuard
from hotshard.edge.depth import DepthStore
from hotshard.edge.orders import OrderRecords
from hotshard.edge.sessions import Sessions
from hotshard.edge.streams import Link, StreamSeqs, answers, calls
from hotshard.events import FILL, STATUS, TRADE
from hotshard.names import TOPIC_DEPTH, TOPIC_FILLS, TOPIC_ORDER_STATUS, TOPIC_TRADES
from hotshard.rawpipe import RawPipeline
from hotshard.wire import decode_depth_stamped, event_tuple, parse_batch

log = logging.getLogger("hotshard.push")

KIND_OF_TOPIC = {TOPIC_ORDER_STATUS: STATUS, TOPIC_FILLS: FILL, TOPIC_TRADES: TRADE}
PUSH_TYPE = {STATUS: "ORDER_STATUS", FILL: "FILL", TRADE: "TRADE"}

Post = Callable[[str, bytes], bool]
"""(connection id, data) -> False if the connection is gone (410)."""


POST_THREADS = 16
"""Connections posted to at once (boto3 clients are thread-safe)."""
BATCH_BYTES = 96 * 1024
"""Most bytes in one BATCH frame (API Gateway takes at most 128 KB per post)."""


Frame = tuple[str, int]
"""(frame text, pushes it carries)."""


def frames(pushes: list[str]) -> list[Frame]:
    """A connection's pushes (JSON texts, in order) as BATCH frames of at most BATCH_BYTES
    (docs/asyncapi.yaml); a push alone in its frame goes as it is."""
    out: list[Frame] = []
    chunk: list[str] = []
    size = 0
    for push in pushes:
        if chunk and size + len(push) > BATCH_BYTES:
            out.append(_batch(chunk))
            chunk, size = [], 0
        chunk.append(push)
        size += len(push) + 1
    if chunk:
        out.append(_batch(chunk))
    return out


def _batch(pushes: list[str]) -> Frame:
    if len(pushes) == 1:
        return pushes[0], 1
    return '{"type":"BATCH","pushes":[' + ",".join(pushes) + "]}", len(pushes)


LATENCY_SAMPLES = 100
"""Push latencies one invocation reports at most (EMF takes 100 values per metric)."""


def push_latencies_ms(timestamps_ms: list[int], now_ms: int) -> list[float]:
    """Event (Kafka record timestamp) -> pushes posted, ms, for the PushLatency metric: an
    even sample of at most LATENCY_SAMPLES of the batch's records, never negative."""
    if not timestamps_ms:
        return []
    step = max(1, -(-len(timestamps_ms) // LATENCY_SAMPLES))
    return [float(max(now_ms - ts, 0)) for ts in timestamps_ms[::step]][:LATENCY_SAMPLES]


@dataclass
class PushStats:
    records: int = 0
    events: int = 0
    pushes: int = 0
    posts: int = 0
    """Frames posted (a BATCH frame carries several pushes)."""
    gone: int = 0
    dropped: int = 0


@dataclass
class Pusher:
    sessions: Sessions
    records: OrderRecords
    depth: DepthStore
    post: Post
    streams: StreamSeqs
    guard: SequenceGuard = field(default_factory=SequenceGuard)
    depth_guard: DepthGuard = field(default_factory=DepthGuard)
    _pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(POST_THREADS, thread_name_prefix="push")
    )
    _id: str = field(default_factory=lambda: uuid.uuid4().hex)
    _handled: int = 0
    """Batches handled by this container: with `_id` and the records, a batch attempt's
    stream token (hotshard.edge.streams), the same for its retries until one succeeds."""

    def handle(self, records: Iterable[tuple[str, int, bytes]]) -> PushStats:
        """records: (topic, partition, value) in the order the event source delivered. If
        Redis cannot be reached the batch fails whole (redis.ConnectionError) with the
        guards as they were, so the event source's retry pushes every event of it."""
        saved = self.guard.save(), self.depth_guard.save()
        batch = list(records)
        try:
            stats = self._handle(batch, self._token(batch))
        except (redis.ConnectionError, redis.TimeoutError):
            self.guard.restore(saved[0])
            self.depth_guard.restore(saved[1])
            raise
        self._handled += 1
        return stats

    def _token(self, records: list[tuple[str, int, bytes]]) -> str:
        """This attempt's stream token: a retry of the batch (redis-py's re-sent pipeline,
        or the event source's retry after the batch failed) gets the prev_seqs the first
        attempt got, instead of 'pushed already' for pushes that were never posted."""
        digest = hashlib.blake2b(digest_size=12)
        for topic, partition, value in records:
            digest.update(f"{topic}/{partition}/{len(value)}:".encode())
            digest.update(value)
        return f"{self._id}:{self._handled}:{digest.hexdigest()}"

    def _handle(self, records: list[tuple[str, int, bytes]], token: str) -> PushStats:
        stats = PushStats()
        # (owner: a user or a symbol, its stream, push) in arrival order
        owned: list[tuple[str, Link | None, dict[str, Any]]] = []
        public: list[tuple[str, Link | None, dict[str, Any]]] = []
        dropped_before = self.guard.dropped + self.depth_guard.dropped
        # Every Redis write of the batch goes out in one pipeline (one round trip), in the
        # order of the events; the pushes are posted after it, so a client that reads its
        # order after a push sees at least what the push said.
        # (RawPipeline: no SCRIPT EXISTS round trip before each batch, a cheaper encoder)
        writes = RawPipeline(self.records.r)
        depth_writes = writes if self.depth.r is self.records.r else RawPipeline(self.depth.r)
        for topic, partition, value in records:
            stats.records += 1
            if topic == TOPIC_DEPTH:
                for symbol, update, _offset, ts in decode_depth_stamped(value):
                    if self.depth_guard.admit(symbol, update):
                        self.depth.apply(symbol, update, pipe=depth_writes)
                        data = depth_update_json(symbol, update)
                        if ts:
                            data["ts_ns"] = ts
                        depth_link: Link = ("", "DEPTH", symbol, update.seq, update.snapshot)
                        public.append((symbol, depth_link, {"type": "DEPTH", "data": data}))
                        stats.events += 1
                continue
            kind = KIND_OF_TOPIC.get(topic)
            if kind is None:
                log.warning("record of an unexpected topic", extra={"topic": topic})
                continue
            batch = parse_batch(kind, value)
            symbol = batch.symbol
            push_type = PUSH_TYPE[kind]
            for msg in self.guard.admit_messages(kind, partition, batch):
                event, _offset = event_tuple(kind, msg)
                stats.events += 1
                data = event_json(symbol, event)
                if msg.ts_ns:
                    data["ts_ns"] = msg.ts_ns
                push = {"type": push_type, "data": data}
                if kind == TRADE:
                    public.append((symbol, ("", push_type, symbol, event[1], False), push))
                    continue
                _, seq, order_id, user_id, a, b, c, d = event
                if kind == STATUS:
                    self.records.apply_status(
                        user_id,
                        order_id,
                        seq=seq,
                        status=a,
                        reason=b,
                        filled=c,
                        leaves=d,
                        pipe=writes,
                    )
                else:
                    self.records.apply_fill(
                        user_id,
                        order_id,
                        symbol=symbol,
                        seq=seq,
                        price=a,
                        quantity=b,
                        liquidity=c,
                        trade_id=d,
                        ts_ns=msg.ts_ns,
                        pipe=writes,
                    )
                own: Link | None = (user_id, push_type, symbol, seq, False) if seq else None
                owned.append((user_id, own, push))
        stats.dropped = self.guard.dropped + self.depth_guard.dropped - dropped_before
        links = [link for group in (owned, public) for _, link, _ in group if link is not None]
        self.streams.chain(links, pipe=writes, token=token)  # its replies after the writes'
        # The connections to post to, read in the same round trip (after the writes, as
        # before in a round trip of its own): of every owner with a push, even one the
        # chain will drop as pushed already.
        lookup = None
        if self.sessions.r is self.records.r and (owned or public):
            lookup = self.sessions.queue_targets(
                writes, (u for u, _, _ in owned), (s for s, _, _ in public)
            )
        replies = writes.execute()
        if depth_writes is not writes:
            depth_writes.execute()
        n, looked = calls(len(links)), lookup.count if lookup is not None else 0
        chained = replies[len(replies) - looked - n : len(replies) - looked]
        prevs = [prev for reply in chained for prev in answers(reply)]
        to_users = self._encode(owned, prevs, 0, stats)
        to_symbols = self._encode(public, prevs, sum(1 for _, k, _ in owned if k), stats)
        if not to_users and not to_symbols:
            return stats
        if lookup is not None:
            users, subs = lookup.read(replies)
        else:
            users, subs = self.sessions.targets(
                (u for u, _ in to_users), (s for s, _ in to_symbols)
            )
        # Each connection's pushes in order (per user and per symbol, as the events came),
        # connections side by side: one post is an HTTP round trip to the Management API.
        queues: dict[str, list[str]] = {}
        for targets, pushes in ((users, to_users), (subs, to_symbols)):
            for owner, payload in pushes:
                for conn in targets.get(owner, ()):
                    queues.setdefault(conn, []).append(payload)
        batching = self.sessions.batching(queues)
        posts = [
            (conn, frames(payloads) if conn in batching else [(p, 1) for p in payloads])
            for conn, payloads in queues.items()
        ]
        gone: list[str] = []
        for (conn, _), (posted, sent, alive) in zip(posts, self._deliver_all(posts), strict=True):
            stats.pushes += posted
            stats.posts += sent
            if not alive:
                gone.append(conn)
        for conn in gone:
            self.sessions.disconnect(conn)
        stats.gone = len(gone)
        return stats

    @staticmethod
    def _encode(
        group: list[tuple[str, Link | None, dict[str, Any]]],
        prevs: list[int],
        start: int,
        stats: PushStats,
    ) -> list[tuple[str, str]]:
        """The pushes as JSON, each with its stream's prev_seq (prevs[start:] in order); a
        push its stream has had already (-1: another container's retry) is dropped."""
        out: list[tuple[str, str]] = []
        i = start
        for owner, link, push in group:
            if link is None:
                out.append((owner, dumps(push)))
                continue
            prev = prevs[i]
            i += 1
            if prev < 0:
                stats.dropped += 1
                continue
            out.append(
                (owner, dumps({"type": push["type"], "prev_seq": prev, "data": push["data"]}))
            )
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _deliver_all(self, posts: list[tuple[str, list[Frame]]]) -> list[tuple[int, int, bool]]:
        """Every connection's posts, connections side by side: all but the first on the
        pool, the first in this thread, which would otherwise only wait (one thread
        hand-off less per batch, none for a batch with one connection)."""
        if not posts:
            return []
        rest = [self._pool.submit(self._deliver, post) for post in posts[1:]]
        first = self._deliver(posts[0])
        return [first, *(future.result() for future in rest)]

    def _deliver(self, post: tuple[str, list[Frame]]) -> tuple[int, int, bool]:
        """Post a connection's frames in order; stop at the first 'gone'. Returns (pushes
        delivered, frames posted, still connected)."""
        conn, payloads = post
        pushes = 0
        for sent, (payload, count) in enumerate(payloads):
            if not self._post(conn, payload.encode()):
                return pushes, sent, False
            pushes += count
        return pushes, len(payloads), True

    def _post(self, conn: str, data: bytes) -> bool:
        try:
            return self.post(conn, data)
        except Exception:  # one bad connection must not fail the batch
            log.exception("post_to_connection failed", extra={"connection_id": conn})
            return True


def management_poster(client: Any) -> Post:
    """A Post over boto3's apigatewaymanagementapi client: GoneException -> False."""
    gone = client.exceptions.GoneException

    def post(conn: str, data: bytes) -> bool:
        try:
            client.post_to_connection(ConnectionId=conn, Data=data)
        except gone:
            return False
        return True

    return post
