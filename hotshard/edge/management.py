"""A lean client of the API Gateway Management API: `POST /@connections/{id}` with Signature
Version 4, one kept-alive HTTP connection per thread.

boto3's `apigatewaymanagementapi` client costs ~1 ms of CPU per post (its event hooks,
endpoint resolution, retries, parsing); the stream handler posts thousands per second, so
it signs the one request it needs itself:

    client = ManagementClient("https://abc.execute-api.eu-west-1.amazonaws.com/live",
                              region="eu-west-1", credentials=static_credentials(os.environ))
    client.post("L0SM9cOFvHcCIhw=", b'{"type": "FILL", ...}')   # False: gone (410)

The signature is the one botocore computes for the same request (tests compare them); the
credentials come from the Lambda's environment (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) or any provider returning the three.
Locally (the gateway of hotshard.local.gateway) `secret` is the Management API's shared
secret, sent in X-Hotshard-Management-Secret with every request (in AWS: empty).
A dropped keep-alive connection is reopened and the post sent again once; 429 and 5xx
answers are retried with a short backoff (what boto3's standard retry mode does).
A request is written in one send and its response read from a buffered reader of the
socket (`_Connection`): http.client's request building and its header parsing (through
the email package) were ~60% of a post's time in the stream handler.
"""

import hashlib
import hmac
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from hotshard.names import MANAGEMENT_SECRET_HEADER

SERVICE = "execute-api"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()
RETRIES = 3
TIMEOUT_S = 5.0
PATH_CACHE = 100_000
"""Connections whose request paths are kept (a dict lookup instead of two quote() calls)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str = ""


def static_credentials(env: Mapping[str, str]) -> Callable[[], Credentials]:
    """The Lambda runtime's credentials, from its environment (they live as long as the
    execution environment does)."""
    creds = Credentials(
        env.get("AWS_ACCESS_KEY_ID", ""),
        env.get("AWS_SECRET_ACCESS_KEY", ""),
        env.get("AWS_SESSION_TOKEN", ""),
    )
    return lambda: creds


class ManagementError(RuntimeError):
    """The Management API answered neither 2xx nor 410 (after retries)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"post_to_connection: HTTP {status} {body[:200]!r}")
        self.status = status


class ManagementClient:
    def __init__(
        self,
        endpoint: str,
        *,
        region: str,
        credentials: Callable[[], Credentials],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        secret: str = "",
    ) -> None:
        split = urlsplit(endpoint)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint!r}")
        self.https = split.scheme == "https"
        self.host = split.hostname
        self.port = split.port or (443 if self.https else 80)
        default = (self.https and self.port == 443) or (not self.https and self.port == 80)
        self.host_header = self.host if default else f"{self.host}:{self.port}"
        self.base_path = split.path.rstrip("/")
        self.region = region
        self.credentials = credentials
        self.clock = clock
        self.secret = secret
        self._local = threading.local()
        self._keys: dict[tuple[str, str], bytes] = {}
        self._paths: dict[str, str] = {}
        self._canonical: dict[str, str] = {}

    # ------------------------------------------------------------------ signing

    def _signing_key(self, secret: str, day: str) -> bytes:
        key = self._keys.get((secret, day))
        if key is None:
            k = _hmac(("AWS4" + secret).encode(), day)
            k = _hmac(k, self.region)
            k = _hmac(k, SERVICE)
            key = _hmac(k, "aws4_request")
            self._keys = {(secret, day): key}  # one day's key is all that is needed
        return key

    def headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        """The request's headers with its SigV4 Authorization. `path` is the request path
        as sent (percent-encoded)."""
        creds = self.credentials()
        now = self.clock()
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        payload_sha = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA
        signed = {"host": self.host_header, "x-amz-date": stamp}
        if creds.token:
            signed["x-amz-security-token"] = creds.token
        names = ";".join(sorted(signed))
        canonical = "\n".join(
            (
                method,
                self._canonical_path(path),
                "",
                "".join(f"{k}:{signed[k]}\n" for k in sorted(signed)),
                names,
                payload_sha,
            )
        )
        scope = f"{day}/{self.region}/{SERVICE}/aws4_request"
        to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        signature = hmac.new(
            self._signing_key(creds.secret_key, day), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        out = {
            "Host": self.host_header,
            "X-Amz-Date": stamp,
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
                f"SignedHeaders={names}, Signature={signature}"
            ),
        }
        if creds.token:
            out["X-Amz-Security-Token"] = creds.token
        return out

    def _canonical_path(self, path: str) -> str:
        """The path as SigV4 signs it: botocore encodes the sent path once more (cached:
        urllib's quote was ~7% of the stream handler's time, a connection is posted to
        again and again)."""
        found = self._canonical.get(path)
        if found is None:
            if len(self._canonical) >= PATH_CACHE:
                self._canonical.clear()
            found = self._canonical[path] = quote(path, safe="/~")
        return found

    def path_of(self, connection_id: str) -> str:
        found = self._paths.get(connection_id)
        if found is None:
            if len(self._paths) >= PATH_CACHE:
                self._paths.clear()
            found = f"{self.base_path}/@connections/{quote(connection_id, safe='')}"
            self._paths[connection_id] = found
        return found

    # ------------------------------------------------------------------ requests

    def _connection(self) -> "_Connection":
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _Connection(self.host, self.port, https=self.https)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def request(self, method: str, connection_id: str, body: bytes = b"") -> tuple[int, bytes]:
        path = self.path_of(connection_id)
        for attempt in range(RETRIES + 1):
            headers = self.headers(method, path, body)
            headers["Content-Length"] = str(len(body))
            if self.secret:
                headers[MANAGEMENT_SECRET_HEADER] = self.secret
            head = f"{method} {path} HTTP/1.1\r\n" + "".join(
                f"{name}: {value}\r\n" for name, value in headers.items()
            )
            try:
                status, data, will_close = self._connection().exchange(
                    head.encode("latin-1") + b"\r\n" + body
                )
            except OSError:
                self._drop()
                if attempt == RETRIES:
                    raise
                continue
            if will_close:
                self._drop()
            if (status == 429 or status >= 500) and attempt < RETRIES:
                time.sleep(0.02 * 2**attempt)
                continue
            return status, data
        raise AssertionError("unreachable")

    def post(self, connection_id: str, data: bytes) -> bool:
        """post_to_connection; False if the connection is gone (410)."""
        status, body = self.request("POST", connection_id, data)
        if status == 410:
            return False
        if not 200 <= status < 300:
            raise ManagementError(status, body)
        return True


