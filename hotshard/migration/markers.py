"""The broker side of a migration: a partition's end offset (where a replay starts) and the
PENDING_END marker records (orders.proto PendingMarker)."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from hotshard import wire
from hotshard.edge.router import PossiblyWrittenError, ProducerFailedError, produce_confirmed
from hotshard.migration.errors import StoreUnavailable

TIMEOUT_S = 10.0
SCAN_IDLE_S = 1.0


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
            # Written or not (PossiblyWrittenError, a timeout: in doubt), the ASL retries
            # StoreUnavailable and steps.end_marker's retry first looks for a marker this
            # attempt may have written (from the `@start` it set), so none is written twice.
            if isinstance(exc, ProducerFailedError | PossiblyWrittenError) and exc.fatal:
                # unusable for good (closed, or an idempotent producer's fatal state after
                # a broker forgot it): the retry the ASL makes of StoreUnavailable gets a
                # fresh one, not the same refusal until the container is recycled
                self._drop_producer()
            raise StoreUnavailable(f"PENDING_END on {topic}/{partition}: {exc}") from exc
        return offset

    def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        with contextlib.suppress(Exception):  # closed or broken already: nothing to keep
            producer.close()

    def find_end_marker(
        self, topic: str, partition: int, symbol: str, epoch: int, from_offset: int
    ) -> int | None:
        """The offset of the first PENDING_END for (symbol, epoch) at or after `from_offset`,
        None if there is none: read up to the end (no record for SCAN_IDLE_S), never by the
        high watermark (on Tansu it is not the end of the log)."""
        from confluent_kafka import Consumer, TopicPartition  # noqa: PLC0415

        consumer = Consumer(
            {**self.config, "group.id": "hotshard-migration-scan", "enable.auto.commit": False}
        )
        try:
            consumer.assign([TopicPartition(topic, partition, from_offset)])
            deadline = time.monotonic() + TIMEOUT_S
            while time.monotonic() < deadline:
                batch = consumer.consume(num_messages=1000, timeout=SCAN_IDLE_S)
                if not batch:
                    return None
                for message in batch:
                    value, offset = message.value(), message.offset()
                    if message.error() is not None or value is None or offset is None:
                        continue
                    if wire.pending_marker_of(value) == (symbol, epoch, wire.PENDING_END):
                        return int(offset)
            raise StoreUnavailable(f"{topic}/{partition}: no end of the scan in {TIMEOUT_S} s")
        finally:
            consumer.close()

    def close(self) -> None:
        """Close both clients now: an unclosed producer keeps its threads and reconnects to
        the broker until garbage collection (after a test's broker stopped: "Connection
        refused" lines for the rest of the run)."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            producer, self._producer = self._producer, None
            producer.flush(TIMEOUT_S)
            producer.close()
