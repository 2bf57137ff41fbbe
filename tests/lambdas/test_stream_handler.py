"""stream_handler Lambda, driven by the MSK event captured from AWS (tests/events/mskEvent.json):
the handler module runs for real (Powertools decoding, hotshard.edge.push, real Redis) and
posts through boto3 to the local gateway's Management API, which pushes to real WebSocket
clients connected through the real order_router. The records are what the engine's core
publishes for two crossing orders, laid out in the captured record's shape."""

import asyncio
import base64
import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from engine.book import Market, add
from engine.service.core import EngineState, Output, Record
from hotshard.codec import depth_update_json, event_json
from hotshard.domain import Side
from hotshard.edge.push import PUSH_TYPE
from hotshard.edge.settings import EdgeSettings
from hotshard.events import FILL, STATUS, TRADE
from hotshard.local.edge import LocalEdge, local_edge
from hotshard.local.gateway import LambdaContext
from hotshard.wire import decode_depth, encode_order, event_tuple, parse_batch
from lambdas.stream_handler import handler as stream_handler
from tests.hotshard.edge.kit import SECRET, LogLines, event, token

pytestmark = pytest.mark.integration

KIND_OF = {"order_status": STATUS, "fills": FILL, "trades": TRADE}


@pytest.fixture
def edge(r: Any, redis_server: Any, broker: Any) -> Iterator[LocalEdge]:
    settings = EdgeSettings(
        kafka_brokers=broker.bootstrap, redis_port=redis_server.port, jwt_secret=SECRET
    )
    with local_edge(settings, feed=False) as running:  # the test is the event source
        yield running


STAMP = 1_700_000_000_000_000_000  # the router's receive time of the first order


def engine_outputs() -> list[Output]:
    """ann rests a sell, ben's buy takes part of it: what the engine publishes."""
    orders = [
        add("a-1", "ann", Side.SELL, 100, 5),
        add("b-1", "ben", Side.BUY, 100, 2),
    ]
    records: list[Record] = [
        (
            0,
            offset,
            b"AAPL",
            encode_order("AAPL", command, route_epoch=1, received_ts_ns=STAMP + offset),
        )
        for offset, command in enumerate(orders)
    ]
    return EngineState(Market(open_listing=True)).apply_batch(records).outputs


def as_captured(outputs: list[Output]) -> dict[str, Any]:
    """The captured event with its records replaced by `outputs`, each shaped like the
    captured record (same fields, base64 key and value)."""
    captured = event("mskEvent")
    (template,) = captured["records"]["order_status-0"]
    records: dict[str, list[dict[str, Any]]] = {}
    next_offset: Counter[tuple[str, int]] = Counter()
    for topic, partition, key, value in outputs:
        offset = next_offset[(topic, partition)]
        next_offset[(topic, partition)] += 1
        records.setdefault(f"{topic}-{partition}", []).append(
            {
                **template,
                "topic": topic,
                "partition": partition,
                "offset": offset,
                "key": base64.b64encode(key).decode(),
                "value": base64.b64encode(value).decode(),
            }
        )
    return {**captured, "records": records}


def pushes_for(outputs: list[Output], user: str, subscribed: bool) -> list[dict[str, Any]]:
    """The pushes a connection of `user` should get, decoded independently of the handler:
    each names the seq of the one before on its stream (prev_seq) and the receive time of
    the order that caused it (ts_ns, from the order's offset)."""
    mine, market = [], []
    last: dict[tuple[str, str], int] = {}
    for topic, _partition, _key, value in outputs:
        if topic == "depth":
            for symbol, update, offset in decode_depth(value):
                data = {**depth_update_json(symbol, update), "ts_ns": STAMP + offset}
                prev = last.get(("DEPTH", symbol), 0)
                last[("DEPTH", symbol)] = update.seq
                market.append({"type": "DEPTH", "prev_seq": prev, "data": data})
            continue
        batch = parse_batch(KIND_OF[topic], value)
        for msg in batch.events:
            kind = KIND_OF[topic]
            event, offset = event_tuple(kind, msg)
            data = {**event_json(batch.symbol, event), "ts_ns": STAMP + offset}
            stream = (PUSH_TYPE[kind], batch.symbol if kind == TRADE else data["user_id"])
            prev = last.get(stream, 0)
            last[stream] = event[1]
            push = {"type": PUSH_TYPE[kind], "prev_seq": prev, "data": data}
            if kind == TRADE:
                market.append(push)
            elif data["user_id"] == user:
                mine.append(push)
    return mine + (market if subscribed else [])


async def received(ws: ClientConnection, count: int, timeout: float = 10.0) -> list[Any]:
    out: list[Any] = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            out.append(json.loads(await ws.recv()))
    return out


async def silent(ws: ClientConnection, seconds: float = 0.5) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await ws.recv()
    except TimeoutError:
        return True
    return False


def invoke(evt: dict[str, Any]) -> dict[str, Any]:
    return stream_handler.handler(evt, LambdaContext("stream_handler"))


