"""The cases of issue 13, each against the real local edge (gateway + order_router Lambda
handler + stream handler, real Redis and Tansu, real HTTP and WebSocket clients): every
input answers a 4xx (or a 2xx), never a 5xx or a dropped connection; what the book would
refuse never reaches Kafka; a producer that hit a fatal error is replaced."""

import asyncio
import json
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from websockets.asyncio.client import connect

from hotshard import kafka, names, route
from hotshard.codec import decode_order
from hotshard.edge import api as edge_api
from hotshard.edge.router import RETRY_AFTER_MS, PossiblyWrittenError, produce_confirmed
from hotshard.edge.settings import EdgeSettings
from hotshard.local.edge import LocalEdge, local_edge
from hotshard.local.services.broker import tansu
from hotshard.names import MANAGEMENT_SECRET_HEADER
from hotshard.wire import encode_order
from lambdas.order_router import handler as order_router
from tests.hotshard.edge.kit import (
    SECRET,
    ClosedAfterTaking,
    CountingProducer,
    LogLines,
    token,
    ws_message,
)

pytestmark = pytest.mark.integration

SYMBOLS = {"AAPL": {"tick": 5, "lot": 10, "price_min": 100, "price_max": 100_000}}


@pytest.fixture
def limits(request: Any, tmp_path: Path) -> Path | None:
    """The engines' symbols file, as is, for the tests marked `symbols`."""
    if request.node.get_closest_marker("symbols") is None:
        return None
    path = tmp_path / "symbols.json"
    path.write_text(json.dumps(SYMBOLS))
    return path


@pytest.fixture
def edge(r: Any, redis_server: Any, broker: Any, limits: Path | None) -> Iterator[LocalEdge]:
    settings = EdgeSettings(
        kafka_brokers=broker.bootstrap,
        redis_port=redis_server.port,
        jwt_secret=SECRET,
        delivery_timeout_ms=5000,
        limits_path=limits,
    )
    route.list_symbol_at(r, "AAPL", 0, "e1")
    route.list_symbol_at(r, "MSFT", 1, "e1")
    with local_edge(settings) as running:
        yield running


@pytest.fixture
def produced(edge: LocalEdge, broker: Any) -> CountingProducer:
    """The router's producer, counted (what reached Kafka)."""
    router = order_router.api().router
    counting = CountingProducer(broker.bootstrap)
    router.producer.close()
    router.producer = counting
    return counting


