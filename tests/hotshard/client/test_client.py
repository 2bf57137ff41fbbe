"""hotshard.client: the retry policy and bookkeeping as pure functions, then the client
and its CLI against the real local gateway, Redis, Tansu and an engine process, including
a STALE_ROUTE provoked for real (the engine removed the symbol with a fence epoch, then the
route switched) and retried transparently."""

import asyncio
import io
import json
import signal
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from typing import Any, cast

import pytest

from hotshard import route
from hotshard.client import session
from hotshard.client.cli import main, parser
from hotshard.client.frames import StreamTracker, describe, is_stale
from hotshard.client.retry import Outstanding, ReconnectPolicy, RetryPolicy
from hotshard.client.session import Client, ClientError
from hotshard.edge.sessions import Sessions
from hotshard.edge.settings import EdgeSettings
from hotshard.local.edge import LocalEdge, local_edge
from hotshard.local.services.engine import start_engine
from hotshard.v1 import control_pb2
from tests.hotshard.edge.kit import SECRET, token


def stale_push(order_id: str) -> dict[str, Any]:
    data = {"order_id": order_id, "status": "REJECTED", "reason": "STALE_ROUTE", "seq": 0}
    return {"type": "ORDER_STATUS", "data": data}


# ---------------------------------------------------------------------- pure


def test_retry_policy_backs_off_exponentially_up_to_a_cap_and_a_count():
    policy = RetryPolicy(max_retries=5, base_s=0.05, cap_s=0.3, jitter=False)
    assert [policy.delay(n) for n in range(1, 7)] == [0.05, 0.1, 0.2, 0.3, 0.3, None]
    assert policy.delay(0) is None
    assert RetryPolicy(max_retries=0).delay(1) is None


def test_is_stale_recognises_the_engines_rejection_and_the_error_reply_only():
    assert is_stale(stale_push("o-1"))
    assert is_stale({"type": "error", "reason": "STALE_ROUTE", "code": 300})
    assert not is_stale({"type": "error", "reason": "MALFORMED"})
    other = stale_push("o-1")
    other["data"] = {**other["data"], "reason": "UNKNOWN_SYMBOL"}
    assert not is_stale(other)
    assert not is_stale({"type": "FILL", "data": {"reason": "STALE_ROUTE"}})


def test_outstanding_matches_rejections_to_the_oldest_unanswered_frame():
    now = [0.0]
    book = Outstanding(ttl_s=10, clock=lambda: now[0])
    add = {"action": "order", "order_id": "o-1", "symbol": "X"}
    cancel = {"action": "cancel", "order_id": "o-1", "symbol": "X"}
    book.sent(add, request_id=1)
    book.sent(cancel, request_id=2)
    assert book.answered("o-1", "PARTIALLY_FILLED") is None  # answers no frame
    stale = book.stale("o-1")
    assert stale is not None and stale.frame is add
    assert book.answered("o-1", "CANCELLED") is not None
    assert len(book) == 0 and book.stale("o-1") is None

    book.sent(add, request_id=3)
    book.sent(cancel, request_id=4)
    book.refused("o-1", 3)  # the router refused the ADD: only the CANCEL is out
    stale = book.stale("o-1")
    assert stale is not None and stale.frame is cancel

    book.sent(add, retries=2, request_id=5)
    now[0] = 11.0  # never answered: forgotten
    assert book.stale("o-1") is None and len(book) == 0


def test_describe_prints_every_frame_on_one_readable_line():
    fill = {"symbol": "X", "order_id": "o-1", "price": 10, "quantity": 3, "liquidity": "MAKER"}
    lines = [
        describe({"type": "ack", "action": "ADD", "symbol": "X", "order_id": "o-1"}),
        describe({"type": "error", "reason": "MALFORMED", "code": 100, "detail": "bad"}),
        describe({"type": "FILL", "data": fill}),
        describe(stale_push("o-1")),
        describe({"type": "TRADE", "data": {"symbol": "X", "price": 10, "quantity": 3}}),
        describe({"type": "DEPTH", "data": {"symbol": "X", "bids": [[10, 2]], "asks": []}}),
        describe({"type": "subscribed", "symbols": ["X", "Y"]}),
    ]
    assert all("\n" not in line for line in lines)
    assert lines[2].startswith("FILL") and "3 @ 10 MAKER" in lines[2]
    assert "REJECTED STALE_ROUTE" in lines[3]
    assert "bids 10x2 | asks -" in lines[5]


