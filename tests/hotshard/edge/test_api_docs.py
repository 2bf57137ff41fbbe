"""docs/asyncapi.yaml and docs/openapi.yaml against the code: every route, frame, reply,
push and status the gateway and the Lambdas serve is documented, with the fields the code
actually writes, so the docs cannot silently drift."""

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from openapi_spec_validator import validate

from hotshard.codec import depth_json, dumps, event_json
from hotshard.domain import Liquidity, Side, Status
from hotshard.edge import api, push
from hotshard.edge.limits import Limits, instrument_json
from hotshard.edge.router import Ack, RefusedError, fill_json, record_json
from hotshard.edge.sessions import BATCH
from hotshard.events import FILL, STATUS, TRADE
from hotshard.local import gateway
from hotshard.reasons import Reason

DOCS = Path(__file__).resolve().parents[3] / "docs"


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DOCS / "asyncapi.yaml").read_text())
    return doc


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DOCS / "openapi.yaml").read_text())
    return doc


def deref(doc: dict[str, Any], node: Any) -> Any:
    """Follow local $refs (#/a/b/c)."""
    while isinstance(node, dict) and set(node) == {"$ref"}:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def properties(doc: dict[str, Any], schema: Any) -> set[str]:
    """Property names of a schema, through $ref and allOf."""
    schema = deref(doc, schema)
    names = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
        names |= properties(doc, part)
    return names


def sample_ack() -> dict[str, Any]:
    return Ack("ADD", "AAPL", "o-1", "alice", "orders", 0, 5, 1).json()


def sample_events() -> dict[str, dict[str, Any]]:
    return {
        "ORDER_STATUS": event_json(
            "AAPL",
            (STATUS, 3, "o-1", "alice", int(Status.REJECTED), int(Reason.STALE_ROUTE), 0, 0),
        ),
        "FILL": event_json("AAPL", (FILL, 4, "o-1", "alice", 10, 2, int(Liquidity.MAKER), 3)),
        "TRADE": event_json("AAPL", (TRADE, 3, "o-2", "o-1", 10, 2, int(Side.BUY), 3)),
        "DEPTH": depth_json("AAPL", 4, [(10, 2)], [(11, 5)]),
    }


# ---------------------------------------------------------------------- AsyncAPI


def test_every_websocket_route_and_reply_is_a_documented_message(asyncapi):
    messages = asyncapi["channels"]["root"]["messages"]
    assert set(gateway.WS_ROUTES) <= set(messages)
    assert set(api.ROUTES) - {"$connect", "$disconnect"} <= set(messages)
    assert {"$connect", "$disconnect"} <= set(asyncapi["operations"])
    for reply in ("ack", "error", "subscribed", "unsubscribed", "forbidden"):
        assert reply in messages
    for route in gateway.WS_ROUTES:  # each frame's `action` names its route
        payload = deref(asyncapi, deref(asyncapi, messages[route])["payload"])
        actions = [deref(asyncapi, p) for p in payload.get("allOf", [payload])]
        named = [a["properties"]["action"] for a in actions if "action" in a.get("properties", {})]
        assert any(route == n.get("const") or route in n.get("enum", []) for n in named), route


def test_every_push_type_is_documented_with_the_fields_the_code_writes(asyncapi):
    messages = asyncapi["channels"]["root"]["messages"]
    kinds = {*push.PUSH_TYPE.values(), "DEPTH"}
    assert kinds == set(sample_events())
    for kind, data in sample_events().items():
        message = deref(asyncapi, messages[kind])
        payload = deref(asyncapi, message["payload"])
        assert payload["properties"]["type"]["const"] == kind
        assert "prev_seq" in payload["properties"]  # gap detection on every stream
        documented = properties(asyncapi, payload["properties"]["data"])
        stamped = {**data, "ts_ns": 1}  # the push adds the order's receive time
        assert set(stamped) <= documented, (kind, set(stamped) - documented)
    status = deref(asyncapi, asyncapi["components"]["schemas"]["OrderStatus"])
    assert set(status["properties"]["status"]["enum"]) == {s.name for s in Status}


