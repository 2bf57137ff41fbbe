"""The router's own checks before an order reaches Kafka (OrderRouter.submit, client_ts_ns,
page sizes, stream cursors): each refusal by its reason, detail and the ids it names, and
the edges each still accepts. The checks in submit run against a real Redis and Tansu
(what they refuse never reaches the producer; what they let through is read back from the
`orders` topic). Also the mutation target of hotshard/edge/router.py (docs/MUTATION.md)."""

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from hotshard import route
from hotshard.codec import InvalidOrderError
from hotshard.domain import MAX_TIMESTAMP_NS, Action, Side
from hotshard.edge.limits import PreTradeLimits
from hotshard.edge.router import (
    MAX_PAGE,
    RETRY_AFTER_MS,
    RefusedError,
    _client_ts,
    _cursor,
    _page_size,
)
from hotshard.reasons import HotshardError, Reason
from tests.hotshard.edge.kit import Edge, close_producers, edge, read_record

pytestmark = pytest.mark.integration

NOW_NS = 1_700_000_000_123_456_789
ORDER = {"symbol": "AAPL", "order_id": "v-1", "side": "BUY", "price": 100, "quantity": 5}
LIMITS = PreTradeLimits.from_json({"AAPL": {"tick": 5, "lot": 1, "max_quantity": 1000}})


# ---------------------------------------------------------------------- pure checks


def test_client_ts_absent_or_null_is_zero_and_the_range_is_inclusive():
    assert _client_ts(None, "AAPL", "o") == 0
    assert _client_ts(0, "AAPL", "o") == 0
    assert _client_ts(1, "AAPL", "o") == 1
    assert _client_ts(MAX_TIMESTAMP_NS, "AAPL", "o") == MAX_TIMESTAMP_NS


@pytest.mark.parametrize("value", [True, False, 1.0, "5", [1], {}])
def test_client_ts_of_another_json_type_is_malformed(value: Any) -> None:
    with pytest.raises(InvalidOrderError) as refused:
        _client_ts(value, "AAPL", "o-7")
    assert refused.value.reason == Reason.MALFORMED
    assert refused.value.detail == "client_ts_ns must be an integer (ns since the epoch)"
    assert (refused.value.symbol, refused.value.order_id) == ("AAPL", "o-7")


@pytest.mark.parametrize("value", [-1, MAX_TIMESTAMP_NS + 1, 2**64])
def test_client_ts_outside_the_int64_range_is_refused(value: int) -> None:
    with pytest.raises(InvalidOrderError) as refused:
        _client_ts(value, "AAPL", "o-8")
    assert refused.value.reason == Reason.VALUE_OUT_OF_RANGE
    assert refused.value.detail == f"client_ts_ns must be in [0, {MAX_TIMESTAMP_NS}]"
    assert (refused.value.symbol, refused.value.order_id) == ("AAPL", "o-8")


def test_page_sizes_from_one_to_the_maximum():
    assert _page_size(1) == 1
    assert _page_size(MAX_PAGE) == MAX_PAGE
    for bad in (0, -1, MAX_PAGE + 1, True, 5.0, "5", None):
        with pytest.raises(InvalidOrderError) as refused:
            _page_size(bad)  # type: ignore[arg-type]
        assert refused.value.reason == Reason.MALFORMED
        assert refused.value.detail == f"limit must be 1..{MAX_PAGE}"


def test_cursors_are_redis_stream_ids_in_canonical_form():
    assert _cursor("0-0") == "0-0"
    assert _cursor("000-01") == "0-1"
    assert _cursor("1700000000000-7") == "1700000000000-7"
    top = 2**64 - 1
    assert _cursor(f"{top}-{top}") == f"{top}-{top}"
    for bad in (f"{2**64}-0", f"0-{2**64}", "1-", "-1", "1", "a-1", "1-1 ", " 1-1", "1_0-1"):
        assert _cursor(bad) is None, bad
    assert _cursor("1" * 21 + "-0") is None


# ---------------------------------------------------------------------- submit


@pytest.fixture
def router_edge(r: Any, broker: Any) -> Iterator[Edge]:
    route.list_symbol_at(r, "AAPL", 0, "e1")
    served = edge(r, broker.bootstrap, limits=LIMITS, clock_ns=lambda: NOW_NS)
    try:
        yield served
    finally:
        served.router.close()
        close_producers()


def refused(call: Any, *args: Any, **kwargs: Any) -> HotshardError:
    with pytest.raises((RefusedError, InvalidOrderError)) as caught:
        call(*args, **kwargs)
    return caught.value


def test_an_order_without_a_user_is_the_authenticated_users_and_keeps_its_times(
    router_edge, broker
):
    router = router_edge.router
    ack = router.submit("alice", {**ORDER, "client_ts_ns": 42})
    assert (ack.action, ack.symbol, ack.order_id, ack.user_id) == ("ADD", "AAPL", "v-1", "alice")
    assert ack.ts_ns == NOW_NS and not ack.duplicate
    record = read_record(broker.bootstrap, ack.topic, ack.partition, ack.offset)
    assert record.command is not None and record.command[2] == "alice"
    assert (record.client_ts_ns, record.received_ts_ns) == (42, NOW_NS)
    # user_id null is the same; a client time left out is the router's
    ack = router.submit("alice", {**ORDER, "order_id": "v-2", "user_id": None})
    record = read_record(broker.bootstrap, ack.topic, ack.partition, ack.offset)
    assert record.command is not None and record.command[2] == "alice"
    assert (record.client_ts_ns, record.received_ts_ns) == (NOW_NS, NOW_NS)
    # naming oneself is allowed
    assert router.submit("alice", {**ORDER, "order_id": "v-3", "user_id": "alice"}).user_id == (
        "alice"
    )
    assert router_edge.producer.produced == 3


