"""The broker side of a migration: a partition's end offset (where a replay starts) and the
PENDING_END marker records (orders.proto PendingMarker)."""

from __future__ import annotations

from typing import Any

from hotshard import wire
from hotshard.edge.router import produce_confirmed
from hotshard.migration.errors import StoreUnavailable

TIMEOUT_S = 10.0


class Broker:
    """A producer and a metadata consumer, created on first use; close() when done."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self._producer: Any = None
        self._consumer: Any = None

    def end_offset(self, topic: str, partition: int) -> int:
        """The partition's high watermark: every record produced before this call is below
        it (on Tansu it may lag: a lower bound, which a replay filtered by epoch tolerates)."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition  # noqa: PLC0415

        if self._consumer is None:
            self._consumer = Consumer(
                {**self.config, "group.id": "hotshard-migration", "enable.auto.commit": False}
            )
        try:
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=TIMEOUT_S
            )
        except KafkaException as exc:
            raise StoreUnavailable(f"end offset of {topic}/{partition}: {exc}") from exc
        return int(high)

    def write_end_marker(self, topic: str, partition: int, symbol: str, epoch: int) -> int:
        """PENDING_END for (symbol, epoch) on topic/partition, acknowledged; its offset."""
        from confluent_kafka import Producer  # noqa: PLC0415

        if self._producer is None:
            self._producer = Producer({**self.config, "enable.idempotence": True, "acks": "all"})
        value = wire.encode_pending_marker(symbol, epoch, wire.PENDING_END)
        try:
            _, offset = produce_confirmed(
                self._producer, topic, partition, symbol.encode(), value, TIMEOUT_S
            )
        except (TimeoutError, RuntimeError) as exc:
            raise StoreUnavailable(f"PENDING_END on {topic}/{partition}: {exc}") from exc
        return offset

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            self._producer.flush(TIMEOUT_S)
            self._producer = None
