"""Requests handled together (OrderRouter.submit_many, EdgeApi.handle_many: what the local
gateway does with the order frames that arrive while it is busy) are answered exactly as
each one alone is (submit, handle), against real Redis and Tansu."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import confluent_kafka
import pytest
import redis

from hotshard import names, rawpipe, route
from hotshard.domain import Action
from hotshard.edge.limits import PreTradeLimits
from hotshard.edge.orders import order_key
from hotshard.edge.router import RETRY_AFTER_MS, Ack, Delivery, DeliveryPump, RefusedError, log
from hotshard.local.shapes import websocket_event
from hotshard.rawpipe import RawPipeline
from hotshard.reasons import HotshardError, Reason
from hotshard.registry import EngineRecord, register_engine
from tests.hotshard.edge.kit import CountingProducer, Edge, edge, read_record

pytestmark = pytest.mark.integration

LIMITS = PreTradeLimits.from_json({"*": {"price_max": 100_000, "max_quantity": 1000}})


def order(order_id: str, **change: Any) -> dict[str, Any]:
    return {
        "symbol": "AAPL",
        "order_id": order_id,
        "side": "BUY",
        "price": 100,
        "quantity": 5,
        **change,
    }


# (payload, action) of one batch: every kind of answer an order request can get
REQUESTS: list[tuple[Any, Action | None]] = [
    (order("new"), None),
    (order("bad-side", side="SIDEWAYS"), None),
    (order("too-high", price=100_001), None),
    (order("unlisted", symbol="NOPE"), None),
    (order("acked"), None),  # sent before: answered again, nothing produced
    (order("reused", price=101), None),  # its id was used for other contents
    (order("mismatch", user_id="mallory"), None),
    ("not an object", None),
    ({"symbol": "AAPL", "order_id": "to-cancel"}, Action.CANCEL),
    ({"symbol": "AAPL", "order_id": "nobody"}, Action.CANCEL),
    (order("resting", price=99, quantity=3), Action.REPLACE),
    (order("new-2", side="SELL", price=120), None),
]
BEFORE = [order("acked"), order("reused"), order("resting"), order("to-cancel")]


def shape(answer: Ack | Exception) -> tuple[Any, ...]:
    """What must be the same whoever sent it and whenever (not offsets or clocks)."""
    if isinstance(answer, Ack):
        return ("ack", answer.action, answer.symbol, answer.order_id, answer.topic,
                answer.partition, answer.route_epoch, answer.duplicate)  # fmt: skip
    if isinstance(answer, HotshardError):
        return ("refused", answer.reason.name, answer.detail, getattr(answer, "order_id", ""))
    return ("raised", type(answer).__name__)


def test_a_batch_is_answered_as_each_request_alone(r: redis.Redis, broker: Any) -> None:
    e = edge(r, broker.bootstrap, limits=LIMITS)
    route.list_symbol_at(r, "AAPL", 2, "e1")
    for user in ("alice", "bob"):
        for payload in BEFORE:
            e.router.submit(user, payload)
    alone: list[Ack | Exception] = []
    for payload, action in REQUESTS:
        try:
            alone.append(e.router.submit("alice", payload, action))
        except Exception as exc:
            alone.append(exc)
    produced_alone = e.producer.produced
    together = e.router.submit_many([("bob", payload, action) for payload, action in REQUESTS])
    assert [shape(a) for a in together] == [shape(a) for a in alone]
    assert e.producer.produced - produced_alone == produced_alone - 2 * len(BEFORE)
    # the batch's confirms were written: its ADDs are ACCEPTED, as the lone ones are
    ping = RawPipeline(e.router.r)
    ping.command("PING")
    ping.execute()  # this thread's connection: the confirms' replies are read first
    for user in ("alice", "bob"):
        for order_id in ("new", "new-2"):
            record = e.router.records.read(user, order_id)
            assert record is not None and record["state"] == "ACCEPTED", (user, order_id)
    # sent again as a batch: every ADD acknowledged before is answered as a duplicate
    again = e.router.submit_many(
        [("bob", order("new"), None), ("bob", order("new-2", side="SELL", price=120), None)]
    )
    assert all(isinstance(a, Ack) and a.duplicate for a in again), again
    assert e.producer.produced - produced_alone == produced_alone - 2 * len(BEFORE)


def test_a_batch_that_cannot_reach_redis_fails_each_request_as_alone(
    r: redis.Redis, broker: Any
) -> None:
    e = edge(r, broker.bootstrap)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    e.router.r = redis.Redis(host="127.0.0.1", port=1)  # nothing listens there
    answers = e.router.submit_many([("al", order("a"), None), ("al", order("b", side="X"), None)])
    assert isinstance(answers[0], redis.ConnectionError)
    assert isinstance(answers[1], HotshardError) and answers[1].reason.name == "BAD_SIDE"
    assert e.producer.produced == 0


def ws_event(connection: str, frame: Any) -> dict[str, Any]:
    text = frame if isinstance(frame, str) else json.dumps(frame)
    action = frame.get("action") if isinstance(frame, dict) else None
    route_key = action if action in ("order", "cancel", "replace", "ping") else "$default"
    return websocket_event(
        route_key, connection, domain="localhost", stage="live", connected_at_ms=1, body=text
    )


def test_handle_many_answers_every_frame_as_handle_does(r: redis.Redis, broker: Any) -> None:
    e = edge(r, broker.bootstrap, limits=LIMITS)
    route.list_symbol_at(r, "AAPL", 1, "e1")
    e.api.sessions.connect("c-alice", "alice", 1)
    e.api.sessions.connect("c-bob", "bob", 1)
    for user in ("alice", "bob"):
        e.router.submit(user, order("acked"))
    frames: list[Any] = [
        {"action": "order", "request_id": 7, **order("w-1")},
        {"action": "order", **order("w-2", quantity=0)},
        {"action": "cancel", "request_id": "x", "symbol": "AAPL", "order_id": "acked"},
        {"action": "ping"},
        {"action": "order", **order("acked")},
        "{not json",
        {"action": "cancel", "symbol": "AAPL", "order_id": "none"},
    ]

    def comparable(reply: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body = json.loads(reply["body"])
        for volatile in ("offset", "ts_ns", "user_id"):
            body.pop(volatile, None)
        return reply["statusCode"], body

    alone = [comparable(e.api.handle(ws_event("c-alice", f), None)) for f in frames]
    together = e.api.handle_many([ws_event("c-bob", f) for f in frames], None)
    assert [comparable(reply) for reply in together] == alone
    assert [status for status, _ in alone] == [200, 400, 200, 200, 200, 400, 404]


def refused_to_retry(answer: Any, order_id: str) -> bool:
    return (
        isinstance(answer, RefusedError)
        and answer.reason.name == "NOT_DELIVERED"
        and answer.retry_after_ms > 0
        and answer.order_id == order_id
    )


def test_a_batch_through_a_closed_producer_sends_the_rest_by_the_new_one(
    r: redis.Redis, broker: Any
) -> None:
    # before: the first record's failure replaced the producer, and the rest of the batch
    # still went to the failed one: each refused NOT_DELIVERED, to be sent again
    e = edge(r, broker.bootstrap, new_producer=lambda: CountingProducer(broker.bootstrap))
    route.list_symbol_at(r, "AAPL", 0, "e1")
    e.router.submit("al", order("placed"))
    e.router.producer.close()
    batch: list[tuple[str, Any, Action | None]] = [
        ("al", order("x-1"), None),
        ("al", order("x-2", side="SELL"), None),
        ("al", {"symbol": "AAPL", "order_id": "placed"}, Action.CANCEL),
    ]
    answers = e.router.submit_many(batch)
    assert refused_to_retry(answers[0], "x-1"), answers[0]
    assert all(isinstance(a, Ack) and not a.duplicate for a in answers[1:]), answers
    assert e.router.producer_replacements == 1
    # x-1 was not written: its claim was dropped, so it goes through now; x-2 once only
    again = e.router.submit_many(batch[:2])
    assert isinstance(again[0], Ack) and not again[0].duplicate, again
    first, second = answers[1], again[1]
    assert isinstance(first, Ack) and isinstance(second, Ack) and second.duplicate, again
    assert (second.partition, second.offset) == (first.partition, first.offset)


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A port that takes connections and never answers: nothing is ever confirmed."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def stalled_submit(r: redis.Redis, silent_broker: str, requests: list[Any]) -> list[Any]:
    """AAPL listed, `requests` through a router whose broker never confirms (0.3 s wait)."""
    route.list_symbol_at(r, "AAPL", 0, "e1")
    stalled = edge(r, silent_broker)
    stalled.router.delivery_timeout_s = 0.3
    try:
        return list(stalled.router.submit_many(requests))
    finally:
        stalled.router.close()


def test_a_batch_the_broker_does_not_confirm_in_time_is_in_doubt_and_keeps_its_claims(
    r: redis.Redis, broker: Any, silent_broker: str
) -> None:
    answers = stalled_submit(
        r, silent_broker, [("al", order("d-1"), None), ("al", order("d-2"), None)]
    )
    for answer, order_id in zip(answers, ("d-1", "d-2"), strict=True):
        assert isinstance(answer, RefusedError), answer
        assert (answer.reason.name, answer.detail) == (
            "NOT_DELIVERED",
            "no acknowledgement within 0.3 s",
        )
        assert answer.order_id == order_id and answer.retry_after_ms > 0
    # may yet be written: the claims stay (a resend meanwhile is told to wait)
    working = edge(r, broker.bootstrap)
    resent = working.router.submit_many([("al", order("d-1"), None)])
    assert isinstance(resent[0], RefusedError) and resent[0].reason.name == "ORDER_IN_FLIGHT"


def test_an_order_whose_record_cannot_be_built_is_refused_alone_and_drops_its_claim(
    r: redis.Redis, broker: Any
) -> None:
    # before: the ValueError of encoding (a route epoch out of range) was the answer (a 500),
    # and in a batch the claim it had taken stayed PENDING: the resend got ORDER_IN_FLIGHT
    e = edge(r, broker.bootstrap)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    route.list_symbol_at(r, "MSFT", 1, "e1")
    r.hset("route:MSFT", "epoch", -1)  # no uint64: the record cannot be encoded
    batch: list[tuple[str, Any, Action | None]] = [
        ("al", order("a-1"), None),
        ("al", order("m-1", symbol="MSFT"), None),
        ("al", order("a-2"), None),
    ]
    answers = e.router.submit_many(batch)
    assert isinstance(answers[0], Ack) and isinstance(answers[2], Ack), answers
    assert refused_to_retry(answers[1], "m-1"), answers[1]
    with pytest.raises(RefusedError) as alone:
        e.router.submit("al", order("m-2", symbol="MSFT"))
    assert refused_to_retry(alone.value, "m-2")
    assert e.producer.produced == 2
    r.hset("route:MSFT", "epoch", 1)
    # nothing was written: the same orders are sent now, not answered ORDER_IN_FLIGHT
    (resent,) = e.router.submit_many([batch[1]])
    assert isinstance(resent, Ack) and not resent.duplicate, resent
    assert not e.router.submit("al", order("m-2", symbol="MSFT")).duplicate


class RaisesFor(CountingProducer):
    """A real producer whose produce() raises what no handler expects for one key."""

    def __init__(self, bootstrap: str, key: bytes) -> None:
        super().__init__(bootstrap)
        self.key = key

    def produce(self, *args: Any, **kwargs: Any) -> None:
        if args[2] == self.key:
            raise TypeError("unexpected")
        super().produce(*args, **kwargs)


def edge_refusing_msft(r: redis.Redis, bootstrap: str) -> Edge:
    """An edge with AAPL on partition 0 and MSFT on 1 whose producer raises for MSFT."""
    e = edge(r, bootstrap)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    route.list_symbol_at(r, "MSFT", 1, "e1")
    e.router.producer = RaisesFor(bootstrap, b"MSFT")
    return e


def test_an_unexpected_produce_failure_fails_only_its_request_of_the_batch(
    r: redis.Redis, broker: Any
) -> None:
    # before: the TypeError escaped submit_many: every request of the batch failed (the
    # local gateway answered each 502) and the claims taken stayed PENDING
    e = edge_refusing_msft(r, broker.bootstrap)
    batch: list[tuple[str, Any, Action | None]] = [
        ("al", order("a-1"), None),
        ("al", order("m-1", symbol="MSFT"), None),
        ("al", order("a-2"), None),
    ]
    answers = e.router.submit_many(batch)
    assert isinstance(answers[0], Ack) and isinstance(answers[2], Ack), answers
    assert refused_to_retry(answers[1], "m-1"), answers[1]
    assert e.router.producer_replacements == 0  # not a broken producer
    e.router.producer = CountingProducer(broker.bootstrap)
    (resent,) = e.router.submit_many([batch[1]])
    assert isinstance(resent, Ack) and not resent.duplicate, resent


def test_a_redis_failure_after_the_broker_acknowledged_keeps_the_claim(
    r: redis.Redis, broker: Any
) -> None:
    # before: a Redis error while checking a move's end marker (after the record was
    # written) was taken for "not written": the claim was dropped and the resend written
    # again, and the answer was the raw ResponseError (a 500)
    e = edge(r, broker.bootstrap)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    moving = route.begin_migration(r, route.list_symbol_at(r, "MSFT", 1, "e1"))
    r.hset(f"pending-end:MSFT:{moving.epoch + 1}", "not", "a string")  # GET: WRONGTYPE
    batch: list[tuple[str, Any, Action | None]] = [
        ("al", order("a-1"), None),
        ("al", order("m-1", symbol="MSFT"), None),
    ]
    answers = e.router.submit_many(batch)
    assert isinstance(answers[0], Ack), answers
    assert refused_to_retry(answers[1], "m-1"), answers[1]
    with pytest.raises(RefusedError) as alone:
        e.router.submit("al", order("m-2", symbol="MSFT"))
    assert refused_to_retry(alone.value, "m-2")
    assert e.producer.produced == 3
    # written: the claims are kept, so the resends are not written a second time
    (resent,) = e.router.submit_many([batch[1]])
    assert isinstance(resent, RefusedError) and resent.reason.name == "ORDER_IN_FLIGHT"
    with pytest.raises(RefusedError) as again:
        e.router.submit("al", order("m-2", symbol="MSFT"))
    assert again.value.reason.name == "ORDER_IN_FLIGHT"
    assert e.producer.produced == 3


def test_cancel_all_answers_each_failure_as_the_batched_path_does(
    r: redis.Redis, broker: Any
) -> None:
    # before: cancel_all had its own produce loop, which let a TypeError of produce(), an
    # epoch out of range (ValueError of encoding) or a Redis error reading a move's end
    # marker escape: the whole request answered 500 (the local gateway 502)
    e = edge(r, broker.bootstrap)
    for partition, symbol in enumerate(("AAPL", "MSFT", "IBM", "GOOG")):
        route.list_symbol_at(r, symbol, partition, "e1")
        e.router.submit("al", order(f"{symbol}-1", symbol=symbol))
    raising = RaisesFor(broker.bootstrap, b"MSFT")
    e.router.producer = raising
    r.hset("route:IBM", "epoch", -1)  # no uint64: the record cannot be encoded
    moving = route.begin_migration(r, route.lookup(r, "GOOG"))  # type: ignore[arg-type]
    r.hset(f"pending-end:GOOG:{moving.epoch + 1}", "not", "a string")  # GET: WRONGTYPE
    done = e.router.cancel_all("al")
    assert done["cancelled"] == ["AAPL-1"], done
    failed = {f["order_id"]: f for f in done["failed"]}
    assert sorted(failed) == ["GOOG-1", "IBM-1", "MSFT-1"], done
    for f in failed.values():
        assert f["reason"] == "NOT_DELIVERED" and f["retry_after_ms"] > 0, f
    assert "PENDING_END" in failed["GOOG-1"]["detail"]  # written, outcome in doubt
    assert raising.produced == 2  # AAPL, GOOG: MSFT refused by produce(), IBM never built
    assert e.router.producer_replacements == 0  # not a broken producer
    r.hset("route:IBM", "epoch", 1)
    e.router.producer = CountingProducer(broker.bootstrap)
    again = e.router.cancel_all("al", "MSFT")
    assert again["cancelled"] == ["MSFT-1"] and not again["failed"], again
    assert e.router.cancel_all("al", "IBM")["cancelled"] == ["IBM-1"]


def test_a_delivery_wait_that_fails_leaves_only_the_batchs_records_in_doubt(
    r: redis.Redis, broker: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # before: a failure of the pump's wait (its thread could not start) escaped submit_many
    # for the whole batch, and the pump kept the thread that never started: every later
    # wait timed out
    e = edge(r, broker.bootstrap, new_producer=lambda: CountingProducer(broker.bootstrap))
    route.list_symbol_at(r, "AAPL", 0, "e1")
    e.router.submit("al", order("placed"))
    e.router.pump.join(e.router.pump.idle_s + 2)  # idle: the next wait starts its thread
    start = threading.Thread.start

    def no_delivery_thread(thread: threading.Thread) -> None:
        if thread.name == "delivery":
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", no_delivery_thread)
    answers = e.router.submit_many(
        [
            ("al", order("a-1"), None),
            ("al", order("bad", side="SIDEWAYS"), None),
            ("al", {"symbol": "AAPL", "order_id": "placed"}, Action.CANCEL),
            ("al", order("placed"), None),
        ]
    )
    assert refused_to_retry(answers[0], "a-1"), answers
    assert isinstance(answers[1], HotshardError) and answers[1].reason.name == "BAD_SIDE"
    assert refused_to_retry(answers[2], "placed"), answers
    assert isinstance(answers[3], Ack) and answers[3].duplicate, answers
    # in doubt by the wait's own failure, named (_unwaited 11, 15), not a broken producer
    # (16: fatal, the producer replaced); each failed wait logged with its cause (5, 6,
    # 8-10: the message or the traceback lost)
    for answer in (answers[0], answers[2]):
        assert isinstance(answer, RefusedError), answer
        assert answer.detail == "delivery not waited for (RuntimeError: can't start new thread)"
    assert e.router.producer_replacements == 0
    waits = [(rec.getMessage(), rec.exc_info) for rec in caplog.records if rec.name == log.name]
    assert [m for m, _ in waits] == ["a delivery report could not be waited for"] * 2, waits
    assert all(x is not None and isinstance(x[1], RuntimeError) for _, x in waits), waits
    monkeypatch.undo()
    # handed to the producer, so in doubt: a-1 keeps its claim and is never written twice
    (resent,) = e.router.submit_many([("al", order("a-1"), None)])
    assert isinstance(resent, RefusedError) and resent.reason.name == "ORDER_IN_FLIGHT"
    assert e.producer.produced == 3
    (fresh,) = e.router.submit_many([("al", order("a-2"), None)])
    assert isinstance(fresh, Ack) and not fresh.duplicate, fresh


def test_an_auto_listing_batch_lists_a_new_symbol_and_produces_in_request_order(
    r: redis.Redis, broker: Any
) -> None:
    # the batched path's mutation run (docs/MUTATION.md): no test sent a batch through an
    # auto-listing router or checked the order records are produced in. Killed here:
    # _staged_flights 25-40 (the unlisted ADD refused, its later call broken, its client
    # or receive time lost, the rest of the batch left unanswered), 24 (`or
    # self.auto_list`: every ADD sent alone after the CANCEL/REPLACE flights), 58 and 67
    # (every CANCEL/REPLACE sent alone, after the ADDs), 68 (every REPLACE alone), 45
    # (a duplicate's ts_ns None), 92 and 93 (a flight's client or receive time lost) and
    # _fly 12 (a flight's record produced with no value)
    register_engine(r, EngineRecord("e1", "127.0.0.1:1", (0, 1), 1), 60_000)
    e = edge(r, broker.bootstrap, limits=LIMITS, auto_list=True)
    route.list_symbol_at(r, "AAPL", 1, "e1")
    for order_id in ("p-1", "p-2", "acked"):
        e.router.submit("al", order(order_id))
    batch: list[tuple[str, Any, Action | None]] = [
        ("al", order("a-1", client_ts_ns=456), None),
        ("al", {"symbol": "AAPL", "order_id": "p-1"}, Action.CANCEL),
        ("al", order("p-2", price=99, quantity=3), Action.REPLACE),
        ("al", order("n-1", symbol="NEW", client_ts_ns=123), None),
        ("al", order("acked"), None),
        ("al", order("a-2"), None),
    ]
    answers = e.router.submit_many(batch)
    assert all(isinstance(a, Ack) for a in answers), answers
    a_1, cancel, replace, new, acked, a_2 = (a for a in answers if isinstance(a, Ack))
    # produced in the order asked: the CANCEL and REPLACE between the two ADDs
    assert [a.partition for a in (a_1, cancel, replace, a_2)] == [1] * 4
    assert a_1.offset < cancel.offset < replace.offset < a_2.offset
    assert (new.route_epoch, route.lookup(r, "NEW") is not None) == (1, True)
    for ack, symbol, client_ts in ((new, "NEW", 123), (a_1, "AAPL", 456)):
        record = read_record(broker.bootstrap, ack.topic, ack.partition, ack.offset)
        assert (record.symbol, record.order_id) == (symbol, ack.order_id)
        assert (record.client_ts_ns, record.received_ts_ns) == (client_ts, ack.ts_ns)
    assert acked.duplicate and isinstance(acked.ts_ns, int) and acked.ts_ns > 0


def test_a_cancel_whose_symbol_lost_its_route_is_refused_as_alone(
    r: redis.Redis, broker: Any
) -> None:
    # mutants _staged_flights 66, 67 (a CANCEL with no route taken to the producer:
    # AssertionError), 71-74 and 78-84 (its later call broken), 85 (`break`: the requests
    # after it never answered)
    e = edge(r, broker.bootstrap)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    route.list_symbol_at(r, "MSFT", 1, "e1")
    e.router.submit("al", order("p-1"))
    e.router.submit("al", order("p-2"))
    r.delete(names.REDIS_ROUTE.format("AAPL"))
    cancel = {"symbol": "AAPL", "order_id": "p-1"}
    with pytest.raises(RefusedError) as alone:
        e.router.submit("al", cancel, Action.CANCEL)
    together, after = e.router.submit_many(
        [
            ("al", {**cancel, "order_id": "p-2"}, Action.CANCEL),
            ("al", order("m", symbol="MSFT"), None),
        ]
    )
    assert isinstance(after, Ack), after
    assert isinstance(together, RefusedError), together
    assert (together.reason, together.detail) == (alone.value.reason, alone.value.detail)
    assert together.reason.name == "UNKNOWN_SYMBOL"


def test_a_replace_with_balance_checks_is_refused_in_a_batch_as_alone(
    r: redis.Redis, broker: Any
) -> None:
    # mutants _staged_flights 69 and 70 (the REPLACE taken to the producer: acknowledged)
    e = edge(r, broker.bootstrap, balance_check=True)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    r.hset("balance:al", mapping={"CASH": 10_000})
    e.router.submit("al", order("p-1"))
    e.router.submit("al", order("p-2"))
    produced = e.producer.produced
    answers = e.router.submit_many(
        [
            ("al", order("p-1", price=99), Action.REPLACE),
            ("al", {"symbol": "AAPL", "order_id": "p-2"}, Action.CANCEL),
        ]
    )
    refused, cancelled = answers
    assert isinstance(refused, RefusedError), refused
    assert refused.reason.name == "INSUFFICIENT_BALANCE"
    assert isinstance(cancelled, Ack) and cancelled.action == "CANCEL", cancelled
    assert e.producer.produced == produced + 1


def test_a_redis_error_reply_in_a_batch_is_that_request_s_answer(
    r: redis.Redis, broker: Any
) -> None:
    # mutant _staged_flights 13 (an error reply not raised: read as the order's record)
    e = edge(r, broker.bootstrap)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    r.set(order_key("al", "w-1"), "not a hash")  # HGETALL: WRONGTYPE
    cancel = {"symbol": "AAPL", "order_id": "w-1"}
    with pytest.raises(redis.ResponseError):
        e.router.submit("al", cancel, Action.CANCEL)
    answers = e.router.submit_many([("al", cancel, Action.CANCEL), ("al", order("a-1"), None)])
    assert isinstance(answers[0], redis.ResponseError), answers[0]
    assert isinstance(answers[1], Ack), answers[1]


def test_a_cancel_whose_route_is_gone_is_listed_again_and_keeps_its_times(
    r: redis.Redis, broker: Any
) -> None:
    # mutants _staged_flights 75 and 77 (the later CANCEL's client or receive time lost)
    register_engine(r, EngineRecord("e1", "127.0.0.1:1", (0, 1), 1), 60_000)
    e = edge(r, broker.bootstrap, auto_list=True)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    e.router.submit("al", order("p-1"))
    r.delete(names.REDIS_ROUTE.format("AAPL"))
    cancel = {"symbol": "AAPL", "order_id": "p-1", "client_ts_ns": 789}
    (ack,) = e.router.submit_many([("al", cancel, Action.CANCEL)])
    assert isinstance(ack, Ack) and ack.action == "CANCEL", ack
    record = read_record(broker.bootstrap, ack.topic, ack.partition, ack.offset)
    assert (record.client_ts_ns, record.received_ts_ns) == (789, ack.ts_ns)


class FullOnce(CountingProducer):
    """A real producer whose queue is full at the first produce() (BufferError)."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap)
        self.full = True

    def produce(self, *args: Any, **kwargs: Any) -> None:
        if self.full:
            self.full = False
            raise BufferError("queue full")
        super().produce(*args, **kwargs)


