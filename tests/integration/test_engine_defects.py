"""Recovery defects of the engine before owner epochs, each on real processes: an adopted
partition was not reclaimed after a restart, Restore was not idempotent, a position out of
range was silently rewound to the start, a restart could load another owner's snapshot, a
slow flush let partition ownership lapse, junk symbols and removed books grew meters, key
caches and fences."""

import json
import os
import signal
import threading
import time
from typing import Any

import confluent_kafka
import grpc
import pytest
import redis

from engine.__main__ import build
from engine.book import Book, Instrument, add
from engine.book.snapshot import dump, load
from engine.service import core, forked, operations
from engine.service import loop as engine_loop
from engine.service.settings import EngineSettings
from engine.service.store import SnapshotStore
from hotshard import kafka, names, recovery, route
from hotshard.domain import Side
from hotshard.local.services.process import free_port
from hotshard.local.traffic import EventReader, produce_orders, producer
from hotshard.reasons import Reason
from hotshard.v1 import control_pb2
from tests.integration.conftest import PARTITIONS
from tests.integration.helpers import wait_checkpoint
from tests.integration.inprocess import engine_in_process

pytestmark = pytest.mark.integration


def test_an_adopted_partition_is_reclaimed_after_a_restart_and_restore_is_idempotent(
    broker, redis_server, engines
):
    engine = engines("1", "adopter")
    stub = engine.stub()
    book = Book(Instrument("ADOPT"))
    for i in range(5):
        book.apply(add(f"o{i}", "u", Side.BUY, 100 + i, 1))
    data = dump(book, input_offset=-1, partition=-1)
    request = control_pb2.RestoreRequest(
        symbol="ADOPT", snapshot=data, follow=True, partition=2, from_offset=0
    )
    first = stub.Restore(request, timeout=20)
    again = stub.Restore(request, timeout=20)  # a retried call: the same answer
    assert again == first and first.seq == 5
    r = redis_server.client()
    assert r.get(names.REDIS_PARTITION_HOME.format(2)) == b"adopter"
    prod = producer(broker.bootstrap)
    produce_orders(prod, [("ADOPT", add("n1", "u", Side.SELL, 200, 1))], lambda s: 2)
    prod.flush(10)
    reader = EventReader(broker.bootstrap, PARTITIONS)
    assert reader.read_until(lambda rd: len(rd.events.get("ADOPT", [])) >= 1, timeout=30)
    assert wait_checkpoint(r, 2, lambda c: c.offset >= 0)  # a periodic one through n1
    engine.process.stop(signal.SIGKILL)
    engine = engines("1", "adopter")  # started with its configured partitions only
    health = engine.stub().Health(control_pb2.HealthRequest(), timeout=5)
    assert list(health.partitions) == [1, 2] and "ADOPT" in health.symbols
    produce_orders(prod, [("ADOPT", add("n2", "u", Side.SELL, 201, 1))], lambda s: 2)
    prod.flush(10)
    assert reader.read_until(
        lambda rd: any(e[2] == "n2" and e[1] == 7 for e in rd.events.get("ADOPT", [])), timeout=30
    )
    reader.close()


def test_a_position_out_of_range_stops_the_engine_instead_of_rewinding(
    broker, redis_server, engines
):
    r = redis_server.client()
    engine = engines("0", "ranged")
    engine.process.stop(signal.SIGTERM, timeout=20)
    # A checkpoint beyond the end of the log (the log was replaced): before, the consumer's
    # auto.offset.reset=earliest silently replayed partition 0 from its start.
    r.set(names.REDIS_PARTITION_OWNER.format(0), "ranged", px=10_000)
    assert recovery.write_checkpoint(r, recovery.Checkpoint(0, 50_000, instance="ranged"))
    r.delete(names.REDIS_PARTITION_OWNER.format(0))
    prod = producer(broker.bootstrap)
    produce_orders(prod, [("RANGE", add("x", "u", Side.BUY, 1, 1))], lambda s: 0)
    prod.flush(10)
    engine = engines("0", "ranged", wait=False)
    deadline = time.monotonic() + 30
    while engine.process.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not engine.process.alive(), "an out-of-range position must not be rewound"
    assert engine.process.popen.returncode == 3  # cannot start
    assert "outside its log" in engine.process.log_tail(30)