def test_an_order_naming_another_user_or_refused_by_the_limits_never_reaches_kafka(router_edge):
    router = router_edge.router
    mismatch = refused(router.submit, "alice", {**ORDER, "user_id": "bob"})
    assert isinstance(mismatch, RefusedError) and mismatch.reason == Reason.USER_MISMATCH
    assert mismatch.detail == "user_id must be the authenticated user"
    assert (mismatch.symbol, mismatch.order_id) == ("AAPL", "v-1")

    off_tick = refused(router.submit, "alice", {**ORDER, "price": 101})
    expected = LIMITS.check(
        "AAPL", (Action.ADD, "v-1", "alice", Side.BUY, 1, 1, False, 101, 5, 0, 0, False)
    )
    assert expected is not None
    assert isinstance(off_tick, RefusedError) and off_tick.reason == expected.reason
    assert off_tick.detail == expected.detail
    assert (off_tick.symbol, off_tick.order_id) == ("AAPL", "v-1")

    bad_ts = refused(router.submit, "alice", {**ORDER, "client_ts_ns": -5})
    assert isinstance(bad_ts, InvalidOrderError) and bad_ts.reason == Reason.VALUE_OUT_OF_RANGE
    assert (bad_ts.symbol, bad_ts.order_id) == ("AAPL", "v-1")  # the rejection names it

    for payload in ([ORDER], "order", None, 7):
        not_object = refused(router.submit, "alice", payload)
        assert isinstance(not_object, InvalidOrderError)
        assert not_object.reason == Reason.MALFORMED
        assert not_object.detail == "an order must be a JSON object"
    assert router_edge.producer.produced == 0


def test_the_action_argument_overrides_the_bodys_and_cancel_acts_only_on_own_orders(
    router_edge, broker
):
    router = router_edge.router
    placed = router.submit("alice", ORDER)
    # bob names alice's order id: refused at the router, nothing produced
    other = refused(router.cancel, "bob", "v-1", "AAPL")
    assert other.reason == Reason.UNKNOWN_ORDER
    assert isinstance(other, RefusedError) and (other.symbol, other.order_id) == ("AAPL", "v-1")
    # the body says ADD, the argument says CANCEL: a cancel is sent
    body = {**ORDER, "action": "order", "client_ts_ns": 77}
    ack = router.submit("alice", body, action=Action.CANCEL)
    assert ack.action == "CANCEL" and ack.order_id == "v-1" and ack.ts_ns == NOW_NS
    record = read_record(broker.bootstrap, ack.topic, ack.partition, ack.offset)
    assert record.command is not None and record.command[0] == Action.CANCEL
    assert (record.client_ts_ns, record.received_ts_ns) == (77, NOW_NS)  # a cancel's own time
    assert ack.offset > placed.offset
    assert router_edge.producer.produced == 2


def test_replace_and_cancel_with_balance_checks(router_edge, r, broker):
    first = router_edge.router
    first.submit("alice", ORDER)
    checked = edge(r, broker.bootstrap, limits=LIMITS, balance_check=True).router
    try:
        replace = refused(checked.submit, "alice", {**ORDER, "quantity": 3}, Action.REPLACE)
        assert replace.reason == Reason.INSUFFICIENT_BALANCE
        assert replace.detail == "REPLACE is not available with balance checks: cancel and add"
        assert isinstance(replace, RefusedError)
        assert (replace.symbol, replace.order_id) == ("AAPL", "v-1")
        assert checked.cancel("alice", "v-1", "AAPL").action == "CANCEL"  # cancel still goes
    finally:
        checked.close()


def test_an_own_order_on_a_symbol_no_longer_listed_is_refused_unknown_symbol(router_edge, r):
    router = router_edge.router
    router.submit("alice", ORDER)
    r.delete("route:AAPL")
    assert route.lookup(r, "AAPL") is None
    gone = refused(router.cancel, "alice", "v-1", "AAPL")
    assert gone.reason == Reason.UNKNOWN_SYMBOL
    assert isinstance(gone, RefusedError) and (gone.symbol, gone.order_id) == ("AAPL", "v-1")


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A bootstrap address whose port takes connections (the kernel's backlog) and never
    answers one: a broker that confirms nothing, so every delivery times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def test_a_cancel_or_replace_the_broker_does_not_confirm_in_time_is_in_doubt_with_a_retry_hint(
    router_edge, r, silent_broker
):
    # the order is placed through the real broker; a second router (same Redis) whose
    # producer's broker never answers then cancels and replaces it: each may yet be
    # written, so NOT_DELIVERED with the order named and a retry hint (the same request
    # again is safe: the book ignores a second cancel, a second replace changes nothing)
    router_edge.router.submit("alice", ORDER)
    stalled = edge(r, silent_broker, limits=LIMITS, clock_ns=lambda: NOW_NS)
    stalled.router.delivery_timeout_s = 0.3
    try:
        for call, args in (
            (stalled.router.cancel, ("alice", "v-1", "AAPL")),
            (stalled.router.submit, ("alice", {**ORDER, "quantity": 3}, Action.REPLACE)),
        ):
            in_doubt = refused(call, *args)
            assert isinstance(in_doubt, RefusedError)
            assert (in_doubt.reason, in_doubt.detail) == (
                Reason.NOT_DELIVERED,
                "no acknowledgement within 0.3 s",
            )
            assert (in_doubt.symbol, in_doubt.order_id) == ("AAPL", "v-1")
            assert in_doubt.retry_after_ms == RETRY_AFTER_MS
        assert stalled.producer.produced == 2
    finally:
        stalled.router.close()