def http(
    edge: LocalEdge,
    method: str,
    path: str,
    body: Any = None,
    *,
    auth: str | None = None,
    user: str = "alice",
) -> tuple[int, dict[str, str], Any]:
    data = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    req = urllib.request.Request(edge.gateway.http_url + path, data=data, method=method)
    req.add_header("Authorization", auth or f"Bearer {token(user)}")
    try:
        with urllib.request.urlopen(req, timeout=10) as reply:
            raw = reply.read()
            return reply.status, dict(reply.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, dict(err.headers), json.loads(raw) if raw else None


def raw_http(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are; return all the server answered before closing (or until
    it stops answering)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


def order(order_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "symbol": "MSFT",
        "order_id": order_id,
        "side": "BUY",
        "price": 10,
        "quantity": 1,
        **changes,
    }


async def ws_exchange(edge: LocalEdge, frames: list[str], user: str = "alice") -> list[Any]:
    """Send each text frame and read its reply on one connection (which must stay open)."""
    url = f"{edge.gateway.ws_url}?token={token(user)}"
    replies = []
    async with connect(url, open_timeout=5, max_size=None) as ws:
        for text in frames:
            await ws.send(text)
            async with asyncio.timeout(10):
                replies.append(json.loads(await ws.recv()))
    return replies


# ---------------------------------------------------------------- concurrent requests


def test_concurrent_http_requests_each_get_their_own_answer(edge):
    # The HTTP resolver kept the request in progress on itself (Powertools'
    # app.current_event): side by side, as the local gateway's threads serve them, a request
    # could be answered from another's body under its own user. Found by
    # tests/integration/test_redis_restart.py: an order acknowledged under another id was
    # never recorded (the 'AOF restart loses an order record' of issue 13). Refused orders
    # (quantity 0: no broker round trip) make many requests in little time.
    def place(k: int) -> list[tuple[str, str]]:
        out = []
        for n in range(150):
            oid = f"c{k}-{n}"
            status, _, body = http(edge, "POST", "/orders", order(oid, quantity=0), user=f"c{k}")
            out.append((f"400 {oid}", f"{status} {body.get('order_id')}"))
        return out

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave often: the race shows in every run
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = [a for batch in pool.map(place, range(8)) for a in batch]
    finally:
        sys.setswitchinterval(switch)
    wrong = [(sent, got) for sent, got in answers if sent != got]
    assert not wrong, f"{len(wrong)} of {len(answers)}: {wrong[:5]}"


def test_concurrent_http_requests_each_log_their_own_request_id(edge, monkeypatch):
    # the gateway answers each HTTP request on a thread of its own, all through
    # order_router's one Powertools Logger; before, the request id (inject_lambda_context)
    # and correlation id (set_correlation_id) were the process's keys, so a line logged
    # while answering one request named whichever request had started last
    api = order_router.api()
    invocations: dict[str, tuple[str, str]] = {}  # order id -> (requestId, aws_request_id)
    invoke = edge.gateway.router

    def recorded(event: dict[str, Any], context: Any) -> dict[str, Any]:
        ids = (event["requestContext"]["requestId"], context.aws_request_id)
        invocations[event["pathParameters"]["id"]] = ids
        answer: dict[str, Any] = invoke(event, context)
        return answer

    status = api.router.status

    def logged_status(user_id: str, order_id: str) -> dict[str, Any]:
        time.sleep(0.002)  # what any line logged while answering meets: others start
        api.log.warning("status read", extra={"order_id": order_id})
        return status(user_id, order_id)

    monkeypatch.setattr(edge.gateway, "router", recorded)
    monkeypatch.setattr(api.router, "status", logged_status)
    order_ids = [f"log-{i}" for i in range(40)]
    with LogLines(order_router.logger) as lines, ThreadPoolExecutor(8) as clients:
        statuses = list(clients.map(lambda o: http(edge, "GET", f"/orders/{o}")[0], order_ids))
    assert statuses == [404] * len(order_ids)
    logged = {
        line["order_id"]: (line.get("correlation_id"), line["function_request_id"])
        for line in lines.lines
        if line["message"] == "status read"
    }
    assert logged == invocations


def test_concurrent_first_requests_build_one_edge_api(edge, monkeypatch):
    # Before: functools.cache let every first request that came at once build its own
    # EdgeApi; the extra ones' producers were never closed (and tune_gc froze them out of
    # the collector's view: alive for good, "Connection refused" once the broker stopped)
    built: list[Any] = []
    real = edge_api.build

    def slow_build(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.3)  # a cold start under load: the other requests come meanwhile
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr("lambdas.order_router.handler.build", slow_build)
    order_router.api().close()  # the one local_edge built at its start: a cold start again
    order_router.api.cache_clear()
    try:
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda k: http(edge, "GET", "/orders")[0], range(6)))
        assert statuses == [200] * 6
        assert len(built) == 1, f"{len(built)} EdgeApis built"
    finally:
        for extra in built[1:]:  # (the old code's: closed here, not leaked into the run)
            extra.close()


# ---------------------------------------------------------------- a fatal producer


