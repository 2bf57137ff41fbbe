"""The local gateway's HTTP API on a kept-alive connection (what browsers, requests'
Session and most HTTP clients do): every request answered on the same connection, at
once. A real http.client connection against the real gateway; the route handler answers
every request with a small JSON body."""

import http.client
import json
import statistics
import time
from typing import Any

from hotshard.edge.auth import TokenVerifier, mint_token
from hotshard.local.gateway import LocalGateway

SECRET = "keepalive-secret-0123456789abcdef"


def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    body = {"route": event.get("routeKey")}
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body),
    }


def round_trips(port: int, requests: list[tuple[str, dict[str, str]]]) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        times = []
        sockets = set()
        for path, headers in requests:
            start = time.perf_counter()
            conn.request("GET", path, headers=headers)
            reply = conn.getresponse()
            reply.read()
            times.append(time.perf_counter() - start)
            assert reply.status in (200, 401, 404), reply.status
            sockets.add(id(conn.sock))
        assert len(sockets) == 1  # one connection, kept alive throughout
        return times
    finally:
        conn.close()


def test_requests_on_a_kept_alive_connection_are_answered_without_a_delayed_ack_wait() -> None:
    # A response's head and body are written separately; with Nagle's algorithm on, the
    # body waited for the client's delayed ACK of the head: >= 40 ms (Linux's minimum
    # delayed-ACK time) for every request after the first few of a connection. Loopback
    # round trips of these requests take ~1 ms (a few ms on a loaded machine).
    auth = {"Authorization": f"Bearer {mint_token(SECRET, 'alice')}"}
    with LocalGateway(handler, TokenVerifier(secret=SECRET)) as gateway:
        requests = [("/instruments", auth), ("/instruments", {}), ("/nowhere", {})] * 10
        times = round_trips(gateway.http_port, requests)
    median_ms = statistics.median(times) * 1000
    assert median_ms < 30, (
        f"median round trip {median_ms:.1f} ms: {[round(t * 1000) for t in times]}"
    )
