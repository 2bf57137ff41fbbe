"""The engine's Kafka loop: one thread consumes, matches (engine.service.core), publishes,
does its housekeeping (heartbeat, snapshots and checkpoints, depth snapshots, metrics) and
runs control requests between batches.

gRPC handlers never touch the books: they `call()` a function (engine.service.operations)
that this loop runs between two batches, so every change of state happens on one thread,
in a well-defined place of the input sequence.

Durability rule: a checkpoint is written only after the producer has delivered every
event produced so far, and names only snapshots already stored. So a restart that loads
the checkpoint and replays `orders` from it can re-emit events (same seqs: consumers drop
them, hotshard.dedupe) but never skips one.

Besides the owned partitions, the consumer reads the partitions shadows follow and the
`pending-orders` partitions replays take records from (engine.service.core). Every
snapshot (periodic, after Redis comes back, at shutdown, and those a move needs) is dumped
by a forked child (engine.service.forked): the loop pays only the fork, the book goes on
matching, and a worker stores what the child writes (`offload`). Ownership is refreshed
by a heartbeat thread while the loop keeps turning (a loop stuck longer than the ownership
TTL loses it), and a flush never waits longer than a third of that TTL.
"""

import dataclasses
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from confluent_kafka import KafkaException

from engine import fastwire
from engine.book import Book
from engine.book.snapshot import SnapshotInfo, load
from engine.service import forked
from engine.service.core import EngineState, Output, restore_partition
from engine.service.errors import EngineFailedError
from engine.service.forked import DumpChild, DumpSpec
from engine.service.metrics import Metrics
from engine.service.settings import LEGACY_CONSUME, EngineSettings
from engine.service.store import SnapshotStore
from hotshard import kafka, recovery, registry, route
from hotshard.kafka import stale_ack
from hotshard.names import TOPIC_ORDERS, TOPIC_PENDING_ORDERS
from hotshard.reasons import Reason
from hotshard.recovery import SEQ_JUMP_ON_REPLACED_LOG

log = logging.getLogger("hotshard.engine")

T = TypeVar("T")

POSITION_SLACK = 10_000
"""How far past the reported high watermark a checkpoint may be (one producer batch)."""
READABLE_CHECK_S = 5.0
"""How long a start waits to read the record at a checkpoint position below the broker's
low watermark before it believes the watermark."""
FLUSH_TIMEOUT_S = 10.0
"""The longest a flush waits; never more than a third of the ownership TTL."""
INDEX_SLICE = 20_000
"""Restored orders a loop turn indexes (a book restored from a version 3 snapshot matches
before its order index is built, engine.book.index): a few ms of the loop at a time."""
INDEX_SCAN_S = 0.2
"""How often the loop looks for books with orders not indexed yet."""
INDEX_EVERY_S = 0.05
"""While records wait (a busy partition) a slice at most this often: indexing yields to
matching."""
INDEX_BEHIND_S = 0.25
"""Until the loop has caught up (every owned partition read to its high watermark: a
restart's replay of its tail), a slice at most this often, idle turns included: an idle turn
then is a wait for the broker's next fetch, and a slice in it delays the records that fetch
brings, so a restart's way back to matching would carry the index (a slice of 20,000 orders:
~10 ms)."""
MOVE_POLL_S = 0.001
"""The longest a consume waits for a record while a move of a symbol here is under way (a
shadow here, or a move step asked within MOVE_WINDOW_S): with nothing to read, a Fence or
Promote queued for the loop waits for the consume's timeout (--poll-timeout-ms, 5 ms)."""
CHECKPOINT_HOLD_S = 20.0
"""How long past due a periodic checkpoint waits for a move's pause here (`hold_checkpoints`)."""
MOVE_WINDOW_S = 30.0
"""How long after a move's step (Snapshot, Follow, Fence, Promote, ...) the loop turns at
MOVE_POLL_S: the next step of the same move comes within it (the step timeout)."""
REDIS_RETRY_MAX_S = 5.0
"""While Redis is unreachable, the loop tries its Redis work at most this far apart."""
SHUTDOWN_DELIVERY_S = 120.0
"""How long a graceful stop waits for its events to be delivered before its final
checkpoint (one flush is capped at TTL/3; a stop after a big backlog needs several)."""


def _package_started_at() -> float:
    import engine  # noqa: PLC0415

    return engine.STARTED_AT


@dataclass(frozen=True, slots=True)
class SnapshotResult:
    partition: int
    input_offset: int
    location: str
    seq: int
    owner_epoch: int = 0
    size: int = 0
    state_hash: str = ""


