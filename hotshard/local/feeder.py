"""The local MSK event source mapping: reads fills, trades, depth and order_status from the
broker and invokes the stream handler with MSK-shaped batches (hotshard.local.shapes),
one topic per invocation like one event source mapping per topic in AWS (TopicFeeders: a
Feeder, its consumer and its thread per topic, so the topics are invoked side by side as
their event source mappings are: an order's status never waits behind a batch of depth
or trades; each topic's records stay in their order), up to
`batch_size` records or `window_s` of waiting: by default what the event source mapping in
infra/ is configured with (hotshard.names.STREAM_BATCH_SIZE, STREAM_BATCH_WINDOW_S = 0:
invoke with whatever has arrived, waiting only while nothing has). Offsets are committed (one
group, hotshard-stream, for every topic) after the handler returned; a failing batch is
retried, then skipped with an error log, so one poison record cannot stall the stream.
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from hotshard.kafka import consumer_config, topic_id
from hotshard.local.gateway import LambdaContext
from hotshard.local.shapes import msk_event, msk_record
from hotshard.names import (
    KAFKA_GROUP_PREFIX,
    STREAM_BATCH_SIZE,
    STREAM_BATCH_WINDOW_S,
    TOPIC_DEPTH,
    TOPIC_FILLS,
    TOPIC_ORDER_STATUS,
    TOPIC_TRADES,
)

log = logging.getLogger("hotshard.feeder")

STREAM_TOPICS = (TOPIC_ORDER_STATUS, TOPIC_FILLS, TOPIC_TRADES, TOPIC_DEPTH)
GROUP = KAFKA_GROUP_PREFIX + "stream"
ATTEMPTS = 3
REDIS_WAIT_MAX_S = 1.0
IDLE_WAIT_S = 0.1
"""With window 0: how long one read waits while nothing has arrived."""
LOG_CHECK_S = 1.0
"""How often the feeder compares its topics' ids with the broker's (a replaced log)."""
STOP_WAIT_S = 10.0
"""How long stop() waits for the thread to finish the batch in progress."""

Handler = Callable[[dict[str, Any], Any], Any]


class Feeder:
    def __init__(
        self,
        base: dict[str, Any],
        handler: Handler,
        *,
        topics: tuple[str, ...] = STREAM_TOPICS,
        batch_size: int = STREAM_BATCH_SIZE,
        window_s: float = STREAM_BATCH_WINDOW_S,
        fetch_wait_max_ms: int = 10,
        fetch_min_bytes: int = 1,
    ) -> None:
        from confluent_kafka import Consumer  # noqa: PLC0415

        self.base = base
        self.handler = handler
        self.topics = topics
        self.batch_size = batch_size
        self.window_s = window_s
        self.consumer = Consumer(
            consumer_config(
                base,
                group_id=GROUP,
                fetch_wait_max_ms=fetch_wait_max_ms,
                fetch_min_bytes=fetch_min_bytes,
            )
        )
        self.stopping = threading.Event()
        self.invocations = 0
        self.failures = 0
        self.replaced = 0
        """Topics found replaced (another topic id: the broker lost its data)."""
        self._thread: threading.Thread | None = None
        self._admin: Any = None
        self._log_ids: dict[str, str] = {}
        self._checked_at = 0.0

    def _assign(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition  # noqa: PLC0415

        meta = self.consumer.list_topics(timeout=10)
        wanted = [
            TopicPartition(topic, p)
            for topic in self.topics
            if topic in meta.topics
            for p in sorted(meta.topics[topic].partitions)
        ]
        committed = self.consumer.committed(wanted, timeout=10)
        for tp in committed:
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING
        self.consumer.assign(committed)
        self._log_ids = {t: self._log_id(t) for t in {tp.topic for tp in wanted}}
        self._checked_at = time.monotonic()

    def _log_id(self, topic: str) -> str:
        from confluent_kafka import KafkaException  # noqa: PLC0415
        from confluent_kafka.admin import AdminClient  # noqa: PLC0415

        if self._admin is None:
            self._admin = AdminClient(self.base)
        try:
            return topic_id(self._admin, topic, timeout_s=5)
        except KafkaException:  # not there (yet): compared next time
            return ""

    def _check_logs(self) -> None:
        """A topic with another id than at the start is a replaced log (Tansu on memory
        storage after a restart: empty, offsets from 0): its partitions are read again from
        their beginning. Left at the old positions, the consumer would skip the first
        records of the new log once it has grown past them, silently. What it re-reads the
        stream handler's sequence guard drops as seen (hotshard.dedupe)."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition  # noqa: PLC0415

        self._checked_at = time.monotonic()
        changed = []
        for topic, known in self._log_ids.items():
            now = self._log_id(topic)
            if now and known and now != known:
                changed.append(topic)
            if now:
                self._log_ids[topic] = now
        if not changed:
            return
        self.replaced += len(changed)
        log.error(
            "event log replaced: reading it from its start",
            extra={"reason": "LOG_REPLACED", "topics": changed},
        )
        assigned = self.consumer.assignment()
        positions = {(tp.topic, tp.partition): tp.offset for tp in self.consumer.position(assigned)}
        self.consumer.assign(
            [
                TopicPartition(
                    tp.topic,
                    tp.partition,
                    OFFSET_BEGINNING
                    if tp.topic in changed or positions[(tp.topic, tp.partition)] < 0
                    else positions[(tp.topic, tp.partition)],
                )
                for tp in assigned
            ]
        )

    def start(self) -> None:
        self._assign()
        name = "feeder-" + "-".join(self.topics)
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop and wait up to STOP_WAIT_S for it; it closes its consumer
        as it ends. One still in a batch (a handler that has not returned) closes it when
        the batch is done: closed from here, the consumer would be used after its close by
        the batch's commit (RuntimeError: the thread died, the batch's offsets lost) or
        by a consume() already under way in librdkafka."""
        self.stopping.set()
        thread = self._thread
        if thread is None:  # never started (or driven by step() from this thread)
            self._close()
            return
        thread.join(STOP_WAIT_S)
        if thread.is_alive():
            log.warning(
                "feeder still in a batch after %.0f s: its consumer closes when it is done",
                STOP_WAIT_S,
                extra={"topics": list(self.topics)},
            )

    def _close(self) -> None:
        self.consumer.close()
        # an AdminClient has no close(): dropped here it goes at once; kept, it lived on
        # (the thread's bound method ties this object in a cycle) and logged "Connection
        # refused" after its broker stopped, past pytest's summary
        self._admin = None

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.step()
        finally:
            self._close()

    def step(self) -> int:
        """One read and the invocations it makes; returns records delivered."""
        if time.monotonic() - self._checked_at >= LOG_CHECK_S:
            self._check_logs()
        messages = self._read()
        by_topic: dict[str, list[Any]] = {}
        for msg in messages:
            if msg.error() is not None:
                continue
            by_topic.setdefault(msg.topic(), []).append(msg)
        delivered = 0
        for topic, batch in by_topic.items():
            records = [
                msk_record(topic, m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value())
                for m in batch
            ]
            if not self._invoke(msk_event(records, bootstrap=self.base["bootstrap.servers"])):
                return delivered  # stopping with it unhandled: not committed, read again
            delivered += len(batch)
        if by_topic:
            from confluent_kafka import TopicPartition  # noqa: PLC0415

            last: dict[tuple[str, int], int] = {}
            for msg in messages:
                if msg.error() is None:
                    last[(msg.topic(), msg.partition())] = msg.offset()
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()],
                asynchronous=True,
            )
        return delivered

    def _read(self) -> list[Any]:
        if self.window_s > 0:  # librdkafka waits the whole window unless the batch fills
            return list(self.consumer.consume(self.batch_size, self.window_s))
        messages = list(self.consumer.consume(self.batch_size, 0))
        if not messages:
            messages = list(self.consumer.consume(1, IDLE_WAIT_S))
            if messages and self.batch_size > 1:
                messages += self.consumer.consume(self.batch_size - 1, 0)
        return messages

    def _invoke(self, event: dict[str, Any]) -> bool:
        """Invoke until the handler succeeds. A Redis that is down (restarting, failing
        over) is waited out, as the MSK event source retries a failed batch until it
        succeeds: the batch is not skipped, so no push and no order update is lost. Any
        other failure is retried ATTEMPTS times, then the batch is skipped (logged).
        False: stopping with the batch not handled (its offsets must not be committed)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                self.invocations += 1
                self.handler(event, LambdaContext("stream_handler"))
                return True
            except (redis.ConnectionError, redis.TimeoutError):
                self.failures += 1
                if attempt == 1:
                    log.warning("redis unreachable: the batch waits for it")
                if self.stopping.is_set():
                    log.error("stopping with a batch not handled (redis unreachable)")
                    return False
                time.sleep(min(REDIS_WAIT_MAX_S, 0.05 * 2 ** min(attempt, 6)))
            except Exception:
                self.failures += 1
                log.exception("stream handler failed", extra={"attempt": attempt})
                if attempt >= ATTEMPTS:
                    log.error("batch skipped after %d attempts", ATTEMPTS)
                    return True
                time.sleep(0.05 * attempt)


