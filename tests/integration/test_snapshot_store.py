"""A local cluster's snapshot bucket (SnapshotStore.directory) on a real redis-server: big
snapshots are files by reference, never Redis values (a 17 MB value every few seconds
stalled the AOF'd Redis of `hotshard up` for every other client), written only by the
partition's owner, whole or not at all."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from engine.service import store as store_module
from engine.service.errors import SnapshotMissingError, SnapshotRefusedError
from engine.service.store import SnapshotStore
from hotshard import registry
from hotshard.local.services.redis import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
def r(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port)
    yield client
    client.close()


def owned(r: redis.Redis, partition: int, directory: Path, threshold: int = 10) -> SnapshotStore:
    """A store of the instance "me", which owns `partition`."""
    assert registry.claim_partitions(r, "me", [partition], 60_000) == []
    return SnapshotStore(r, s3_threshold=threshold, instance="me", directory=directory)


def test_a_big_snapshot_is_a_file_by_reference_and_a_small_one_stays_in_redis(
    r: redis.Redis, tmp_path: Path
) -> None:
    store = owned(r, 4, tmp_path, threshold=1000)
    big = store.put("S", b"x" * 5000, partition=4, input_offset=7, seq=3)
    assert big.location.startswith("file://") and big.size == 5000
    assert store.fetch(big.location) == b"x" * 5000
    assert not r.keys("snapshot-data:*")  # not in Redis at all
    assert list(tmp_path.rglob("*.partial")) == []
    small = store.put("S", b"y" * 10, partition=4, input_offset=8, seq=4)
    assert small.location.startswith("redis:") and store.fetch(small.location) == b"y" * 10
    # a zombie (not the owner) writes no file
    zombie = SnapshotStore(r, s3_threshold=1000, instance="zombie", directory=tmp_path)
    with pytest.raises(SnapshotRefusedError):
        zombie.put("S", b"z" * 5000, partition=4, input_offset=9, seq=5)
    with pytest.raises(SnapshotMissingError):
        store.fetch(zombie.location_for("S", seq=5, input_offset=9, estimate=5000))


def test_a_retired_file_is_deleted_once_no_migration_can_still_hold_it(
    r: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = owned(r, 5, tmp_path)
    first = store.put("S", b"a" * 100, partition=5, input_offset=1, seq=1)
    store.retire(first.location)
    assert store.fetch(first.location) == b"a" * 100  # kept: a move may hold it
    monkeypatch.setattr(store_module, "REDIS_RETAIN_S", 0)
    second = store.put("S", b"b" * 100, partition=5, input_offset=2, seq=2)
    store.retire(second.location)
    with pytest.raises(SnapshotMissingError):
        store.fetch(first.location)


def test_a_file_retired_before_a_restart_is_still_deleted_in_time(
    r: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = owned(r, 7, tmp_path)
    old = before.put("S", b"a" * 100, partition=7, input_offset=1, seq=1)
    before.retire(old.location)  # then the engine is killed: `before` is gone
    monkeypatch.setattr(store_module, "REDIS_RETAIN_S", 0)
    after = SnapshotStore(r, s3_threshold=10, instance="me", directory=tmp_path)
    kept = after.put("T", b"k" * 100, partition=7, input_offset=2, seq=1)
    newer = after.put("T", b"n" * 100, partition=7, input_offset=3, seq=2)
    after.retire(newer.location)
    with pytest.raises(SnapshotMissingError):
        after.fetch(old.location)
    assert after.fetch(kept.location) == b"k" * 100  # never retired: kept
    assert list(tmp_path.rglob("*.retired")) == []


def test_a_retired_file_written_again_is_kept(
    r: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restarted engine replays to the same point and snapshots the same seq and offset
    again: the location is named by a checkpoint once more, so its old mark must go."""
    store = owned(r, 8, tmp_path)
    first = store.put("S", b"a" * 100, partition=8, input_offset=1, seq=1)
    store.retire(first.location)
    again = store.put("S", b"a" * 100, partition=8, input_offset=1, seq=1)
    assert again.location == first.location
    monkeypatch.setattr(store_module, "REDIS_RETAIN_S", 0)
    other = store.put("S", b"b" * 100, partition=8, input_offset=2, seq=2)
    store.retire(other.location)  # sweeps
    assert store.fetch(again.location) == b"a" * 100


def test_a_part_left_by_a_killed_writer_is_swept(
    r: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = owned(r, 9, tmp_path)
    first = store.put("S", b"a" * 100, partition=9, input_offset=1, seq=1)
    left = Path(first.location.removeprefix("file://") + ".4242.partial")
    left.write_bytes(b"half")
    monkeypatch.setattr(store_module, "REDIS_RETAIN_S", 0)
    store.retire(first.location)
    assert not left.exists()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # the retired one too


@pytest.mark.parametrize("symbol", [".", ".."])
def test_a_dot_symbol_is_stored_inside_the_snapshot_directory(
    r: redis.Redis, tmp_path: Path, symbol: str
) -> None:
    assert registry.claim_partitions(r, "me", [6], 60_000) == []
    bucket = tmp_path / "bucket"
    store = SnapshotStore(r, s3_threshold=10, instance="me", directory=bucket)
    record = store.put(symbol, b"d" * 100, partition=6, input_offset=1, seq=1)
    path = Path(record.location.removeprefix("file://"))
    assert path.resolve().parent.parent == bucket.resolve()
    assert store.fetch(record.location) == b"d" * 100
    assert [p.name for p in tmp_path.iterdir()] == ["bucket"]  # nothing beside it