def test_batch_frames_are_documented_as_the_code_builds_them(asyncapi):
    messages = asyncapi["channels"]["root"]["messages"]
    payload = deref(asyncapi, deref(asyncapi, messages["BATCH"])["payload"])
    pushes = [dumps({"type": k, "data": d}) for k, d in sample_events().items()]
    frame = push.frames(pushes)
    assert len(frame) == 1 and frame[0][1] == len(pushes)
    built = yaml.safe_load(frame[0][0])
    assert built["type"] == payload["properties"]["type"]["const"] == "BATCH"
    assert set(built) == set(payload["required"])
    assert [p["type"] for p in built["pushes"]] == list(sample_events())
    query = asyncapi["channels"]["root"]["bindings"]["ws"]["query"]["properties"]
    assert query["pushes"]["enum"] == [BATCH]


def test_ack_error_and_reasons_match_the_code(asyncapi, openapi):
    ack, error = (
        sample_ack(),
        api.error_json(RefusedError(Reason.USER_MISMATCH, "x", symbol="AAPL", order_id="o-1")),
    )
    for doc in (asyncapi, openapi):
        schemas = doc["components"]["schemas"]
        assert set(ack) <= properties(doc, schemas["Ack"])
        assert set(schemas["Ack"]["required"]) == set(ack)
        assert set(error) <= properties(doc, schemas["Error"])
    reasons = set(asyncapi["components"]["schemas"]["Reason"]["enum"])
    assert reasons == {r.name for r in Reason if r != Reason.NONE} | {"INTERNAL"}


# ---------------------------------------------------------------------- OpenAPI


def test_openapi_file_is_valid_openapi(openapi):
    validate(openapi)  # raises on an invalid document


def test_every_http_route_is_documented_and_nothing_else(openapi):
    served = {(method.lower(), template) for method, template in gateway.HTTP_ROUTES}
    documented = {
        (method, path)
        for path, item in openapi["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
    }
    assert documented == served


def test_every_status_the_api_answers_is_documented(openapi):
    answered = {api.http_status(reason) for reason in Reason} | {400, 401, 404, 413}
    documented = {
        int(code)
        for item in openapi["paths"].values()
        for method, op in item.items()
        if method != "parameters"
        for code in op["responses"]
    }
    assert answered - {200, 202} <= documented, answered - documented
    for item in openapi["paths"].values():  # every route is behind the authorizer
        for method, op in item.items():
            if method != "parameters":
                assert "401" in op["responses"]
    post = openapi["paths"]["/orders"]["post"]["responses"]
    for status in (400, 403, 409, 422, 503):
        assert str(status) in post
    depth = deref(openapi, openapi["components"]["schemas"]["Depth"])
    assert set(sample_events()["DEPTH"]) == set(depth["properties"])


def test_the_exchange_calls_answer_what_the_docs_describe(asyncapi, openapi):
    schemas = openapi["components"]["schemas"]
    fill = fill_json(
        "alice",
        "1-0",
        {
            "symbol": "AAPL",
            "seq": "4",
            "order_id": "o-1",
            "side": "1",
            "price": "10",
            "quantity": "2",
            "liquidity": "1",
            "trade_id": "3",
            "ts_ns": "5",
        },
    )
    assert set(fill) == properties(openapi, schemas["FillRecord"])
    instrument = {**instrument_json("AAPL", Limits(tick=5)), "status": "ACTIVE"}
    assert set(instrument) == properties(openapi, schemas["Instrument"])
    record = record_json("alice", "o-1", {"symbol": "AAPL", "side": "1", "type": "1"})
    assert set(record) <= properties(openapi, schemas["OrderRecord"])
    for name in ("OpenOrders", "CancelAll", "Fills", "Balance"):
        assert set(schemas[name]["required"]) <= properties(openapi, schemas[name])
    messages = asyncapi["components"]["messages"]
    for reply, name in (
        ("cancelAllReply", "CancelAll"),
        ("cancelOnDisconnectReply", ""),
        ("pong", ""),
    ):
        documented = properties(asyncapi, messages[reply]["payload"])
        if name:
            assert properties(openapi, schemas[name]) <= documented
        assert "request_id" in documented