def test_a_batch_waits_out_a_full_producer_queue(r: redis.Redis, broker: Any) -> None:
    # mutant _fly 14 (no deadline: TypeError out of submit_many for the whole batch)
    e = edge(r, broker.bootstrap)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    e.router.producer = FullOnce(broker.bootstrap)
    answers = e.router.submit_many([("al", order("q-1"), None), ("al", order("q-2"), None)])
    assert all(isinstance(a, Ack) for a in answers), answers


def test_an_order_whose_route_cannot_be_read_is_refused_by_name_and_drops_its_claim(
    r: redis.Redis, broker: Any
) -> None:
    # mutants _staged_flights 102, 103, 107 (the NOT_DELIVERED refusal naming no symbol,
    # no order id, or the user id for the order id)
    e = edge(r, broker.bootstrap)
    route.list_symbol_at(r, "MSFT", 1, "e1")
    r.hset(names.REDIS_ROUTE.format("MSFT"), "partition", "x")  # int("x"): ValueError
    (answer,) = e.router.submit_many([("al", order("m-1", symbol="MSFT"), None)])
    assert refused_to_retry(answer, "m-1"), answer
    assert isinstance(answer, RefusedError) and answer.symbol == "MSFT"
    r.hset(names.REDIS_ROUTE.format("MSFT"), "partition", 1)
    (resent,) = e.router.submit_many([("al", order("m-1", symbol="MSFT"), None)])
    assert isinstance(resent, Ack) and not resent.duplicate, resent


