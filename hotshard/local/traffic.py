"""Orders into Kafka and events out of it, for tests, the demo and benchmarks.

`produce_orders` writes commands to `orders` (partition chosen per symbol, as the router
would from the routing table); `EventReader` reads fills, trades, order_status and depth
with manual assignment and de-duplicates through hotshard.dedupe, so what it collects is
what an exactly-once consumer sees.
"""

import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hotshard.commands import Command
from hotshard.dedupe import DepthGuard, SequenceGuard
from hotshard.events import FILL, STATUS, TRADE, DepthUpdate, Event
from hotshard.kafka import consumer_config
from hotshard.names import (
    TOPIC_DEPTH,
    TOPIC_FILLS,
    TOPIC_ORDER_STATUS,
    TOPIC_ORDERS,
    TOPIC_TRADES,
)
from hotshard.wire import decode_depth, encode_order, parse_batch

KIND_OF_TOPIC = {TOPIC_ORDER_STATUS: STATUS, TOPIC_FILLS: FILL, TOPIC_TRADES: TRADE}


def partition_of(symbol: str, partitions: int) -> int:
    """A stable default placement (the routing table overrides it in a real deployment)."""
    return zlib.crc32(symbol.encode()) % partitions


def producer(bootstrap: str, **extra: Any) -> Any:
    from confluent_kafka import Producer  # noqa: PLC0415

    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "enable.idempotence": True,
            "queue.buffering.max.messages": 2_000_000,
            "batch.num.messages": 10_000,
            **extra,
        }
    )


def produce_orders(
    prod: Any,
    stream: Iterable[tuple[str, Command]],
    place: Callable[[str], int],
    *,
    route_epoch: int = 0,
    stamp: bool = True,
) -> int:
    """Produce each (symbol, command) to `orders`; returns how many. Stamps client_ts_ns."""
    n = 0
    for symbol, command in stream:
        value = encode_order(
            symbol, command, route_epoch=route_epoch, client_ts_ns=time.time_ns() if stamp else 0
        )
        produce_raw(prod, place(symbol), symbol.encode(), value)
        n += 1
    return n


def produce_raw(prod: Any, partition: int, key: bytes | None, value: bytes) -> None:
    while True:
        try:
            prod.produce(TOPIC_ORDERS, value, key, partition)
            return
        except BufferError:
            prod.poll(0.05)


@dataclass
class EventReader:
    """Reads every event topic from the start, de-duplicated, keeping events per symbol."""

    bootstrap: str
    partitions: int
    group: str = "hotshard-test-reader"
    guard: SequenceGuard = field(default_factory=SequenceGuard)
    depth_guard: DepthGuard = field(default_factory=DepthGuard)
    events: dict[str, list[Event]] = field(default_factory=dict)
    offsets: dict[str, list[int]] = field(default_factory=dict)
    depth: dict[str, dict[str, dict[int, int]]] = field(default_factory=dict)
    latencies_ns: list[int] = field(default_factory=list)
    records: int = 0
    _consumer: Any = None

    def __post_init__(self) -> None:
        from confluent_kafka import Consumer, TopicPartition  # noqa: PLC0415

        self._consumer = Consumer(
            consumer_config(
                {"bootstrap.servers": self.bootstrap}, group_id=self.group, fetch_wait_max_ms=20
            )
        )
        self._consumer.assign(
            [
                TopicPartition(topic, p, 0)
                for topic in (TOPIC_ORDER_STATUS, TOPIC_FILLS, TOPIC_TRADES, TOPIC_DEPTH)
                for p in range(self.partitions)
            ]
        )

    def poll(
        self, timeout: float = 0.1, on_status: Callable[[Event, int], None] | None = None
    ) -> int:
        """Read what is there; returns the number of new sequenced events."""
        new = 0
        for msg in self._consumer.consume(1000, timeout):
            if msg.error() is not None:
                continue
            self.records += 1
            topic = msg.topic()
            if topic == TOPIC_DEPTH:
                for symbol, update, _offset in decode_depth(msg.value()):
                    if self.depth_guard.admit(symbol, update):
                        self._apply_depth(symbol, update)
                continue
            kind = KIND_OF_TOPIC[topic]
            batch = parse_batch(kind, msg.value())
            for event, offset in self.guard.admit(kind, msg.partition(), batch):
                self.events.setdefault(batch.symbol, []).append(event)
                self.offsets.setdefault(batch.symbol, []).append(offset)
                if on_status is not None and kind == STATUS:
                    on_status(event, offset)
                new += 1
        return new

    def _apply_depth(self, symbol: str, update: DepthUpdate) -> None:
        sides = self.depth.setdefault(symbol, {"bids": {}, "asks": {}})
        for name, levels in (("bids", update.bids), ("asks", update.asks)):
            side = sides[name]
            for price, qty in levels:
                if qty:
                    side[price] = qty
                else:
                    side.pop(price, None)

    def count(self, kind: int | None = None) -> int:
        return sum(1 for evs in self.events.values() for e in evs if kind is None or e[0] == kind)

    def sorted_events(self, symbol: str) -> list[Event]:
        """The symbol's events in seq order (topics interleave on the wire)."""
        return sorted(self.events.get(symbol, []), key=lambda e: e[1])

    def read_until(self, done: Callable[["EventReader"], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0.1)
            if done(self):
                return True
        return done(self)

    def read_to_end(self, timeout: float) -> bool:
        """Read every assigned partition up to its end as of now (its high watermark): the
        order statuses being all there says nothing of the trades, fills and depth topics,
        which one consumer fetches at their own pace. Then on until a poll finds no record:
        Tansu's high watermark is the first offset of a partition's last batch + 1, so the
        position passes it once that batch's first record is consumed, while the rest of
        the batch may still wait in the client's queue (seen: a symbol's fills from seq 34
        on never read in a fault case, taken for lost events). False if `timeout` passed
        first."""
        deadline = time.monotonic() + timeout
        assigned = self._consumer.assignment()
        ends = {
            (tp.topic, tp.partition): self._consumer.get_watermark_offsets(tp, timeout=10)[1]
            for tp in assigned
        }

        def at_end(reader: "EventReader") -> bool:
            return all(
                ends[(tp.topic, tp.partition)] <= max(tp.offset, 0)
                for tp in reader._consumer.position(assigned)
            )

        if not (at_end(self) or self.read_until(at_end, timeout)):
            return False
        while time.monotonic() < deadline:
            seen = self.records
            self.poll(0.5)
            if self.records == seen:
                return True
        return False

    def close(self) -> None:
        self._consumer.close()
