"""order_router against real Redis and a real Tansu broker: the Lambda handler with
captured API Gateway events, then the order path's rules through EdgeApi."""

import json
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotshard import names, route
from hotshard.domain import Action, Side
from hotshard.edge import runtime
from hotshard.edge.limits import PreTradeLimits
from hotshard.edge.router import RefusedError
from hotshard.reasons import Reason
from hotshard.registry import EngineRecord, register_engine
from hotshard.route import MIGRATING
from lambdas.order_router import handler as module
from tests.hotshard.edge.kit import SECRET, edge, event, read_record, token, ws_message

pytestmark = pytest.mark.integration


@dataclass
class FakeContext:
    function_name: str = "order_router"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:order_router"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def handler(monkeypatch, r, broker):
    port = r.connection_pool.connection_kwargs["port"]
    for key, value in {
        names.ENV_KAFKA_BROKERS: broker.bootstrap,
        names.ENV_REDIS_HOST: "127.0.0.1",
        names.ENV_REDIS_PORT: str(port),
        names.ENV_JWT_SECRET: SECRET,
        "POWERTOOLS_METRICS_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    module.api.cache_clear()
    yield module.handler
    if module.api.built():
        module.api().close()
    module.api.cache_clear()


def ws(handler: Any, name: str, **changes: Any) -> Any:
    evt = event(name)
    for key, value in changes.items():
        evt[key] = value
    return handler(evt, FakeContext())


def test_lambda_connects_routes_an_order_and_disconnects(handler, r, broker):
    route.list_symbol_at(r, "AAPL", 2, "e1")
    connect = event("apiGatewayWebSocketConnect")
    connect["headers"]["Authorization"] = f"Bearer {token('alice')}"
    assert handler(connect, FakeContext())["statusCode"] == 200

    reply = ws(handler, "apiGatewayWebSocketOrder")
    body = json.loads(reply["body"])
    assert reply["statusCode"] == 200
    assert body["type"] == "ack" and body["status"] == "ACCEPTED" and body["request_id"] == "r-1"
    assert (body["topic"], body["partition"], body["route_epoch"]) == ("orders", 2, 1)
    record = read_record(broker.bootstrap, "orders", 2, body["offset"])
    assert record.symbol == "AAPL" and record.route_epoch == 1
    assert record.command == (
        int(Action.ADD),
        "o-17",
        "alice",
        int(Side.BUY),
        1,
        1,
        False,
        18950,
        10,
        0,
        0,
        False,
    )
    assert record.client_ts_ns > 0

    assert ws(handler, "apiGatewayWebSocketDisconnect")["statusCode"] == 200
    after = json.loads(ws(handler, "apiGatewayWebSocketOrder")["body"])
    assert after["reason"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("disabled", ["true", "false"])
def test_metrics_are_added_only_where_powertools_publishes_them(handler, r, monkeypatch, disabled):
    # disabled, Powertools keeps (and formats, on every add) each value, never clearing them
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", disabled)
    added: list[str] = []
    monkeypatch.setattr(module.metrics, "add_metric", lambda **kw: added.append(kw["name"]))
    route.list_symbol_at(r, "AAPL", 2, "e1")
    connect = event("apiGatewayWebSocketConnect")
    connect["headers"]["Authorization"] = f"Bearer {token('alice')}"
    assert handler(connect, FakeContext())["statusCode"] == 200
    assert ws(handler, "apiGatewayWebSocketOrder")["statusCode"] == 200
    assert added == ([] if disabled == "true" else ["Accepted"])


def test_a_request_with_metrics_disabled_warns_nothing(handler, r, monkeypatch):
    # with nothing added, Powertools' log_metrics warned "No application metrics to publish"
    # at the end of every request
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    route.list_symbol_at(r, "AAPL", 2, "e1")
    connect = event("apiGatewayWebSocketConnect")
    connect["headers"]["Authorization"] = f"Bearer {token('alice')}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime.quiet_empty_flush()  # the handler module did at import: after "always"
        assert handler(connect, FakeContext())["statusCode"] == 200
        assert ws(handler, "apiGatewayWebSocketOrder")["statusCode"] == 200
    assert [str(w.message) for w in caught] == []


def test_handler_many_answers_each_event_as_the_handler_would(handler, r, broker):
    route.list_symbol_at(r, "AAPL", 2, "e1")
    connect = event("apiGatewayWebSocketConnect")
    connect["headers"]["Authorization"] = f"Bearer {token('alice')}"
    second = event("apiGatewayWebSocketOrder")
    frame = json.loads(second["body"])
    second["body"] = json.dumps({**frame, "order_id": "o-18", "request_id": "r-2"})
    bad = event("apiGatewayWebSocketOrder")
    bad["body"] = json.dumps({**frame, "order_id": "o-19", "side": "UP"})
    replies = module.handler_many(
        [connect, event("apiGatewayWebSocketOrder"), second, bad], FakeContext()
    )
    assert [reply["statusCode"] for reply in replies] == [200, 200, 200, 400]
    acks = [json.loads(reply["body"]) for reply in replies[1:3]]
    assert [(a["type"], a["order_id"], a["request_id"]) for a in acks] == [
        ("ack", "o-17", "r-1"),
        ("ack", "o-18", "r-2"),
    ]
    for ack in acks:
        command = read_record(broker.bootstrap, "orders", 2, ack["offset"]).command
        assert command is not None and command[1] == ack["order_id"]
    assert json.loads(replies[3]["body"])["reason"] == "BAD_SIDE"


@pytest.mark.parametrize("auth", [None, "Bearer not-a-jwt", f"Bearer {token('bob')[:-3]}xyz"])
def test_lambda_refuses_a_connection_without_a_valid_token(handler, auth):
    connect = event("apiGatewayWebSocketConnect")
    del connect["headers"]["Authorization"]
    if auth:
        connect["headers"]["Authorization"] = auth
    reply = handler(connect, FakeContext())
    assert reply["statusCode"] == 401
    assert json.loads(reply["body"])["reason"] == "UNAUTHENTICATED"


def test_lambda_accepts_a_token_in_the_query_string(handler):
    connect = event("apiGatewayWebSocketConnect")
    del connect["headers"]["Authorization"]
    connect["queryStringParameters"] = {"token": token("carol")}
    assert handler(connect, FakeContext())["statusCode"] == 200


def test_lambda_http_post_get_delete(handler, r, broker):
    route.list_symbol_at(r, "AAPL", 1, "e1")
    reply = handler(event("apiGatewayHttpPostOrder"), FakeContext())
    assert reply["statusCode"] == 202, reply
    ack = json.loads(reply["body"])
    assert ack["order_id"] == "h-1" and ack["partition"] == 1

    get = event("apiGatewayHttpPostOrder")
    get.update(routeKey="GET /orders/{id}", rawPath="/orders/h-1", body=None)
    get["pathParameters"] = {"id": "h-1"}
    get["requestContext"]["http"].update(method="GET", path="/orders/h-1")
    status = json.loads(handler(get, FakeContext())["body"])
    assert status["routing"] == "ACCEPTED" and status["side"] == "SELL"
    assert status["offset"] == ack["offset"]

    delete = json.loads(json.dumps(get))
    delete["routeKey"] = "DELETE /orders/{id}"
    delete["requestContext"]["http"]["method"] = "DELETE"
    reply = handler(delete, FakeContext())
    assert reply["statusCode"] == 202
    cancel = json.loads(reply["body"])
    record = read_record(broker.bootstrap, "orders", 1, cancel["offset"])
    assert record.command is not None and record.command[0] == Action.CANCEL

    missing = json.loads(json.dumps(get))
    missing["rawPath"] = missing["requestContext"]["http"]["path"] = "/orders/nope"
    reply = handler(missing, FakeContext())
    assert reply["statusCode"] == 404
    assert json.loads(reply["body"])["reason"] == "UNKNOWN_ORDER"


def test_lambda_http_without_claims_is_401_and_bad_json_is_400(handler):
    post = event("apiGatewayHttpPostOrder")
    del post["requestContext"]["authorizer"]
    assert handler(post, FakeContext())["statusCode"] == 401
    post = event("apiGatewayHttpPostOrder")
    post["body"] = "{not json"
    reply = handler(post, FakeContext())
    assert reply["statusCode"] == 400
    assert json.loads(reply["body"])["reason"] == "MALFORMED"


# ---------------------------------------------------------------------- the order path


ORDER = {"symbol": "AAPL", "order_id": "o-1", "side": "BUY", "price": 100, "quantity": 5}


def test_a_retried_order_is_answered_idempotently_and_produced_once(r, broker):
    e = edge(r, broker.bootstrap)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    first = e.router.submit("alice", ORDER)
    again = e.router.submit("alice", dict(ORDER))
    assert again.duplicate and not first.duplicate
    assert (again.partition, again.offset) == (first.partition, first.offset)
    assert e.producer.produced == 1


def test_a_reused_order_id_with_other_contents_is_refused(r, broker):
    e = edge(r, broker.bootstrap)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    e.router.submit("alice", ORDER)
    with pytest.raises(RefusedError) as info:
        e.router.submit("alice", {**ORDER, "price": 101})
    assert info.value.reason.name == "DUPLICATE_ORDER_ID"
    assert e.router.submit("bob", ORDER).user_id == "bob"  # ids are per user
    assert e.producer.produced == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"side": "SIDEWAYS"}, "BAD_SIDE"),
        ({"quantity": 0}, "NON_POSITIVE_QUANTITY"),
        ({"price": -1}, "NON_POSITIVE_PRICE"),
        ({"price": 1.5}, "MALFORMED"),
        ({"symbol": ""}, "BAD_ID"),
        ({"user_id": "mallory"}, "USER_MISMATCH"),
        ({"quantity": 1001}, "QUANTITY_ABOVE_MAX"),
        ({"price": 100_001}, "PRICE_OUTSIDE_BAND"),
        ({"price": 90_000, "quantity": 1000}, "NOTIONAL_ABOVE_MAX"),
        ({"symbol": "NOPE"}, "UNKNOWN_SYMBOL"),
    ],
)
def test_a_refused_order_gets_its_reason_and_never_reaches_kafka(r, broker, change, reason):
    limits = PreTradeLimits.from_json(
        {"*": {"price_max": 100_000, "max_quantity": 1000, "max_notional": 50_000_000}}
    )
    e = edge(r, broker.bootstrap, limits=limits)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    e.api.sessions.connect("c1", "alice", 1)
    status, body = ws_message(e.api, "c1", {"action": "order", **ORDER, **change})
    assert body["type"] == "error" and body["reason"] == reason, body
    assert 400 <= status < 500
    assert e.producer.produced == 0


