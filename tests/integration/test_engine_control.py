"""gRPC control on running engines: Snapshot, Remove, Restore (from bytes and from S3),
Health, Stats, and the status codes of bad requests."""

import gc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from engine.book import Book, Instrument, add, cancel
from engine.book.snapshot import dump
from hotshard import recovery
from hotshard.domain import Side, Status
from hotshard.local.services.aws import AwsEndpoint
from hotshard.local.services.moto import moto_server
from hotshard.local.traffic import EventReader, produce_orders, producer
from hotshard.reasons import Reason
from hotshard.v1 import control_pb2
from tests.integration.conftest import PARTITIONS
from tests.integration.helpers import expected_events

pytestmark = pytest.mark.integration


@pytest.fixture
def moto() -> Iterator[AwsEndpoint]:
    with moto_server() as endpoint:
        endpoint.client().create_bucket(Bucket="snaps")
        yield endpoint


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """The status code and the `reason` trailing metadata of a failing call. The error is
    let go before returning: kept in this frame, its traceback (which holds this frame, and
    through f_back the test's) made a cycle that kept the test's locals, its producer too,
    alive until a full collection, long after the test's broker stopped (issue 13)."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    err: Any = info.value
    try:
        reason = {str(k): str(v) for k, v in err.trailing_metadata() or ()}.get("reason", "")
        return err.code(), reason
    finally:
        del info, err


def test_code_of_lets_go_of_its_callers_frame():
    """Before, code_of's caught error stayed in a cycle with its frame, and the frame's
    f_back kept the calling test's locals (its producer among them) until a collection:
    minutes after the test's broker stopped once an earlier test's cold start (tune_gc)
    had raised the collector's young generation to 50,000 (issue 13)."""

    class Refused(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.NOT_FOUND

        def trailing_metadata(self) -> Any:
            return (("reason", "UNKNOWN_SYMBOL"),)

    def refuse() -> None:
        raise Refused

    class Local:
        pass

    def caller() -> "weakref.ref[Local]":
        local = Local()
        assert code_of(refuse) == (grpc.StatusCode.NOT_FOUND, "UNKNOWN_SYMBOL")
        return weakref.ref(local)

    enabled = gc.isenabled()
    gc.disable()  # only reference counting: what a cycle keeps stays
    try:
        assert caller()() is None
    finally:
        if enabled:
            gc.enable()


def test_snapshot_remove_restore_move_a_symbol_between_running_engines(
    broker, redis_server, engines, moto
):
    s3 = (
        "--snapshot-bucket",
        "snaps",
        "--s3-endpoint-url",
        moto.url,
        "--snapshot-s3-threshold",
        "200",
    )
    env = {k: v for k, v in moto.env().items() if k.startswith("AWS_") and k != "AWS_ENDPOINT"}
    source = engines("0", "src", *s3, env=env)
    target = engines("1", "dst", *s3, env=env)
    src, dst = source.stub(), target.stub()
    prod = producer(broker.bootstrap)
    book = [("MOVE", add(f"o{i}", "u1", Side.BUY, 100 - i, 5)) for i in range(20)]
    produce_orders(prod, book, lambda s: 0, route_epoch=1)
    prod.flush(10)
    reader = EventReader(broker.bootstrap, PARTITIONS)
    assert reader.read_until(lambda r: r.count() >= 20, timeout=30)

    health = src.Health(control_pb2.HealthRequest(), timeout=5)
    assert health.serving and list(health.partitions) == [0] and list(health.symbols) == ["MOVE"]
    stats = src.Stats(control_pb2.StatsRequest(), timeout=5)
    [move] = stats.symbols
    assert (move.symbol, move.resting_orders, move.seq) == ("MOVE", 20, 20)
    assert stats.orders_total == 20

    snap = src.Snapshot(control_pb2.SnapshotRequest(symbol="MOVE"), timeout=10)
    assert snap.location.startswith("s3://snaps/") and snap.input_offset == 19
    removed = src.Remove(control_pb2.RemoveRequest(symbol="MOVE", fence_epoch=2), timeout=10)
    assert (removed.seq, removed.fence_epoch) == (20, 2)
    assert (
        code_of(lambda: src.Snapshot(control_pb2.SnapshotRequest(symbol="MOVE"), timeout=5))[0]
        == grpc.StatusCode.NOT_FOUND
    )

    # An order routed with the old epoch reaches the source: STALE_ROUTE, not silence.
    produce_orders(
        prod, [("MOVE", add("late", "u2", Side.SELL, 100, 1))], lambda s: 0, route_epoch=1
    )
    prod.flush(10)
    assert reader.read_until(
        lambda r: any(e[2] == "late" for e in r.events.get("MOVE", [])), timeout=30
    )
    [late] = [e for e in reader.events["MOVE"] if e[2] == "late"]
    assert (late[1], late[4], late[5]) == (0, Status.REJECTED, Reason.STALE_ROUTE)

    # Following the snapshot's own partition from an offset it already includes would
    # apply those orders twice: refused.
    assert code_of(
        lambda: dst.Restore(
            control_pb2.RestoreRequest(
                symbol="MOVE", location=removed.location, follow=True, partition=0, from_offset=0
            ),
            timeout=10,
        )
    ) == (grpc.StatusCode.INVALID_ARGUMENT, "FOLLOW_OVERLAPS_SNAPSHOT")
    # Restore on the target from the S3 location, following partition 1 from its start.
    restored = dst.Restore(
        control_pb2.RestoreRequest(
            symbol="MOVE", location=removed.location, follow=True, partition=1, from_offset=0
        ),
        timeout=10,
    )
    assert restored.seq == 20
    assert code_of(
        lambda: dst.Restore(
            control_pb2.RestoreRequest(symbol="MOVE", location=snap.location), timeout=5
        )
    ) == (grpc.StatusCode.ALREADY_EXISTS, "SYMBOL_ALREADY_HERE")
    after = [("MOVE", add("new", "u2", Side.SELL, 99, 7)), ("MOVE", cancel("o1", "u1"))]
    produce_orders(prod, after, lambda s: 1, route_epoch=2)
    prod.flush(10)
    _, expected = expected_events(book + after)
    assert reader.read_until(lambda r: r.count() >= 1 + len(expected["MOVE"]), timeout=30)
    assert not reader.guard.gaps
    # Sequence numbers continue on the target as if the symbol had never moved.
    assert [e for e in reader.sorted_events("MOVE") if e[1] > 0] == expected["MOVE"]
    # the target's checkpoint of the partition it adopted names the symbol's snapshot
    checkpoint = recovery.read_checkpoint(redis_server.client(), 1)
    assert checkpoint is not None and "MOVE" in checkpoint.books
    reader.close()


def test_bad_control_requests_get_clear_status_codes(engines, moto):
    engine = engines("0", "bad")
    stub = engine.stub()
    assert code_of(
        lambda: stub.Snapshot(control_pb2.SnapshotRequest(symbol="NOPE"), timeout=5)
    ) == (
        grpc.StatusCode.NOT_FOUND,
        "UNKNOWN_SYMBOL",
    )
    assert (
        code_of(lambda: stub.Remove(control_pb2.RemoveRequest(symbol="NOPE"), timeout=5))[0]
        == grpc.StatusCode.NOT_FOUND
    )
    good = bytearray(dump(Book(Instrument("X")), input_offset=-1, partition=0))
    good[-1] ^= 0xFF
    assert code_of(
        lambda: stub.Restore(
            control_pb2.RestoreRequest(symbol="X", snapshot=bytes(good)), timeout=5
        )
    ) == (grpc.StatusCode.DATA_LOSS, "CORRUPT_SNAPSHOT")
    assert code_of(
        lambda: stub.Restore(
            control_pb2.RestoreRequest(symbol="Y", snapshot=dump(Book(Instrument("X")))),
            timeout=5,
        )
    ) == (grpc.StatusCode.INVALID_ARGUMENT, "SNAPSHOT_OF_ANOTHER_SYMBOL")
    assert (
        code_of(
            lambda: stub.Restore(
                control_pb2.RestoreRequest(symbol="X", location="redis:snapshot-data:nothing"),
                timeout=5,
            )
        )[0]
        == grpc.StatusCode.NOT_FOUND
    )
    assert (
        code_of(lambda: stub.Restore(control_pb2.RestoreRequest(symbol="X"), timeout=5))[0]
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert stub.Health(control_pb2.HealthRequest(), timeout=5).serving


def test_standard_health_and_reflection_beside_the_engines_own_calls(engines):
    """grpc.health.v1 (what grpc_health_probe asks) and server reflection (what grpcurl
    uses to list and describe services) on the engine's gRPC port."""
    engine = engines("0", "std")
    with grpc.insecure_channel(engine.address) as channel:
        checker: Any = health_pb2_grpc.HealthStub(channel)
        for service in ("", "hotshard.v1.EngineControl"):
            reply = checker.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            checker.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        reflector: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = reflector.ServerReflectionInfo(iter([request]), timeout=5)
        listed = {s.name for s in answer.list_services_response.service}
        assert {
            "hotshard.v1.EngineControl",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        } <= listed
        request = reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="hotshard.v1.EngineControl"
        )
        (answer,) = reflector.ServerReflectionInfo(iter([request]), timeout=5)
        assert answer.file_descriptor_response.file_descriptor_proto