class ProtocolError(OSError):
    """The server's answer was not HTTP/1.x: the connection is dropped (and the request
    sent again on a new one, as after any connection error)."""


MAX_LINE = 65536
_TLS: ssl.SSLContext | None = None


class _Connection:
    """One kept-alive HTTP/1.1 connection (TLS for https)."""

    def __init__(self, host: str, port: int, *, https: bool) -> None:
        global _TLS  # noqa: PLW0603 - one context per process, made when first needed
        sock = socket.create_connection((host, port), timeout=TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if https:
            _TLS = _TLS or ssl.create_default_context()
            sock = _TLS.wrap_socket(sock, server_hostname=host)
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def exchange(self, request: bytes) -> tuple[int, bytes, bool]:
        """Send a request, read its response: (status, body, the server closes)."""
        self.sock.sendall(request)
        while True:
            status, headers = self._head()
            if not 100 <= status < 200:  # an interim 1xx answer: the real one follows
                break
        close = "close" in headers.get("connection", "").lower()
        if status in (204, 304):
            return status, b"", close
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return status, self._chunks(), close
        length = headers.get("content-length")
        if length is None:  # the body runs to the end of the connection
            return status, self.rfile.read(), True
        if not length.isdigit():
            raise ProtocolError(f"Content-Length {length!r}")
        return status, self._exactly(int(length)), close

    def _line(self) -> bytes:
        line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            raise ConnectionResetError("the server closed the connection")
        if len(line) > MAX_LINE or not line.endswith(b"\n"):
            raise ProtocolError("response line too long or cut")
        return line

    def _head(self) -> tuple[int, dict[str, str]]:
        version, _, rest = self._line().partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x status line: {version + b' ' + rest!r}")
        headers: dict[str, str] = {}
        while (line := self._line()) not in (b"\r\n", b"\n"):
            name, colon, value = line.decode("latin-1").partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        if version == b"HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
            headers["connection"] = "close"
        return int(code), headers

    def _exactly(self, size: int) -> bytes:
        data = self.rfile.read(size) if size else b""
        if len(data) < size:
            raise ConnectionResetError("the response body was cut")
        return data

    def _chunks(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"chunk size {size_text!r}") from None
            if size == 0:
                while self._line() not in (b"\r\n", b"\n"):  # trailers
                    pass
                return b"".join(parts)
            parts.append(self._exactly(size))
            self._line()  # the CRLF after the chunk

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()