def test_a_migrating_symbol_goes_to_pending_orders(r, broker):
    e = edge(r, broker.bootstrap)
    listed = route.list_symbol_at(r, "AAPL", 3, "e1")
    route.begin_migration(r, listed)
    ack = e.router.submit("alice", ORDER)
    assert (ack.topic, ack.partition) == ("pending-orders", 3)
    record = read_record(broker.bootstrap, "pending-orders", 3, ack.offset)
    now = route.lookup(r, "AAPL")
    # Stamped with the epoch the move takes: the engine replaying the buffer owns it there.
    assert record.route_epoch == 2 and ack.route_epoch == 2
    assert now is not None and now.status == MIGRATING and now.epoch == 1


def test_an_order_buffered_after_the_end_marker_is_refused_stale(r, broker):
    e = edge(r, broker.bootstrap)
    route.begin_migration(r, route.list_symbol_at(r, "AAPL", 3, "e1"))
    # The migration ended the buffer after this router read MIGRATING: a record after the
    # marker is refused, one before it is acknowledged (it will be replayed).
    key = names.REDIS_PENDING_END.format("AAPL", 2)
    r.set(key, "pending-orders/3/1000000")
    assert e.router.submit("alice", {**ORDER, "order_id": "o-before"}).topic == "pending-orders"
    # The marker is being written: the router waits for its offset, then compares (a
    # refusal now would turn away a record the move replays).
    r.set(key, "pending-orders/3/")
    written = threading.Timer(0.1, lambda: r.set(key, "pending-orders/3/1000000"))
    written.start()
    try:
        ack = e.router.submit("alice", {**ORDER, "order_id": "o-while-written"})
    finally:
        written.join()
    assert ack.topic == "pending-orders"
    # No offset in time (the task died between key and marker): in doubt, not refused.
    r.set(key, "pending-orders/3/")
    e.router.delivery_timeout_s = 0.2
    with pytest.raises(RefusedError) as info:
        e.router.submit("alice", {**ORDER, "order_id": "o-in-doubt"})
    assert info.value.reason.name == "NOT_DELIVERED"
    r.set(key, "pending-orders/3/0")
    with pytest.raises(RefusedError) as info:
        e.router.submit("alice", ORDER)
    assert info.value.reason.name == "STALE_ROUTE"
    # Not acknowledged, so the same order may be sent again (on the new route).
    route.switch(r, route.lookup(r, "AAPL"), 1, "e2")  # type: ignore[arg-type]
    ack = e.router.submit("alice", ORDER)
    assert (ack.topic, ack.partition, ack.route_epoch) == ("orders", 1, 2)