CONTAINER = ThreadPoolExecutor(1, thread_name_prefix="container")
"""One warm Lambda container: its invocations on one thread, so one Pusher (the handler
keeps one per thread: hotshard.edge.runtime.PerThread) and its in-memory guards."""


async def in_container(evt: dict[str, Any]) -> dict[str, Any]:
    return await asyncio.get_running_loop().run_in_executor(CONTAINER, invoke, evt)


def test_the_captured_event_as_aws_sent_it_pushes_nothing_and_fails_nothing(edge):
    # its one order_status record has an empty value: a batch of no events
    assert invoke(event("mskEvent")) == {"records": 1, "events": 0, "pushes": 0, "posts": 0}


def test_engine_records_in_the_captured_shape_reach_the_right_websockets(edge, r):
    outputs = engine_outputs()
    assert {topic for topic, *_ in outputs} == {"order_status", "fills", "trades", "depth"}
    want_ann = pushes_for(outputs, "ann", subscribed=True)
    want_ben = pushes_for(outputs, "ben", subscribed=False)
    assert {p["type"] for p in want_ann} == {"ORDER_STATUS", "FILL", "TRADE", "DEPTH"}

    async def go() -> None:
        url = edge.gateway.ws_url
        async with (
            connect(f"{url}?token={token('ann')}", open_timeout=5) as ann,
            connect(f"{url}?token={token('ben')}", open_timeout=5) as ben,
        ):
            await ann.send(json.dumps({"action": "subscribe", "symbols": ["AAPL"]}))
            assert (await received(ann, 1))[0]["type"] == "subscribed"

            stats = await in_container(as_captured(outputs))
            assert stats["records"] == len(outputs)
            assert stats["pushes"] == len(want_ann) + len(want_ben)
            got_ann = await received(ann, len(want_ann))
            got_ben = await received(ben, len(want_ben))
            for want, got in ((want_ann, got_ann), (want_ben, got_ben)):
                for kind in ("ORDER_STATUS", "FILL", "TRADE", "DEPTH"):
                    # each connection gets its pushes in order, type by type
                    assert [p for p in got if p["type"] == kind] == [
                        p for p in want if p["type"] == kind
                    ]
                assert len(got) == len(want)

            # the same records again (an engine restart re-publishes them): nothing new
            again = await in_container(as_captured(outputs))
            assert again["pushes"] == 0 and again["events"] == 0
            assert await silent(ann) and await silent(ben)

    asyncio.run(go())
    depth = {k.decode(): int(v) for k, v in r.hgetall("depth:AAPL:asks").items()}
    assert depth == {"100": 3}  # the latest depth kept for polling clients


def test_a_batchs_push_latencies_are_one_metric_added_in_one_call(edge, monkeypatch, capsys):
    """Every sampled latency still reaches the EMF document (the dashboard's p50/p99 are
    CloudWatch statistics over them), added in one call: Powertools formats a metric's whole
    value list on each add_metric, so a call per value was quadratic in the batch."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    added: list[str] = []
    real_add = stream_handler.metrics.add_metric

    def counting_add(**kw: Any) -> None:
        added.append(kw["name"])
        real_add(**kw)

    monkeypatch.setattr(stream_handler.metrics, "add_metric", counting_add)
    outputs = engine_outputs()

    async def go() -> dict[str, Any]:
        url = edge.gateway.ws_url
        async with connect(f"{url}?token={token('ann')}", open_timeout=5) as ann:
            await ann.send(json.dumps({"action": "subscribe", "symbols": ["AAPL"]}))
            assert (await received(ann, 1))[0]["type"] == "subscribed"
            capsys.readouterr()
            stats = await asyncio.to_thread(invoke, as_captured(outputs))
            await received(ann, len(pushes_for(outputs, "ann", subscribed=True)))
            return stats

    stats = asyncio.run(go())
    assert stats["pushes"] > 0
    # before: one add_metric per sampled latency (len(outputs) of them), then the counts
    assert added == ["PushLatency", "Pushes", "Posts", "GoneConnections"]
    documents = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line
    ]
    assert len(documents) == 1
    (doc,) = documents
    assert len(doc["PushLatency"]) == len(outputs)
    assert all(value >= 0 for value in doc["PushLatency"])
    assert doc["Pushes"] == [stats["pushes"]]
    names = {m["Name"]: m["Unit"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names["PushLatency"] == "Milliseconds"


def test_invocations_side_by_side_each_log_their_own_request_id(edge):
    # the local feeder invokes the handler from a thread per topic at once; before, the
    # request id inject_lambda_context appends was the process's, so a line named
    # whichever invocation had started last
    evt = as_captured(engine_outputs())
    contexts = [LambdaContext("stream_handler") for _ in range(40)]
    with LogLines(stream_handler.logger) as lines, ThreadPoolExecutor(4) as feeders:
        list(feeders.map(lambda c: stream_handler.handler(evt, c), contexts))
    logged = Counter(line["function_request_id"] for line in lines.lines)
    assert logged == Counter(c.aws_request_id for c in contexts)