def test_an_add_another_request_is_sending_keeps_that_request_s_claim(
    r: redis.Redis, broker: Any, silent_broker: str
) -> None:
    # mutant _staged_flights 108 (`item.fp or ...`: every ADD refused in staging dropped
    # the claim, here the in-flight request's own, so the second resend went through)
    (doubt,) = stalled_submit(r, silent_broker, [("al", order("d-1"), None)])
    # and the in-doubt answer names its symbol and keeps the timeout as its cause
    # (_landed_into 11 and 16)
    assert isinstance(doubt, RefusedError) and doubt.symbol == "AAPL", doubt
    assert isinstance(doubt.__cause__, TimeoutError), doubt.__cause__
    working = edge(r, broker.bootstrap)
    for _ in range(2):
        (resent,) = working.router.submit_many([("al", order("d-1"), None)])
        assert isinstance(resent, RefusedError), resent
        assert resent.reason.name == "ORDER_IN_FLIGHT"
    assert working.producer.produced == 0


class LosesRedisAfter(CountingProducer):
    """A real producer that, once it took a record, leaves this thread's Redis connection
    (the one the batch's confirms are written on) pointing at a port nothing listens on."""

    def __init__(self, bootstrap: str, r: redis.Redis) -> None:
        super().__init__(bootstrap)
        self.r = r

    def produce(self, *args: Any, **kwargs: Any) -> None:
        super().produce(*args, **kwargs)
        dead = redis.Redis(host="127.0.0.1", port=1)  # nothing listens there
        rawpipe._thread_local(self.r).conn = rawpipe.thread_connection(dead)