class TopicFeeders:
    """One Feeder per topic, each with its own consumer (same group, its topic's partitions
    assigned: the committed offsets are those a single Feeder kept) and its own thread, as
    each topic's event source mapping in AWS invokes the stream handler independently.
    Before, one thread handled the topics of a read one after another, so a status waited
    behind the read's fills, trades and depth batches (and their posts). The threads share
    the handler module's Powertools objects, which Lambda uses one invocation at a time: the
    handler keeps its log lines' request id per thread; its metrics are off here
    (POWERTOOLS_METRICS_DISABLED, set by the local edge: it adds none), so the shared metric
    set stays empty (forced on, side-by-side invocations share EMF documents on stdout,
    which nothing reads here)."""

    def __init__(
        self,
        base: dict[str, Any],
        handler: Handler,
        *,
        topics: tuple[str, ...] = STREAM_TOPICS,
        **options: Any,
    ) -> None:
        self.feeders = [Feeder(base, handler, topics=(topic,), **options) for topic in topics]

    def start(self) -> None:
        started: list[Feeder] = []
        try:
            for feeder in self.feeders:
                feeder.start()
                started.append(feeder)
        except Exception:
            self._stop(started)
            raise

    def stop(self) -> None:
        self._stop(self.feeders)

    @staticmethod
    def _stop(feeders: list[Feeder]) -> None:
        for feeder in feeders:  # all asked first: their waits end together
            feeder.stopping.set()
        for feeder in feeders:
            feeder.stop()

    @property
    def invocations(self) -> int:
        return sum(f.invocations for f in self.feeders)

    @property
    def failures(self) -> int:
        return sum(f.failures for f in self.feeders)

    @property
    def replaced(self) -> int:
        return sum(f.replaced for f in self.feeders)
