"""The order path (docs/ARCHITECTURE.md): validate, pre-trade checks, route lookup, epoch stamp,
produce to the symbol's partition with delivery confirmed, then answer.

    router = OrderRouter(redis_client, producer, limits=PreTradeLimits.load(path))
    ack = router.submit("alice", {"symbol": "AAPL", "order_id": "o-1", "side": "BUY",
                                  "price": 18950, "quantity": 10})

An ADD costs one Redis round trip before the produce (route + idempotency + reservation in
one script, hotshard.edge.orders) and one write after the acknowledgement. CANCEL and
REPLACE read their order's record and the route (one round trip). `submit_many` handles
several requests as `submit` handles each, with one Redis round trip, one wait for the
broker and one confirm write for all of them (the local gateway's concurrent frames; in
Lambda a container has one request at a time). While a symbol is MIGRATING its orders go
to `pending-orders` (same partition number) to be replayed by the migration. Every refusal
is an exception with a Reason (hotshard.reasons) and the order's ids, and nothing refused
reaches Kafka.
"""

import _thread
import functools
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from hotshard import kafka, names, route
from hotshard.clients import text
from hotshard.codec import InvalidOrderError, decode_order
from hotshard.commands import Command
from hotshard.domain import MAX_TIMESTAMP_NS, Action, Liquidity, OrderType, Side
from hotshard.edge.limits import PreTradeLimits, instrument_json
from hotshard.edge.orders import (
    CASH,
    Claim,
    OrderRecords,
    balances,
    claim_of,
    claim_outcome,
    order_key,
)
from hotshard.names import TOPIC_PENDING_ORDERS
from hotshard.rawpipe import RawPipeline, hash_items
from hotshard.reasons import HotshardError, Reason
from hotshard.route import Route
from hotshard.wire import encode_order

MAX_PAGE = 1000
"""The most orders or fills one read answers (GET /orders, GET /fills)."""
MAX_OPEN_SCAN = 10_000
"""The most open orders of one user that GET /orders and cancel-all look at."""
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")

log = logging.getLogger("hotshard.router")

RETRY_AFTER_MS = 1000
"""What a NOT_DELIVERED answer asks the client to wait before sending the same order
again (the `retry_after_ms` of the error, `Retry-After` over HTTP)."""


STALL_TIMEOUTS = 1
"""A producer with nothing acknowledged for this many delivery timeouts, while a request
timed out, is replaced (OrderRouter._if_stalled)."""


class RefusedError(HotshardError):
    """An order the router will not send; names it as far as it was read. `retry_after_ms`
    > 0: nothing was acknowledged, the same order may be sent again after that long."""

    def __init__(
        self,
        reason: Reason,
        detail: str,
        *,
        symbol: str = "",
        order_id: str = "",
        retry_after_ms: int = 0,
    ) -> None:
        super().__init__(reason, detail)
        self.symbol = symbol
        self.order_id = order_id
        self.retry_after_ms = retry_after_ms


class ProducerFailedError(RuntimeError):
    """The record was definitely not written (PossiblyWrittenError when it may be).
    `fatal`: the producer is unusable (an idempotent producer's fatal error, e.g.
    OUT_OF_ORDER_SEQUENCE_NUMBER after a broker forgot its state) and must be replaced."""

    def __init__(self, detail: str, *, fatal: bool = False) -> None:
        super().__init__(detail)
        self.fatal = fatal


@dataclass(frozen=True, slots=True)
class Ack:
    """The broker acknowledged the order: it will be matched (or rejected by the book, which
    the order_status stream reports). `duplicate`: an earlier identical submission was
    acknowledged and this one produced nothing."""

    action: str
    symbol: str
    order_id: str
    user_id: str
    topic: str
    partition: int
    offset: int
    route_epoch: int
    duplicate: bool = False
    ts_ns: int = 0
    """The router's receive time (ns since the epoch): also the ts_ns of the order's events."""

    def json(self) -> dict[str, Any]:
        return {
            "type": "ack",
            "status": "ACCEPTED",
            "action": self.action,
            "symbol": self.symbol,
            "order_id": self.order_id,
            "user_id": self.user_id,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "route_epoch": self.route_epoch,
            "duplicate": self.duplicate,
            "ts_ns": self.ts_ns,
        }


def fingerprint(symbol: str, command: Command) -> str:
    """Identifies an order's contents: a retry has the same, a reused id another."""
    return hashlib.blake2b(repr((symbol, command)).encode(), digest_size=16).hexdigest()


