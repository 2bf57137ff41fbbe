"""gRPC control of one engine (hotshard.v1.EngineControl): thin handlers over
engine.service.operations (which run their state steps on the loop thread, Engine.call)
and Health and Stats (read on the loop thread).

Status codes come from the ControlError raised (engine.service.errors): NOT_FOUND (symbol
not here, snapshot location empty), ALREADY_EXISTS (Restore of a symbol already here),
DATA_LOSS (corrupt snapshot: checksum, truncation), INVALID_ARGUMENT (unknown snapshot
version, symbol mismatch, bad request), FAILED_PRECONDITION (partition not owned here or
owned elsewhere), UNAVAILABLE (engine stopping, events not yet delivered, not
checkpointed). The reason code (hotshard.reasons) is in the trailing metadata `reason`
(its name) and `reason-code` (its number), and the details text.

Beside EngineControl the server speaks the standard grpc.health.v1 (SERVING while the loop
serves; overall "" and per service) and server reflection, so grpc_health_probe and
grpcurl work without the project's protos.
"""

import functools
import logging
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import redis
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from engine.service.errors import ControlError
from engine.service.loop import Engine
from engine.service.operations import Operations, PendingSpec, PromoteRequest
from hotshard.reasons import Reason
from hotshard.v1 import control_pb2, control_pb2_grpc

log = logging.getLogger("hotshard.engine.control")

CALL_TIMEOUT_S = 60.0


def _after_reply(context: grpc.ServicerContext, fn: Callable[[], None]) -> None:
    """`fn` once the RPC is over (its reply sent), or now if it is over already."""
    if not context.add_callback(fn):
        fn()


def _log_replied(context: grpc.ServicerContext, rpc: str, symbol: str) -> None:
    """Log ("replied") when the RPC is over as the server's thread sees it (`at_ms`, wall
    clock): an upper bound of when its reply left (the caller may have it first). A move's
    pause steps (Fence, Promote) are split at it in bench.migration."""

    def done() -> None:
        log.info(
            "replied", extra={"rpc": rpc, "symbol": symbol, "at_ms": round(time.time() * 1e3, 1)}
        )

    _after_reply(context, done)


