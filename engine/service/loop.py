"""The engine's Kafka loop: one thread consumes, matches (engine.service.core), publishes,
does its housekeeping (heartbeat, snapshots and checkpoints, depth snapshots, metrics) and
runs control requests between batches.

gRPC handlers never touch the books: they `call()` a function (engine.service.operations)
that this loop runs between two batches, so every change of state happens on one thread,
in a well-defined place of the input sequence.

Durability rule: a snapshot is recorded (and a checkpoint written) only after the producer
has delivered every event produced so far. So a restart that loads the checkpoint and
replays `orders` from it can re-emit events (same seqs: consumers drop them,
hotshard.dedupe) but never skips one.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from confluent_kafka import KafkaException

from engine.book import Book
from engine.book.snapshot import SnapshotInfo, dump, load
from engine.service.core import EngineState, Output, restore_partition
from engine.service.errors import EngineFailedError
from engine.service.metrics import Metrics
from engine.service.settings import EngineSettings
from engine.service.store import SnapshotStore
from hotshard import recovery, registry
from hotshard.names import TOPIC_ORDERS

log = logging.getLogger("hotshard.engine")

T = TypeVar("T")

FLUSH_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class SnapshotResult:
    data: bytes
    partition: int
    input_offset: int
    location: str
    seq: int


@dataclass(slots=True)
class Engine:
    settings: EngineSettings
    state: EngineState
    consumer: Any  # confluent_kafka.Consumer
    producer: Any  # confluent_kafka.Producer
    redis: redis.Redis
    store: SnapshotStore
    metrics: Metrics = field(default_factory=Metrics)
    emit: Callable[[str], None] = print
    partitions: list[int] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    serving: bool = False
    _controls: "queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]" = field(
        default_factory=queue.SimpleQueue
    )
    _failure: str = ""
    _last_snapshot: float = 0.0
    _last_heartbeat: float = 0.0
    _last_metrics: float = 0.0
    _last_depth: float = 0.0

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Claim the partitions, load their checkpoints, assign, register."""
        s = self.settings
        self.partitions = sorted(s.partitions)
        taken = registry.claim_partitions(
            self.redis, s.instance, self.partitions, int(s.ownership_ttl_s * 1000)
        )
        if taken:
            raise EngineFailedError(f"partitions {taken} are owned by another live instance")
        began = time.monotonic()
        for partition in self.partitions:
            self._recover(partition)
        self.assign()
        self.register()
        self.serving = True
        log.info(
            "engine started",
            extra={
                "instance": s.instance,
                "partitions": self.partitions,
                "symbols": len(self.state.market.books),
                "recovery_s": round(time.monotonic() - began, 3),
                "positions": dict(self.state.position),
            },
        )
        now = time.monotonic()
        self._last_snapshot = self._last_heartbeat = self._last_metrics = now
        self._last_depth = now

    def _recover(self, partition: int) -> None:
        checkpoint = recovery.read_checkpoint(self.redis, partition)
        books: dict[str, tuple[Book, SnapshotInfo]] = {}
        if checkpoint is not None:
            for symbol in checkpoint.symbols:
                record = self.store.latest(symbol)
                if record is None:
                    raise EngineFailedError(f"checkpoint names {symbol} but it has no snapshot")
                books[symbol] = load(self.store.fetch(record.location))
        start = restore_partition(self.state, checkpoint, partition, books)
        log.info(
            "partition recovered",
            extra={"partition": partition, "symbols": len(books), "resume_offset": start},
        )

    def assign(self) -> None:
        from confluent_kafka import TopicPartition  # noqa: PLC0415

        self.consumer.assign(
            [
                TopicPartition(TOPIC_ORDERS, p, self.state.position.get(p, 0))
                for p in self.partitions
            ]
        )

    def register(self) -> None:
        s = self.settings
        import os  # noqa: PLC0415
        import socket  # noqa: PLC0415

        registry.register_engine(
            self.redis,
            registry.EngineRecord(
                s.instance,
                s.address,
                tuple(self.partitions),
                int(time.time() * 1000),
                socket.gethostname(),
                os.getpid(),
            ),
            int(s.ownership_ttl_s * 1000),
        )

    def run(self) -> None:
        """Consume until `stopping` is set; raises EngineFailedError when it must not go on."""
        s = self.settings
        consume = self.consumer.consume
        timeout = s.poll_timeout_ms / 1000
        while not self.stopping.is_set():
            self._run_controls()
            messages = consume(s.batch_size, timeout)
            if messages:
                self._process(messages)
            self.producer.poll(0)
            if self._failure:
                raise EngineFailedError(self._failure)
            self._housekeeping()

    def shutdown(self) -> None:
        """Stop: publish what is pending, final snapshot, deregister."""
        self.serving = False
        self._run_controls()
        try:
            self.checkpoint_all("shutdown")
        finally:
            registry.deregister_engine(self.redis, self.settings.instance, self.partitions)
            self.consumer.close()
            log.info("engine stopped", extra={"instance": self.settings.instance})

    # ------------------------------------------------------------------ the batch

    def _process(self, messages: list[Any]) -> None:
        records = []
        for m in messages:
            if m.error() is not None:
                self._consumer_error(m.error())
                continue
            records.append((m.partition(), m.offset(), m.key(), m.value()))
        if not records:
            return
        result = self.state.apply_batch(records)
        self._publish(result.outputs)
        self.metrics.observe(result.orders, result.client_ts, time.time_ns())

    def _publish(self, outputs: list[Output]) -> None:
        produce = self.producer.produce
        for topic, partition, key, value in outputs:
            while True:
                try:
                    produce(topic, value, key, partition)
                    break
                except BufferError:
                    self.producer.poll(0.05)
                except KafkaException as exc:  # e.g. a record the broker would refuse
                    raise EngineFailedError(f"cannot publish to {topic}: {exc}") from exc

    def _consumer_error(self, error: Any) -> None:
        if error.fatal():
            self._failure = f"consumer: {error}"
        else:
            log.warning("consumer error", extra={"error": str(error)})

    def on_delivery(self, error: Any, message: Any) -> None:
        """Producer callback (configured to report failures only)."""
        if error is not None:
            self._failure = f"event not delivered to {message.topic()}: {error}"
            log.error("delivery failed", extra={"error": str(error), "topic": message.topic()})

    # ------------------------------------------------------------------ periodic work

    def _housekeeping(self) -> None:
        s = self.settings
        now = time.monotonic()
        if now - self._last_heartbeat >= s.heartbeat_interval_s:
            self._last_heartbeat = now
            self._heartbeat()
        if now - self._last_snapshot >= s.snapshot_interval_s:
            self._last_snapshot = now
            self.checkpoint_all("periodic")
        if now - self._last_depth >= s.depth_snapshot_interval_s:
            self._last_depth = now
            self._publish(self.state.depth_snapshots(s.depth_levels))
        if now - self._last_metrics >= s.metrics_interval_s:
            self._last_metrics = now
            self.metrics.roll()
            for line in self.metrics.emf(s.instance, self.lag(), int(time.time() * 1000)):
                self.emit(line)

    def _heartbeat(self) -> None:
        s = self.settings
        taken = registry.claim_partitions(
            self.redis, s.instance, self.partitions, int(s.ownership_ttl_s * 1000)
        )
        if taken:
            self._failure = f"lost ownership of partitions {taken}"
            return
        self.register()

    def flush(self) -> bool:
        remaining = self.producer.flush(FLUSH_TIMEOUT_S)
        if remaining:
            log.warning("events not yet delivered", extra={"pending": remaining})
        return remaining == 0 and not self._failure

    def checkpoint_all(self, why: str) -> bool:
        """Snapshot every changed book, then write every owned partition's checkpoint."""
        if not self.flush():
            return False
        began = time.monotonic()
        changed = sorted(s for s in self.state.dirty if s in self.state.market.books)
        for symbol in changed:
            self.store_snapshot(symbol)
        taken_ms = int(time.time() * 1000)
        for partition in self.partitions:
            checkpoint = self.state.checkpoint(partition, self.settings.instance, taken_ms)
            if not recovery.write_checkpoint(self.redis, checkpoint):
                self._failure = f"partition {partition} is no longer owned here"
                log.error("checkpoint refused: ownership lost", extra={"partition": partition})
                return False
        log.info(
            "checkpoint",
            extra={
                "why": why,
                "snapshots": len(changed),
                "seconds": round(time.monotonic() - began, 3),
                "positions": dict(self.state.position),
            },
        )
        return True

    def store_snapshot(self, symbol: str) -> SnapshotResult:
        book = self.state.market.books[symbol]
        partition = self.state.home.get(symbol, -1)
        offset = self.state.applied_offset(symbol)
        data = dump(book, input_offset=offset, partition=partition)
        record = self.store.put(
            symbol, data, partition=partition, input_offset=offset, seq=book.seq
        )
        self.state.dirty.discard(symbol)
        return SnapshotResult(data, partition, offset, record.location, book.seq)

    def lag(self) -> int:
        """Records the engine has not consumed yet as far as the broker reports (exact on
        MSK; Tansu reports a high watermark short of the log end, so a lower bound) plus
        events not yet acknowledged."""
        from confluent_kafka import TopicPartition  # noqa: PLC0415

        backlog = 0
        for p in self.partitions:
            try:
                # cached: the high watermark of the last fetch response, no broker round
                # trip (the loop must not block on it)
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(TOPIC_ORDERS, p), cached=True
                )
            except Exception:
                continue
            backlog += max(0, high - self.state.position.get(p, 0))
        return backlog + len(self.producer)

    # ------------------------------------------------------------------ control

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run `fn` on the loop thread between batches (from any thread); its result or
        exception comes back here."""
        future: Future[T] = Future()
        self._controls.put((fn, future))
        try:
            return future.result(timeout)
        except TimeoutError:
            # A caller that gave up must not see its change happen later (a Remove after
            # the migration rolled back would leave nobody holding the symbol). If the loop
            # already started it, it completes and the caller's timeout was a lie: wait.
            if future.cancel():
                raise
            return future.result()

    def _run_controls(self) -> None:
        while True:
            try:
                fn, future = self._controls.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)
