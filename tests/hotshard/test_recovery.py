"""Ownership fences the recovery records an engine writes (real redis-server on a free
port): only the partition's owner writes its checkpoint and its symbols' snapshots; a
checkpoint names each book's snapshot and round-trips through JSON."""

import threading
from collections.abc import Iterator

import pytest
import redis

from hotshard import names, recovery, registry
from hotshard.local.services.redis import redis_server
from hotshard.reasons import Reason

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def r() -> Iterator[redis.Redis]:
    with redis_server() as server:
        client = redis.Redis(host=server.host, port=server.port)
        yield client
        client.close()


def test_only_the_partitions_owner_writes_its_checkpoint(r: redis.Redis) -> None:
    assert registry.claim_partitions(r, "new-owner", [3], ttl_ms=10_000) == []
    books = {"A": recovery.BookEntry("redis:a", 40, 7, 2)}
    ours = recovery.Checkpoint(partition=3, offset=41, books=books, instance="new-owner")
    assert recovery.write_checkpoint(r, ours)
    zombie = recovery.Checkpoint(partition=3, offset=7, books=books, instance="old-owner")
    assert not recovery.write_checkpoint(r, zombie)
    kept = recovery.read_checkpoint(r, 3)
    assert kept is not None and (kept.offset, kept.instance) == (41, "new-owner")


def test_a_lapsed_ownership_writes_nothing(r: redis.Redis) -> None:
    checkpoint = recovery.Checkpoint(partition=5, offset=9, instance="gone")
    assert not recovery.write_checkpoint(r, checkpoint)
    assert recovery.read_checkpoint(r, 5) is None


def test_only_the_partitions_owner_stores_a_snapshot(r: redis.Redis) -> None:
    assert registry.claim_partitions(r, "owner", [7], ttl_ms=10_000) == []
    assert recovery.write_snapshot_data(r, "owner", 7, data_key="snap-5", data=b"abc")
    assert not recovery.write_snapshot_data(r, "zombie", 7, data_key="snap-2", data=b"x")
    assert r.get("snap-5") == b"abc" and r.get("snap-2") is None
    assert r.keys("*partial*") == [] and r.ttl("snap-5") == -1  # nothing left aside
    assert r.get("snapshot:S") is None  # no global "latest snapshot of S" record


def test_snapshot_bytes_never_pass_through_a_script(r: redis.Redis) -> None:
    """Three 32 MB snapshots stored: Redis's Lua heap does not grow by them. It did by
    32 MB per snapshot (100 MB after three) when the bytes went through a Lua script,
    which also held Redis for the copies in and out of Lua; with 26 MB snapshots every
    10 s a migration's task got `BUSY Redis is busy running a script`."""
    assert registry.claim_partitions(r, "owner", [8], ttl_ms=10_000) == []
    lua_before = int(r.info("memory")["used_memory_lua"])
    try:
        for i in range(3):
            data = bytes([i]) * (32 << 20)
            assert recovery.write_snapshot_data(r, "owner", 8, data_key=f"big-{i}", data=data)
            assert r.strlen(f"big-{i}") == len(data)
        assert int(r.info("memory")["used_memory_lua"]) - lua_before < 1 << 20
    finally:
        r.delete("big-0", "big-1", "big-2")


def test_a_snapshot_write_goes_on_while_the_heartbeat_refreshes_ownership(
    r: redis.Redis,
) -> None:
    """The owner key's expiry refreshed (what the heartbeat does) between the ownership
    check and the write: the write is retried, and lands."""
    assert registry.claim_partitions(r, "owner", [9], ttl_ms=10_000) == []
    done = threading.Event()

    def beat() -> None:
        while not done.wait(0.002):
            r.pexpire(names.REDIS_PARTITION_OWNER.format(9), 10_000)

    beater = threading.Thread(target=beat)
    beater.start()
    try:
        for i in range(20):
            assert recovery.write_snapshot_data(r, "owner", 9, data_key=f"hb-{i}", data=b"x" * 4096)
    finally:
        done.set()
        beater.join()
    assert all(r.get(f"hb-{i}") == b"x" * 4096 for i in range(20))


class _SecondWriterInside:
    """A Redis client whose first EVAL lets a second write of the same snapshot run
    whole first: the interleaving of a fence snapshot's child and an Unfence's snapshot
    of the same seq storing at once (CI on f7b453b: the second RENAME met no key)."""

    def __init__(self, client: redis.Redis, second: object) -> None:
        self._client = client
        self._second = second

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)

    def eval(self, *args: object) -> object:
        second, self._second = self._second, None
        if callable(second):
            second()
        return self._client.eval(*args)  # type: ignore[arg-type]


