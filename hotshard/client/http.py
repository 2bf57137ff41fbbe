"""The HTTP API's reading calls for users (docs/openapi.yaml): open orders, one order,
cancel-all, fills, instruments, balance. Standard library only (urllib): one request per
call, the same JWT as the WebSocket.

    api = HttpApi("http://127.0.0.1:PORT", token)
    status, body = api.open_orders(symbol="AAPL")
"""

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

from hotshard.client.errors import ClientError

Reply = tuple[int, dict[str, Any]]


class HttpApi:
    def __init__(self, url: str, token: str, *, timeout_s: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def open_orders(self, symbol: str = "", limit: int = 0) -> Reply:
        """GET /orders: the user's open orders, oldest first."""
        return self.call("GET", "/orders", symbol=symbol, limit=limit or "")

    def order(self, order_id: str) -> Reply:
        """GET /orders/{id}: one order's latest known status (404: no such order)."""
        return self.call("GET", "/orders/" + quote(order_id, safe=""))

    def cancel_all(self, symbol: str = "") -> Reply:
        """DELETE /orders: cancel the user's open orders (of `symbol` only, if given)."""
        return self.call("DELETE", "/orders", symbol=symbol)

    def fills(self, symbol: str = "", limit: int = 0, before: str = "") -> Reply:
        """GET /fills: the user's fills, newest first; `before` = the previous page's next."""
        return self.call("GET", "/fills", symbol=symbol, limit=limit or "", before=before)

    def instruments(self, symbol: str = "") -> Reply:
        """GET /instruments: tick, lot, band and limits of the listed symbols."""
        return self.call("GET", "/instruments", symbol=symbol)

    def balance(self) -> Reply:
        """GET /balance: the user's available balance per asset."""
        return self.call("GET", "/balance")

    def call(self, method: str, path: str, **query: Any) -> Reply:
        """(HTTP status, JSON body); a refusal is a 4xx with an error body, not an
        exception. ClientError: no answer (connection refused, timeout, not JSON)."""
        params = {k: v for k, v in query.items() if v not in ("", None)}
        target = self.url + path + (f"?{urlencode(params)}" if params else "")
        req = urllib.request.Request(target, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as reply:
                status, raw = reply.status, reply.read()
        except urllib.error.HTTPError as err:
            status, raw = err.code, err.read()
        except (OSError, TimeoutError) as exc:
            raise ClientError(f"cannot reach {self.url}: {exc}") from exc
        try:
            body = json.loads(raw or b"{}")
        except ValueError as exc:
            raise ClientError(f"{method} {path}: HTTP {status}, not JSON") from exc
        if not isinstance(body, dict):
            raise ClientError(f"{method} {path}: HTTP {status}, not a JSON object")
        return status, body
