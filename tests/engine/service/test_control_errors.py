"""What a control call answers when Redis (snapshots, checkpoints) is unreachable: a
retryable UNAVAILABLE with a reason, never an unknown error that ends a migration (seen in
the fault matrix: a Redis restart during ReplayPendingOrders failed the move after its
switch)."""

from types import SimpleNamespace
from typing import Any

import grpc
import pytest
import redis

from engine.service.control import EngineControl
from hotshard.reasons import Reason


class AbortedError(Exception):
    pass


class Context:
    def __init__(self) -> None:
        self.trailing: tuple[tuple[str, str], ...] = ()
        self.code: grpc.StatusCode | None = None

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.trailing = metadata

    def abort(self, code: grpc.StatusCode, _details: str) -> None:
        self.code = code
        raise AbortedError


@pytest.mark.parametrize("error", [redis.ConnectionError, redis.TimeoutError])
def test_redis_unreachable_is_unavailable_with_its_reason(error: type[Exception]) -> None:
    control = EngineControl(SimpleNamespace(serving=True))  # type: ignore[arg-type]
    context = Context()

    def step() -> Any:
        raise error("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    with pytest.raises(AbortedError):
        control._op(context, step)  # type: ignore[arg-type]
    assert context.code == grpc.StatusCode.UNAVAILABLE
    assert ("reason-code", str(int(Reason.STORE_UNAVAILABLE))) in context.trailing