def test_help_explains_every_option():
    p = parser()
    actions = list(p._actions)
    for sub in p._subparsers._group_actions:  # type: ignore[union-attr]
        for command in sub.choices.values():  # type: ignore[union-attr]
            actions += command._actions
    undocumented = [
        a.option_strings
        for a in actions
        if a.dest not in ("help", "command") and not (a.help or "").strip()
    ]
    assert undocumented == [], undocumented
    assert p.parse_args(["--order-hold-ms", "0", "ping"]).order_hold_ms == 0
    assert p.parse_args(["ping"]).order_hold_ms == session.ORDER_HOLD_S * 1000
    for word in ("place", "replace", "cancel", "subscribe", "send", "STALE_ROUTE"):
        assert word in p.format_help()
    new = ("cancel-all", "ping", "orders", "fills", "instruments", "balance")
    for command in new:
        assert command in p.format_help()
        out = io.StringIO()
        with redirect_stdout(out), pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0 and f"hotshard-client {command}" in out.getvalue()


class _Closed:
    """A connection with nothing to read: the client's reader ends at once."""

    def __aiter__(self) -> "_Closed":
        return self

    async def __anext__(self) -> str:
        raise StopAsyncIteration


def test_the_client_keeps_the_orders_that_ended_last(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ended orders are forgotten oldest end first, beyond ENDED_KEPT (each end O(1): it
    scanned every tracked order, quadratic in a long session)."""
    monkeypatch.setattr(session, "ENDED_KEPT", 2)

    async def run() -> list[list[str]]:
        client = session.Client(cast(Any, _Closed()))
        await client._reader
        for i in range(5):
            client._track(f"o{i}")

        def end(i: int, seq: int) -> None:
            data = {"order_id": f"o{i}", "seq": seq, "status": "FILLED", "leaves": 0}
            assert client._shown(f"o{i}", data, {"type": "ORDER_STATUS", "data": data})

        end(3, 1)
        end(0, 2)
        end(4, 3)
        kept = [list(client.orders)]
        client._track("o0")  # sent again: no longer ended, never forgotten as such
        end(1, 4)
        end(2, 5)
        return [*kept, list(client.orders)]

    assert asyncio.run(run()) == [["o0", "o1", "o2", "o4"], ["o1", "o2", "o0"]]


def test_stream_tracker_names_the_pushes_a_stream_missed():
    tracker = StreamTracker()

    def push(kind: str, symbol: str, seq: int, prev: int | None) -> dict[str, Any]:
        out: dict[str, Any] = {"type": kind, "data": {"symbol": symbol, "seq": seq}}
        if prev is not None:
            out["prev_seq"] = prev
        return out

    assert tracker.observe(push("FILL", "AAPL", 4, 2)) is None  # first: the baseline
    assert tracker.observe(push("FILL", "AAPL", 9, 4)) is None
    assert tracker.observe(push("ORDER_STATUS", "AAPL", 5, 3)) is None  # another stream
    gap = tracker.observe(push("FILL", "AAPL", 15, 12))
    assert gap is not None and (gap.kind, gap.seen, gap.prev_seq, gap.seq) == ("FILL", 9, 12, 15)
    assert tracker.observe(push("FILL", "AAPL", 16, 15)) is None  # the chain goes on
    assert tracker.observe(push("ORDER_STATUS", "AAPL", 0, None)) is None  # seq 0: no stream
    assert tracker.observe({"type": "ack"}) is None
    strict = StreamTracker(strict=True)
    assert strict.observe(push("TRADE", "MSFT", 7, 3)) is not None  # joined late: missed 3
    assert strict.observe(push("TRADE", "IBM", 7, 0)) is None


# ---------------------------------------------------------------------- real gateway


@pytest.fixture
def cluster(r: Any, redis_server: Any, broker: Any, tmp_path: Any) -> Iterator[LocalEdge]:
    """The edge with two engines: client-e1 owns partition 0, client-e2 partitions 1-3."""
    engines = [
        start_engine(
            workdir=tmp_path,
            brokers=broker.bootstrap,
            redis_port=redis_server.port,
            partitions=partitions,
            instance=instance,
            extra_args=["--fetch-wait-max-ms", "10"],
        )
        for instance, partitions in (("client-e1", "0"), ("client-e2", "1-3"))
    ]
    settings = EdgeSettings(
        kafka_brokers=broker.bootstrap, redis_port=redis_server.port, jwt_secret=SECRET
    )
    try:
        with local_edge(settings) as running:
            running.engines = engines  # type: ignore[attr-defined]
            yield running
    finally:
        for engine in engines:
            engine.process.stop(signal.SIGKILL)


async def until(client: Client, done: Any, timeout: float = 20.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(got) and time.monotonic() < deadline:
        async for push in client.pushes(timeout=0.2):
            got.append(push)
            if done(got):
                break
    return got


def statuses(pushes: list[dict[str, Any]], order_id: str) -> list[str]:
    return [
        p["data"]["status"]
        for p in pushes
        if p["type"] == "ORDER_STATUS" and p["data"]["order_id"] == order_id
    ]


@pytest.mark.integration
def test_client_trades_and_retries_a_real_stale_route_transparently(cluster, r):
    edge, (e1, e2) = cluster, cluster.engines
    route.list_symbol_at(r, "IBM", 0, "client-e1")
    # enough retries to outlast a Restore on a loaded machine (the budget is not under test)
    policy = RetryPolicy(max_retries=60, base_s=0.05, cap_s=0.4)
    retried: list[tuple[str, int]] = []

    async def go() -> None:
        with pytest.raises(ClientError, match="401"):
            await Client.connect(edge.gateway.ws_url, "not-a-token")
        async with (
            await Client.connect(edge.gateway.ws_url, token("ann"), policy=policy) as ann,
            await Client.connect(
                edge.gateway.ws_url,
                token("ben"),
                policy=policy,
                on_retry=lambda frame, n, _d: retried.append((frame["order_id"], n)),
            ) as ben,
        ):
            assert (await ann.subscribe(["IBM"]))["type"] == "subscribed"
            ack = await ann.place("IBM", "a-1", "sell", 5, price=100)
            assert ack["type"] == "ack" and ack["route_epoch"] == 1
            bad = await ann.place("IBM", "a-2", "sell", 0, price=100)
            assert bad["type"] == "error" and bad["reason"] == "NON_POSITIVE_QUANTITY"
            assert (await ben.place("IBM", "b-1", "buy", 2, price=100))["type"] == "ack"
            kinds = {"FILL", "TRADE", "ORDER_STATUS", "DEPTH"}
            got = await until(ann, lambda g: kinds <= {p["type"] for p in g})
            assert kinds <= {p["type"] for p in got}, got

            # IBM moves from client-e1 (partition 0) to client-e2 (partition 1): e1 removes
            # it with fence epoch 2 while the route still says epoch 1, so the next order
            # reaches e1 stamped 1 and is refused STALE_ROUTE; once the client has retried
            # at least once, e2 restores the book and the route switches (epoch 2).
            removed = await asyncio.to_thread(
                e1.stub().Remove,
                control_pb2.RemoveRequest(symbol="IBM", fence_epoch=2),
                timeout=20,
            )
            assert removed.fence_epoch == 2 and removed.location
            ack = await ben.place("IBM", "b-2", "buy", 4, price=90)
            assert ack["type"] == "ack" and ack["route_epoch"] == 1
            for _ in range(200):
                if retried:
                    break
                await asyncio.sleep(0.05)
            assert retried, "the engine never answered STALE_ROUTE"
            restore = control_pb2.RestoreRequest(
                symbol="IBM", location=removed.location, follow=True, partition=1, from_offset=0
            )
            await asyncio.to_thread(e2.stub().Restore, restore, timeout=20)
            now = route.begin_migration(r, route.lookup(r, "IBM"))  # type: ignore[arg-type]
            assert route.switch(r, now, 1, "client-e2").epoch == 2
            pushes = await until(ben, lambda g: "ACCEPTED" in statuses(g, "b-2"))
            assert "ACCEPTED" in statuses(pushes, "b-2"), pushes
            assert not any(is_stale(p) for p in pushes)  # the rejections never surfaced
            assert ben.stats.retries >= 1 and ben.stats.gave_up == 0
            assert all(order_id == "b-2" for order_id, _ in retried)

    asyncio.run(go())
    record = r.hgetall("order:ben:b-2")
    assert record[b"state"] == b"ACCEPTED" and record[b"epoch"] == b"2"
    assert record[b"partition"] == b"1"


@pytest.mark.integration
def test_after_a_reconnect_the_client_shows_the_statuses_pushed_to_its_dead_connection(cluster, r):
    """ann's connection dies; while she has none, ben trades against her resting order and
    a frame she sent just before the drop is decided: both statuses are pushed to no
    connection (the stream handler drops them, as it must). Once she is back, the client
    asks GET /orders/{id} and shows each as an ORDER_STATUS push (`resync`); without the
    catch-up (the code before) she never learns of the fill."""
    route.list_symbol_at(r, "NOK", 0, "client-e1")
    edge = cluster

    async def go() -> None:
        reconnect = ReconnectPolicy(max_attempts=0, base_s=0.05, cap_s=0.2)
        ann = await Client.connect(
            edge.gateway.ws_url, token("ann"), reconnect=reconnect, http_url=edge.gateway.http_url
        )
        gate = asyncio.Event()
        dial = ann.dial
        assert dial is not None

        async def gated() -> Any:
            await gate.wait()  # held away until the test lets her back
            return await dial()

        ann.dial = gated
        async with (
            ann,
            await Client.connect(edge.gateway.ws_url, token("bea")) as bea,
        ):
            assert (await ann.place("NOK", "n-1", "sell", 5, price=100))["type"] == "ack"
            got = await until(ann, lambda g: "ACCEPTED" in statuses(g, "n-1"))
            assert statuses(got, "n-1") == ["ACCEPTED"]

            unacked = await ann.send(
                {
                    "action": "order",
                    "symbol": "NOK",
                    "order_id": "n-2",
                    "side": "SELL",
                    "price": 120,
                    "quantity": 1,
                }
            )
            ann.ws.transport.abort()  # n-2 may or may not have left: it is unanswered
            for _ in range(200):  # the gateway forgot her connection: nothing reaches her
                if not Sessions(r).of_users(["ann"])["ann"]:
                    break
                await asyncio.sleep(0.05)
            assert not Sessions(r).of_users(["ann"])["ann"]
            assert (await bea.place("NOK", "b-1", "buy", 2, price=100))["type"] == "ack"
            for _ in range(400):  # decided and recorded while ann has no connection
                if r.hget("order:ann:n-1", "status") == b"PARTIALLY_FILLED":
                    break
                await asyncio.sleep(0.05)
            assert r.hget("order:ann:n-1", "status") == b"PARTIALLY_FILLED"

            gate.set()
            assert (await unacked)["type"] == "ack"  # resent: acked (or acked again)
            got = await until(
                ann,
                lambda g: (
                    "PARTIALLY_FILLED" in statuses(g, "n-1") and "ACCEPTED" in statuses(g, "n-2")
                ),
            )
            assert statuses(got, "n-1") == ["PARTIALLY_FILLED"], got
            assert statuses(got, "n-2") == ["ACCEPTED"], got
            filled = next(
                p for p in got if p["type"] == "ORDER_STATUS" and p["data"]["order_id"] == "n-1"
            )
            assert filled["resync"] is True
            assert filled["data"]["filled"] == 2 and filled["data"]["leaves"] == 3
            assert ann.stats.reconnects == 1 and ann.stats.resynced >= 1

            # later statuses are pushed live again, once each
            assert (await ann.cancel("NOK", "n-1"))["type"] == "ack"
            got = await until(ann, lambda g: "CANCELLED" in statuses(g, "n-1"), timeout=10)
            assert statuses(got, "n-1") == ["CANCELLED"]
            assert not any(p.get("resync") for p in got)

    asyncio.run(go())


@pytest.mark.integration
def test_cli_places_and_cancels_through_the_gateway(cluster, r, capsys):
    route.list_symbol_at(r, "ORCL", 2, "client-e2")
    common = ["--url", cluster.gateway.ws_url, "--secret", SECRET, "--user", "cli", "--wait"]
    assert main([*common, "1", "place", "ORCL", "buy", "3", "50", "--order-id", "k-1"]) == 0
    out = capsys.readouterr().out
    assert "ack     ADD ORCL k-1 -> orders[2]" in out and "STATUS  ORCL k-1 ACCEPTED" in out
    assert main(["cancel", "ORCL", "k-1", *common, "1"]) == 0  # options after the command
    assert "STATUS  ORCL k-1 CANCELLED" in capsys.readouterr().out
    assert main([*common, "0.1", "place", "ORCL", "buy", "0", "50"]) == 1
    assert "error   NON_POSITIVE_QUANTITY" in capsys.readouterr().out
    bad = ["--url", cluster.gateway.ws_url, "--token", "nope", "cancel", "ORCL", "k-1"]
    assert main(bad) == 2


@pytest.mark.integration
def test_cli_covers_open_orders_cancel_all_fills_instruments_balance(cluster, r, capsys):
    route.list_symbol_at(r, "SAP", 1, "client-e2")
    ws = ["--url", cluster.gateway.ws_url, "--secret", SECRET, "--user", "cli2", "--wait"]
    http = ["--http-url", cluster.gateway.http_url, "--secret", SECRET, "--user", "cli2"]
    for order_id, price in (("s-1", 50), ("s-2", 60)):
        place = [*ws, "1", "place", "SAP", "sell", "2", str(price), "--order-id", order_id]
        assert main(place) == 0
    buyer = ["--url", cluster.gateway.ws_url, "--secret", SECRET, "--user", "cli3", "--wait"]
    assert main([*buyer, "1", "place", "SAP", "buy", "1", "50", "--order-id", "b-1"]) == 0
    capsys.readouterr()
    for _ in range(100):  # the fill reaches the history once the stream handler saw it
        assert main(["fills", *http]) == 0
        out = capsys.readouterr().out
        if "fill    SAP s-1 SELL 1 @ 50 MAKER" in out:
            break
        time.sleep(0.05)
    assert "fill    SAP s-1 SELL 1 @ 50 MAKER" in out and "1 fills" in out
    assert main(["orders", *http]) == 0
    out = capsys.readouterr().out
    assert "order   SAP s-1 SELL 2 @ 50" in out and "order   SAP s-2" in out and "2 open" in out
    assert main(["instruments", *http, "--symbol", "SAP"]) == 0
    assert "SAP" in capsys.readouterr().out
    assert main(["balance", *http]) == 0
    assert "0 assets" in capsys.readouterr().out
    assert main(["ping", *ws, "0.1"]) == 0
    assert "pong" in capsys.readouterr().out
    assert main(["cancel-all", *ws, "2", "--symbol", "SAP"]) == 0
    out = capsys.readouterr().out
    assert "cancel_all SAP: cancelled 2" in out
    assert "STATUS  SAP s-1 CANCELLED" in out and "STATUS  SAP s-2 CANCELLED" in out
    assert main(["orders", "--json", *http]) == 0
    assert json.loads(capsys.readouterr().out)["orders"] == []
    with pytest.raises(SystemExit) as usage:  # no --http-url
        main(["orders", "--secret", SECRET, "--user", "x"])
    assert usage.value.code == 2


def test_a_stop_an_iceberg_and_an_all_or_none_order_travel_end_to_end(cluster, r, capsys):
    """Client JSON with the new fields, through the router and Kafka to the engine and back:
    the trade at 50 triggers the stop inside the same command, and the events say so."""
    route.list_symbol_at(r, "NFLX", 2, "client-e2")
    common = ["--url", cluster.gateway.ws_url, "--secret", SECRET, "--user", "cli", "--wait"]
    place = [*common, "1", "place", "NFLX"]
    assert main([*place, "sell", "10", "50", "--display-quantity", "2", "--order-id", "i"]) == 0
    assert main([*place, "sell", "9", "51", "--all-or-none", "--order-id", "a"]) == 0
    stop = ["--type", "stop", "--stop-price", "50", "--order-id", "s"]
    assert main([*place, "buy", "3", *stop]) == 0
    assert "STATUS  NFLX s ACCEPTED" in capsys.readouterr().out
    bad = ["--type", "stop", "--stop-price", "50", "--all-or-none", "--order-id", "x"]
    assert main([*place, "buy", "3", *bad]) == 0
    assert "ALL_OR_NONE_NOT_ALLOWED" in capsys.readouterr().out
    assert main([*place, "buy", "1", "50", "--order-id", "t"]) == 0
    out = capsys.readouterr().out
    assert "STATUS  NFLX t FILLED" in out
    # the stop's events are pushed to its owner (the same user here) after t's
    for _ in range(100):
        record = r.hgetall("order:cli:s")
        if record.get(b"status") == b"FILLED":
            break
        time.sleep(0.1)
    assert record[b"status"] == b"FILLED" and record[b"filled"] == b"3", record