def checkpoint_due(now: float, last: float, interval_s: float, hold_until: float) -> bool:
    """Whether the periodic checkpoint runs now: `interval_s` since the `last` one, unless a
    move holds it (`hold_until`, Engine.hold_checkpoints), which it waits for at most
    CHECKPOINT_HOLD_S past due."""
    if now - last < interval_s:
        return False
    return now >= hold_until or now - last >= interval_s + CHECKPOINT_HOLD_S


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
    log_identity: Callable[[], str] | None = None
    """Reads the identity (topic id) of the `orders` log now (hotshard.kafka.topic_id);
    None: not known (checkpoints then carry none, and only the position check guards)."""
    partitions: list[int] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    caught_up: threading.Event = field(default_factory=threading.Event)
    """Set when a consume first finds nothing waiting with the owned partitions read to
    their high watermarks (the start's backlog is applied)."""
    serving: bool = False
    _controls: "queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]" = field(
        default_factory=queue.SimpleQueue
    )
    _failure: str = ""
    _acked_through: dict[tuple[str, int], int] = field(default_factory=dict)
    """Per (topic, partition), the offset of the last event the broker acknowledged: the
    floor of the next one's (see on_delivery)."""
    _last_snapshot: float = 0.0
    _last_heartbeat: float = 0.0
    _redis_lost: float = 0.0
    """When Redis became unreachable (0: it is reachable)."""
    _redis_retry_at: float = 0.0
    _redis_run_id: str = ""
    _last_metrics: float = 0.0
    _last_depth: float = 0.0
    _last_index_scan: float = 0.0
    _last_index: float = 0.0
    _index_slices: int = 0  # slices indexed so far, and their CPU (logged at "caught up")
    _index_cpu_s: float = 0.0
    _unindexed: list[Book] = field(default_factory=list)
    """Books (owned or shadows) whose restored orders are not all indexed yet."""
    _indexing: dict[str, list[float]] = field(default_factory=dict)
    """Per book being indexed: [first slice (monotonic), slices, CPU s, longest slice s]."""
    _turned: float = 0.0
    _assigned: tuple[Any, ...] = ()
    _assigned_at: tuple[tuple[str, int, int], ...] = ()
    """The last assignment with its offsets, until the first consume (see `_assign`)."""
    _retire: list[str] = field(default_factory=list)
    _workers: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="offload")
    )
    _heart: threading.Thread | None = None
    _closing: bool = False
    """Set by shutdown: its final snapshots (a big book's dump can outlast the ownership TTL)
    keep ownership until the final checkpoint is written."""
    _fences_unneeded: dict[str, float] = field(default_factory=dict)
    """Fences no checkpoint needs any more, and since when (monotonic)."""
    _periodic: DumpChild | None = None
    """The periodic checkpoint's snapshot child while it runs."""
    _next_turn: list[Callable[[], Any]] = field(default_factory=list)
    _timers: list[tuple[float, Callable[[], Any]]] = field(default_factory=list)
    """What `later` was given: (monotonic time due, fn), run by the loop once due."""
    on_fence_snapshot_owed: Callable[[str], None] | None = None
    """Called on the loop with a fenced book restored from a checkpoint that names no fence
    snapshot (the engine died before storing it) once the book is back at its fence: it
    stores that snapshot (engine.service.operations)."""
    _replaced: list[int] = field(default_factory=list)
    """Partitions whose checkpoint named a replaced `orders` log (this start)."""
    _uncheckpointed: list[int] = field(default_factory=list)
    """Partitions with no checkpoint at this start: one is written before consuming."""
    _written: dict[int, recovery.Checkpoint] = field(default_factory=dict)
    """Per partition, the last checkpoint known durable in Redis (written, or read at
    start): what a Fence adds its fence to (`write_fence_checkpoint`)."""
    _continued: dict[str, str] = field(default_factory=dict)
    """Per book, the location of its last stored snapshot if that one continues the book's
    lineage (`stored(continues=True)`: the live book's own snapshot, e.g. a pre-copy's)."""
    phases: list[tuple[str, float]] = field(default_factory=list)
    """The start's phases as they ended (name, wall time): logged with "engine started"
    and "caught up", so a restart's wall time can be split (bench.recovery)."""
    _first_batch: bool = True
    _moving_until: float = 0.0
    """Until when (monotonic) the loop turns at MOVE_POLL_S (`moving`)."""
    _hold_until: float = 0.0
    """Until when (monotonic) periodic checkpoints wait for a move's pause (`hold_checkpoints`)."""

    def mark(self, phase: str, at: float | None = None) -> None:
        """`phase` of the start ended now (or `at`, a wall time)."""
        self.phases.append((phase, time.time() if at is None else at))

    def _phases(self) -> dict[str, float]:
        """The phases so far, as seconds since the engine package was imported."""
        began = _package_started_at()
        return {name: round(at - began, 4) for name, at in self.phases}

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Claim the partitions, load their checkpoints, assign, register."""
        s = self.settings
        # the broker's answer (a round trip on a client of its own) while Redis answers
        log_id = self._workers.submit(self._read_log_id)
        # partitions adopted earlier (Restore with follow, Promote) are this engine's home
        # too: a restart reclaims them with their checkpoints
        self.partitions = sorted(
            {*s.partitions, *registry.homed_partitions(self.redis, s.instance)}
        )
        taken = registry.claim_partitions(
            self.redis, s.instance, self.partitions, int(s.ownership_ttl_s * 1000)
        )
        if taken:
            raise EngineFailedError(f"partitions {taken} are owned by another live instance")
        registry.set_homes(self.redis, s.instance, self.partitions)
        self.mark("claimed")
        began = time.monotonic()
        self.state.log_id = log_id.result()
        self.mark("log id")
        checkpoints = {p: self._read_checkpoint(p) for p in self.partitions}
        resume = {p: c.resume_offset() if c else 0 for p, c in checkpoints.items()}
        self._check_positions(resume)
        self.mark("positions checked")
        # Fetching starts now: the broker's records arrive (librdkafka's threads: another
        # core) while this thread loads the snapshots; the assignment after them is the same
        # and is kept, so the records fetched meanwhile are not fetched again.
        self._assign([(TOPIC_ORDERS, p, o) for p, o in resume.items()])
        self.mark("fetching")
        for partition, checkpoint in checkpoints.items():
            self._recover(partition, checkpoint)
        if self.state.handoffs_owed:  # books restored at their fence already
            self._publish(self.state.owed_handoffs())
        self.assign()
        self.register()
        self.mark("assigned")
        if self._replaced and not self.final_checkpoint("orders log replaced", complete=True):
            # the jumped seqs must be durable before any event carries one
            raise EngineFailedError(f"cannot checkpoint the replaced log of {self._replaced}")
        for partition in self._uncheckpointed:
            # which log the events to come are numbered on, before the first one: else a log
            # replaced before the first periodic checkpoint would not be noticed (no jump,
            # and readers would drop the new log's first events as repeats)
            if not self.write_checkpoints(only=partition):
                raise EngineFailedError(f"cannot write the first checkpoint of {partition}")
        self.serving = True
        log.info(
            "engine started",
            extra={
                "instance": s.instance,
                "partitions": self.partitions,
                "symbols": len(self.state.market.books),
                "recovery_s": round(time.monotonic() - began, 3),
                # CPU since exec: the whole process (librdkafka's threads too), this thread
                "cpu_s": round(time.process_time(), 3),
                "thread_cpu_s": round(time.thread_time(), 3),
                "positions": dict(self.state.position),
                "phases": self._phases(),
                "started_at": round(_package_started_at(), 4),
            },
        )
        now = time.monotonic()
        self._last_snapshot = self._last_heartbeat = self._last_metrics = now
        self._last_depth = self._turned = self._last_index = now
        self._redis_run_id = str(self.redis.info("server").get("run_id", ""))
        self._heart = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._heart.start()

    def _read_checkpoint(self, partition: int) -> recovery.Checkpoint | None:
        """The partition's checkpoint (moved to the broker's log if it names another)."""
        try:
            checkpoint = recovery.read_checkpoint(self.redis, partition)
        except (ValueError, recovery.CheckpointError) as exc:  # its reason is in the text
            raise EngineFailedError(f"checkpoint of partition {partition}: {exc}") from exc
        self.mark(f"checkpoint {partition} read")
        if checkpoint is None:
            self._uncheckpointed.append(partition)
            return None
        moved = self._same_log(checkpoint)
        if moved is checkpoint:  # (a replaced log's is no longer what Redis holds)
            self._written[partition] = checkpoint
        return moved

    def _recover(self, partition: int, checkpoint: recovery.Checkpoint | None) -> None:
        books: dict[str, tuple[Book, SnapshotInfo]] = {}
        spent = {"fetch_s": 0.0, "fetch_cpu_s": 0.0, "load_s": 0.0, "load_cpu_s": 0.0}
        if checkpoint is not None:
            for symbol, entry in checkpoint.books.items():
                if not entry.location:
                    continue
                try:
                    wall, cpu = time.perf_counter(), time.thread_time()
                    data = self.store.fetch(entry.location)
                    spent["fetch_s"] += time.perf_counter() - wall
                    spent["fetch_cpu_s"] += time.thread_time() - cpu
                    self.mark(f"{symbol} fetched")
                    wall, cpu = time.perf_counter(), time.thread_time()
                    books[symbol] = load(data)
                    spent["load_s"] += time.perf_counter() - wall
                    spent["load_cpu_s"] += time.thread_time() - cpu
                    self.mark(f"{symbol} loaded")
                except Exception as exc:
                    raise EngineFailedError(
                        f"checkpoint of partition {partition} names {entry.location} for "
                        f"{symbol}: {exc}"
                    ) from exc
        start = restore_partition(self.state, checkpoint, partition, books)
        if partition in self._replaced:
            for symbol in books:
                self.state.market.books[symbol].seq += SEQ_JUMP_ON_REPLACED_LOG
                self.state.dirty.add(symbol)
        log.info(
            "partition recovered",
            extra={
                "partition": partition,
                "symbols": len(books),
                "resume_offset": start,
                **{k: round(v, 3) for k, v in spent.items()},
            },
        )

    def _read_log_id(self) -> str:
        if self.log_identity is None:
            return ""
        try:
            return self.log_identity()
        except KafkaException as exc:  # e.g. the topic is not there (yet): a restart retries
            raise EngineFailedError(f"cannot read the identity of {TOPIC_ORDERS}: {exc}") from exc

    def _same_log(self, checkpoint: recovery.Checkpoint) -> recovery.Checkpoint:
        """A checkpoint of another `orders` log than the broker's (it lost its data and
        made the topic again: offsets from 0, other records) is moved to the new log: its
        books resume there from offset 0 (seeking to the old position would silently skip
        the first orders acknowledged in the new log), their seqs jump by
        SEQ_JUMP_ON_REPLACED_LOG (made durable by a checkpoint before consuming). The
        records of the old log after the checkpoint were acknowledged and are gone with
        it: reported loudly (error log, LOG_REPLACED, the LogReplaced metric), never
        counted as applied."""
        current = self.state.log_id
        if not checkpoint.log_id or not current or checkpoint.log_id == current:
            return checkpoint
        self.metrics.log_replaced += 1
        self._replaced.append(checkpoint.partition)
        log.error(
            "orders log replaced: acknowledged records after the checkpoint are lost",
            extra={
                "reason": Reason.LOG_REPLACED.name,
                "partition": checkpoint.partition,
                "checkpoint_log_id": checkpoint.log_id,
                "log_id": current,
                "lost_after_offset": checkpoint.offset,
                "checkpoint_taken_ms": checkpoint.taken_ms,
                "books": len(checkpoint.books),
                "resume_offset": 0,
                "seq_jump": SEQ_JUMP_ON_REPLACED_LOG,
            },
        )
        # a book born after the checkpoint is in no checkpoint, but it is routed here:
        # its seqs jump too (readers saw them); a symbol listed from now on starts at 1
        routed = route.symbols_routed_to(self.redis, checkpoint.partition)
        return checkpoint.rebased(current, routed)

    def _check_positions(self, positions: dict[int, int]) -> None:
        """A checkpoint's position outside the partition's log (it was truncated, or
        replaced by an empty one) is never rewound or skipped silently: the engine stops
        and says so. On Tansu the high watermark is the first offset of the last batch + 1,
        so a position up to POSITION_SLACK beyond it passes (MSK reports the real end, and
        the consumer's auto.offset.reset=error catches a position beyond it later too)."""
        from confluent_kafka import TopicPartition  # noqa: PLC0415

        for p, position in positions.items():
            if position == 0:
                continue
            try:
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(TOPIC_ORDERS, p), timeout=10, cached=False
                )
            except KafkaException as exc:
                raise EngineFailedError(f"cannot read the bounds of partition {p}: {exc}") from exc
            if position < low and self._readable(p, position):
                # Tansu on s3:// storage answers ListOffsets right after a restart with a
                # low watermark at the end of the log (measured: 62..62 while 0..81 were
                # fetchable): the record itself says the log still holds the position
                log.warning(
                    "the broker's low watermark is above a readable position: going on",
                    extra={"partition": p, "position": position, "low": low, "high": high},
                )
                continue
            if position < low or position > high + POSITION_SLACK:
                raise EngineFailedError(
                    f"checkpoint position {position} of partition {p} is outside its log "
                    f"(offsets {low}..{high}): the log was truncated or replaced; refusing to "
                    "rewind or skip (delete checkpoint:orders:{P} to start it over)"
                )

    def _readable(self, partition: int, position: int) -> bool:
        """Does the `orders` log still hold the record at `position` of `partition`? Read
        it (the consumer is assigned properly afterwards): a watermark is the broker's word,
        the record is the fact."""
        from confluent_kafka import KafkaError, TopicPartition  # noqa: PLC0415

        self.consumer.assign([TopicPartition(TOPIC_ORDERS, partition, position)])
        try:
            deadline = time.monotonic() + READABLE_CHECK_S
            while time.monotonic() < deadline:
                for message in self.consumer.consume(1, 0.5):
                    error = message.error()
                    if error is None:
                        return bool(message.offset() == position)
                    if error.code() in (
                        KafkaError._AUTO_OFFSET_RESET,
                        KafkaError.OFFSET_OUT_OF_RANGE,
                    ):
                        return False
            return False
        finally:
            self.consumer.unassign()

    def assign(self) -> None:
        """Read the owned partitions from their positions, and what shadows and replays
        need. Reassigning from the positions the state holds loses nothing: every record
        consumed before is either applied or held."""
        state = self.state
        wanted = [(TOPIC_ORDERS, p, state.position.get(p, 0)) for p in self.partitions]
        wanted += [
            (TOPIC_ORDERS, p, o)
            for p, o in sorted(state.shadow_partitions().items())
            if p not in self.partitions
        ]
        wanted += [(t, p, o) for (t, p), o in sorted(state.pending_partitions().items())]
        self._assign(wanted)

    def _assign(self, wanted: list[tuple[str, int, int]]) -> None:
        """Read `wanted` (topic, partition, offset); an assignment the same as the last
        one made with offsets (nothing consumed since) is kept as it is."""
        from confluent_kafka import TopicPartition  # noqa: PLC0415

        if tuple(wanted) == self._assigned_at:
            return
        self.consumer.assign([TopicPartition(t, p, o) for t, p, o in wanted])
        self._assigned = tuple((t, p) for t, p, _ in wanted)
        self._assigned_at = tuple(wanted)

    def reassign_if_needed(self) -> None:
        state = self.state
        wanted = [(TOPIC_ORDERS, p) for p in self.partitions]
        wanted += [
            (TOPIC_ORDERS, p) for p in sorted(state.shadow_partitions()) if p not in self.partitions
        ]
        wanted += sorted(state.pending_partitions())
        if tuple(wanted) != self._assigned:
            self.assign()

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
        consumer = self.consumer
        timeout = s.poll_timeout_ms / 1000
        wait = s.batch_wait_ms / 1000
        legacy = s.batch_wait_ms == LEGACY_CONSUME
        brisk = min(timeout, MOVE_POLL_S)
        while not self.stopping.is_set():
            self._turned = now = time.monotonic()
            self._run_controls()
            # the turn starts on the first record, not at the end of the poll timeout;
            # during a move it waits at most MOVE_POLL_S for one
            waited = brisk if self.state.shadows or now < self._moving_until else timeout
            messages = (
                consumer.consume(s.batch_size, waited)
                if legacy
                else kafka.consume_batch(consumer, s.batch_size, waited, wait)
            )
            if messages:
                if self._first_batch:
                    self._first_batch = False
                    self._assigned_at = ()  # consumed: positions are the state's now
                    self.mark("first records")
                self._process(messages)
            elif not self.caught_up.is_set() and self._read_to_the_end():
                self.caught_up.set()
                self.mark("caught up")
                log.info(
                    "caught up",
                    extra={
                        "phases": self._phases(),
                        "index_slices": self._index_slices,
                        "index_cpu_s": round(self._index_cpu_s, 4),
                    },
                )
            if self.state.shadows:
                self.state.release_shadows(time.monotonic(), s.shadow_hold_ms / 1000)
            if self._next_turn:
                later, self._next_turn = self._next_turn, []
                for fn in later:
                    fn()
            if self._timers:
                self._run_timers()
            if self.state.fence_snapshots_owed and self.on_fence_snapshot_owed is not None:
                for symbol in self.state.fence_snapshots_due():
                    self.on_fence_snapshot_owed(symbol)
            self.producer.poll(0)
            if self._failure:
                raise EngineFailedError(self._failure)
            self._housekeeping()
            if self._unindexed and self._index_due(bool(messages)):
                self._index_some()

    def shutdown(self) -> None:
        """Stop: publish what is pending, final snapshot, deregister."""
        self.serving = False
        self._closing = True  # a stop makes progress: the heartbeat keeps ownership for it
        self._run_controls()
        later, self._next_turn = self._next_turn, []
        for fn in later:
            fn()
        if self._periodic is not None:
            self._periodic.cancel()  # the final checkpoint below snapshots what it had
        self._workers.shutdown(wait=True)
        self._run_controls()
        self._deliver_all(SHUTDOWN_DELIVERY_S)
        try:
            self.final_checkpoint()
        finally:
            self._closing = False
            self._turned = 0.0
            registry.deregister_engine(self.redis, self.settings.instance, self.partitions)
            self.consumer.close()
            self.close_clients()
            log.info("engine stopped", extra={"instance": self.settings.instance})

    def close_clients(self) -> None:
        """Close the producer and let go of the log identity's AdminClient (it has no
        close()); idempotent. The producer's delivery callback is a method of this engine:
        a cycle through librdkafka's C object that garbage collection never frees, so an
        engine stopped in a process that goes on (tests build engines in-process) kept both
        clients, reconnecting to their stopped broker ("Connection refused"), for the rest
        of the process. What is still undelivered is purged (its failure logged): the final
        checkpoint covers only delivered events, and a restart makes the rest again."""
        self.log_identity = None
        producer = self.producer
        if producer is None:
            return
        try:
            if len(producer):
                producer.purge()
            producer.close()
        except RuntimeError:  # closed already
            pass

    def _deliver_all(self, limit_s: float) -> None:
        """Flush until every event is delivered (or `limit_s`): a stop right after a big
        backlog has more pending than one flush (TTL/3) delivers, and its final checkpoint
        would be skipped. Ownership stays refreshed meanwhile (the stop is making progress)."""
        deadline = time.monotonic() + limit_s
        while len(self.producer) and not self._failure and time.monotonic() < deadline:
            self._turned = time.monotonic()
            self.producer.flush(1.0)

    # ------------------------------------------------------------------ the batch

    def _process(self, messages: list[Any]) -> None:
        # a rollback after a pre-copy switch replays the target's `orders` partition here
        replayed = {p for t, p in self.state.pending_partitions() if t == TOPIC_ORDERS}
        records, shadowed, pending, moved_back, errors = fastwire.split_messages(
            messages, self.partitions, TOPIC_PENDING_ORDERS, replayed
        )
        for error in errors:
            self._consumer_error(error)
        state = self.state
        if shadowed:
            state.apply_shadow(shadowed, time.monotonic(), self.settings.shadow_hold_ms / 1000)
        if pending:
            self._apply(state.apply_pending(TOPIC_PENDING_ORDERS, pending))
        if moved_back:
            self._apply(state.apply_pending(TOPIC_ORDERS, moved_back))
        if pending or moved_back:
            self._replays_done()
        if records:
            self._apply(state.apply_batch(records))
            if state.handoffs_owed:
                self._publish(state.owed_handoffs())
        if pending or moved_back:
            # only now: a reassignment in the middle of a batch would read again what the
            # rest of the batch holds
            self.reassign_if_needed()

    def _apply(self, result: Any) -> None:
        self._publish(result.outputs)
        if result.orders:
            self.metrics.observe(result.orders, result.client_ts, time.time_ns())

    def _replays_done(self) -> None:
        """Replays that met their end marker: the symbol's held records follow."""
        for symbol, replay in list(self.state.replays.items()):
            if replay.done and self.state.replay_done(symbol):
                self._apply(self.state.drain(symbol))

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
        from confluent_kafka import KafkaError  # noqa: PLC0415

        if error.fatal() or error.code() == KafkaError._AUTO_OFFSET_RESET:
            # a position out of range (the log was truncated or replaced): never rewind or
            # skip silently; stop, for an operator (or a restart from the checkpoint)
            self._failure = f"consumer: {error}"
        else:
            log.warning("consumer error", extra={"error": str(error)})

    def fail(self, why: str) -> None:
        """From any thread: the loop stops at its next turn (EngineFailedError)."""
        self._failure = why

    def on_delivery(self, error: Any, message: Any) -> None:
        """Producer callback, for every record. A record acknowledged without an offset is
        not known to be written: librdkafka's idempotent producer reports a retried batch
        the broker answers DUPLICATE_SEQUENCE_NUMBER as delivered, with no offset, and
        Tansu on durable storage answers so after a restart for a batch it does not have
        (measured in the durable broker fault case: the one trades record reported so was
        missing from the log, its seq a hole for every reader). Either way the engine stops
        as for a failed delivery: flush() then says so, no checkpoint covers the record,
        and the restart publishes it again (readers drop a second copy by its seqs).
        So does one acknowledged at an offset its partition had passed (kafka.stale_ack:
        Tansu on durable storage, restarted with a batch on its way, acknowledged a retry
        at an offset long passed and never stored it). The producer is idempotent, so its
        reports of a partition come in the order of its records: the last one's offset is
        a floor for the next."""
        if error is None:
            offset = message.offset()
            if offset is not None and offset >= 0:
                key = (message.topic(), message.partition())
                marks = self._acked_through
                floor = marks.get(key, -1)
                marks[key] = offset  # kafka.ack_mark with the mark as floor, one call less
                if not stale_ack(offset, floor):
                    return
                error = (
                    f"acknowledged at offset {offset} of partition {key[1]}, which was past "
                    f"{floor} before: not known to be written"
                )
            else:
                error = "acknowledged without an offset: not known to be written"
        self._failure = f"event not delivered to {message.topic()}: {error}"
        log.error(
            "delivery failed",
            extra={"error": str(error), "topic": message.topic(), "partition": message.partition()},
        )

    # ------------------------------------------------------------------ periodic work

    def _housekeeping(self) -> None:
        s = self.settings
        now = time.monotonic()
        if self._redis_lost and now < self._redis_retry_at:
            pass  # Redis is down: matching goes on, the checkpoint waits for the next try
        elif self._periodic is None and checkpoint_due(
            now, self._last_snapshot, s.snapshot_interval_s, self._hold_until
        ):
            self._last_snapshot = now
            self._redis_step(now, self.periodic_checkpoint)
        if now - self._last_index_scan >= INDEX_SCAN_S:
            self._last_index_scan = now
            state = self.state
            books = [*state.market.books.values(), *(w.book for w in state.shadows.values())]
            self._unindexed = [book for book in books if book.unindexed()]
            if self._indexing:  # books dropped before their index was built
                left = {book.symbol for book in self._unindexed}
                self._indexing = {s: v for s, v in self._indexing.items() if s in left}
        if now - self._last_depth >= s.depth_snapshot_interval_s:
            self._last_depth = now
            self._publish(self.state.depth_snapshots(s.depth_levels))
        if now - self._last_metrics >= s.metrics_interval_s:
            self._last_metrics = now
            self.metrics.roll()
            for line in self.metrics.emf(s.instance, self.lag(), int(time.time() * 1000)):
                self.emit(line)

    def _index_due(self, busy: bool) -> bool:
        """Whether this turn indexes a slice: every idle turn once caught up, else paced."""
        since = time.monotonic() - self._last_index
        if not self.caught_up.is_set():
            return since >= INDEX_BEHIND_S
        return not busy or since >= INDEX_EVERY_S

    def _index_some(self) -> None:
        """Index one slice of a restored book's orders (it answers the same before)."""
        self._last_index = start = time.monotonic()
        began = time.thread_time()
        book = self._unindexed[-1]
        more = book.build_index(INDEX_SLICE)
        cpu = time.thread_time() - began
        self._index_slices += 1
        self._index_cpu_s += cpu
        took = time.monotonic() - start
        done = self._indexing.setdefault(book.symbol, [start, 0, 0.0, 0.0])
        done[1] += 1
        done[2] += cpu
        done[3] = max(done[3], took)
        if not more:
            self._unindexed.pop()
            first, slices, cpu_s, longest = self._indexing.pop(book.symbol)
            log.info(
                "index built",
                extra={
                    "symbol": book.symbol,
                    "slices": int(slices),
                    "cpu_ms": round(cpu_s * 1e3, 1),
                    "wall_ms": round((time.monotonic() - first) * 1e3, 1),
                    "longest_ms": round(longest * 1e3, 1),
                },
            )

    def _beat(self) -> None:
        """The heartbeat thread: refresh ownership while the loop keeps turning (a loop
        stuck for longer than the TTL lets ownership lapse, for another engine to take)."""
        s = self.settings
        while (not self.stopping.is_set() or self._closing) and self._turned:
            turning = time.monotonic() - self._turned < s.ownership_ttl_s - s.heartbeat_interval_s
            if turning or self._closing:
                try:
                    self._heartbeat()
                except Exception as exc:  # Redis away: the TTL decides, retry
                    log.warning("heartbeat failed", extra={"error": str(exc)})
            if self.stopping.is_set():
                time.sleep(s.heartbeat_interval_s)  # stopping: wait() no longer waits
            else:
                self.stopping.wait(s.heartbeat_interval_s)

    def _redis_step(self, now: float, work: Callable[[], object]) -> None:
        """Run Redis work of the loop; an unreachable Redis (restarting, failing over)
        does not stop matching: the work is tried again with backoff (1 s doubling to
        REDIS_RETRY_MAX_S), and once Redis answers again the next turn starts a periodic
        checkpoint (forked; if Redis came back empty it snapshots every book, see
        `_reclaim_if_forgotten`), so hotshard.route.rebuild_routes can re-list the symbols
        from those checkpoints."""
        try:
            work()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if not self._redis_lost:
                self._redis_lost = now
                log.warning("redis unreachable; matching goes on", extra={"error": str(exc)})
            waited = now - self._redis_lost
            self._redis_retry_at = now + min(REDIS_RETRY_MAX_S, max(1.0, waited))
            return
        if self._redis_lost:
            down_s = round(now - self._redis_lost, 3)
            self._redis_lost = 0.0
            log.warning("redis reachable again", extra={"down_s": down_s})
            # snapshots and checkpoints anew by the forked periodic checkpoint, on the next
            # turn with no child running (it reclaims first): never a dump on the loop
            self._last_snapshot = 0.0

    def _heartbeat(self) -> None:
        s = self.settings
        taken = registry.claim_partitions(
            self.redis, s.instance, list(self.partitions), int(s.ownership_ttl_s * 1000)
        )
        if taken:
            self._failure = f"lost ownership of partitions {taken}"
            return
        self.register()

    def flush(self) -> bool:
        timeout = min(FLUSH_TIMEOUT_S, self.settings.ownership_ttl_s / 3)
        remaining = self.producer.flush(timeout)
        if remaining:
            log.warning("events not yet delivered", extra={"pending": remaining})
        return remaining == 0 and not self._failure

    def final_checkpoint(self, why: str = "shutdown", *, complete: bool = False) -> bool:
        """The shutdown's checkpoint of every owned partition, after flushing: every changed
        active book is snapshotted first, by a forked child like the periodic one (so no
        book is ever dumped in the engine's own process; nothing matches any more, so the
        loop just waits for it). A fork that fails leaves the checkpoint naming the
        snapshots stored before (a restart then replays more); with `complete`, no
        checkpoint is written then (False)."""
        if not self.flush():
            return False
        began = time.monotonic()
        state = self.state
        self._reclaim_if_forgotten()
        todo = sorted(s for s in state.dirty if state.active(s))
        stored: list[str] = []
        if todo:
            captured = {s: self._capture(s) for s in todo}
            try:
                child = self.fork_dump([spec for spec, _seq in captured.values()])
            except OSError as exc:
                log.warning("final snapshot fork failed", extra={"error": str(exc)})
            else:
                try:
                    self._store_frames(child, captured, lambda keep: keep(), stored)
                except forked.DumpFailedError as exc:
                    log.warning("final snapshots incomplete", extra={"error": str(exc)})
        if complete and sorted(stored) != todo:
            return False
        if not self.write_checkpoints():
            return False
        log.info(
            "checkpoint",
            extra={
                "why": why,
                "snapshots": len(stored),
                "seconds": round(time.monotonic() - began, 3),
                "positions": dict(state.position),
            },
        )
        return True

    def _reclaim_if_forgotten(self) -> bool:
        """A Redis that restarted or failed over (its run_id changed) may have come back
        without its data (no AOF, writes lost in a failover): who owns the partitions, the
        snapshot records. Claim the partitions again (if another instance holds one, the
        checkpoint is refused and the engine stops, as it must) and snapshot every book,
        so the checkpoints written next name only snapshots that exist, and
        hotshard.route.rebuild_routes can re-list every symbol from them."""
        run_id = str(self.redis.info("server").get("run_id", ""))
        if run_id == self._redis_run_id:
            return False
        first = not self._redis_run_id
        self._redis_run_id = run_id
        if first:
            return False
        s = self.settings
        registry.claim_partitions(
            self.redis, s.instance, self.partitions, int(s.ownership_ttl_s * 1000)
        )
        self.register()
        self.state.dirty.update(self.state.market.books)
        log.warning("redis restarted or failed over: partitions claimed, books re-snapshot")
        return True

    def periodic_checkpoint(self) -> None:
        """Snapshot every changed active book in one forked child (engine.service.forked:
        the loop pays the fork, no book is frozen, nothing is held), store each snapshot
        from a worker as it comes, then write the checkpoints naming them. A Fence or
        Remove of a symbol not yet dumped cancels the child (`cancel_periodic`): the
        books it did not deliver stay dirty for the next checkpoint."""
        state = self.state
        self._reclaim_if_forgotten()
        todo = sorted(s for s in state.dirty if state.active(s))
        began = time.monotonic()

        def write(stored: int, fork_ms: float) -> None:
            if self._reclaim_if_forgotten():
                # Redis forgot while the child's snapshots were stored: a checkpoint now
                # could name lost ones; the next turn's periodic snapshots every book again
                self._last_snapshot = 0.0
                return
            if self.flush() and self.write_checkpoints():
                log.info(
                    "checkpoint",
                    extra={
                        "why": "periodic",
                        "snapshots": stored,
                        "fork_ms": fork_ms,
                        "seconds": round(time.monotonic() - began, 3),
                        "positions": dict(state.position),
                    },
                )

        if not todo:
            write(0, 0.0)
            return
        if not self.flush():  # a snapshot is stored only once its events are out
            return
        captured = {s: self._capture(s) for s in todo}
        try:
            child = self.fork_dump([spec for spec, _seq in captured.values()])
        except OSError as exc:  # no memory or no process slot for a child: next time
            log.warning("snapshot fork failed", extra={"error": str(exc)})
            return
        self._periodic = child
        stored: list[str] = []

        def store() -> None:
            self._store_frames(child, captured, self.post, stored)

        def then(done: "Future[None]") -> None:
            self._periodic = None
            error = done.exception()
            if error is not None:
                log.warning("periodic snapshots incomplete", extra={"error": str(error)})
            fork_ms = round(child.fork_s * 1000, 1)
            self._redis_step(time.monotonic(), lambda: write(len(stored), fork_ms))

        self.offload(store, then)

    def _store_frames(
        self,
        child: DumpChild,
        captured: dict[str, tuple[DumpSpec, int]],
        on_loop: Callable[[Callable[[], None]], None],
        stored: list[str],
    ) -> None:
        """Store each snapshot `child` writes (a failed store waits for the next checkpoint)
        and have `on_loop` run, on the loop, the step that lets the next checkpoint name it
        (`stored` lists those); reaps the child (DumpFailedError if it did not finish)."""
        state = self.state

        def keep(symbol: str, location: str) -> None:
            spec, seq = captured[symbol]
            if state.market.books.get(symbol) is spec.book:  # not removed (and back) since
                # an active book captured after a flush: it continues the book's lineage
                self.stored(symbol, location, spec.input_offset, seq, continues=True)
                stored.append(symbol)

        try:
            for symbol, data in child.frames():
                spec, seq = captured[symbol]
                try:
                    record = self.store.put(
                        symbol,
                        data,
                        partition=spec.partition,
                        input_offset=spec.input_offset,
                        seq=seq,
                        owner_epoch=spec.owner_epoch,
                    )
                except Exception as exc:  # this one waits for the next checkpoint
                    log.warning("snapshot failed", extra={"symbol": symbol, "error": str(exc)})
                    continue
                on_loop(functools.partial(keep, symbol, record.location))
        finally:
            child.wait()

    def cancel_periodic(self, symbol: str) -> None:
        """On the loop: `symbol` is about to be fenced or removed; if the periodic child has
        not delivered its snapshot yet, stop it rather than let it compete with the move."""
        child = self._periodic
        if child is not None and symbol in child.symbols and symbol not in child.received:
            child.cancel()
            log.info("periodic snapshot cancelled", extra={"symbol": symbol})

    def _capture(self, symbol: str) -> tuple[DumpSpec, int]:
        """What a snapshot of the active book taken now says about it, and its seq."""
        state = self.state
        book = state.market.books[symbol]
        spec = DumpSpec(
            book, state.applied_offset(symbol), state.home[symbol], state.epoch.get(symbol, 0)
        )
        return spec, book.seq

    def fork_dump(self, specs: list[DumpSpec]) -> DumpChild:
        """On the loop: a child dumping `specs` as the books are now (engine.service.forked)."""
        child = forked.fork_dump(specs)
        log.debug(
            "snapshot child forked",
            extra={"symbols": len(specs), "fork_ms": round(child.fork_s * 1000, 1)},
        )
        return child

    @property
    def checkpointing(self) -> bool:
        """A periodic checkpoint is under way (its child forked, its snapshots not all
        stored and named yet)."""
        return self._periodic is not None

    def moving(self) -> None:
        """A step of a move of a symbol here was asked (from any thread): for MOVE_WINDOW_S
        the loop turns at MOVE_POLL_S, so the move's next step queued for it (a Fence, a
        Promote) waits ~1 ms for its turn, not a whole poll timeout."""
        self._moving_until = time.monotonic() + MOVE_WINDOW_S

    def hold_checkpoints(self) -> None:
        """A move's pause will need this engine soon (a pre-copy Snapshot of a book here, a
        shadow installed here): the periodic checkpoint (a fork that stalls the whole
        process for its page tables, 40-140 ms at 3 million orders, then its stores and
        checkpoint writes competing for the loop) waits until `release_checkpoints`, at
        most CHECKPOINT_HOLD_S past due, so the Fence or the Promote does not meet it."""
        self._hold_until = time.monotonic() + CHECKPOINT_HOLD_S

    def release_checkpoints(self) -> None:
        """The move's step that the pause waited for here is done (Fence, Promote)."""
        self._hold_until = 0.0

    def later(self, delay_s: float, fn: Callable[[], Any]) -> None:
        """On the loop: run `fn` on the loop's first turn `delay_s` from now or later."""
        self._timers.append((time.monotonic() + delay_s, fn))

    def _run_timers(self) -> None:
        now = time.monotonic()
        due = [fn for at, fn in self._timers if at <= now]
        if due:
            self._timers = [(at, fn) for at, fn in self._timers if at > now]
            for fn in due:
                fn()

    def next_turn(self, fn: Callable[[], Any]) -> None:
        """On the loop: run `fn` on the loop's next turn, after its next consume (which
        lets the gRPC threads answer first what this turn decided)."""
        self._next_turn.append(fn)

    def write_checkpoints(self, only: int | None = None) -> bool:
        """The checkpoints of every owned partition as the state is now (no snapshot taken;
        the caller flushed). Snapshots no checkpoint names any more then expire.

        `only`: that partition's checkpoint alone (what a Fence needs: the fence is in its
        home partition's); nothing is retired or pruned then, since the other partitions'
        checkpoints in Redis may still name what would be."""
        taken_ms = int(time.time() * 1000)
        resume: dict[int, int] = {}
        for partition in self.partitions if only is None else (only,):
            checkpoint = self.state.checkpoint(partition, self.settings.instance, taken_ms)
            if not self._write(checkpoint):
                return False
            resume[partition] = checkpoint.resume_offset()
        if only is not None:
            return True
        for location in self._retire:
            self.store.retire(location)
        self._retire.clear()
        self._prune_fences(resume)
        return True

    def write_fence_checkpoint(self, partition: int, symbol: str) -> bool | None:
        """The fence of `symbol` made durable without a flush: the last durable checkpoint
        of its home `partition` with the fence added (its positions and snapshots as they
        were, so no event after them needs delivering first; a restart replays the symbol
        through the fence from its snapshot there, publishing its events again and then its
        handoff marker, EngineState.owed_handoffs). None when that checkpoint does not
        hold this book's lineage (born or moved here since; rolled back since, its route
        epoch raised by an Unfence that applied records of other partitions; a snapshot
        stored since, unless it continues the lineage: `stored(continues=True)`, which the
        checkpoint then names instead): the caller flushes and writes the partition's
        checkpoint as it is now. False: ownership lost."""
        last = self._written.get(partition)
        fence = self.state.fences.get(symbol)
        entry = None if last is None else last.books.get(symbol)
        current = self.state.snaps.get(symbol)
        epoch = self.state.epoch.get(symbol, 0)
        if last is None or fence is None or current is None:
            return None
        if (
            current.location
            and self._continued.get(symbol) == current.location
            and current.epoch == epoch
        ):
            # the book's own snapshot stored since (a pre-copy's: its events delivered
            # before it was taken): the checkpoint names it, whatever it held of the symbol
            # before (another snapshot, none: born or moved here since); a restart loads it
            # and applies the partition's records after it, through the fence
            checkpoint = dataclasses.replace(
                last,
                books={**last.books, symbol: current},
                fences={**last.fences, symbol: fence},
                expect={s: e for s, e in last.expect.items() if s != symbol},
                gone={s: g for s, g in last.gone.items() if s != symbol},
                seq_floors={s: f for s, f in last.seq_floors.items() if s != symbol},
                instance=self.settings.instance,
                taken_ms=int(time.time() * 1000),
            )
            return self._write(checkpoint)
        if entry is None or entry.location != current.location or entry.epoch != epoch:
            return None
        checkpoint = dataclasses.replace(
            last,
            fences={**last.fences, symbol: fence},
            instance=self.settings.instance,
            taken_ms=int(time.time() * 1000),
        )
        return self._write(checkpoint)

    def _write(self, checkpoint: recovery.Checkpoint) -> bool:
        partition = checkpoint.partition
        if not recovery.write_checkpoint(self.redis, checkpoint):
            self._failure = f"partition {partition} is no longer owned here"
            log.error("checkpoint refused: ownership lost", extra={"partition": partition})
            return False
        self._written[partition] = checkpoint
        return True

    def _prune_fences(self, resume: dict[int, int]) -> None:
        """Bury the fences of removed symbols that the checkpoints just written no longer
        need, once they have not been needed for --fence-retain-s: the next checkpoint
        keeps only a gone entry of each (EngineState.bury), which goes on refusing late
        orders routed by a stale table STALE_ROUTE and ignoring records read again."""
        now = time.monotonic()
        unneeded = set(self.state.prunable_fences(resume))
        seen = self._fences_unneeded
        for symbol in [s for s in seen if s not in unneeded]:
            del seen[symbol]
        for symbol in sorted(unneeded):
            if now - seen.setdefault(symbol, now) >= self.settings.fence_retain_s:
                self.state.bury(symbol)
                del seen[symbol]
                log.info("fence buried", extra={"symbol": symbol})

    def stored(
        self, symbol: str, location: str, offset: int, seq: int, *, continues: bool = False
    ) -> None:
        """A snapshot of the symbol's book at `offset` is durable at `location` (on the
        loop): the next checkpoint names it. `continues`: it is the live book as it was at
        `offset`, taken with its events up to there delivered, and the book has applied only
        its home partition's records since (a Snapshot of an active book): a Fence's
        checkpoint may name it without a flush (`write_fence_checkpoint`)."""
        if continues and symbol in self.state.market.books:
            self._continued[symbol] = location
        else:
            self._continued.pop(symbol, None)
        retired = self.state.stored(symbol, location, offset, seq)
        if retired:
            self._retire.append(retired)

    def offload(self, fn: Callable[[], T], then: Callable[[Future[T]], None]) -> Future[T]:
        """Run `fn` on a worker thread; `then(future)` runs on the loop when it is done."""
        future = self._workers.submit(fn)
        future.add_done_callback(lambda f: self.post(lambda: then(f)))
        return future

    def post(self, fn: Callable[[], Any]) -> None:
        """Run `fn` on the loop thread between batches; nobody waits for it."""
        self._controls.put((fn, Future()))

    def lag(self) -> int:
        """Records the engine has not consumed yet as far as the broker reports (exact on
        MSK; Tansu reports a high watermark short of the log end, so a lower bound) plus
        events not yet acknowledged."""

        backlog = 0
        for p in self.partitions:
            backlog += max(0, self.high_watermark(p) - self.state.position.get(p, 0))
        return backlog + len(self.producer)

    def _read_to_the_end(self) -> bool:
        """Every owned partition read up to the high watermark of its last fetch response
        (none yet: not). A consume that returns nothing is no proof: the first one after a
        restart returns before the first fetch does, and the gRPC server started then
        (its imports: ~0.3 s of the interpreter) competed with the replay."""
        for p in self.partitions:
            high = self.high_watermark(p)
            if high < 0 or self.state.position.get(p, 0) < high:
                return False
        return True

    def high_watermark(self, partition: int) -> int:
        from confluent_kafka import TopicPartition  # noqa: PLC0415

        try:
            # cached: the high watermark of the last fetch response, no broker round trip
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(TOPIC_ORDERS, partition), cached=True
            )
        except Exception:
            return -1
        return int(high)

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