def test_an_unlisted_symbol_is_listed_on_first_order_when_auto_listing(r, broker):
    register_engine(r, EngineRecord("e1", "127.0.0.1:1", (0, 1), 1), 60_000)
    e = edge(r, broker.bootstrap, auto_list=True)
    ack = e.router.submit("alice", {**ORDER, "symbol": "NEW"})
    assert ack.route_epoch == 1 and route.lookup(r, "NEW") is not None


def test_balance_reservation_is_taken_refused_and_released(r, broker):
    e = edge(r, broker.bootstrap, balance_check=True)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    r.hset("balance:alice", mapping={"CASH": 600})
    e.router.submit("alice", ORDER)  # reserves 100 x 5
    assert int(r.hget("balance:alice", "CASH")) == 100
    with pytest.raises(RefusedError) as info:
        e.router.submit("alice", {**ORDER, "order_id": "o-2"})
    assert info.value.reason.name == "INSUFFICIENT_BALANCE"
    records = e.router.records
    # filled 2 at 90 (10 back per lot), then cancelled: the other 3 x 100 come back
    records.apply_fill("alice", "o-1", symbol="AAPL", seq=3, price=90, quantity=2)
    records.apply_fill("alice", "o-1", symbol="AAPL", seq=3, price=90, quantity=2)  # replay
    records.apply_status("alice", "o-1", seq=5, status=5, reason=0, filled=2, leaves=0)
    assert int(r.hget("balance:alice", "CASH")) == 100 + 20 + 300
    assert int(r.hget("balance:alice", "AAPL")) == 2
    assert e.producer.produced == 1


