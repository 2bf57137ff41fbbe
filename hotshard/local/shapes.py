"""The event shapes AWS hands the Lambdas, built locally: API Gateway WebSocket events,
HTTP API payload format 2.0 events, and MSK event-source batches. The local gateway and
feeder build them here; tests/events/*.json hold shapes captured from AWS and a test checks
both carry the same fields."""

import base64
import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

ACCOUNT_ID = "000000000000"
LOCAL_API_ID = "local"
WS_EVENT_TYPES = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}


_TIMES: dict[int, str] = {}


def _request_time(now_ms: int) -> str:
    """API Gateway's requestTime (to the second: cached, it is asked thousands of times a
    second)."""
    second = now_ms // 1000
    text = _TIMES.get(second)
    if text is None:
        text = datetime.fromtimestamp(second, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
        _TIMES.clear()
        _TIMES[second] = text
    return text


def _id() -> str:
    """A request or message id like API Gateway's (16 hex digits)."""
    return os.urandom(8).hex()


def websocket_event(
    route_key: str,
    connection_id: str,
    *,
    domain: str,
    stage: str,
    connected_at_ms: int,
    body: str | None = None,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    source_ip: str = "127.0.0.1",
    disconnect_status: int = 1000,
) -> dict[str, Any]:
    """One API Gateway WebSocket event: $connect (headers, query), a message route (body)
    or $disconnect."""
    now_ms = time.time_ns() // 1_000_000
    event_type = WS_EVENT_TYPES.get(route_key, "MESSAGE")
    request_id = _id()
    context: dict[str, Any] = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": _request_time(now_ms),
        "messageDirection": "IN",
        "stage": stage,
        "connectedAt": connected_at_ms,
        "requestTimeEpoch": now_ms,
        "identity": {"sourceIp": source_ip},
        "requestId": request_id,
        "domainName": domain,
        "connectionId": connection_id,
        "apiId": LOCAL_API_ID,
    }
    event: dict[str, Any] = {"requestContext": context, "isBase64Encoded": False}
    if event_type == "CONNECT":
        hdrs = dict(headers or {})
        event["headers"] = hdrs
        event["multiValueHeaders"] = {k: [v] for k, v in hdrs.items()}
        if query:
            event["queryStringParameters"] = dict(query)
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    elif event_type == "DISCONNECT":
        context["disconnectStatusCode"] = disconnect_status
        context["disconnectReason"] = ""
        event["headers"] = {"Host": domain, "x-api-key": "", "X-Forwarded-For": ""}
        event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    else:
        context["messageId"] = _id()
        event["body"] = body if body is not None else ""
    return event


def http_event(
    method: str,
    raw_path: str,
    route_key: str,
    *,
    domain: str,
    headers: Mapping[str, str],
    query: Mapping[str, str] | None = None,
    raw_query: str = "",
    path_parameters: Mapping[str, str] | None = None,
    body: bytes = b"",
    claims: Mapping[str, Any] | None = None,
    source_ip: str = "127.0.0.1",
) -> dict[str, Any]:
    """An HTTP API (payload format 2.0) event; `claims` as a JWT authorizer passes them."""
    now_ms = time.time_ns() // 1_000_000
    text: str | None = None
    b64 = False
    if body:
        try:
            text = body.decode()
        except UnicodeDecodeError:
            text, b64 = base64.b64encode(body).decode(), True
    context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": LOCAL_API_ID,
        "domainName": domain,
        "domainPrefix": domain.split(".", maxsplit=1)[0],
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": _id(),
        "routeKey": route_key,
        "stage": "$default",
        "time": _request_time(now_ms),
        "timeEpoch": now_ms,
    }
    if claims is not None:
        context["authorizer"] = {"jwt": {"claims": dict(claims), "scopes": None}}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": context,
        "isBase64Encoded": b64,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if text is not None:
        event["body"] = text
    return event


def msk_record(
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] = (),
) -> dict[str, Any]:
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp_ms,
        "timestampType": "CREATE_TIME",
        "key": None if key is None else base64.b64encode(key).decode(),
        "value": base64.b64encode(value or b"").decode(),
        "headers": [{name: list(data)} for name, data in headers],
    }


def msk_event(
    records: Sequence[dict[str, Any]], *, bootstrap: str, cluster_arn: str = ""
) -> dict[str, Any]:
    """An MSK event-source batch: records grouped under "topic-partition" keys, in order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(f"{record['topic']}-{record['partition']}", []).append(record)
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": cluster_arn
        or f"arn:aws:kafka:us-east-1:{ACCOUNT_ID}:cluster/hotshard-local/local",
        "bootstrapServers": bootstrap,
        "records": grouped,
    }