class Delivery:
    """Waits for one record's acknowledgement, serving the producer's callbacks meanwhile
    (several threads may wait at once: whichever polls runs everyone's callbacks). The
    report releases a plain lock the waiter blocks on: one C call each side, where a
    threading.Event's Condition took a lock of its own per wait and woke the waiter only
    for it to wait again for the Condition's lock the setter still held.

    `no_offset`: acknowledged without an offset. librdkafka's idempotent producer reports a
    retried batch the broker answers DUPLICATE_SEQUENCE_NUMBER (it had written it already,
    e.g. before a restart) as delivered, and confluent-kafka's Message.offset() is then
    None: the record is in the log, where is unknown (seen under the durable broker
    restart: the None reached `offset >= 0`, a TypeError answered 500 INTERNAL)."""

    __slots__ = ("_arrived", "error", "no_offset", "offset", "partition")

    def __init__(self) -> None:
        self.error: Any = None
        self.offset = -1
        self.partition = -1
        self.no_offset = False
        self._arrived = _thread.allocate_lock()
        self._arrived.acquire()

    def __call__(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.error = err
        else:
            self.partition = msg.partition()
            offset = msg.offset()
            if isinstance(offset, int) and offset >= 0:
                self.offset = offset
            else:
                self.no_offset = True
        if self._arrived.locked():  # one report per record; another would change nothing
            self._arrived.release()

    def wait(self, timeout_s: float) -> bool:
        """Block until the report came (True) or `timeout_s` passed (False)."""
        if self._arrived.acquire(timeout=max(timeout_s, 0.0)):
            self._arrived.release()  # stays "came" for whoever asks again
            return True
        return False

    @property
    def done(self) -> bool:
        return self.error is not None or self.offset >= 0 or self.no_offset

    @property
    def confirmed(self) -> bool:
        """Acknowledged at a known offset."""
        return self.error is None and self.offset >= 0


class DeliveryInDoubtError(TimeoutError):
    """The broker acknowledged the record without saying at which offset (Delivery's
    `no_offset`): it is written, but nothing that needs its offset can be done, so the
    request is answered as in doubt (like a timeout) and its claim kept until it lapses."""


class StaleOffsetError(DeliveryInDoubtError):
    """The broker acknowledged the record at an offset at or below one it had acknowledged
    for another record of the partition before this one was even sent: an answer no log
    can give (a record appended later gets a later offset), so it says nothing about
    where, or whether, the record is. Measured on Tansu 0.6 on s3:// storage, restarted
    while the record was on its way: the retried batch was acknowledged at offset 0,
    whose record was another order's, and the record was nowhere in the log (the durable
    broker fault case: the one acknowledged order that never took effect). In doubt, as a
    timeout, but an ADD's claim lapses after RETRY_AFTER_MS (OrderRouter._lapse_soon), and
    the resend then writes it."""


class PossiblyWrittenError(TimeoutError):
    """The producer took the record and lost track of it before its delivery report: it
    was closed meanwhile (another request replaced it, the router is closing), purged
    while the record was in flight, or the record timed out after it was sent. The record
    may be in the log, so the outcome is in doubt, as for a timeout: the claim is kept
    until it lapses, never dropped as if nothing was written. `fatal`: the producer is
    unusable and must be replaced."""

    def __init__(self, detail: str, *, fatal: bool) -> None:
        super().__init__(detail)
        self.fatal = fatal


class DeliveryPump:
    """One thread serving a producer's delivery reports for every request waiting on it:
    each poll confirms whatever the broker acknowledged since the last one, for all waiters
    at once, and a waiter sleeps on its own event instead of polling. Without it, N threads
    waiting poll side by side (each wakes every few ms). `producer` is called for the
    current producer each time (it may be replaced after a fatal error)."""

    def __init__(
        self, producer: Callable[[], Any], *, poll_s: float = 0.05, idle_s: float = 1.0
    ) -> None:
        self.producer = producer
        self.poll_s = poll_s
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._waiting = 0

    def _run(self) -> None:
        """Poll while anyone waits; end after `idle_s` without waiters (a later wait starts
        the thread again), so an unused router and its producer can be freed."""
        idle_since: float | None = None
        while True:
            with self._lock:
                if self._waiting:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > self.idle_s:
                    self._thread = None
                    return
            try:
                self.producer().poll(self.poll_s)
            except Exception:  # a broken producer: the waiters time out and say so
                time.sleep(self.poll_s)

    def join(self, timeout_s: float) -> None:
        """Wait for the thread to end (it does once nobody waits for `idle_s`)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def wait(self, delivery: Delivery, deadline: float) -> None:
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="delivery", daemon=True)
                thread.start()  # raises (no thread): nothing changed, the next wait retries
                self._thread = thread
            self._waiting += 1
        try:
            while not delivery.done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                delivery.wait(remaining)
        finally:
            with self._lock:
                self._waiting -= 1


def produce_confirmed(
    producer: Any,
    topic: str,
    partition: int,
    key: bytes,
    value: bytes,
    timeout_s: float,
    *,
    pump: DeliveryPump | None = None,
) -> tuple[int, int]:
    """Produce and wait for the broker's acknowledgement: (partition, offset). Raises
    TimeoutError (outcome unknown; DeliveryInDoubtError: written, offset unknown;
    PossiblyWrittenError: the producer lost the record on its way) or ProducerFailedError
    (not written; `fatal` when the producer must be replaced). With `pump`, its thread
    serves the delivery report; without, this thread polls for it."""
    delivery = Delivery()
    deadline = time.monotonic() + timeout_s
    produce_record(producer, topic, partition, key, value, delivery, deadline)
    if pump is not None:
        pump.wait(delivery, deadline)
    while not delivery.done:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            _poll(producer, min(remaining, 0.005))
        except ProducerFailedError as exc:  # closed meanwhile, with the record taken
            raise PossiblyWrittenError(
                f"producer closed before the record's delivery report ({exc})", fatal=True
            ) from exc
    return delivered(delivery, timeout_s)


def produce_record(
    producer: Any,
    topic: str,
    partition: int,
    key: bytes,
    value: bytes,
    delivery: Delivery,
    deadline: float,
) -> None:
    """Hand one record to the producer, its report to `delivery`; a full queue is waited
    out until `deadline`. Raises ProducerFailedError (nothing will be written)."""
    from confluent_kafka import KafkaException  # noqa: PLC0415 - keeps the module light

    while True:
        try:
            producer.produce(topic, value, key, partition, on_delivery=delivery)
            return
        except BufferError:
            if time.monotonic() > deadline:
                raise ProducerFailedError("producer queue full") from None
            _poll(producer, 0.01)
        except KafkaException as exc:  # a producer in a fatal state refuses every produce
            fatal = _fatal(exc.args[0] if exc.args else None)
            raise ProducerFailedError(str(exc), fatal=fatal) from exc
        except RuntimeError as exc:  # closed already ("Producer has been closed"): unusable
            raise ProducerFailedError(str(exc), fatal=True) from exc
        except Exception as exc:  # any other: produce() raises before it takes the record
            log.error("the producer refused a record", exc_info=exc)
            raise ProducerFailedError(f"{type(exc).__name__}: {exc}") from exc


def delivered(delivery: Delivery, timeout_s: float) -> tuple[int, int]:
    """What a delivery report said, once waited for: (partition, offset), or TimeoutError
    (no report: outcome unknown), DeliveryInDoubtError, PossiblyWrittenError (a failure
    that may have written it), ProducerFailedError (not written)."""
    if not delivery.done:
        raise TimeoutError(f"no acknowledgement within {timeout_s:.1f} s")
    if delivery.error is not None:
        if _possibly_written(delivery.error):
            raise PossiblyWrittenError(
                f"record lost on its way ({delivery.error})",
                fatal=_fatal(delivery.error) or _purged(delivery.error),
            )
        raise ProducerFailedError(str(delivery.error), fatal=_fatal(delivery.error))
    if delivery.no_offset:
        raise DeliveryInDoubtError("acknowledged without an offset (a retried duplicate)")
    return delivery.partition, delivery.offset


def _poll(producer: Any, timeout_s: float) -> None:
    """poll() while waiting on a producer that another request may have replaced and closed
    meanwhile (RuntimeError "Producer has been closed"): ProducerFailedError, fatal."""
    try:
        producer.poll(timeout_s)
    except RuntimeError as exc:
        raise ProducerFailedError(str(exc), fatal=True) from exc


def _possibly_written(error: Any) -> bool:
    """Does a failed delivery leave the record possibly in the log? librdkafka's message
    status (not exposed by confluent-kafka) is POSSIBLY_PERSISTED for a record purged in
    flight (a producer closed by _close purges first) or timed out after it was sent: the
    broker may have written it without the answer reaching the producer. A record purged
    from the queue was never sent; a broker's own error code means it refused the batch."""
    from confluent_kafka import KafkaError  # noqa: PLC0415 - keeps the module light

    code = getattr(error, "code", None)
    return callable(code) and code() in (
        KafkaError._PURGE_INFLIGHT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
    )


def _purged(error: Any) -> bool:
    """Purged: someone is closing the producer (_close), so it is of no further use."""
    from confluent_kafka import KafkaError  # noqa: PLC0415 - keeps the module light

    code = getattr(error, "code", None)
    return callable(code) and code() == KafkaError._PURGE_INFLIGHT


def _fatal(error: Any) -> bool:
    """Must the producer be replaced? librdkafka's idempotent producer turns fatal on
    OUT_OF_ORDER_SEQUENCE_NUMBER (a broker that forgot its state, e.g. Tansu on restart):
    that record's delivery report carries the broker's code and every later produce()
    raises _FATAL, and neither error object has its fatal() flag set (found by
    tests/faults against real Tansu), so the codes count as well as the flag."""
    from confluent_kafka import KafkaError  # noqa: PLC0415 - keeps the module light

    check = getattr(error, "fatal", None)
    if not callable(check):
        return True
    if check():
        return True
    code = getattr(error, "code", None)
    return callable(code) and code() in (
        KafkaError._FATAL,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
    )


class OrderRouter:
    def __init__(
        self,
        r: redis.Redis,
        producer: Any,
        *,
        limits: PreTradeLimits | None = None,
        balance_check: bool = False,
        auto_list: bool = False,
        delivery_timeout_s: float = 5.0,
        clock_ns: Callable[[], int] = time.time_ns,
        new_producer: Callable[[], Any] | None = None,
    ) -> None:
        self.r = r
        self.producer = producer
        # Requests handled side by side share one producer (per process) and one thread
        # that confirms their deliveries together (DeliveryPump).
        self.pump = DeliveryPump(lambda: self.producer)
        self.new_producer = new_producer
        """Makes a fresh producer when the current one hit a fatal error (None: keep it)."""
        self.producer_replacements = 0
        self._acked_at = time.monotonic()
        """When the broker last acknowledged a record of this router (or a producer was
        made): see _if_stalled."""
        self._acked_through: dict[tuple[str, int], int] = {}
        """Per (topic, partition), the highest offset the broker acknowledged to this
        router: a record sent after that must land beyond it (see StaleOffsetError)."""
        self._producer_lock = threading.Lock()
        self._reapers: list[threading.Thread] = []  # each polls, then closes, a failed one
        self._closing = threading.Event()
        self.records = OrderRecords(r)
        self.limits = limits or PreTradeLimits({})
        self.balance_check = balance_check
        self.auto_list = auto_list
        self.delivery_timeout_s = delivery_timeout_s
        self.inflight_ms = int(delivery_timeout_s * 2000)
        self.clock_ns = clock_ns

    # ------------------------------------------------------------------ requests

    def submit(self, user_id: str, payload: Any, action: Action | None = None) -> Ack:
        """An ADD or REPLACE (or, with `action`, whatever it says) from `user_id`."""
        symbol, command, client_ts, received = self._prepare(user_id, payload, action)
        if command[0] == Action.ADD:
            return self._add(symbol, command, client_ts, received)
        pipe = RawPipeline(self.r)
        _queue_own_order(pipe, user_id, command[1], symbol)
        raw_record, raw_route = pipe.execute()
        found = _own_order_of(symbol, command[1], raw_record, raw_route)
        return self._other(symbol, command, client_ts, found, received)

    def submit_many(
        self, requests: Sequence[tuple[str, Any, Action | None]]
    ) -> list[Ack | Exception]:
        """`submit` of several requests at once (the local gateway's concurrent frames),
        each answered as `submit` alone answers it: its Ack, or the exception `submit`
        raises. The claims (ADD) and order reads (CANCEL, REPLACE) of all go to Redis in
        one round trip, every record is handed to the producer before any acknowledgement
        is waited for (one wait for all), the ADDs' confirms go in one write: per request
        no round trip, wait or thread hand-off of its own. Redis sees the requests' reads
        and claims in list order and they are produced in that order; otherwise they are
        to each other what concurrent requests are (the gateway puts a connection's next
        frame of one order in a later call, as it waited for the reply before). A request
        whose symbol is not listed yet (auto_list) or whose order's route is gone goes on
        its own after the others. A record whose produce has the producer replaced (a
        fatal error) is refused; the rest of the batch go by the new one."""
        out: list[Ack | Exception | None] = [None] * len(requests)
        staged: list[_Staged] = []
        pipe = RawPipeline(self.r)
        for i, (user_id, payload, action) in enumerate(requests):
            try:
                symbol, command, client_ts, received = self._prepare(user_id, payload, action)
                fp = ""
                if command[0] == Action.ADD:
                    fp = fingerprint(symbol, command)
                    self._queue_claim(pipe, symbol, command, fp)
                else:
                    _queue_own_order(pipe, user_id, command[1], symbol)
            except Exception as exc:
                out[i] = exc
                continue
            staged.append(_Staged(i, symbol, command, client_ts, received, fp))
        try:
            replies = pipe.execute(raise_on_error=False)
        except Exception as exc:  # Redis unreachable: each fails as its own call would
            for item in staged:
                out[item.index] = exc
            return _all_answered(out)
        later: list[tuple[int, Callable[[], Ack]]] = []
        flights = self._staged_flights(staged, replies, out, later)
        self._fly(flights, out)
        for i, call in later:
            try:
                out[i] = call()
            except Exception as exc:
                out[i] = exc
        return _all_answered(out)

    def _staged_flights(
        self,
        staged: list["_Staged"],
        replies: list[Any],
        out: list[Ack | Exception | None],
        later: list[tuple[int, Callable[[], Ack]]],
    ) -> list["_Flight"]:
        """submit_many: each request's Redis replies read as `submit` reads them; what is
        to be produced, as flights (answers and later calls go to `out` and `later`)."""
        flights: list[_Flight] = []
        at = 0
        for item in staged:
            count = 1 if item.fp else 2
            mine, at = replies[at : at + count], at + count
            symbol, command = item.symbol, item.command
            try:
                refused = next((r for r in mine if isinstance(r, Exception)), None)
                if refused is not None:
                    raise refused
                if item.fp:
                    claim = claim_of(symbol, mine[0])
                    if claim.outcome == "NO_ROUTE" and self.auto_list:
                        add = functools.partial(
                            self._add, symbol, command, item.client_ts, item.received
                        )
                        later.append((item.index, add))
                        continue
                    duplicate = self._claimed(symbol, command, claim, item.received)
                    if duplicate is not None:
                        out[item.index] = duplicate
                        continue
                    found = claim.route
                else:
                    found = _own_order_of(symbol, command[1], mine[0], mine[1])
                    if found is None or (command[0] == Action.REPLACE and self.balance_check):
                        other = functools.partial(
                            self._other, symbol, command, item.client_ts, found, item.received
                        )
                        later.append((item.index, other))
                        continue
                assert found is not None
                flights.append(self._flight(item, found))
            except Exception as exc:  # nothing produced: a claim it took is dropped
                answer = _unsent(exc, symbol, command[1])
                if item.fp and claim_outcome(mine[0]) == "GO":
                    answer = self._abandoned(command[2], command[1], item.fp, answer)
                out[item.index] = answer
        return flights

    def _fly(self, flights: list["_Flight"], out: list[Ack | Exception | None]) -> None:
        """submit_many, cancel_all: produce every flight, wait for all their reports at
        once, answer each as `_add` / `_other` would, and send the ADDs' confirms in one
        write."""
        deadline = time.monotonic() + self.delivery_timeout_s
        confirms = RawPipeline(self.r)
        confirmed: list[int] = []
        produced: list[_Flight] = []
        for flight in flights:
            # the current producer, not the one of the staging: after an earlier record
            # of this batch (or another request) had it replaced, the rest go by the new
            # one, as a request alone would, instead of being refused by the failed one
            flight.producer = self.producer
            try:
                produce_record(
                    flight.producer,
                    flight.topic,
                    flight.partition,
                    flight.symbol.encode(),
                    flight.value,
                    flight.delivery,
                    deadline,
                )
            except ProducerFailedError as exc:
                self._landed_into(flight, _raising(exc), out, confirms, confirmed)
                continue
            produced.append(flight)
        unwaited = [self._unwaited(flight.delivery, deadline) for flight in produced]
        timeout_s = self.delivery_timeout_s
        for flight, failure in zip(produced, unwaited, strict=True):
            outcome: Callable[[], tuple[int, int]] = functools.partial(
                delivered, flight.delivery, timeout_s
            )
            if failure is not None and not flight.delivery.done:
                outcome = _raising(failure)
            self._landed_into(flight, outcome, out, confirms, confirmed)
        if confirmed:
            try:
                confirms.send_only()
            except Exception as exc:  # as a confirm of its own that failed
                for i in confirmed:
                    out[i] = exc

    def _unwaited(self, delivery: Delivery, deadline: float) -> PossiblyWrittenError | None:
        """The pump's wait for a record the producer has (None), or how it failed (its
        thread could not start): that record's outcome unknown, in doubt, not the batch's
        failure."""
        try:
            self.pump.wait(delivery, deadline)
        except Exception as exc:
            log.error("a delivery report could not be waited for", exc_info=exc)
            return PossiblyWrittenError(
                f"delivery not waited for ({type(exc).__name__}: {exc})", fatal=False
            )
        return None

    def _landed_into(
        self,
        flight: "_Flight",
        outcome: Callable[[], tuple[int, int]],
        out: list[Ack | Exception | None],
        confirms: RawPipeline,
        confirmed: list[int],
    ) -> None:
        """One flight's answer, as `_add` / `_other` give it, into `out`; an ADD's confirm
        queued on `confirms` (its index in `confirmed`), or its claim abandoned."""
        symbol, order_id, user_id = flight.symbol, flight.command[1], flight.command[2]
        try:
            ack = self._landed(flight, outcome)
        except TimeoutError as exc:  # may yet be written: an ADD keeps its claim
            if flight.fp and isinstance(exc, StaleOffsetError):
                self._lapse_soon(user_id, order_id, flight.fp)
            doubt = _in_doubt(exc, symbol, order_id)
            doubt.__cause__ = exc
            out[flight.index] = doubt
            return
        except Exception as exc:  # not written: a resend must not find the claim PENDING
            out[flight.index] = (
                self._abandoned(user_id, order_id, flight.fp, exc) if flight.fp else exc
            )
            return
        out[flight.index] = ack
        if flight.fp:
            self.records.queue_confirm(
                confirms, user_id, order_id, ack.topic, ack.partition, ack.offset, ack.route_epoch
            )
            confirmed.append(flight.index)

    def _abandoned(self, user_id: str, order_id: str, fp: str, answer: Exception) -> Exception:
        """A claim of a record never written dropped: `answer`, or how dropping it failed."""
        try:
            self.records.abandon(user_id, order_id, fp)
        except Exception as failed:
            return failed
        return answer

    def _prepare(
        self, user_id: str, payload: Any, action: Action | None
    ) -> tuple[str, Command, int, int]:
        """What a request is checked for before anything is read: an order of this user
        within the limits. (symbol, command, client_ts, received)."""
        received = self.clock_ns()  # stamped on the order: its events' ts_ns
        if not isinstance(payload, dict):
            raise InvalidOrderError(Reason.MALFORMED, "an order must be a JSON object")
        obj = dict(payload)
        if action is not None:
            obj["action"] = action.name
        if obj.get("user_id") is None:
            obj["user_id"] = user_id
        request = decode_order(obj)
        symbol, command = request.symbol, request.command
        order_id, named_user = command[1], command[2]
        if named_user != user_id:
            raise RefusedError(
                Reason.USER_MISMATCH,
                "user_id must be the authenticated user",
                symbol=symbol,
                order_id=order_id,
            )
        refusal = self.limits.check(symbol, command)
        if refusal is not None:
            raise RefusedError(refusal.reason, refusal.detail, symbol=symbol, order_id=order_id)
        client_ts = _client_ts(obj.get("client_ts_ns"), symbol, order_id)
        return symbol, command, client_ts, received

    def _other(
        self, symbol: str, command: Command, client_ts: int, found: Route | None, received: int
    ) -> Ack:
        """A CANCEL or REPLACE of an order of this user (`found`: its symbol's route as
        read with the order's record, None: not listed)."""
        order_id = command[1]
        if command[0] == Action.REPLACE and self.balance_check:
            raise RefusedError(
                Reason.INSUFFICIENT_BALANCE,
                "REPLACE is not available with balance checks: cancel and add",
                symbol=symbol,
                order_id=order_id,
            )
        if found is None:
            found = self._route(symbol, order_id)  # not listed (or listed now, auto_list)
        try:
            return self._send(symbol, command, client_ts, found, received)
        except TimeoutError as exc:  # may yet be written: the outcome is in doubt
            raise _in_doubt(exc, symbol, order_id) from exc

    def cancel(self, user_id: str, order_id: str, symbol: str = "") -> Ack:
        """Cancel one of the user's orders; without `symbol` it comes from the order's
        record (orders placed through this router)."""
        if not symbol:
            record = self.records.read(user_id, order_id)
            if record is None:
                raise RefusedError(
                    Reason.UNKNOWN_ORDER, "no such order of this user", order_id=order_id
                )
            symbol = record["symbol"]
        return self.submit(user_id, {"symbol": symbol, "order_id": order_id}, action=Action.CANCEL)

    def status(self, user_id: str, order_id: str) -> dict[str, Any]:
        """The order's record as the client sees it (GET /orders/{id})."""
        record = self.records.read(user_id, order_id)
        if record is None:
            raise RefusedError(
                Reason.UNKNOWN_ORDER, "no such order of this user", order_id=order_id
            )
        return record_json(user_id, order_id, record)

    def open_orders(self, user_id: str, symbol: str = "", limit: int = MAX_PAGE) -> dict[str, Any]:
        """The user's open orders (placed through this router, not ended yet), oldest first:
        GET /orders. With `symbol`, only that symbol's; at most `limit` (1..MAX_PAGE)."""
        limit = _page_size(limit)
        orders: list[dict[str, Any]] = []
        more = False
        for order_id, record in self._open(user_id, symbol):
            if len(orders) == limit:
                more = True
                break
            orders.append(record_json(user_id, order_id, record))
        return {"type": "orders", "user_id": user_id, "orders": orders, "more": more}

    def cancel_all(self, user_id: str, symbol: str = "") -> dict[str, Any]:
        """Cancel every open order of the user (of `symbol` only, if given): one CANCEL per
        order, produced and answered as submit_many answers a batch of CANCELs (_fly). What
        the book did arrives as ORDER_STATUS pushes; orders still being sent (routing
        PENDING) are skipped and named; each cancel that failed is named with its refusal
        (NOT_DELIVERED with retry_after_ms: not written, or in doubt)."""
        targets: list[tuple[str, str]] = []
        skipped: list[str] = []
        for order_id, record in self._open(user_id, symbol):
            if record.get("state") == "PENDING":
                skipped.append(order_id)
            else:
                targets.append((record.get("symbol", ""), order_id))
        answers: list[Ack | Exception | None] = [None] * len(targets)
        self._fly(self._cancel_flights(user_id, targets, answers), answers)
        cancelled: list[str] = []
        failed: list[dict[str, Any]] = []
        for (_, order_id), answer in zip(targets, answers, strict=True):
            if isinstance(answer, Ack):
                cancelled.append(order_id)
            else:
                failed.append(_failure_of(order_id, answer))
        out: dict[str, Any] = {
            "type": "cancel_all",
            "user_id": user_id,
            "cancelled": cancelled,
            "pending": skipped,
            "failed": failed,
        }
        if symbol:
            out["symbol"] = symbol
        return out

    def _cancel_flights(
        self, user_id: str, targets: list[tuple[str, str]], answers: list[Ack | Exception | None]
    ) -> list["_Flight"]:
        """cancel_all: the CANCEL record of each (symbol, order_id) of `targets`, as flights
        (index: its place in `targets`); one that cannot be sent is answered in `answers`."""
        routes: dict[str, Route] = {}
        flights: list[_Flight] = []
        for i, (sym, order_id) in enumerate(targets):
            try:
                found = routes.get(sym) or routes.setdefault(sym, self._route(sym, order_id))
                command = decode_order(
                    {"action": "CANCEL", "symbol": sym, "order_id": order_id, "user_id": user_id}
                ).command
                now = self.clock_ns()
                flights.append(self._flight(_Staged(i, sym, command, now, now, ""), found))
            except Exception as exc:  # nothing produced
                answers[i] = _unsent(exc, sym, order_id)
        return flights

    def fills(
        self, user_id: str, symbol: str = "", limit: int = 100, before: str = ""
    ) -> dict[str, Any]:
        """The user's fills, newest first (GET /fills): at most `limit` (1..MAX_PAGE) older
        than the cursor `before` (the `next` of the previous page). The history keeps the
        last orders.FILL_HISTORY fills of each user."""
        limit = _page_size(limit)
        if before:
            cursor = _cursor(before)
            if cursor is None:
                raise InvalidOrderError(Reason.MALFORMED, "before must be a cursor from `next`")
            before = cursor
        out: list[dict[str, Any]] = []
        if before == "0-0":  # nothing is older (and Redis refuses the empty interval)
            return {"type": "fills", "user_id": user_id, "fills": out, "next": ""}
        cursor = before
        while len(out) < limit:
            page, cursor = self.records.fills(user_id, limit, cursor)
            for entry_id, f in page:
                if not symbol or f.get("symbol") == symbol:
                    out.append(fill_json(user_id, entry_id, f))
                    if len(out) == limit:
                        break
            if not cursor:
                break
        # a full page names where the next one starts (which may turn out empty)
        cursor = out[-1]["id"] if len(out) == limit else ""
        return {"type": "fills", "user_id": user_id, "fills": out, "next": cursor}

    def instruments(self, symbol: str = "") -> dict[str, Any]:
        """The listed symbols (or the one named) and their trading rules: GET /instruments.
        `status` is the route's (ACTIVE, or MIGRATING while it moves: orders are delayed)."""
        symbols = [symbol] if symbol else route.listed_symbols(self.r)
        out = []
        for sym in sorted(symbols):
            found = route.lookup(self.r, sym)
            if found is None:
                continue
            out.append({**instrument_json(sym, self.limits.of(sym)), "status": found.status})
        if symbol and not out:
            raise RefusedError(Reason.UNKNOWN_SYMBOL, f"{symbol} is not listed", symbol=symbol)
        return {"type": "instruments", "instruments": out}

    def balance(self, user_id: str) -> dict[str, Any]:
        """What the user has available per asset (CASH, or a symbol's lots), not counting
        what open orders reserve: GET /balance. `balance_check` says whether orders
        reserve against it at all."""
        return {
            "type": "balance",
            "user_id": user_id,
            "balances": balances(self.r, user_id),
            "balance_check": self.balance_check,
        }

    def _open(self, user_id: str, symbol: str) -> Iterator[tuple[str, dict[str, str]]]:
        """(order_id, record) of the user's open orders, oldest first; ids whose record
        expired are dropped from the index."""
        ids, _ = self.records.open_orders(user_id, MAX_OPEN_SCAN)
        for start in range(0, len(ids), MAX_PAGE):
            chunk = ids[start : start + MAX_PAGE]
            gone = []
            for order_id, record in zip(chunk, self.records.read_many(user_id, chunk), strict=True):
                if record is None:
                    gone.append(order_id)
                elif not symbol or record.get("symbol") == symbol:
                    yield order_id, record
            self.records.forget_open(user_id, gone)

    # ------------------------------------------------------------------ the path

    def _add(self, symbol: str, command: Command, client_ts: int, received: int) -> Ack:
        order_id, user_id = command[1], command[2]
        fp = fingerprint(symbol, command)
        reply: Any = None
        for _ in range(2):
            pipe = RawPipeline(self.r)  # this thread's connection
            self._queue_claim(pipe, symbol, command, fp)
            reply = pipe.execute()[0]
            if claim_outcome(reply) != "NO_ROUTE" or not self.auto_list:
                break
            self._list(symbol, order_id)
        try:
            claim = claim_of(symbol, reply)
            duplicate = self._claimed(symbol, command, claim, received)
            if duplicate is not None:
                return duplicate
            assert claim.route is not None
            ack = self._send(symbol, command, client_ts, claim.route, received)
        except TimeoutError as exc:  # may yet be written: keep the claim until it lapses
            if isinstance(exc, StaleOffsetError):
                self._lapse_soon(user_id, order_id, fp)
            raise _in_doubt(exc, symbol, order_id) from exc
        except Exception as exc:  # not written: a resend must not find the claim PENDING
            if claim_outcome(reply) == "GO":
                self.records.abandon(user_id, order_id, fp)
            refusal = _unsent(exc, symbol, order_id)
            if refusal is exc:
                raise
            raise refusal from exc
        self.records.confirm(
            user_id, order_id, ack.topic, ack.partition, ack.offset, ack.route_epoch
        )
        return ack

    def _queue_claim(self, pipe: RawPipeline, symbol: str, command: Command, fp: str) -> None:
        """An ADD's claim (route + idempotency + reservation) queued on `pipe`."""
        _, order_id, user_id, side, order_type, _, _, price, quantity = command[:9]
        asset, unit = self._reservation(symbol, command) if self.balance_check else ("", 0)
        self.records.queue_claim(
            pipe,
            symbol=symbol,
            user_id=user_id,
            order_id=order_id,
            fingerprint=fp,
            now_ms=self.clock_ns() // 1_000_000,
            inflight_ms=self.inflight_ms,
            side=side,
            price=price,
            quantity=quantity,
            order_type=order_type,
            reserve_asset=asset,
            reserve_unit=unit,
        )

    @staticmethod
    def _claimed(symbol: str, command: Command, claim: Claim, received: int) -> Ack | None:
        """What an ADD's claim says: None: produce it (GO); the earlier acknowledgement
        again (ACCEPTED: nothing is produced); anything else is raised as its refusal."""
        order_id, user_id = command[1], command[2]
        outcome = claim.outcome
        if outcome == "GO":
            return None
        if outcome == "ACCEPTED":
            return Ack(
                "ADD",
                symbol,
                order_id,
                user_id,
                claim.topic,
                claim.partition,
                claim.offset,
                claim.epoch,
                duplicate=True,
                ts_ns=received,
            )
        reason, detail = {
            "NO_ROUTE": (Reason.UNKNOWN_SYMBOL, f"{symbol} is not listed"),
            "DUPLICATE": (
                Reason.DUPLICATE_ORDER_ID,
                "order_id already used by this user for another order",
            ),
            "IN_FLIGHT": (
                Reason.ORDER_IN_FLIGHT,
                "this order is being submitted by another request; retry",
            ),
            "INSUFFICIENT": (Reason.INSUFFICIENT_BALANCE, claim.detail),
        }[outcome]
        raise RefusedError(reason, detail, symbol=symbol, order_id=order_id)

    def _replace_producer(self, failed: Any, why: str) -> None:
        """Swap a producer that hit a fatal error for a fresh one (once, however many
        requests saw it fail). The failed one is polled a little longer, so every request
        still waiting on it hears that its record failed, then closed."""
        if self.new_producer is None or self._closing.is_set():
            return  # (closing: a new one would outlive close())
        with self._producer_lock:
            if self.producer is not failed:
                return  # another request replaced it already
            if self._closing.is_set():
                return  # close() took the lock first: it has closed, or closes, `failed`
            try:
                fresh = self.new_producer()
            except Exception:  # kept: the next request that finds it failed tries again
                log.exception("no new producer (the failed one stays): %s", why)
                return
            self.producer = fresh
            self.producer_replacements += 1
            self._acked_at = time.monotonic()  # the new one's first chance
            reaper = threading.Thread(
                target=self._reap, args=(failed,), name="producer-reaper", daemon=True
            )
            # started under the lock: a close() waiting for it joins a started reaper and
            # then closes `fresh` (started after, close() met an unstarted thread, raised,
            # and the fresh producer outlived it)
            reaper.start()
            self._reapers.append(reaper)
        log.warning("producer replaced (fatal error or stalled): %s", why)

    def _if_stalled(self, producer: Any) -> None:
        """A request timed out and nothing at all was acknowledged for STALL_TIMEOUTS
        delivery timeouts: the producer is replaced as if it had a fatal error. Some never
        recover and never turn fatal either (measured: after Tansu restarted on memory
        storage, an idempotent producer is answered UNKNOWN_PRODUCER_ID, bumps its epoch
        and retries, forever, until message.timeout.ms, 300 s); a fresh one works at once.
        While the broker is down this replaces at most once per STALL_TIMEOUTS timeouts."""
        if time.monotonic() - self._acked_at >= STALL_TIMEOUTS * self.delivery_timeout_s:
            stalled = time.monotonic() - self._acked_at
            self._replace_producer(producer, f"nothing acknowledged for {stalled:.1f} s")

    def _reap(self, failed: Any) -> None:
        deadline = time.monotonic() + self.delivery_timeout_s
        while time.monotonic() < deadline and not self._closing.is_set():
            try:
                failed.poll(0.05)
            except Exception:
                break
        _close(failed)

    def close(self) -> None:
        """Flush what is queued (briefly), close the producer and any it replaced, let the
        delivery thread end."""
        self._closing.set()
        with self._producer_lock:
            reapers, self._reapers = self._reapers, []
        for reaper in reapers:
            reaper.join(10)
        _close(self.producer, flush_s=1.0)
        self.pump.join(self.pump.idle_s + 1)

    def _check_offset(self, flight: "_Flight", partition: int, offset: int) -> None:
        """An acknowledgement at or below `flight.floor` cannot be true (StaleOffsetError,
        in doubt); a true one raises the partition's mark. A stale one lowers the mark to
        its offset: if the log was replaced (offsets from 0 again) the next records pass,
        and records already on their way were made with the old floor, so a second stale
        answer is caught as well. (Races between request threads only ever leave the mark
        lower than it could be, which lets more through, never refuses a true answer.)"""
        key = (flight.topic, partition)
        marks = self._acked_through
        marks[key] = kafka.ack_mark(marks.get(key, -1), offset, flight.floor)
        if kafka.stale_ack(offset, flight.floor):
            log.error(
                "acknowledgement of %s at offset %d of %s[%d], already passed (%d): in doubt",
                flight.command[1],
                offset,
                flight.topic,
                partition,
                flight.floor,
            )
            raise StaleOffsetError(
                f"acknowledged at offset {offset} of {flight.topic}[{partition}], which was "
                f"past {flight.floor} before this record was sent: not known to be written"
            )

    def _lapse_soon(self, user_id: str, order_id: str, fp: str) -> None:
        """An ADD answered StaleOffsetError keeps its claim for RETRY_AFTER_MS, not
        `inflight_ms`: nothing says the record is anywhere (the durable broker's case) and
        the same answer comes once per partition after a log was replaced (memory storage:
        one order of each partition, so every trader, waited the whole 10 s). The resend
        the retry hint asks for then writes it; if the first copy was written after all,
        the engine rejects the second DUPLICATE_ORDER_ID, as for any lapsed claim. A
        failure here leaves the claim to lapse as usual."""
        claimed_ms = self.clock_ns() // 1_000_000 - self.inflight_ms + RETRY_AFTER_MS
        try:
            self.records.lapse_at(user_id, order_id, fp, claimed_ms)
        except Exception:
            log.exception("claim of %s left to lapse as usual", order_id)

    def _pending_ended(self, symbol: str, epoch: int, offset: int) -> bool:
        """route.pending_ended for a record written at `offset`; a Redis that fails the
        check leaves it in doubt (PendingEndUnknownError), never "not written"."""
        try:
            return route.pending_ended(
                self.r, symbol, epoch, offset, wait_s=self.delivery_timeout_s
            )
        except TimeoutError:
            raise
        except Exception as exc:
            raise route.PendingEndUnknownError(
                f"{symbol}: the move's PENDING_END marker could not be read ({exc})"
            ) from exc

    def _reservation(self, symbol: str, command: Command) -> tuple[str, int]:
        """(asset, amount per lot) an ADD reserves."""
        _, order_id, _, side, order_type, _, _, price, _ = command[:9]
        if side == Side.SELL:
            return symbol, 1
        if order_type in (OrderType.MARKET, OrderType.STOP):
            ceiling = self.limits.of(symbol).price_max
            if not ceiling:
                raise RefusedError(
                    Reason.INSUFFICIENT_BALANCE,
                    "a MARKET buy needs a price_max in the limits to reserve against",
                    symbol=symbol,
                    order_id=order_id,
                )
            return CASH, ceiling
        return CASH, price

    def _route(self, symbol: str, order_id: str) -> Route:
        found = route.lookup(self.r, symbol)
        if found is None and self.auto_list:
            found = self._list(symbol, order_id)
        if found is None:
            raise RefusedError(
                Reason.UNKNOWN_SYMBOL, f"{symbol} is not listed", symbol=symbol, order_id=order_id
            )
        return found

    def _list(self, symbol: str, order_id: str) -> Route:
        try:
            return route.list_symbol(self.r, symbol)
        except route.NoEngineError as exc:
            raise RefusedError(exc.reason, exc.detail, symbol=symbol, order_id=order_id) from exc

    def _send(
        self, symbol: str, command: Command, client_ts: int, found: Route, received: int
    ) -> Ack:
        flight = self._flight(_Staged(-1, symbol, command, client_ts, received, ""), found)
        confirmed = functools.partial(
            produce_confirmed,
            flight.producer,
            flight.topic,
            flight.partition,
            symbol.encode(),
            flight.value,
            self.delivery_timeout_s,
            pump=self.pump,
        )
        return self._landed(flight, confirmed)

    def _flight(self, item: "_Staged", found: Route) -> "_Flight":
        """The record of an order on its way to `found`, with the producer it goes by (a
        record that cannot be built: NOT_DELIVERED, see _unsent)."""
        symbol, command = item.symbol, item.command
        topic, epoch = route.destination(found)
        try:
            value = encode_order(
                symbol,
                command,
                route_epoch=epoch,
                client_ts_ns=item.client_ts or item.received,
                received_ts_ns=item.received,
            )
        except Exception as exc:
            raise _unsent(exc, symbol, command[1]) from exc
        return _Flight(
            item.index,
            item.fp,
            symbol,
            command,
            item.received,
            topic,
            found.partition,
            epoch,
            value,
            self.producer,
            Delivery(),
            self._acked_through.get((topic, found.partition), -1),
        )

    def _landed(self, flight: "_Flight", outcome: Callable[[], tuple[int, int]]) -> Ack:
        """The acknowledgement of a record `outcome` gives (it raises what produce_confirmed
        raises), checked against a move's end marker: the Ack, or the refusal. Raises only
        RefusedError (not written, or written after the move's end: never applied) or a
        TimeoutError (may be written: in doubt), so the caller knows which claims to drop."""
        symbol, topic, epoch = flight.symbol, flight.topic, flight.epoch
        action, order_id, user_id = flight.command[0], flight.command[1], flight.command[2]
        try:
            partition, offset = outcome()
        except PossiblyWrittenError as exc:  # in doubt, as a timeout: the caller says so
            if exc.fatal:
                self._replace_producer(flight.producer, str(exc))
            raise
        except DeliveryInDoubtError:
            self._acked_at = time.monotonic()  # the broker answered: not a stalled producer
            raise
        except TimeoutError:
            self._if_stalled(flight.producer)
            raise
        except ProducerFailedError as exc:
            if exc.fatal:
                self._replace_producer(flight.producer, str(exc))
            raise RefusedError(
                Reason.NOT_DELIVERED,
                f"not acknowledged by the broker ({exc}); send the same order again",
                symbol=symbol,
                order_id=order_id,
                retry_after_ms=RETRY_AFTER_MS,
            ) from exc
        except Exception as exc:  # the router's own failure once the producer had the record
            log.error("delivery of %s %s not known", symbol, order_id, exc_info=exc)
            raise PossiblyWrittenError(
                f"outcome unknown ({type(exc).__name__})", fatal=False
            ) from exc
        self._acked_at = time.monotonic()
        self._check_offset(flight, partition, offset)
        if topic == TOPIC_PENDING_ORDERS and self._pending_ended(symbol, epoch, offset):
            # The race closure (HANDOVER.md): the migration's PENDING_END marker for this
            # epoch is before this record, so nobody replays it: refused, and it never
            # takes effect. (Marker still being written: pending_ended waits for its offset;
            # none in time raises PendingEndUnknownError, a TimeoutError: in doubt.)
            raise RefusedError(
                Reason.STALE_ROUTE,
                f"{symbol} moved while this order was on its way: retry",
                symbol=symbol,
                order_id=order_id,
            )
        return Ack(
            Action(action).name,
            symbol,
            order_id,
            user_id,
            topic,
            partition,
            offset,
            epoch,
            ts_ns=flight.received,
        )


@dataclass(slots=True)
class _Staged:
    """submit_many: a request that passed `_prepare`, while Redis is asked."""

    index: int
    symbol: str
    command: Command
    client_ts: int
    received: int
    fp: str
    """An ADD's fingerprint (its claim); '' for a CANCEL or REPLACE."""


@dataclass(slots=True)
class _Flight:
    """An order's record on its way to the broker (index and fp: as its _Staged's)."""

    index: int
    fp: str
    symbol: str
    command: Command
    received: int
    topic: str
    partition: int
    epoch: int
    value: bytes
    producer: Any
    """The producer the record is handed to (_fly: the current one as it is produced)."""
    delivery: Delivery
    floor: int = -1
    """The highest offset of its partition acknowledged to the router before the record
    was made (so before it was sent): its own offset must be above (StaleOffsetError)."""


def _queue_own_order(pipe: RawPipeline, user_id: str, order_id: str, symbol: str) -> None:
    """A CANCEL's or REPLACE's reads, queued: the order's record and its symbol's route."""
    pipe.command("HGETALL", order_key(user_id, order_id))
    pipe.command("HGETALL", names.REDIS_ROUTE.format(symbol))


def _own_order_of(symbol: str, order_id: str, raw_record: Any, raw_route: Any) -> Route | None:
    """CANCEL and REPLACE act only on an order this user placed here, on its symbol:
    another user's id (or a made-up one) is refused before it reaches Kafka. From the
    order's record and the symbol's route (read together): the route (None: not listed)."""
    record = {text(k): text(v) for k, v in hash_items(raw_record)}
    if not record or record.get("symbol") != symbol:
        raise RefusedError(
            Reason.UNKNOWN_ORDER,
            f"no such order of this user on {symbol}",
            symbol=symbol,
            order_id=order_id,
        )
    return route.parse_route(symbol, dict(hash_items(raw_route))) if raw_route else None


def _in_doubt(exc: TimeoutError, symbol: str, order_id: str) -> RefusedError:
    """NOT_DELIVERED for a record that may yet be written (no acknowledgement in time)."""
    return RefusedError(
        Reason.NOT_DELIVERED,
        str(exc),
        symbol=symbol,
        order_id=order_id,
        retry_after_ms=RETRY_AFTER_MS,
    )


def _unsent(exc: Exception, symbol: str, order_id: str) -> Exception:
    """What answers an order that failed before its record reached the producer (nothing
    was written): a refusal or a Redis error as it is; anything else, the router's own
    failure (a claim reply or record it cannot read or build from what Redis holds, a bug),
    logged and answered NOT_DELIVERED with a retry hint like a produce the producer
    refused, never a 500."""
    if isinstance(exc, HotshardError | redis.RedisError):
        return exc
    log.error("order %s on %s not sent", order_id, symbol, exc_info=exc)
    return RefusedError(
        Reason.NOT_DELIVERED,
        f"not sent ({type(exc).__name__}); send the same order again",
        symbol=symbol,
        order_id=order_id,
        retry_after_ms=RETRY_AFTER_MS,
    )


def _raising(exc: Exception) -> Callable[[], tuple[int, int]]:
    def outcome() -> tuple[int, int]:
        raise exc

    return outcome


def _all_answered(out: list[Ack | Exception | None]) -> list[Ack | Exception]:
    answered = [answer for answer in out if answer is not None]
    assert len(answered) == len(out), "a request of the batch was not answered"
    return answered


def record_json(user_id: str, order_id: str, record: dict[str, str]) -> dict[str, Any]:
    """An order record as the client sees it (GET /orders/{id}, GET /orders)."""
    out: dict[str, Any] = {
        "type": "order",
        "order_id": order_id,
        "user_id": user_id,
        "symbol": record.get("symbol", ""),
        "side": Side(int(record["side"])).name if record.get("side") else None,
        "order_type": (OrderType(int(record["type"])).name if record.get("type") else None),
        "price": int(record.get("price", 0)),
        "quantity": int(record.get("quantity", 0)),
        "routing": record.get("state", ""),
        "status": record.get("status"),
        "filled": int(record.get("filled", 0)),
        "leaves": int(record.get("leaves", 0)),
        "seq": int(record.get("seq", 0)),
    }
    if record.get("reason") and record["reason"] != Reason.NONE.name:
        out["reason"] = record["reason"]
    if "offset" in record:
        out.update(
            partition=int(record["partition"]),
            offset=int(record["offset"]),
            route_epoch=int(record["epoch"]),
        )
    return out


def fill_json(user_id: str, entry_id: str, f: dict[str, str]) -> dict[str, Any]:
    """One entry of the fill history as the client sees it (GET /fills)."""
    side = int(f.get("side") or 0)
    liquidity = int(f.get("liquidity") or 0)
    out: dict[str, Any] = {
        "type": "fill",
        "id": entry_id,
        "symbol": f.get("symbol", ""),
        "seq": int(f.get("seq") or 0),
        "order_id": f.get("order_id", ""),
        "user_id": user_id,
        "side": Side(side).name if side else None,
        "price": int(f.get("price") or 0),
        "quantity": int(f.get("quantity") or 0),
        "liquidity": Liquidity(liquidity).name if liquidity else None,
        "trade_id": int(f.get("trade_id") or 0),
    }
    ts = int(f.get("ts_ns") or 0)
    if ts:
        out["ts_ns"] = ts
    return out


def _failure_of(order_id: str, answer: Exception | None) -> dict[str, Any]:
    """cancel_all: one cancel's refusal as its `failed` entry. A Redis error (nothing was
    sent) is NOT_DELIVERED with a retry hint, as the API answers one alone."""
    if not isinstance(answer, HotshardError):
        answer = RefusedError(
            Reason.NOT_DELIVERED,
            f"not sent ({type(answer).__name__}); cancel it again",
            order_id=order_id,
            retry_after_ms=RETRY_AFTER_MS,
        )
    out: dict[str, Any] = {
        "order_id": order_id,
        "reason": answer.reason.name,
        "code": int(answer.reason),
        "detail": answer.detail,
    }
    if isinstance(answer, RefusedError) and answer.retry_after_ms:
        out["retry_after_ms"] = answer.retry_after_ms
    return out


def _cursor(text: str) -> str | None:
    """A Redis stream id (MS-SEQ, each part a 64-bit unsigned integer: what `next` names),
    in its canonical form; None if it is not one. A larger part, or `000-0`, passed the
    pattern and made Redis raise (502; found by schemathesis)."""
    if not _STREAM_ID.fullmatch(text):
        return None
    ms, seq = (int(part) for part in text.split("-"))
    return f"{ms}-{seq}" if ms < 2**64 and seq < 2**64 else None


def _page_size(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidOrderError(Reason.MALFORMED, f"limit must be 1..{MAX_PAGE}")
    return limit


def _client_ts(value: Any, symbol: str, order_id: str) -> int:
    """The optional client_ts_ns: absent or null -> 0 (the router stamps its own clock);
    otherwise a JSON integer in [0, 2**63) (an int64 on the wire)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidOrderError(
            Reason.MALFORMED,
            "client_ts_ns must be an integer (ns since the epoch)",
            symbol=symbol,
            order_id=order_id,
        )
    if not 0 <= value <= MAX_TIMESTAMP_NS:
        raise InvalidOrderError(
            Reason.VALUE_OUT_OF_RANGE,
            f"client_ts_ns must be in [0, {MAX_TIMESTAMP_NS}]",
            symbol=symbol,
            order_id=order_id,
        )
    return value


def _close(producer: Any, flush_s: float = 0.0) -> None:
    """Close a confluent-kafka producer (its threads and connections stop now, not at
    garbage collection); anything without close() is left alone. What `flush_s` did not
    deliver is purged first: close() waits for every queued record's message.timeout.ms
    (measured: > 20 s, against a broker that never answers), so a router's close hung."""
    try:
        if flush_s > 0:
            producer.flush(flush_s)
        producer.purge()
        close = getattr(producer, "close", None)
        if callable(close):
            close()
    except RuntimeError:  # closed already (confluent-kafka: "Producer has been closed")
        pass
    except Exception:  # closing a broken producer must not fail the request
        log.warning("closing a producer failed", exc_info=True)


__all__ = [
    "MAX_PAGE",
    "Ack",
    "OrderRouter",
    "ProducerFailedError",
    "RefusedError",
    "fill_json",
    "fingerprint",
    "produce_confirmed",
    "DeliveryInDoubtError",
    "StaleOffsetError",
    "DeliveryPump",
    "PossiblyWrittenError",
    "record_json",
]
