"""The events the local gateway and feeder build carry the fields of the ones captured
from AWS (tests/events), so the handlers see in tests what they see in AWS."""

from typing import Any

from hotshard.local.shapes import http_event, msk_event, msk_record, websocket_event
from tests.hotshard.edge.kit import event


def keys(obj: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.add(prefix + k)
            if k not in ("headers", "multiValueHeaders", "claims", "records"):
                out |= keys(v, prefix + k + ".")
    return out


def test_websocket_events_have_api_gateway_fields():
    connect = websocket_event(
        "$connect", "c=", domain="d", stage="live", connected_at_ms=1, headers={"Host": "d"}
    )
    order = websocket_event("order", "c=", domain="d", stage="live", connected_at_ms=1, body="{}")
    gone = websocket_event("$disconnect", "c=", domain="d", stage="live", connected_at_ms=1)
    assert keys(connect) == keys(event("apiGatewayWebSocketConnect"))
    assert keys(order) == keys(event("apiGatewayWebSocketOrder"))
    assert keys(gone) == keys(event("apiGatewayWebSocketDisconnect"))


def test_http_events_have_payload_2_0_fields():
    built = http_event(
        "POST",
        "/orders",
        "POST /orders",
        domain="d",
        headers={"content-type": "application/json"},
        body=b"{}",
        claims={"sub": "alice"},
    )
    assert keys(built) == keys(event("apiGatewayHttpPostOrder"))


def test_msk_batches_group_records_by_topic_partition():
    records = [msk_record("fills", p, o, 1, b"K", b"V") for p, o in ((0, 5), (1, 2), (0, 6))]
    built = msk_event(records, bootstrap="127.0.0.1:1")
    captured = event("mskEvent")
    assert keys(built) == keys(captured)
    assert set(built["records"]["fills-0"][0]) == set(captured["records"]["order_status-0"][0])
    assert [r["offset"] for r in built["records"]["fills-0"]] == [5, 6]