def test_confirms_that_cannot_be_written_answer_their_requests(r: redis.Redis, broker: Any) -> None:
    # mutants _fly 57 (the failed confirm write answered None) and _landed_into 44 (the
    # confirm queued under index None): AssertionError / TypeError out of submit_many
    e = edge(r, broker.bootstrap)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    e.router.producer = LosesRedisAfter(broker.bootstrap, e.router.r)
    try:
        answers = e.router.submit_many([("al", order("c-1"), None), ("al", order("c-2"), None)])
    finally:
        del rawpipe._thread_local(e.router.r).conn
    assert all(isinstance(a, redis.ConnectionError) for a in answers), answers


def test_cancel_all_names_what_it_skipped_and_each_failure_by_reason_code_and_hint(
    r: redis.Redis, broker: Any, silent_broker: str, caplog: pytest.LogCaptureFixture
) -> None:
    # cancel_all's answer as documented: the orders still being sent named in `pending`
    # (not cancelled), each failure with its reason, code, detail and (only when there is
    # one) retry hint, `symbol` when asked for one; each CANCEL record stamped with the
    # router's clock and keyed by its symbol. Against mutmut's survivors of cancel_all,
    # _cancel_flights and _failure_of (docs/MUTATION.md)
    e = edge(r, broker.bootstrap)
    acks = {}
    for partition, symbol in enumerate(("AAPL", "MSFT", "WRT", "BADR")):
        route.list_symbol_at(r, symbol, partition, "e1")
        acks[symbol] = e.router.submit("al", order(f"{symbol}-1", symbol=symbol))
    for symbol in ("GONE", "EPO"):
        route.list_symbol_at(r, symbol, 3, "e1")
        e.router.submit("al", order(f"{symbol}-1", symbol=symbol))
    (doubt,) = stalled_submit(r, silent_broker, [("al", order("p-1"), None)])
    assert refused_to_retry(doubt, "p-1")  # in doubt: its claim stays PENDING
    r.delete("route:WRT")
    r.set("route:WRT", "not a hash")  # reading the route: a Redis error (WRONGTYPE)
    r.hset("route:BADR", "partition", "abc")  # a route that cannot be read (ValueError)
    r.delete("route:GONE")  # no longer listed
    r.hset("route:EPO", "epoch", -1)  # no uint64: the record cannot be built (ValueError)
    now = 1_750_000_000_123_456_789
    e.router.clock_ns = lambda: now
    done = e.router.cancel_all("al")
    failed = sorted(done.pop("failed"), key=lambda f: f["order_id"])
    done["cancelled"].sort()  # oldest first: claims of the same millisecond by id
    assert done == {
        "type": "cancel_all",
        "user_id": "al",
        "cancelled": ["AAPL-1", "MSFT-1"],
        "pending": ["p-1"],
    }, done
    not_delivered = {"reason": "NOT_DELIVERED", "code": int(Reason.NOT_DELIVERED)}
    assert failed == [
        {"order_id": "BADR-1", **not_delivered, "retry_after_ms": RETRY_AFTER_MS,
         "detail": "not sent (ValueError); send the same order again"},
        {"order_id": "EPO-1", **not_delivered, "retry_after_ms": RETRY_AFTER_MS,
         "detail": "not sent (ValueError); send the same order again"},
        {"order_id": "GONE-1", "reason": "UNKNOWN_SYMBOL", "code": int(Reason.UNKNOWN_SYMBOL),
         "detail": "GONE is not listed"},
        {"order_id": "WRT-1", **not_delivered, "retry_after_ms": RETRY_AFTER_MS,
         "detail": "not sent (ResponseError); cancel it again"},
    ]  # fmt: skip
    logged = [rec.getMessage() for rec in caplog.records if rec.name == log.name]
    assert {"order BADR-1 on BADR not sent", "order EPO-1 on EPO not sent"} <= set(logged), logged
    ack = acks["AAPL"]
    cancel = read_record(broker.bootstrap, ack.topic, ack.partition, ack.offset + 1)
    assert cancel.command is not None and cancel.command[:3] == (Action.CANCEL, "AAPL-1", "al")
    assert (cancel.symbol, cancel.client_ts_ns, cancel.received_ts_ns) == ("AAPL", now, now)
    # a CANCEL confirms no claim: the order's record still names its own record's place
    again = e.router.submit("al", order("AAPL-1", symbol="AAPL"))
    assert again.duplicate and (again.partition, again.offset) == (ack.partition, ack.offset)
    one = e.router.cancel_all("al", "MSFT")
    assert one == {
        "type": "cancel_all",
        "user_id": "al",
        "cancelled": ["MSFT-1"],
        "pending": [],
        "failed": [],
        "symbol": "MSFT",
    }, one