class FatalAfter:
    """A real producer that turns fatal after `ok` records, as librdkafka's idempotent
    producer does when a restarted broker answers OUT_OF_ORDER_SEQUENCE_NUMBER: that
    record's delivery fails with the broker's code, every later produce() raises _FATAL.
    As librdkafka reports them, neither error has its fatal() flag set."""

    def __init__(self, real: CountingProducer, ok: int) -> None:
        self.real = real
        self.ok = ok
        self.produced = 0
        self.delivery = KafkaError(
            KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
            "Broker: Broker received an out of order sequence number",
        )
        self.fatal = KafkaError(KafkaError._FATAL, "Unable to produce message: Local: Fatal error")

    def produce(self, *args: Any, on_delivery: Any, **kwargs: Any) -> None:
        if self.produced > self.ok:
            raise KafkaException(self.fatal)
        self.produced += 1
        if self.produced > self.ok:
            on_delivery(self.delivery, None)
            return
        self.real.produce(*args, on_delivery=on_delivery, **kwargs)

    def poll(self, timeout: float) -> int:
        return self.real.poll(timeout)

    def flush(self, timeout: float) -> int:
        return self.real.flush(timeout)

    def purge(self) -> None:
        self.real.purge()

    def close(self) -> None:
        self.real.close()


def test_a_producer_with_a_fatal_error_is_replaced_and_the_order_answered_503(edge, broker):
    router = order_router.api().router
    router.producer.close()
    router.producer = FatalAfter(CountingProducer(broker.bootstrap), ok=1)
    assert http(edge, "POST", "/orders", order("f-1"))[0] == 202

    status, headers, body = http(edge, "POST", "/orders", order("f-2"))
    assert status == 503, body
    assert body["reason"] == "NOT_DELIVERED" and body["retry_after_ms"] > 0
    assert int(headers["Retry-After"]) >= 1
    assert router.producer_replacements == 1

    # the same order again, as the hint says: acknowledged once, by the new producer
    status, _, ack = http(edge, "POST", "/orders", order("f-2"))
    assert status == 202 and ack["duplicate"] is False
    again = http(edge, "POST", "/orders", order("f-2"))[2]
    assert again["duplicate"] is True and again["offset"] == ack["offset"]
    # and the WebSocket path keeps working too
    (reply,) = asyncio.run(ws_exchange(edge, [json.dumps({"action": "order", **order("f-3")})]))
    assert reply["type"] == "ack"


def test_a_closed_producer_is_replaced_and_answered_503_not_500(edge):
    # before: produce() on a closed producer raises RuntimeError("Producer has been
    # closed"), which no handler expected: 500 INTERNAL, and the producer stayed closed
    router = order_router.api().router
    assert http(edge, "POST", "/orders", order("c-1"))[0] == 202
    router.producer.close()
    status, headers, body = http(edge, "POST", "/orders", order("c-2"))
    assert status == 503, body
    assert body["reason"] == "NOT_DELIVERED" and body["retry_after_ms"] > 0
    assert int(headers["Retry-After"]) >= 1 and router.producer_replacements == 1
    status, _, ack = http(edge, "POST", "/orders", order("c-2"))
    assert status == 202 and ack["duplicate"] is False
    # cancel-all produces through the same producer: a closed one fails each cancel with a
    # retry hint (not a 500) and is replaced; the next cancel-all cancels them
    router.producer.close()
    status, _, body = http(edge, "DELETE", "/orders")
    assert status == 202, body
    failed = [f["order_id"] for f in body["failed"] if f["reason"] == "NOT_DELIVERED"]
    assert len(failed) == 1 and router.producer_replacements == 2, body
    status, _, body = http(edge, "DELETE", "/orders")
    assert status == 202 and failed[0] in body["cancelled"], body


class NoOffset:
    """What confluent-kafka hands the delivery callback for a record that a restarted
    durable broker answered DUPLICATE_SEQUENCE_NUMBER (it had written it before): no
    error, and Message.offset() None (librdkafka's offset -1001). The rest is the real
    message."""

    def __init__(self, msg: Any) -> None:
        self.msg = msg

    def offset(self) -> None:
        return None

    def partition(self) -> int:
        return int(self.msg.partition())


