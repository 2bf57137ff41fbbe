"""Ownership fences the recovery records an engine writes (real redis-server on a free
port): only the partition's owner writes its checkpoint and its symbols' snapshot records."""

from collections.abc import Iterator

import pytest
import redis

from hotshard import recovery, registry
from hotshard.local.services.redis import redis_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def r() -> Iterator[redis.Redis]:
    with redis_server() as server:
        client = redis.Redis(host=server.host, port=server.port)
        yield client
        client.close()


def test_only_the_partitions_owner_writes_its_checkpoint(r: redis.Redis) -> None:
    assert registry.claim_partitions(r, "new-owner", [3], ttl_ms=10_000) == []
    ours = recovery.Checkpoint(partition=3, offset=41, symbols=("A",), instance="new-owner")
    assert recovery.write_checkpoint(r, ours)
    zombie = recovery.Checkpoint(partition=3, offset=7, symbols=("A",), instance="old-owner")
    assert not recovery.write_checkpoint(r, zombie)
    kept = recovery.read_checkpoint(r, 3)
    assert kept is not None and (kept.offset, kept.instance) == (41, "new-owner")


def test_a_lapsed_ownership_writes_nothing(r: redis.Redis) -> None:
    checkpoint = recovery.Checkpoint(partition=5, offset=9, instance="gone")
    assert not recovery.write_checkpoint(r, checkpoint)
    assert recovery.read_checkpoint(r, 5) is None


def test_only_the_partitions_owner_records_a_snapshot(r: redis.Redis) -> None:
    assert registry.claim_partitions(r, "owner", [7], ttl_ms=10_000) == []

    def record(instance: str, seq: int) -> recovery.SnapshotRecord:
        return recovery.SnapshotRecord(
            symbol="S",
            location=f"redis:snap-{seq}",
            partition=7,
            input_offset=seq,
            seq=seq,
            size=3,
            instance=instance,
            taken_ms=1,
        )

    assert recovery.write_snapshot_record(r, record("owner", 5), data_key="snap-5", data=b"abc")
    assert not recovery.write_snapshot_record(r, record("zombie", 2), data_key="snap-2", data=b"x")
    kept = recovery.read_snapshot_record(r, "S")
    assert kept is not None and (kept.seq, kept.instance) == (5, "owner")
    assert r.get("snap-5") == b"abc" and r.get("snap-2") is None