def test_a_request_alone_is_keyed_by_its_symbol_and_waited_for_by_the_pump(
    r: redis.Redis, broker: Any
) -> None:
    # submit's own path (_send) keys the record by its symbol as a batch does (RaisesFor
    # refuses by key), and its report is served by the router's pump on a daemon thread
    # (one thread polls for every waiting request; it never holds the process's exit)
    e = edge_refusing_msft(r, broker.bootstrap)
    with pytest.raises(RefusedError) as refused:
        e.router.submit("al", order("m-1", symbol="MSFT"))
    assert refused_to_retry(refused.value, "m-1")
    assert e.router.pump._thread is None  # nothing handed to the producer, nothing waited
    assert not e.router.submit("al", order("a-1")).duplicate
    pump = e.router.pump._thread
    assert pump is not None and pump.name == "delivery" and pump.daemon, pump


class _At0:
    """A delivered record's report with its offset said to be 0."""

    def __init__(self, msg: Any) -> None:
        self.msg = msg

    def partition(self) -> int:
        return int(self.msg.partition())

    def offset(self) -> int:
        return 0


class StaleAt0(CountingProducer):
    """A real producer whose acknowledgements all say offset 0: what Tansu 0.6 on s3://
    storage, restarted with a batch on its way, answered a retry (docs/FAULTS.md)."""

    def produce(self, *args: Any, on_delivery: Any, **kwargs: Any) -> None:
        def report(err: Any, msg: Any) -> None:
            on_delivery(err, msg if err is not None else _At0(msg))

        super().produce(*args, on_delivery=report, **kwargs)


