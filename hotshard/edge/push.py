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
Records re-emitted after an engine restart are dropped (hotshard.dedupe guards, kept per
warm Lambda container; the Redis writes have their own sequence guards).
"""

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hotshard.codec import depth_update_json, dumps, event_json
from hotshard.dedupe import DepthGuard, SequenceGuard
from hotshard.edge.depth import DepthStore
from hotshard.edge.orders import OrderRecords
from hotshard.edge.sessions import Sessions
from hotshard.events import FILL, STATUS, TRADE
from hotshard.names import TOPIC_DEPTH, TOPIC_FILLS, TOPIC_ORDER_STATUS, TOPIC_TRADES
from hotshard.wire import decode_depth, parse_batch

log = logging.getLogger("hotshard.push")

KIND_OF_TOPIC = {TOPIC_ORDER_STATUS: STATUS, TOPIC_FILLS: FILL, TOPIC_TRADES: TRADE}
PUSH_TYPE = {STATUS: "ORDER_STATUS", FILL: "FILL", TRADE: "TRADE"}

Post = Callable[[str, bytes], bool]
"""(connection id, data) -> False if the connection is gone (410)."""


POST_THREADS = 16
"""Connections posted to at once (boto3 clients are thread-safe)."""


@dataclass
class PushStats:
    records: int = 0
    events: int = 0
    pushes: int = 0
    gone: int = 0
    dropped: int = 0


@dataclass
class Pusher:
    sessions: Sessions
    records: OrderRecords
    depth: DepthStore
    post: Post
    guard: SequenceGuard = field(default_factory=SequenceGuard)
    depth_guard: DepthGuard = field(default_factory=DepthGuard)
    _pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(POST_THREADS, thread_name_prefix="push")
    )

    def handle(self, records: Iterable[tuple[str, int, bytes]]) -> PushStats:
        """records: (topic, partition, value) in the order the event source delivered."""
        stats = PushStats()
        to_users: list[tuple[str, bytes]] = []
        to_symbols: list[tuple[str, bytes]] = []
        dropped_before = self.guard.dropped + self.depth_guard.dropped
        for topic, partition, value in records:
            stats.records += 1
            if topic == TOPIC_DEPTH:
                for symbol, update, _offset in decode_depth(value):
                    if self.depth_guard.admit(symbol, update):
                        self.depth.apply(symbol, update)
                        push = {"type": "DEPTH", "data": depth_update_json(symbol, update)}
                        to_symbols.append((symbol, dumps(push).encode()))
                        stats.events += 1
                continue
            kind = KIND_OF_TOPIC.get(topic)
            if kind is None:
                log.warning("record of an unexpected topic", extra={"topic": topic})
                continue
            batch = parse_batch(kind, value)
            symbol = batch.symbol
            for event, _offset in self.guard.admit(kind, partition, batch):
                stats.events += 1
                text = dumps({"type": PUSH_TYPE[kind], "data": event_json(symbol, event)})
                if kind == TRADE:
                    to_symbols.append((symbol, text.encode()))
                    continue
                _, seq, order_id, user_id, a, b, c, d = event
                if kind == STATUS:
                    self.records.apply_status(
                        user_id, order_id, seq=seq, status=a, reason=b, filled=c, leaves=d
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
                    )
                to_users.append((user_id, text.encode()))
        stats.dropped = self.guard.dropped + self.depth_guard.dropped - dropped_before
        users = self.sessions.of_users(u for u, _ in to_users) if to_users else {}
        subs = self.sessions.of_symbols(s for s, _ in to_symbols) if to_symbols else {}
        # Each connection's pushes in order, connections side by side: one post is an HTTP
        # round trip to the Management API, so posting one at a time caps the whole stream.
        queues: dict[str, list[bytes]] = {}
        for targets, pushes in ((users, to_users), (subs, to_symbols)):
            for owner, payload in pushes:
                for conn in targets.get(owner, ()):
                    queues.setdefault(conn, []).append(payload)
        gone: list[str] = []
        for conn, (posted, alive) in zip(
            queues, self._pool.map(self._deliver, queues.items()), strict=True
        ):
            stats.pushes += posted
            if not alive:
                gone.append(conn)
        for conn in gone:
            self.sessions.disconnect(conn)
        stats.gone = len(gone)
        return stats

    def _deliver(self, queue: tuple[str, list[bytes]]) -> tuple[int, bool]:
        """Post a connection's pushes in order; stop at the first 'gone'."""
        conn, payloads = queue
        for posted, payload in enumerate(payloads):
            if not self._post(conn, payload):
                return posted, False
        return len(payloads), True

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
