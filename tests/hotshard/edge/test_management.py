"""hotshard.edge.management: the lean Management API client signs exactly as botocore does
(SigV4, service execute-api) and posts to a real HTTP server over a kept-alive connection;
410 is 'gone', 5xx is retried."""

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials as BotoCredentials  # type: ignore[import-untyped]

from hotshard.edge.management import Credentials, ManagementClient, ManagementError

WHEN = datetime(2026, 12, 1, 13, 5, 7, tzinfo=UTC)


@pytest.mark.parametrize("token", ["", "FwoGZXIvYXdzEJr//////////session"])
@pytest.mark.parametrize(
    "endpoint",
    ["https://abc123.execute-api.eu-west-1.amazonaws.com/live", "http://127.0.0.1:8123"],
)
def test_signature_is_the_one_botocore_computes(token: str, endpoint: str) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    client = ManagementClient(
        endpoint, region="eu-west-1", credentials=lambda: creds, clock=lambda: WHEN
    )
    body = b'{"type":"FILL","data":{"seq":5}}'
    conn_id = "L0SM9cOFvHcCIhw="  # API Gateway ids end in '=': percent-encoded in the path
    path = client.path_of(conn_id)
    ours = client.headers("POST", path, body)

    origin = endpoint.removesuffix("/live")
    request = AWSRequest(method="POST", url=origin + path, data=body)
    request.context["timestamp"] = WHEN.strftime("%Y%m%dT%H%M%SZ")
    boto = BotoCredentials(creds.access_key, creds.secret_key, creds.token or None)
    signer = SigV4Auth(boto, "execute-api", "eu-west-1")
    signer._modify_request_before_signing(request)  # what add_auth does, at a fixed time
    canonical = signer.canonical_request(request)
    signature = signer.signature(signer.string_to_sign(request, canonical), request)
    names = signer.signed_headers(signer.headers_to_sign(request))
    assert ours["Authorization"].endswith(f"SignedHeaders={names}, Signature={signature}")
    assert ours["X-Amz-Date"] == request.headers["X-Amz-Date"]
    if token:
        assert ours["X-Amz-Security-Token"] == token
    assert path.endswith("/@connections/L0SM9cOFvHcCIhw%3D")


class Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str, bytes, int]]] = []
    answers: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, self.headers["Authorization"], body, self.client_address[1]))
        status = self.answers.pop(0) if self.answers else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    Recorder.seen = []
    Recorder.answers = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def test_posts_on_one_kept_alive_connection_and_410_is_gone(server: ThreadingHTTPServer) -> None:
    port = server.server_address[1]
    client = ManagementClient(
        f"http://127.0.0.1:{port}/live",
        region="us-east-1",
        credentials=lambda: Credentials("AKID", "secret"),
    )
    assert client.post("a=", b"one")
    assert client.post("b=", b"two")
    Recorder.answers = [410]
    assert not client.post("c=", b"three")
    Recorder.answers = [503, 500]
    assert client.post("d=", b"four")  # retried twice
    Recorder.answers = [400]
    with pytest.raises(ManagementError):
        client.post("e=", b"five")
    paths = [p for p, _, _, _ in Recorder.seen]
    assert paths[:3] == [
        "/live/@connections/a%3D",
        "/live/@connections/b%3D",
        "/live/@connections/c%3D",
    ]
    assert [b for _, _, b, _ in Recorder.seen][:2] == [b"one", b"two"]
    assert all(a.startswith("AWS4-HMAC-SHA256 Credential=AKID/") for _, a, _, _ in Recorder.seen)
    assert len({port for _, _, _, port in Recorder.seen}) == 1  # one connection throughout


def _raw_server(answers: list[bytes]) -> tuple[socket.socket, threading.Thread, list[bytes]]:
    """A server that reads each request (head and Content-Length body) and writes the next
    answer's bytes as they are; an answer ending in b"<close>" is followed by closing the
    connection (without saying so in a header)."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        while answers:
            conn, _ = listener.accept()
            with conn, conn.makefile("rb") as rfile:
                while answers:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = rfile.readline()
                        if not line:
                            break
                        head += line
                    if not head:
                        break
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    seen.append(rfile.read(length))
                    answer = answers.pop(0)
                    conn.sendall(answer.removesuffix(b"<close>"))
                    if answer.endswith(b"<close>"):
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread, seen


def test_chunked_interim_and_closed_answers_are_read_and_a_dropped_connection_resent() -> None:
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 410 Gone\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"me\r\n9;x=1\r\nssage":1}\r\n0\r\nTrailer: t\r\n\r\n',
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n<close>",  # closed without a header
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",  # 1.0: closes after it
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ]
    listener, thread, seen = _raw_server(answers)
    client = ManagementClient(
        f"http://127.0.0.1:{listener.getsockname()[1]}",
        region="us-east-1",
        credentials=lambda: Credentials("AKID", "secret"),
    )
    try:
        assert client.post("a=", b"one")
        status, body = client.request("POST", "b=", b"two")
        assert (status, body) == (410, b'{"message":1}')
        assert client.post("c=", b"three")
        assert client.post("d=", b"four")  # the old connection was closed: sent on a new one
        assert client.post("e=", b"five")
    finally:
        listener.close()
        thread.join(5)
    assert seen == [b"one", b"two", b"three", b"four", b"five"]