class DuplicateAcks(CountingProducer):
    """A real producer whose acknowledgements carry no offset (NoOffset): each record is
    written, its delivery reported as librdkafka reports a retried duplicate."""

    def produce(self, *args: Any, on_delivery: Any, **kwargs: Any) -> None:
        def report(err: Any, msg: Any) -> None:
            on_delivery(err, msg if err is not None else NoOffset(msg))

        super().produce(*args, on_delivery=report, **kwargs)


def test_an_ack_without_an_offset_is_answered_503_in_doubt_not_500(edge, broker):
    # the intermittent 500 INTERNAL of the durable broker restart: the delivery report of a
    # retried duplicate has offset() None, `None >= 0` raised TypeError in Delivery.done
    # (and the claim was dropped as if nothing was written: a resend wrote it again)
    router = order_router.api().router
    assert http(edge, "POST", "/orders", order("n-1"))[0] == 202
    router.producer.close()
    router.producer = duplicates = DuplicateAcks(broker.bootstrap)
    status, headers, body = http(edge, "POST", "/orders", order("n-2"))
    assert status == 503, body
    assert body["reason"] == "NOT_DELIVERED" and body["retry_after_ms"] > 0
    assert int(headers["Retry-After"]) >= 1
    assert duplicates.produced == 1
    # written, so its claim is kept: the resend the hint asks for is not written again
    status, _, body = http(edge, "POST", "/orders", order("n-2"))
    assert (status, body["reason"]) == (409, "ORDER_IN_FLIGHT"), body
    assert duplicates.produced == 1 and router.producer_replacements == 0
    (reply,) = asyncio.run(ws_exchange(edge, [json.dumps({"action": "order", **order("n-3")})]))
    assert reply["reason"] == "NOT_DELIVERED", reply  # WebSocket: 503, not 500 INTERNAL
    # cancel-all: each such cancel is named as not delivered, not a 500
    status, _, body = http(edge, "DELETE", "/orders")
    assert status == 202, body
    assert [f["reason"] for f in body["failed"]] == ["NOT_DELIVERED"], body


class StaleOffset(NoOffset):
    """What confluent-kafka hands the delivery callback for a record that Tansu 0.6 on
    s3:// storage, restarted while the record was on its way, acknowledged at offset 0 of
    a partition that had records before (the durable broker fault case: offset 0 was
    another order's record, and this one was nowhere in the log)."""

    def offset(self) -> int:  # type: ignore[override]
        return 0


class StaleAcks(CountingProducer):
    """A real producer whose acknowledgements all say offset 0 (StaleOffset)."""

    def produce(self, *args: Any, on_delivery: Any, **kwargs: Any) -> None:
        def report(err: Any, msg: Any) -> None:
            on_delivery(err, msg if err is not None else StaleOffset(msg))

        super().produce(*args, on_delivery=report, **kwargs)


def test_an_ack_at_an_offset_already_passed_is_in_doubt_not_acknowledged(edge, broker):
    # the durable broker restart's lost order: acknowledged (202) at an offset the partition
    # had passed before it was sent, never in the log; the client, told it was accepted,
    # never sent it again. A record sent after an acknowledgement at offset N lands beyond N
    router = order_router.api().router
    status, _, first = http(edge, "POST", "/orders", order("s-1"))
    assert status == 202 and first["offset"] >= 0, first
    router.producer.close()
    router.producer = stale = StaleAcks(broker.bootstrap)
    status, headers, body = http(edge, "POST", "/orders", order("s-2"))
    assert status == 503, body  # the old code: 202, acknowledged at offset 0
    assert body["reason"] == "NOT_DELIVERED" and body["retry_after_ms"] > 0
    assert int(headers["Retry-After"]) >= 1
    # in doubt, so its claim is kept: the resend is not written until the claim lapses,
    # which is after the retry hint (RETRY_AFTER_MS), not the whole in-flight time
    status, _, body = http(edge, "POST", "/orders", order("s-2"))
    assert (status, body["reason"]) == (409, "ORDER_IN_FLIGHT"), body
    assert stale.produced == 1 and router.producer_replacements == 0
    (reply,) = asyncio.run(ws_exchange(edge, [json.dumps({"action": "order", **order("s-3")})]))
    assert reply["reason"] == "NOT_DELIVERED", reply
    # a log replaced (offsets from 0 again) is not refused for good: a true answer above
    # the stale one's offset is acknowledged
    stale.close()
    router.producer = real = CountingProducer(broker.bootstrap)
    status, _, body = http(edge, "POST", "/orders", order("s-4"))
    assert status == 202 and body["offset"] > 0, body
    time.sleep(RETRY_AFTER_MS / 1000 + 0.3)
    status, _, body = http(edge, "POST", "/orders", order("s-2"))  # the resend, written
    assert status == 202 and not body.get("duplicate"), body
    assert real.produced == 2


