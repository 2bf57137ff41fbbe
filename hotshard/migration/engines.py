"""The one gRPC EngineControl client of the migration (proto/hotshard/v1/control.proto).

Every call has a deadline; UNAVAILABLE / DEADLINE_EXCEEDED (an engine restarting, a
network blip) become EngineUnavailable, which the ASL retries; any other failure becomes
EngineCallFailed carrying the engine's Reason from the trailing metadata `reason-code`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from hotshard.migration.errors import EngineCallFailed, EngineUnavailable
from hotshard.reasons import Reason
from hotshard.v1 import control_pb2, control_pb2_grpc

CALL_TIMEOUT_S = 30.0
SLOW_CALL_TIMEOUT_S = 120.0
"""Snapshot and Follow: a big book's dump, store, fetch and load (TransferSnapshot: 300 s)."""
R = TypeVar("R")
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def reason_of(error: grpc.RpcError) -> Reason:
    """The Reason an engine put in the trailing metadata (NONE if it put none)."""
    trailing = getattr(error, "trailing_metadata", lambda: None)() or ()
    for key, value in trailing:
        if key == "reason-code":
            try:
                return Reason(int(value))
            except ValueError:
                return Reason.NONE
    return Reason.NONE


@dataclass
class EngineClient:
    """EngineControl at `address` (host:port). Use as a context manager or close()."""

    address: str
    timeout_s: float = CALL_TIMEOUT_S

    def __post_init__(self) -> None:
        self._channel = grpc.insecure_channel(self.address)
        self._stub = control_pb2_grpc.EngineControlStub(self._channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._channel.close()

    def connect(self, timeout_s: float = 2.0) -> bool:
        """Open the channel now (name resolution, TCP, HTTP/2) rather than in the first
        call; False if it is not ready within `timeout_s` (the first call then tries
        again, and fails as it would have)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            return False
        return True

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _call(self, name: str, request: Any, reply: type[R], timeout_s: float | None = None) -> R:
        try:
            answer = getattr(self._stub, name)(request, timeout=timeout_s or self.timeout_s)
            assert isinstance(answer, reply)
            return answer
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            detail = exc.details() if hasattr(exc, "details") else str(exc)
            if code in RETRIED:
                raise EngineUnavailable(f"{name} on {self.address}: {code}: {detail}") from exc
            status = code.name if code is not None else ""
            raise EngineCallFailed(
                name, reason_of(exc), f"{self.address}: {detail}", status
            ) from exc

    def health(self) -> control_pb2.HealthReply:
        return self._call("Health", control_pb2.HealthRequest(), control_pb2.HealthReply, 5.0)

    def stats(self) -> control_pb2.StatsReply:
        return self._call("Stats", control_pb2.StatsRequest(), control_pb2.StatsReply, 10.0)

    def snapshot(self, symbol: str) -> control_pb2.SnapshotReply:
        # answered once the dump is stored: a 1M-order book's took 30+ s at load 20-30, and
        # each retry after a deadline forked and dumped it again (TransferSnapshot failed 5
        # times in a row); the task's own timeout is 300 s
        return self._call(
            "Snapshot",
            control_pb2.SnapshotRequest(symbol=symbol),
            control_pb2.SnapshotReply,
            SLOW_CALL_TIMEOUT_S,
        )

    def follow(
        self, symbol: str, location: str, source_partition: int, from_offset: int
    ) -> control_pb2.FollowReply:
        request = control_pb2.FollowRequest(
            symbol=symbol,
            location=location,
            source_partition=source_partition,
            from_offset=from_offset,
        )
        return self._call("Follow", request, control_pb2.FollowReply, SLOW_CALL_TIMEOUT_S)

    def fence(self, symbol: str, epoch: int, to_partition: int) -> control_pb2.FenceReply:
        request = control_pb2.FenceRequest(symbol=symbol, epoch=epoch, to_partition=to_partition)
        return self._call("Fence", request, control_pb2.FenceReply)

    def promote(self, request: control_pb2.PromoteRequest) -> control_pb2.PromoteReply:
        return self._call(
            "Promote", request, control_pb2.PromoteReply, 120.0 if request.wait_durable else None
        )

    def unfence(
        self, symbol: str, owner_epoch: int, *replays: control_pb2.PendingReplay
    ) -> control_pb2.UnfenceReply:
        """Unfence, replaying `replays` in order (the first as `pending`, the rest `then`)."""
        request = control_pb2.UnfenceRequest(symbol=symbol, owner_epoch=owner_epoch)
        if replays:
            request.pending.CopyFrom(replays[0])
            request.then.extend(replays[1:])
        return self._call("Unfence", request, control_pb2.UnfenceReply, 120.0)

    def remove(self, symbol: str, fence_epoch: int = 0) -> control_pb2.RemoveReply:
        request = control_pb2.RemoveRequest(symbol=symbol, fence_epoch=fence_epoch)
        return self._call("Remove", request, control_pb2.RemoveReply)