def test_a_restart_loads_the_snapshot_its_checkpoint_names_not_a_later_one_of_another_owner(
    broker, redis_server, engines
):
    r = redis_server.client()
    engine = engines("0", "first")
    prod = producer(broker.bootstrap)
    produce_orders(
        prod, [("OWN", add(f"o{i}", "u", Side.BUY, 10 + i, 1)) for i in range(3)], lambda s: 0
    )
    prod.flush(10)
    reader = EventReader(broker.bootstrap, PARTITIONS)
    assert reader.read_until(lambda rd: len(rd.events.get("OWN", [])) >= 3, timeout=30)
    checkpoint = wait_checkpoint(r, 0, lambda c: "OWN" in c.books and c.books["OWN"].seq == 3)
    engine.process.stop(signal.SIGKILL)
    assert checkpoint is not None and checkpoint.books["OWN"].seq == 3
    # another engine (a move's target) stores a later snapshot of OWN and records it under
    # the name the old code looked up (`snapshot:{S}`)
    other = Book(Instrument("OWN"))
    for i in range(9):
        other.apply(add(f"x{i}", "v", Side.SELL, 50 + i, 1))
    key = names.REDIS_SNAPSHOT_DATA.format("OWN", "9-99")
    r.set(key, dump(other, input_offset=99, partition=3))
    r.hset("snapshot:OWN", mapping={"location": f"redis:{key}", "partition": 3, "seq": 9})
    engine = engines("0", "first")
    stats = engine.stub().Stats(control_pb2.StatsRequest(), timeout=5)
    [own] = [s for s in stats.symbols if s.symbol == "OWN"]
    assert (own.seq, own.resting_orders) == (3, 3)
    with pytest.raises(grpc.RpcError):
        engine.stub().Snapshot(control_pb2.SnapshotRequest(symbol="NOT-HERE"), timeout=5)
    reader.close()


def test_a_flush_slower_than_its_cap_never_lets_ownership_lapse(broker, redis_server, engines):
    # before: FLUSH_TIMEOUT_S (10 s) was not below the ownership TTL, and only the loop
    # thread heartbeat, between two iterations: a broker that stops answering for longer
    # than the TTL minus one heartbeat interval let `owner:orders:{P}` expire under a live
    # engine (another one could take the partition while this one still published)
    ttl_s, pause_s = 3.0, 2.6  # the pause: past the flush cap (TTL/3), short of the TTL
    engine = engines(
        "0", "steady", "--ownership-ttl-s", str(ttl_s), "--heartbeat-interval-s", "0.5",
        "--snapshot-interval-s", "0.3", "--depth-snapshot-interval-s", "0.1",
    )  # fmt: skip
    prod = producer(broker.bootstrap)
    produce_orders(prod, [("BEAT", add(f"o{i}", "u", Side.BUY, 10 + i, 1)) for i in range(3)],
                   lambda s: 0)  # fmt: skip
    prod.flush(10)
    reader = EventReader(broker.bootstrap, PARTITIONS)
    assert reader.read_until(lambda rd: len(rd.events.get("BEAT", [])) >= 3, timeout=30)
    r = redis_server.client()
    key = names.REDIS_PARTITION_OWNER.format(0)
    lowest: list[int] = []
    stop = threading.Event()

    def sample() -> None:  # the owner key's remaining life, every 20 ms (-2: gone)
        while not stop.is_set():
            lowest.append(int(r.pttl(key)))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    assert broker.process is not None
    tansu_pid = broker.process.popen.pid
    sampler.start()
    time.sleep(0.3)
    # depth snapshots every 0.1 s wait for the stopped broker: each periodic checkpoint's
    # flush then waits its whole cap (TTL/3 = 1 s), some of them back to back
    os.kill(tansu_pid, signal.SIGSTOP)
    try:
        time.sleep(pause_s)
    finally:
        os.kill(tansu_pid, signal.SIGCONT)
    time.sleep(0.5)
    stop.set()
    sampler.join()
    assert -2 not in lowest, "the ownership key expired under a live engine"
    assert min(lowest) > 1500, f"ownership came within {min(lowest)} ms of lapsing"
    assert engine.process.alive()
    log = engine.process.log_tail(400)
    assert "events not yet delivered" in log  # a flush really did wait out its cap
    assert "lost ownership" not in log
    produce_orders(prod, [("BEAT", add("after", "u", Side.SELL, 500, 1))], lambda s: 0)
    prod.flush(10)
    assert reader.read_until(
        lambda rd: any(e[2] == "after" for e in rd.events.get("BEAT", [])), timeout=30
    )
    reader.close()