class PurgedInFlight(CountingProducer):
    """A real producer whose records are written and reported purged in flight
    (_PURGE_INFLIGHT), as a producer closed by the router (purge, then close: a replaced
    one's reaper) reports a record that was on its way while its request still waited:
    the broker may have it (here it does)."""

    def produce(self, *args: Any, on_delivery: Any, **kwargs: Any) -> None:
        def report(err: Any, msg: Any) -> None:
            purged = KafkaError(KafkaError._PURGE_INFLIGHT, "Local: Purged in flight")
            on_delivery(err if err is not None else purged, msg)

        super().produce(*args, on_delivery=report, **kwargs)


def test_a_record_purged_in_flight_is_in_doubt_and_never_written_twice(edge, broker):
    # before: any delivery error was "not written": the claim was dropped, and the resend
    # the 503 asks for was written a second time
    router = order_router.api().router
    router.producer.close()
    router.producer = purged = PurgedInFlight(broker.bootstrap)
    status, headers, body = http(edge, "POST", "/orders", order("p-1"))
    assert status == 503, body
    assert body["reason"] == "NOT_DELIVERED" and body["retry_after_ms"] > 0
    assert int(headers["Retry-After"]) >= 1
    status, _, body = http(edge, "POST", "/orders", order("p-1"))
    assert (status, body["reason"]) == (409, "ORDER_IN_FLIGHT"), (body, purged.produced)
    assert purged.produced == 1 and router.producer_replacements == 1  # purged: unusable


def test_a_producer_closed_while_its_record_is_in_flight_leaves_it_in_doubt(broker):
    # produce_confirmed without a pump (markers.write_end_marker): before, the closed
    # producer's poll() made it ProducerFailedError, "not written", though it was
    closed = ClosedAfterTaking(broker.bootstrap)
    command = decode_order({**order("w-1"), "user_id": "alice"}).command
    value = encode_order("MSFT", command, route_epoch=1, client_ts_ns=1, received_ts_ns=1)
    with pytest.raises(TimeoutError) as raised:
        produce_confirmed(closed, names.TOPIC_ORDERS, 1, b"MSFT", value, 5.0)
    assert isinstance(raised.value, PossiblyWrittenError) and raised.value.fatal
    assert len(closed.offsets) == 1  # it was written