def test_cancels_acknowledged_at_an_offset_already_passed_are_in_doubt_not_cancelled(
    r: redis.Redis, broker: Any
) -> None:
    # each flight of cancel_all carries its partition's mark as it was when it was made
    # (_flight): an answer at or below it is no answer (StaleOffsetError), for the second
    # cancel of the batch too (made before the first one's stale answer lowered the mark)
    e = edge(r, broker.bootstrap)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    for order_id in ("a-1", "a-2"):
        assert e.router.submit("al", order(order_id)).offset >= 0
    e.router.producer = StaleAt0(broker.bootstrap)
    done = e.router.cancel_all("al")
    assert done["cancelled"] == [] and len(done["failed"]) == 2, done
    for failed in done["failed"]:
        assert failed["reason"] == "NOT_DELIVERED" and failed["retry_after_ms"] > 0, failed
        assert failed["detail"].startswith("acknowledged at offset 0 of orders[0], which was")


class _Reports:
    """A stand-in for a producer's poll(): each report is served once its time has come."""

    def __init__(self) -> None:
        self.due: list[tuple[float, Delivery]] = []

    def poll(self, timeout: float) -> int:
        time.sleep(min(timeout, 0.005))
        now = time.monotonic()
        for item in [d for d in self.due if d[0] <= now]:
            self.due.remove(item)
            item[1](None, confluent_kafka.Message(topic="orders", partition=0, offset=7))
        return 0


def test_the_pump_serves_every_waiter_until_its_deadline() -> None:
    # DeliveryPump.wait: a report that comes before the deadline is waited for, however
    # close the deadline (mutmut's `remaining <= 1`: a wait of under 1 s returned at once),
    # and the pump polls while anyone waits (`_waiting = 1` for `+= 1`: of two waiters, the
    # first one's end left none counted, the thread stopped after idle_s and the second
    # report was never served)
    reports = _Reports()
    pump = DeliveryPump(lambda: reports, poll_s=0.005, idle_s=0.05)
    began = time.monotonic()
    soon = Delivery()
    reports.due = [(began + 0.1, soon)]
    pump.wait(soon, began + 0.5)
    assert soon.done, "a report due 0.1 s before the deadline was not waited for"
    began = time.monotonic()
    first, second = Delivery(), Delivery()
    reports.due = [(began + 0.1, first), (began + 0.6, second)]
    waiters = [
        threading.Thread(target=pump.wait, args=(delivery, began + 3.0))
        for delivery in (first, second)
    ]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.join(5)
    assert first.done and second.done, "a waiter was left unserved"
    assert time.monotonic() - began < 2.0