def test_a_duplicate_id_rejection_leaves_the_first_orders_record_alone(r, broker):
    # Redis went away between produce and confirm: the client's resend was produced again
    # and the engine refused that second copy DUPLICATE_ORDER_ID (filled 0, leaves 0). The
    # record is the first copy's: still open, its reservation kept.
    e = edge(r, broker.bootstrap, balance_check=True)
    route.list_symbol_at(r, "AAPL", 0, "e1")
    r.hset("balance:alice", mapping={"CASH": 600})
    e.router.submit("alice", ORDER)  # reserves 100 x 5
    records = e.router.records
    records.apply_status("alice", "o-1", seq=1, status=1, reason=0, filled=0, leaves=5)
    duplicate = int(Reason.DUPLICATE_ORDER_ID)
    records.apply_status("alice", "o-1", seq=2, status=2, reason=duplicate, filled=0, leaves=0)
    record = records.read("alice", "o-1")
    assert record is not None
    assert (record["status"], record["leaves"]) == ("ACCEPTED", "5")
    assert records.open_orders("alice", 10)[0] == ["o-1"]
    assert int(r.hget("balance:alice", "CASH")) == 100
    # as an order's first answer (the engine remembers the id from an order whose record
    # is gone) it is the order's status
    e.router.submit("alice", {**ORDER, "order_id": "o-2", "price": 10})
    records.apply_status("alice", "o-2", seq=3, status=2, reason=duplicate, filled=0, leaves=0)
    assert records.read("alice", "o-2")["reason"] == "DUPLICATE_ORDER_ID"  # type: ignore[index]
    assert records.open_orders("alice", 10)[0] == ["o-1"]


FUZZ_FIELDS = [
    "action",
    "symbol",
    "order_id",
    "user_id",
    "side",
    "type",
    "tif",
    "post_only",
    "price",
    "quantity",
    "client_ts_ns",
    "request_id",
    "symbols",
]
FUZZ_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-3, max_value=200),
    st.floats(),
    st.text(max_size=80),
    st.sampled_from(
        [
            "order",
            "cancel",
            "replace",
            "subscribe",
            "BUY",
            "SELL",
            "LIMIT",
            "MARKET",
            "IOC",
            "FOK",
            "AAPL",
            "alice",
        ]
    ),
    st.lists(st.text(max_size=5), max_size=3),
)
FRAMES = st.one_of(
    st.dictionaries(st.sampled_from(FUZZ_FIELDS), FUZZ_VALUES),
    st.fixed_dictionaries(
        {
            "action": st.just("order"),
            "symbol": st.just("AAPL"),
            "order_id": st.text(max_size=70),
            "side": st.sampled_from(["BUY", "sell", "x"]),
            "price": FUZZ_VALUES,
            "quantity": FUZZ_VALUES,
        },
        optional=dict.fromkeys(("type", "tif", "post_only", "user_id"), FUZZ_VALUES),
    ),
    st.lists(st.integers(), max_size=3),
    st.text(max_size=40),
)


def test_fuzzed_frames_never_crash_and_only_accepted_orders_reach_kafka(r, broker):
    e = edge(r, broker.bootstrap, limits=PreTradeLimits.from_json({"*": {"max_quantity": 150}}))
    route.list_symbol_at(r, "AAPL", 0, "e1")
    e.api.sessions.connect("c1", "alice", 1)
    acks: set[tuple[int, int]] = set()

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(frame=FRAMES)
    def check(frame):
        before = e.producer.produced
        status, body = ws_message(e.api, "c1", frame)
        assert status < 500
        if body["type"] == "ack":
            assert status == 200
            acks.add((body["partition"], body["offset"]))
        else:
            assert body["type"] in ("error", "subscribed", "unsubscribed"), body
            if body["type"] == "error":
                assert body["reason"] and body["code"] >= 100 and "Traceback" not in body["detail"]
                assert e.producer.produced == before

    check()
    assert e.producer.produced == len(acks)