def test_junk_symbols_and_removed_books_grow_no_meters_key_cache_or_fences(
    broker, redis_server, tmp_path, monkeypatch
):
    # before: every junk symbol's key was cached for good, a removed book's meter stayed in
    # Metrics.symbols (Remove never dropped it) and every fence of a symbol that left was
    # kept forever: an engine fed junk, or moving symbols away for weeks, only grew
    monkeypatch.setattr(core, "MAX_FENCES", 2)
    listed = ["KEEP", "GONE0", "GONE1", "GONE2"]
    symbols = tmp_path / "symbols.json"
    symbols.write_text(json.dumps({s: {} for s in listed}))
    with engine_in_process(broker, redis_server, "0", "pruned", symbols=symbols) as running:
        prod = producer(broker.bootstrap)
        stream = [(s, add(f"{s}-1", "u", Side.BUY, 10, 1)) for s in listed]
        stream += [(f"JUNK{i}", add(f"j{i}", "u", Side.BUY, 10, 1)) for i in range(300)]
        produce_orders(prod, stream, lambda s: 0)
        for i in range(50):  # bytes that decode to no order, keyed by ever new symbols
            prod.produce(names.TOPIC_ORDERS, b"\xff\x00junk", f"RAW{i}".encode(), 0)
        prod.flush(10)
        reader = EventReader(broker.bootstrap, PARTITIONS)
        assert reader.read_until(lambda rd: all(rd.events.get(s) for s in listed), timeout=30)
        for symbol in listed[1:]:
            running.stub.Remove(control_pb2.RemoveRequest(symbol=symbol, fence_epoch=5), timeout=30)
        produce_orders(prod, [("GONE0", add("late", "u", Side.BUY, 10, 1))], lambda s: 0)
        produce_orders(prod, [("KEEP", add("KEEP-2", "u", Side.BUY, 11, 1))], lambda s: 0)
        prod.flush(10)
        assert reader.read_until(
            lambda rd: any(e[2] == "KEEP-2" for e in rd.events.get("KEEP", [])), timeout=30
        )
        state = running.engine.state
        meters, keys, fences, books = running.on_loop(
            lambda: (
                sorted(running.engine.metrics.symbols),
                sorted(state._keys),
                sorted(state.fences),
                sorted(state.market.books),
            )
        )
        assert books == ["KEEP"]
        assert meters == ["KEEP"], "junk or removed symbols kept a meter"
        assert keys == ["KEEP"], "junk or removed symbols kept a cached key"
        assert fences == ["GONE1", "GONE2"], "fences of symbols that left are bounded"
        assert not running.failure
        reader.close()


def test_a_checkpoint_of_the_format_before_owner_epochs_stops_the_engine_with_its_reason(
    broker, redis_server, engines
):
    # before owner epochs a checkpoint listed symbols and a restart loaded `snapshot:{S}`,
    # whoever wrote it last; such a checkpoint is refused with a reason, not resolved
    r = redis_server.client()
    r.set(
        names.REDIS_CHECKPOINT.format(0),
        '{"offset": 5, "symbols": ["OLD"], "resume": {}, "fences": {"OLD": 2}}',
    )
    engine = engines("0", "upgraded", wait=False)
    deadline = time.monotonic() + 30
    while engine.process.alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert engine.process.popen.returncode == 3  # cannot start
    log = engine.process.log_tail(30)
    assert "UNSUPPORTED_CHECKPOINT_FORMAT" in log and "checkpoint of partition 0" in log


