"""The client's own error (shared by the WebSocket session and the HTTP calls)."""


class ClientError(RuntimeError):
    """The connection failed or was refused (no reply frame to return)."""