class FullThenClosed(CountingProducer):
    """A real producer, closed, behind a full queue: produce() raises BufferError (as
    librdkafka does when queue.buffering.max.messages is reached), so the router polls
    to make room, and poll() on the closed producer raises RuntimeError, as when another
    request replaced and closed it meanwhile."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap)
        self.real.close()

    def produce(self, *args: Any, **kwargs: Any) -> None:
        raise BufferError("Local: Queue full")

    def close(self) -> None:
        pass  # closed already


def test_a_producer_closed_while_its_queue_is_full_is_answered_503_not_500(edge, broker):
    # the unguarded poll() inside `except BufferError` of produce_confirmed: RuntimeError
    # ("Producer has been closed") reached the handler as a 500
    router = order_router.api().router
    router.producer.close()
    router.producer = FullThenClosed(broker.bootstrap)
    status, _, body = http(edge, "POST", "/orders", order("q-1"))
    assert status == 503, body
    assert body["reason"] == "NOT_DELIVERED" and body["retry_after_ms"] > 0
    assert router.producer_replacements == 1
    status, _, ack = http(edge, "POST", "/orders", order("q-1"))  # not written: sent again
    assert status == 202 and ack["duplicate"] is False, ack


def test_a_producer_stalled_by_a_broker_that_forgot_it_is_replaced(r, redis_server):
    # Tansu restarted on memory storage answers the idempotent producer it knew
    # UNKNOWN_PRODUCER_ID forever; librdkafka bumps its epoch and retries until
    # message.timeout.ms (300 s), never fatal. Before: 503 NOT_DELIVERED for 5 minutes.
    with tansu() as fresh:
        kafka.create_topics(fresh.admin(), 4)
        settings = EdgeSettings(
            kafka_brokers=fresh.bootstrap,
            redis_port=redis_server.port,
            jwt_secret=SECRET,
            delivery_timeout_ms=1000,
        )
        route.list_symbol_at(r, "MSFT", 1, "e1")
        with local_edge(settings) as running:
            assert until_acked(running, "s-1", 15)[-1] == 202  # the first waits for its PID
            before = order_router.api().router.producer_replacements
            fresh.restart()
            kafka.create_topics(fresh.admin(), 4)
            answers = until_acked(running, "s-2", 20)
            assert answers[-1] == 202, answers
            assert order_router.api().router.producer_replacements > before


def until_acked(edge: LocalEdge, order_id: str, within_s: float) -> list[Any]:
    """POST the order until acknowledged, as a client honouring the retry hint: the answers."""
    answers: list[Any] = []
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        status, _, body = http(edge, "POST", "/orders", order(order_id))
        answers.append(status if status == 202 else body.get("reason"))
        if status == 202:
            break
        assert (status, body["reason"]) in ((503, "NOT_DELIVERED"), (409, "ORDER_IN_FLIGHT"))
        time.sleep(0.2)
    return answers


# ---------------------------------------------------------------- input that crashed


def test_a_client_timestamp_beyond_int64_is_refused_and_the_order_can_be_resent(edge, produced):
    status, _, body = http(edge, "POST", "/orders", order("t-1", client_ts_ns=2**63))
    assert status == 400 and body["reason"] == "VALUE_OUT_OF_RANGE"
    assert http(edge, "POST", "/orders", order("t-1", client_ts_ns="soon"))[0] == 400
    status, _, body = http(edge, "POST", "/orders", order("t-1", client_ts_ns=2**63 - 1))
    assert status == 202, body  # not 409 ORDER_IN_FLIGHT: nothing was left claimed
    assert produced.produced == 1


def test_deeply_nested_json_is_malformed_and_the_connection_stays_open(edge, produced):
    deep = "[" * 30_000 + "]" * 30_000  # under the 128 KiB frame limit
    nested = '{"action": "order", "request_id": ' + deep + "}"
    status, _, body = http(edge, "POST", "/orders", deep.encode())
    assert status == 400 and body["reason"] == "MALFORMED"
    replies = asyncio.run(
        ws_exchange(edge, [deep, nested, json.dumps({"action": "order", **order("n-1")})])
    )
    # no route can be selected from either, as API Gateway answers: and the socket stays
    assert replies[0]["message"] == replies[1]["message"] == "Forbidden"
    assert replies[2]["type"] == "ack"
    # the route itself, given such a frame, refuses it the same way
    status, reply = ws_message(order_router.api(), "conn-1", nested)
    assert status == 400 and reply["reason"] == "MALFORMED"
    assert produced.produced == 1


@pytest.mark.parametrize("length", [b"-1", b"abc", b"1e3", b""])
def test_a_bad_content_length_is_answered_400(edge, length):
    request = (
        b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + length + b"\r\n\r\n{}"
    )
    answer = raw_http(edge.gateway.http_port, request)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b'"code": 400' in answer


def test_every_method_and_unknown_path_answers_a_documented_4xx(edge):
    status, _, body = http(edge, "GET", "/nowhere")
    assert status == 404 and body["code"] == 404 and body["type"] == "error"
    for method in ("TRACE", "OPTIONS", "PUT", "PATCH", "BREW"):
        status, _, body = http(edge, method, "/orders")
        assert status == 405, method
        assert body["code"] == 405
    answer = raw_http(edge.gateway.http_port, b"GET / HTTP/9.9\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")


# ---------------------------------------------------------------- ids


@pytest.mark.parametrize("bad", ["a/b", "a?b", "a#b", "a b", "a%2Fb", "\U0001f680", "e\u0301"])
def test_ids_outside_the_safe_set_are_refused(edge, produced, bad):
    status, _, body = http(edge, "POST", "/orders", order(bad))
    assert status == 400 and body["reason"] == "BAD_ID"
    assert produced.produced == 0


def test_every_acknowledged_id_can_be_fetched_and_cancelled(edge, produced):
    for order_id in ("a.b_c:d@e~f-g", "Z9", "-", "x" * 64):
        assert http(edge, "POST", "/orders", order(order_id))[0] == 202
        path = "/orders/" + urllib.parse.quote(order_id, safe="")
        status, _, body = http(edge, "GET", path)
        assert status == 200 and body["order_id"] == order_id
        status, _, body = http(edge, "DELETE", path)
        assert status == 202 and body["action"] == "CANCEL", body
        # the id as it is, unencoded, reaches the same order
        assert http(edge, "GET", "/orders/" + order_id)[0] == 200


# ---------------------------------------------------------------- the book's rules at the router


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"symbol": "MSFT", "quantity": 2**31}, "VALUE_OUT_OF_RANGE"),
        ({"symbol": "MSFT", "quantity": 2**31, "type": "MARKET"}, "VALUE_OUT_OF_RANGE"),
        ({"symbol": "MSFT", "quantity": 2**62 - 1}, "VALUE_OUT_OF_RANGE"),
        ({"symbol": "AAPL", "price": 1000, "quantity": 15}, "QUANTITY_OFF_LOT"),
        ({"symbol": "AAPL", "price": 1002, "quantity": 10}, "PRICE_OFF_TICK"),
        ({"symbol": "AAPL", "price": 95, "quantity": 10}, "PRICE_OUTSIDE_BAND"),
        ({"symbol": "AAPL", "price": 100_005, "quantity": 10}, "PRICE_OUTSIDE_BAND"),
        ({"symbol": "AAPL", "type": "MARKET", "quantity": 2**31}, "VALUE_OUT_OF_RANGE"),
    ],
)
@pytest.mark.symbols
def test_the_router_refuses_what_the_instrument_refuses(edge, produced, change, reason):
    status, _, body = http(edge, "POST", "/orders", order("q-1", **change))
    assert status in (400, 422) and body["reason"] == reason, body
    assert produced.produced == 0


@pytest.mark.symbols
def test_the_band_is_inclusive_and_a_replace_beyond_the_maximum_is_refused(edge, produced):
    for order_id, price in (("b-1", 100), ("b-2", 100_000)):
        status, _, body = http(
            edge, "POST", "/orders", order(order_id, symbol="AAPL", price=price, quantity=10)
        )
        assert status == 202, body
    replace = {"action": "REPLACE", "symbol": "AAPL", "order_id": "b-1", "price": 100}
    status, _, body = http(edge, "POST", "/orders", {**replace, "quantity": 2**40})
    assert status == 400 and body["reason"] == "VALUE_OUT_OF_RANGE"
    status, _, body = http(edge, "POST", "/orders", {**replace, "quantity": 20})
    assert status == 202, body
    assert produced.produced == 3


# ---------------------------------------------------------------- who may do what


def test_another_users_order_cannot_be_cancelled_or_replaced(edge, produced):
    assert http(edge, "POST", "/orders", order("mine"), user="alice")[0] == 202
    for path in ("/orders/mine", "/orders/mine?symbol=MSFT"):
        status, _, body = http(edge, "DELETE", path, user="bob")
        assert status == 404 and body["reason"] == "UNKNOWN_ORDER"
    replace = {"action": "REPLACE", "symbol": "MSFT", "order_id": "mine", "price": 9, "quantity": 1}
    assert http(edge, "POST", "/orders", replace, user="bob")[0] == 404
    (reply,) = asyncio.run(
        ws_exchange(
            edge, [json.dumps({"action": "cancel", "symbol": "MSFT", "order_id": "mine"})], "bob"
        )
    )
    assert reply["reason"] == "UNKNOWN_ORDER"
    # the owner may, on the order's own symbol only
    assert http(edge, "DELETE", "/orders/mine?symbol=AAPL")[0] == 404
    assert http(edge, "DELETE", "/orders/mine?symbol=MSFT")[0] == 202
    assert produced.produced == 2


def test_a_token_without_the_user_claim_is_refused_everywhere(edge):
    import time  # noqa: PLC0415

    import jwt  # noqa: PLC0415

    no_sub = jwt.encode({"exp": int(time.time()) + 60, "name": "x"}, SECRET, "HS256")
    for method, path in (("GET", "/depth/AAPL"), ("GET", "/orders/x"), ("DELETE", "/orders/x")):
        status, _, _ = http(edge, method, path, auth=f"Bearer {no_sub}")
        assert status == 401, path
    status, _, _ = http(edge, "POST", "/orders", order("s-1"), auth=f"Bearer {no_sub}")
    assert status == 401

    async def connect_without_sub() -> int:
        from websockets.exceptions import InvalidStatus  # noqa: PLC0415

        try:
            async with connect(f"{edge.gateway.ws_url}?token={no_sub}", open_timeout=5):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(connect_without_sub()) == 401


def test_the_management_api_is_on_its_own_local_port_behind_the_shared_secret(edge):
    gateway = edge.gateway
    assert gateway.management_port not in (gateway.http_port, gateway.ws_port)
    assert gateway.management_url.startswith("http://127.0.0.1:")
    # not on the public HTTP port at all
    status, _, body = http(edge, "POST", "/@connections/abc", b"hi")
    assert status == 404 and body["code"] == 404
    post = b"POST /@connections/abc HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
    no_secret = raw_http(gateway.management_port, post + b"\r\nhi")
    assert no_secret.startswith(b"HTTP/1.1 403")
    wrong = raw_http(
        gateway.management_port, post + MANAGEMENT_SECRET_HEADER.encode() + b": no\r\n\r\nhi"
    )
    assert wrong.startswith(b"HTTP/1.1 403")
    right = post + f"{MANAGEMENT_SECRET_HEADER}: {gateway.management_secret}\r\n\r\nhi".encode()
    assert raw_http(gateway.management_port, right).startswith(b"HTTP/1.1 410")  # no such conn


def test_the_edge_closes_its_producer_when_it_stops(r, redis_server, broker):
    settings = EdgeSettings(
        kafka_brokers=broker.bootstrap, redis_port=redis_server.port, jwt_secret=SECRET
    )
    with local_edge(settings):
        producer = order_router.api().router.producer
        assert producer.flush(0) == 0
    with pytest.raises(RuntimeError):
        producer.flush(0)  # closed


def test_a_body_that_is_not_utf8_is_malformed(edge, produced):
    # found by tests/fuzz: API Gateway passes such a body base64-encoded; decoding it
    # raised UnicodeDecodeError (HTTP 502)
    status, _, body = http(edge, "POST", "/orders", b"\x80\xff")
    assert status == 400 and body["reason"] == "MALFORMED"
    assert produced.produced == 0