def test_remove_answers_only_once_its_final_snapshot_is_stored(broker, redis_server, monkeypatch):
    # before: Remove dropped the book and checkpointed that, then stored its final snapshot:
    # a store that failed (or a crash) left the answered location empty and the book gone
    with engine_in_process(broker, redis_server, "0", "remover") as running:
        prod = producer(broker.bootstrap)
        orders = [("RM", add(f"o{i}", "u", Side.BUY, 10 + i % 5, 1)) for i in range(50)]
        produce_orders(prod, orders, lambda s: 0)
        prod.flush(10)
        prod.close()
        reader = EventReader(broker.bootstrap, PARTITIONS)
        assert reader.read_until(lambda rd: len(rd.events.get("RM", [])) >= 50, timeout=30)
        reader.close()
        real_put = SnapshotStore.put
        failed: list[str] = []

        def flaky(self: SnapshotStore, symbol: str, data: bytes, **kw: Any) -> Any:
            if symbol == "RM" and not failed:
                failed.append(kw.get("location", ""))
                raise redis.ConnectionError("the snapshot store is away")
            return real_put(self, symbol, data, **kw)

        monkeypatch.setattr(SnapshotStore, "put", flaky)
        request = control_pb2.RemoveRequest(symbol="RM", fence_epoch=3)
        with pytest.raises(grpc.RpcError) as caught:
            running.stub.Remove(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and failed
        state = running.engine.state
        assert running.on_loop(lambda: ("RM" in state.market.books, "RM" in state.fences)) == (
            True,
            True,
        ), "the book must stay (fenced) until its final snapshot is stored"
        answer = running.stub.Remove(request, timeout=30)
        book, info = load(running.engine.store.fetch(answer.location))
        assert (book.seq, info.input_offset, book.resting()) == (50, answer.input_offset, 50)
        assert answer.seq == 50 and answer.location == failed[0]
        assert running.on_loop(lambda: "RM" in state.market.books) is False
        assert running.stub.Remove(request, timeout=30) == answer  # idempotent


def test_restore_and_follow_never_decode_or_dump_on_the_loop(broker, redis_server, monkeypatch):
    # before: Restore installed the book and then checkpointed with a snapshot of every
    # changed book taken on the loop (a 1M-order Restore: ~1 s of no matching for any symbol)
    seen: list[tuple[str, str]] = []

    def watched(fn: Any) -> Any:
        def call(*args: Any, **kw: Any) -> Any:
            seen.append((fn.__name__, threading.current_thread().name))
            return fn(*args, **kw)

        return call

    # (a snapshot child's dumps run in the child: it never appears here; the loop module
    # has no dump of its own any more, every snapshot is forked)
    monkeypatch.setattr(forked, "dump", watched(dump))
    for module in (engine_loop, operations):
        monkeypatch.setattr(module, "load", watched(module.load))
    restored, shadowed = Book(Instrument("RST")), Book(Instrument("FOL"))
    for i in range(2000):
        restored.apply(add(f"r{i}", "u", Side.BUY, 100 + i % 20, 1))
        shadowed.apply(add(f"f{i}", "u", Side.SELL, 200 + i % 20, 1))
    r = redis_server.client()
    r.set("snapshot-data:FOL:test", dump(shadowed, input_offset=5, partition=1))
    with engine_in_process(broker, redis_server, "0", "restorer", snapshot_interval_s=3600) as run:
        data = dump(restored, input_offset=-1, partition=-1)
        request = control_pb2.RestoreRequest(
            symbol="RST", snapshot=data, follow=True, partition=0, from_offset=0
        )
        assert run.stub.Restore(request, timeout=30).seq == 2000
        assert run.stub.Restore(request, timeout=30).seq == 2000  # the same answer again
        follow = control_pb2.FollowRequest(
            symbol="FOL", location="redis:snapshot-data:FOL:test", source_partition=1, from_offset=6
        )
        assert run.stub.Follow(follow, timeout=30).seq == 2000
        checkpoint = recovery.read_checkpoint(r, 0)
        assert checkpoint is not None
        entry = checkpoint.books["RST"]
        book, _ = load(run.engine.store.fetch(entry.location))  # durable: it names real bytes
        assert (entry.seq, book.seq, book.resting()) == (2000, 2000, 2000)
        prod = producer(broker.bootstrap)
        produce_orders(prod, [("RST", add("next", "u", Side.SELL, 500, 1))], lambda s: 0)
        prod.flush(10)
        prod.close()
        reader = EventReader(broker.bootstrap, PARTITIONS)
        assert reader.read_until(
            lambda rd: any(e[2] == "next" and e[1] == 2001 for e in rd.events.get("RST", [])),
            timeout=30,
        )
        reader.close()
    assert seen, "the watch saw nothing"
    on_loop = [name for name, thread in seen if thread == "loop"]
    assert not on_loop, f"{on_loop} ran on the loop thread"


def test_fences_of_removed_or_unfenced_symbols_leave_stats_and_the_checkpoint(broker, redis_server):
    # before: a Remove's fence stayed in Stats and in every checkpoint for good
    with engine_in_process(
        broker, redis_server, "0", "fences", snapshot_interval_s=0.2, fence_retain_s=1.0
    ) as running:
        prod = producer(broker.bootstrap)
        orders = [
            (s, add(f"{s}-{i}", "u", Side.BUY, 10 + i, 1))
            for i in range(3)
            for s in ("LEFT", "BACK")
        ]
        produce_orders(prod, orders, lambda s: 0)
        prod.flush(10)
        reader = EventReader(broker.bootstrap, PARTITIONS)
        assert reader.read_until(lambda rd: len(rd.events.get("BACK", [])) >= 3, timeout=30)
        stub = running.stub
        fenced = stub.Fence(control_pb2.FenceRequest(symbol="BACK", epoch=2, to_partition=3))
        assert fenced.final_seq == 3
        stub.Unfence(control_pb2.UnfenceRequest(symbol="BACK", owner_epoch=2), timeout=30)
        stub.Remove(control_pb2.RemoveRequest(symbol="LEFT", fence_epoch=2), timeout=30)

        def fences() -> list[str]:
            stats = stub.Stats(control_pb2.StatsRequest(), timeout=5)
            return [f.symbol for f in stats.fences]

        assert fences() == ["LEFT"]  # kept a while: a late order routed by a stale table
        produce_orders(prod, [("LEFT", add("late", "u", Side.BUY, 10, 1))], lambda s: 0)
        prod.flush(10)
        prod.close()
        assert reader.read_until(
            lambda rd: any(
                e[2] == "late" and e[5] == Reason.STALE_ROUTE for e in rd.events.get("LEFT", [])
            ),
            timeout=30,
        )
        reader.close()
        deadline = time.monotonic() + 30
        while fences() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert fences() == []
        checkpoint = wait_checkpoint(redis_server.client(), 0, lambda c: c.fences == {})
        assert checkpoint is not None and checkpoint.fences == {}
        assert list(checkpoint.books) == ["BACK"]


def test_a_replaced_log_resumes_from_its_start_and_reports_the_loss(broker, redis_server, engines):
    # Tansu on memory storage restarts empty: `orders` comes back with another topic id and
    # offsets from 0. Before, the checkpoint's position (3, well within POSITION_SLACK of
    # the new log's high watermark) passed the check and the engine sought to it in the new
    # log: the first 3 orders acknowledged there were silently never applied.
    r = redis_server.client()
    for symbol in ("RELOG", "LATE"):  # listed before their first orders, as the router does
        route.list_symbol_at(r, symbol, 0, "relog")
    engine = engines("0", "relog", "--snapshot-interval-s", "5")
    prod = producer(broker.bootstrap)
    before = [("RELOG", add(f"b{i}", "u", Side.BUY, 10 + i, 1)) for i in range(3)]
    produce_orders(prod, before, lambda s: 0)
    prod.flush(10)
    reader = EventReader(broker.bootstrap, PARTITIONS)
    assert reader.read_until(lambda rd: len(rd.events.get("RELOG", [])) >= 3, timeout=30)
    reader.close()
    old = wait_checkpoint(r, 0, lambda c: c.offset >= 2)  # the periodic one through the 3
    assert old is not None and old.offset == 2 and old.log_id
    # LATE is born after that checkpoint and seen by readers (seqs 1, 2), and the engine is
    # killed before the next one (5 s): the checkpoint has no snapshot of it (mostly not
    # even an entry; it is routed here). Before f0a8a11, LATE was born again on the new log
    # at seq 1, 2, ... which readers drop as seen.
    late = [("LATE", add(f"l{i}", "u", Side.BUY, 10 + i, 1)) for i in range(2)]
    produce_orders(prod, late, lambda s: 0)
    prod.flush(10)
    reader = EventReader(broker.bootstrap, PARTITIONS)
    assert reader.read_until(lambda rd: len(rd.events.get("LATE", [])) >= 2, timeout=30)
    reader.close()
    unsnapped = recovery.read_checkpoint(r, 0)
    assert unsnapped is not None
    assert "LATE" not in unsnapped.books or not unsnapped.books["LATE"].location
    engine.process.stop(signal.SIGKILL)
    prod.close()
    broker.restart()  # memory storage: every topic gone
    kafka.create_topics(broker.admin(), PARTITIONS)
    prod = producer(broker.bootstrap)
    after = [("RELOG", add(f"a{i}", "u", Side.SELL, 100 + i, 1)) for i in range(6)]
    after += [("LATE", add("l-new", "u", Side.BUY, 10, 1))]
    produce_orders(prod, after, lambda s: 0)
    prod.flush(10)
    engine = engines("0", "relog", "--snapshot-interval-s", "5")
    # FRESH never existed before: listed on the new log, it starts at seq 1 (before: above
    # the jump, like the symbols that existed, and readers saw a Gap from 0)
    route.list_symbol_at(r, "FRESH", 0, "relog")
    produce_orders(prod, [("FRESH", add("f-1", "u", Side.BUY, 10, 1))], lambda s: 0)
    prod.flush(10)
    reader = EventReader(broker.bootstrap, PARTITIONS)
    ids = {f"a{i}" for i in range(6)} | {"l-new", "f-1"}

    def all_after(rd: EventReader) -> bool:
        seen = rd.events.get("RELOG", []) + rd.events.get("LATE", []) + rd.events.get("FRESH", [])
        return ids <= {e[2] for e in seen}

    try:
        assert reader.read_until(all_after, timeout=30), "orders of the new log were skipped"
        # the book came back from its snapshot (seq 3); its seqs jump past any the old log
        # may have had after the checkpoint: readers see a gap, never a seq used twice
        jump = recovery.SEQ_JUMP_ON_REPLACED_LOG
        assert min(e[1] for e in reader.events["RELOG"]) == 3 + jump + 1
        # a book with no snapshot in the checkpoint starts above the jump too
        assert min(e[1] for e in reader.events["LATE"]) == jump + 1
        assert min(e[1] for e in reader.events["FRESH"]) == 1
    finally:
        reader.close()
        prod.close()
    log = engine.process.log_tail(60)
    assert "LOG_REPLACED" in log and "orders log replaced" in log, log
    new = wait_checkpoint(r, 0, lambda c: c.log_id != old.log_id)
    assert new is not None and new.log_id and new.log_id != old.log_id
    stats = engine.stub().Stats(control_pb2.StatsRequest(), timeout=5)
    [relog] = [s for s in stats.symbols if s.symbol == "RELOG"]
    assert relog.resting_orders == 9  # 3 bids from the snapshot, 6 asks above them


def test_a_log_replaced_before_the_first_periodic_checkpoint_is_noticed(
    broker, redis_server, engines
):
    # Before: an engine with no checkpoint wrote none until its first periodic one (10 s by
    # default), so a log replaced before then was not noticed: its books started at seq 1
    # again on the new log, and readers dropped those events as ones they had seen.
    r = redis_server.client()
    route.list_symbol_at(r, "EARLY", 0, "early")
    engine = engines("0", "early", "--snapshot-interval-s", "600")
    prod = producer(broker.bootstrap)
    first = [("EARLY", add(f"e{i}", "u", Side.BUY, 10 + i, 1)) for i in range(2)]
    produce_orders(prod, first, lambda s: 0)
    prod.flush(10)
    reader = EventReader(broker.bootstrap, PARTITIONS)
    assert reader.read_until(lambda rd: len(rd.events.get("EARLY", [])) >= 2, timeout=30)
    reader.close()
    engine.process.stop(signal.SIGKILL)  # long before its first periodic checkpoint
    prod.close()
    broker.restart()  # memory storage: every topic gone
    kafka.create_topics(broker.admin(), PARTITIONS)
    prod = producer(broker.bootstrap)
    produce_orders(prod, [("EARLY", add("e-new", "u", Side.BUY, 10, 1))], lambda s: 0)
    prod.flush(10)
    engine = engines("0", "early", "--snapshot-interval-s", "600")
    reader = EventReader(broker.bootstrap, PARTITIONS)
    try:
        assert reader.read_until(lambda rd: bool(rd.events.get("EARLY")), timeout=30)
        assert min(e[1] for e in reader.events["EARLY"]) == recovery.SEQ_JUMP_ON_REPLACED_LOG + 1
    finally:
        reader.close()
        prod.close()
    assert "LOG_REPLACED" in engine.process.log_tail(60)


class LowMarkAtTheEnd:
    """The engine's consumer, with the broker's answer to ListOffsets that Tansu on s3://
    storage gives right after a restart: the low watermark at the end of the log (measured
    in tests/faults: 62..62 while offsets 0..81 were fetchable). Everything else is real."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def get_watermark_offsets(self, tp: Any, **kw: Any) -> tuple[int, int]:
        _low, high = self.real.get_watermark_offsets(tp, **kw)
        return high, high

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_low_watermark_above_a_readable_position_does_not_stop_the_engine(
    broker, redis_server, engines
):
    # before: the engine believed the watermark, refused to start ("outside its log") on
    # every restart, and the durable broker-restart case never resumed
    r = redis_server.client()
    engine = engines("0", "lowmark")
    prod = producer(broker.bootstrap)
    produce_orders(prod, [("LOW", add(f"o{i}", "u", Side.BUY, 10 + i, 1)) for i in range(4)],
                   lambda s: 0)  # fmt: skip
    prod.flush(10)
    checkpoint = wait_checkpoint(r, 0, lambda c: c.offset >= 3)
    assert checkpoint is not None and checkpoint.offset == 3
    engine.process.stop(signal.SIGKILL)
    produce_orders(prod, [("LOW", add("late", "u", Side.SELL, 50, 1))], lambda s: 0)
    prod.flush(10)
    settings = EngineSettings(
        kafka_brokers=broker.bootstrap,
        redis_port=redis_server.port,
        partitions=(0,),
        instance_id="lowmark",
        grpc_port=free_port(),
    )
    again = build(settings)
    again.consumer = LowMarkAtTheEnd(again.consumer)
    try:
        again.start()  # the record at the checkpoint's position is read: it is there
        assert again.state.position[0] == 4
        again.stopping.set()
    finally:
        again.shutdown()


def test_a_stopped_engine_closes_its_kafka_clients(broker, redis_server):
    # Before: shutdown closed the consumer only. The producer (its delivery callback is a
    # method of the engine: a cycle garbage collection never frees) and the log identity's
    # AdminClient lived on for the rest of the process, reconnecting to their broker once it
    # stopped: the "rdkafka#producer-N ... Connection refused" lines of a full test run.
    settings = EngineSettings(
        kafka_brokers=broker.bootstrap,
        redis_port=redis_server.port,
        partitions=(1,),
        instance_id="closing",
        grpc_port=free_port(),
    )
    engine = build(settings)
    producer = engine.producer
    try:
        engine.start()
        engine.stopping.set()
    finally:
        engine.shutdown()
    with pytest.raises(RuntimeError, match="closed"):
        producer.poll(0)
    assert engine.log_identity is None


class _StaleAck:
    """What Tansu 0.6 on s3:// storage, restarted with a batch on its way, answered the
    producer's retry: acknowledged at offset 0 of a partition long past it."""

    def __init__(self, topic: str, partition: int) -> None:
        self._topic, self._partition = topic, partition

    def offset(self) -> int:
        return 0

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition


class _AckedUnstored(confluent_kafka.Producer):
    """A real producer, except that once armed it answers the next order_status record as
    that broker did: acknowledged (at offset 0), never stored."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.report: Any = config.get("on_delivery")  # the engine's; None for others
        self.armed = False
        self.unstored: list[bytes] = []

    def produce(self, topic: str, value: Any = None, key: Any = None, partition: int = -1) -> None:  # type: ignore[override]
        if self.armed and topic == names.TOPIC_ORDER_STATUS:
            self.armed = False
            self.unstored.append(value)
            self.report(None, _StaleAck(topic, partition))
            return
        super().produce(topic, value, key, partition)


def test_an_event_acknowledged_at_an_offset_already_passed_is_published_again_by_the_restart(
    broker, redis_server, monkeypatch
):
    # before: the engine checked only that a delivered event had an offset, so an order
    # status acknowledged at offset 0 of a partition long past it (and never stored) was
    # taken as written, the next checkpoint covered it, and its seqs stayed a hole for
    # every reader. Now the engine stops as for a failed delivery (no checkpoint covers
    # the record) and its restart from the checkpoint publishes the events again.
    prod = producer(broker.bootstrap)
    monkeypatch.setattr(confluent_kafka, "Producer", _AckedUnstored)  # what build() makes
    reader = EventReader(broker.bootstrap, PARTITIONS)
    first = [("STALE", add(f"a{i}", "u", Side.BUY, 10 + i, 1)) for i in range(5)]
    with engine_in_process(broker, redis_server, "0", "stale") as running:
        produce_orders(prod, first, lambda s: 0)
        assert prod.flush(10) == 0
        assert reader.read_until(lambda rd: len(rd.events.get("STALE", [])) >= 5, timeout=30)
        made = running.engine.producer
        assert isinstance(made, _AckedUnstored)
        running.on_loop(lambda: setattr(made, "armed", True))
        produce_orders(prod, [("STALE", add("b0", "u", Side.BUY, 20, 1))], lambda s: 0)
        assert prod.flush(10) == 0
        running.thread.join(20)
        assert made.unstored, "the order status of b0 was never produced"
        assert running.failure, "an acknowledgement at an offset long passed taken as written"
        assert "acknowledged at offset 0 of partition 0, which was past" in str(running.failure[0])
    checkpoint = recovery.read_checkpoint(redis_server.client(), 0)
    assert checkpoint is not None and checkpoint.offset < 5  # b0 (offset 5) not covered
    with engine_in_process(broker, redis_server, "0", "stale") as running:
        assert reader.read_until(
            lambda rd: any(e[2] == "b0" for e in rd.events.get("STALE", [])), timeout=30
        )
        reader.poll(0.5)
        assert not running.failure
    seqs = [e[1] for e in reader.events["STALE"]]
    assert seqs == list(range(1, 7)) and not reader.guard.gaps, seqs
    reader.close()
    prod.close()