def test_two_writes_of_the_same_snapshot_at_once_both_land(r: redis.Redis) -> None:
    assert registry.claim_partitions(r, "owner", [10], ttl_ms=10_000) == []

    def second() -> None:
        assert recovery.write_snapshot_data(r, "owner", 10, data_key="same", data=b"second")

    client = _SecondWriterInside(r, second)
    assert recovery.write_snapshot_data(client, "owner", 10, data_key="same", data=b"first")  # type: ignore[arg-type]
    assert r.get("same") == b"first"
    assert r.keys("same.partial*") == []


def test_a_replaced_log_gives_a_floor_to_every_symbol_that_existed_and_none_to_new_ones() -> None:
    jump = recovery.SEQ_JUMP_ON_REPLACED_LOG
    checkpoint = recovery.Checkpoint(
        partition=1,
        offset=50,
        books={
            "SNAP": recovery.BookEntry("mem:1", 40, 12),  # restored and jumped by the caller
            "BORN": recovery.BookEntry("", 45, 0),  # no snapshot yet
        },
        log_id="old",
        seq_floors={"WAIT": 3},  # from an earlier replaced log, not born since
    )
    moved = checkpoint.rebased("new", routed=["SNAP", "BORN", "LATE"])
    assert (moved.log_id, moved.offset) == ("new", -1)
    assert moved.books["SNAP"] == recovery.BookEntry("mem:1", -1, 12)
    assert moved.books["BORN"] == recovery.BookEntry("", -1, jump)
    # LATE: born after the checkpoint, routed here; a symbol listed later is in neither
    assert moved.seq_floors == {"WAIT": 3 + jump, "LATE": jump}
    assert recovery.Checkpoint.from_json(moved.to_json()) == moved
    assert recovery.Checkpoint.from_json('{"partition": 1, "offset": 3}').seq_floors == {}
    # f0a8a11's one floor per partition applies to the books without a snapshot it named
    legacy = recovery.Checkpoint.from_json(
        '{"partition": 1, "offset": 3, "seq_base": 7, "books": {'
        '"A": {"location": "", "offset": 2, "seq": 0}, '
        '"B": {"location": "mem:b", "offset": 2, "seq": 4}}}'
    )
    assert (legacy.books["A"].seq, legacy.books["B"].seq) == (7, 4)


def test_a_checkpoint_round_trips_and_resumes_after_its_oldest_entry() -> None:
    checkpoint = recovery.Checkpoint(
        partition=2,
        offset=100,
        books={"A": recovery.BookEntry("redis:a", 100, 9, 3), "B": recovery.BookEntry("", 41, 0)},
        fences={"C": recovery.FenceEntry(5, 77, 12, 6, "s3://b/c", 4, 2, "ab")},
        expect={"D": recovery.ExpectEntry(4, 60)},
        instance="i",
        taken_ms=5,
    )
    again = recovery.Checkpoint.from_json(checkpoint.to_json())
    assert again == checkpoint
    assert again.resume_offset() == 42  # B was born after 41 and has no snapshot yet
    assert again.symbols == ("A", "B")


def test_a_checkpoint_of_the_old_format_is_refused_not_resolved_by_symbol() -> None:
    old = '{"partition": 0, "offset": 5, "symbols": ["A"], "resume": {}, "fences": {"A": 2}}'
    with pytest.raises(recovery.CheckpointError, match="per-symbol snapshots") as caught:
        recovery.Checkpoint.from_json(old)
    assert caught.value.reason == Reason.UNSUPPORTED_CHECKPOINT_FORMAT


def test_a_checkpoint_keeps_its_log_identity_and_rebases_onto_a_replaced_log() -> None:
    checkpoint = recovery.Checkpoint(
        partition=2,
        offset=41,
        books={"A": recovery.BookEntry("redis:a", 40, 7, 2)},
        fences={"F": recovery.FenceEntry(3, 30, 5, to_partition=1)},
        expect={"E": recovery.ExpectEntry(4, 12)},
        instance="e1",
        gone={"G": recovery.GoneEntry(2, 20)},
        rewind_floor=20,
        log_id="old-id",
    )
    assert recovery.Checkpoint.from_json(checkpoint.to_json()) == checkpoint
    assert recovery.Checkpoint.from_json('{"partition": 1, "offset": 3}').log_id == ""
    moved = checkpoint.rebased("new-id")
    assert moved.log_id == "new-id" and moved.resume_offset() == 0
    assert moved.books["A"] == recovery.BookEntry("redis:a", -1, 7, 2)  # the book, from 0
    assert (moved.fences["F"].offset, moved.fences["F"].epoch) == (-1, 3)
    assert moved.expect["E"] == recovery.ExpectEntry(4, -1)
    assert (moved.gone["G"], moved.rewind_floor) == (recovery.GoneEntry(2, -1), -1)