class EngineControl(control_pb2_grpc.EngineControlServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.operations = Operations(engine)

    def _call(self, context: grpc.ServicerContext, fn: Any, *, on_loop: bool = True) -> Any:
        if not self.engine.serving:
            context.abort(grpc.StatusCode.UNAVAILABLE, "engine is not serving")
        try:
            if on_loop:
                return self.engine.call(fn, CALL_TIMEOUT_S)
            return fn()
        except ControlError as exc:
            context.set_trailing_metadata(
                (("reason", exc.reason.name), ("reason-code", str(int(exc.reason))))
            )
            context.abort(getattr(grpc.StatusCode, exc.status), str(exc))
        except TimeoutError:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "engine loop did not answer")
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Redis restarting (snapshots, checkpoints): the caller retries, as for any
            # other step not yet durable (an unknown error would end a migration)
            reason = Reason.STORE_UNAVAILABLE
            context.set_trailing_metadata(
                (("reason", reason.name), ("reason-code", str(int(reason))))
            )
            context.abort(grpc.StatusCode.UNAVAILABLE, f"redis unreachable: {exc}")
        raise AssertionError("unreachable")  # context.abort raises

    def _op(self, context: grpc.ServicerContext, fn: Any) -> Any:
        return self._call(context, fn, on_loop=False)

    def Snapshot(  # noqa: N802 - generated interface
        self, request: control_pb2.SnapshotRequest, context: grpc.ServicerContext
    ) -> control_pb2.SnapshotReply:
        result = self._op(context, lambda: self.operations.snapshot(request.symbol))
        return control_pb2.SnapshotReply(
            partition=result.partition,
            input_offset=result.input_offset,
            location=result.location,
            seq=result.seq,
            owner_epoch=result.owner_epoch,
            size_bytes=result.size,
            state_hash=result.state_hash,
        )

    def Restore(  # noqa: N802
        self, request: control_pb2.RestoreRequest, context: grpc.ServicerContext
    ) -> control_pb2.RestoreReply:
        source = request.WhichOneof("source")
        if source is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "snapshot or location is required")
        restored = self._op(
            context,
            lambda: self.operations.restore(
                request.symbol,
                data=request.snapshot if source == "snapshot" else None,
                location=request.location,
                follow=request.follow,
                partition=request.partition,
                from_offset=request.from_offset,
            ),
        )
        return control_pb2.RestoreReply(seq=restored.seq, input_offset=restored.applied_through)

    def Remove(  # noqa: N802
        self, request: control_pb2.RemoveRequest, context: grpc.ServicerContext
    ) -> control_pb2.RemoveReply:
        removed = self._op(
            context, lambda: self.operations.remove(request.symbol, request.fence_epoch)
        )
        return control_pb2.RemoveReply(
            seq=removed.seq,
            input_offset=removed.input_offset,
            location=removed.location,
            fence_epoch=removed.fence_epoch,
        )

    def Follow(  # noqa: N802
        self, request: control_pb2.FollowRequest, context: grpc.ServicerContext
    ) -> control_pb2.FollowReply:
        followed = self._op(
            context,
            lambda: self.operations.follow(
                request.symbol, request.location, request.source_partition, request.from_offset
            ),
        )
        return control_pb2.FollowReply(seq=followed.seq, next_offset=followed.next_offset)

    def Fence(  # noqa: N802
        self, request: control_pb2.FenceRequest, context: grpc.ServicerContext
    ) -> control_pb2.FenceReply:
        _log_replied(context, "Fence", request.symbol)
        fenced = self._op(
            context,
            lambda: self.operations.fence(
                request.symbol,
                request.epoch,
                request.to_partition,
                after_reply=functools.partial(_after_reply, context),
            ),
        )
        return control_pb2.FenceReply(
            fence_offset=fenced.fence_offset,
            final_seq=fenced.final_seq,
            state_hash=fenced.state_hash,
            owner_epoch=fenced.owner_epoch,
            partition=fenced.partition,
            location=fenced.location,
        )

    def Promote(  # noqa: N802
        self, request: control_pb2.PromoteRequest, context: grpc.ServicerContext
    ) -> control_pb2.PromoteReply:
        req = PromoteRequest(
            request.symbol,
            request.through_offset,
            request.expect_seq,
            request.expect_hash,
            request.owner_epoch,
            request.partition,
            request.fallback_location,
            _pending(request.pending) if request.HasField("pending") else None,
            request.wait_durable,
        )
        if not request.wait_durable:  # the switch's Promote: the pause ends at its answer
            _log_replied(context, "Promote", request.symbol)
        promoted = self._op(context, lambda: self.operations.promote(req))
        return control_pb2.PromoteReply(
            seq=promoted.seq,
            replayed=promoted.replayed,
            held=promoted.held,
            location=promoted.location,
            durable=promoted.durable,
        )

    def Unfence(  # noqa: N802
        self, request: control_pb2.UnfenceRequest, context: grpc.ServicerContext
    ) -> control_pb2.UnfenceReply:
        first = [request.pending] if request.HasField("pending") else []
        replays = tuple(_replay(p) for p in [*first, *request.then])
        done = self._op(
            context,
            lambda: self.operations.unfence(request.symbol, request.owner_epoch, None, replays),
        )
        return control_pb2.UnfenceReply(seq=done.seq, replayed=done.replayed, held=done.held)

    def Health(  # noqa: N802
        self, request: control_pb2.HealthRequest, context: grpc.ServicerContext
    ) -> control_pb2.HealthReply:
        engine = self.engine
        if not engine.serving:
            return control_pb2.HealthReply(serving=False, instance_id=engine.settings.instance)

        def read() -> control_pb2.HealthReply:
            return control_pb2.HealthReply(
                serving=engine.serving,
                instance_id=engine.settings.instance,
                partitions=engine.partitions,
                symbols=sorted(engine.state.market.books),
            )

        return self._call(context, read)  # type: ignore[no-any-return]

    def Stats(  # noqa: N802
        self, request: control_pb2.StatsRequest, context: grpc.ServicerContext
    ) -> control_pb2.StatsReply:
        engine = self.engine

        def read() -> control_pb2.StatsReply:
            # rates of the last closed metrics window (--metrics-interval-s): reading them
            # must not close a window, or a polling monitor would skew the CloudWatch rates
            metrics = engine.metrics
            reply = control_pb2.StatsReply(
                cpu_percent=metrics.cpu_percent,
                orders_total=metrics.total,
                orders_per_second=metrics.rate,
                consumer_lag=engine.lag(),
            )
            state = engine.state
            reply.instance_id = engine.settings.instance
            reply.checkpointing = engine.checkpointing
            for symbol, book in sorted(state.market.books.items()):
                meter = metrics.symbols.get(symbol)
                reply.symbols.add(
                    symbol=symbol,
                    orders_per_second=meter.rate if meter else 0.0,
                    resting_orders=book.resting(),
                    seq=book.seq,
                    latency_p50_ms=meter.percentile_ms(0.50) if meter else 0.0,
                    latency_p99_ms=meter.percentile_ms(0.99) if meter else 0.0,
                    owner_epoch=state.epoch.get(symbol, 0),
                    partition=state.home.get(symbol, -1),
                    held=len(state.held.get(symbol) or ()),
                )
            for p in engine.partitions:
                reply.partitions.add(
                    partition=p,
                    next_offset=state.position.get(p, 0),
                    high_watermark=engine.high_watermark(p),
                )
            for symbol, shadow in sorted(state.shadows.items()):
                high = engine.high_watermark(shadow.source)
                reply.shadows.add(
                    symbol=symbol,
                    source_partition=shadow.source,
                    next_offset=shadow.read,
                    seq=shadow.book.seq,
                    lag=max(0, high - shadow.read) if high >= 0 else -1,
                    unindexed=shadow.book.unindexed(),
                )
            for symbol, fence in sorted(state.fences.items()):
                reply.fences.add(
                    symbol=symbol,
                    epoch=fence.epoch,
                    fence_offset=fence.offset,
                    final_seq=fence.seq,
                    to_partition=fence.to_partition,
                )
            return reply

        return self._call(context, read)  # type: ignore[no-any-return]


class EngineHealth(health.HealthServicer):
    """grpc.health.v1 answering from the engine's own state at each Check."""

    SERVICES = ("", control_pb2.DESCRIPTOR.services_by_name["EngineControl"].full_name)

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine

    def refresh(self) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if self.engine.serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in self.SERVICES:
            self.set(service, status)

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        self.refresh()
        return super().Check(request, context)


def _pending(p: control_pb2.PendingReplay) -> tuple[str, int, int, int]:
    return (p.topic, p.partition, p.from_offset, p.epoch)


def _replay(p: control_pb2.PendingReplay) -> PendingSpec:
    through = p.through_offset if p.HasField("through_offset") else None
    return (p.topic, p.partition, p.from_offset, p.epoch, through)


def serve(engine: Engine, bind: str, port: int) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    control_pb2_grpc.add_EngineControlServicer_to_server(  # type: ignore[no-untyped-call]
        EngineControl(engine), server
    )
    checker = EngineHealth(engine)
    checker.refresh()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection(
        (*EngineHealth.SERVICES[1:], health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    bound = server.add_insecure_port(f"{bind}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {bind}:{port}")
    server.start()
    return server
