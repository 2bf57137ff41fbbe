"""Once Redis answers again after an outage, the engine snapshots its books anew (Redis may
have come back empty) without stopping its loop: on a real Tansu, redis-server killed and
started again empty, the engine in the test's process. Before: the "redis-back" checkpoint
dumped every book on the loop thread (about a second for a 300k-order book here), so no
symbol of the engine matched meanwhile."""

import signal
import threading
import time
from collections.abc import Callable

import pytest

from engine.book import add, snapshot
from hotshard import recovery
from hotshard.domain import Side
from hotshard.local.traffic import EventReader, produce_orders, producer
from tests.builders import big_book
from tests.integration.conftest import PARTITIONS
from tests.integration.inprocess import engine_in_process

pytestmark = pytest.mark.integration

ORDERS = 300_000


def wait(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_the_checkpoint_after_redis_comes_back_never_stops_the_loop(broker, redis_server):
    book = big_book("BIG", ORDERS)
    began = time.perf_counter()
    snapshot.dump(book, input_offset=-1, partition=0)
    dump_s = time.perf_counter() - began  # what the old redis-back checkpoint held the loop
    with engine_in_process(
        broker, redis_server, "0-1", "rback", snapshot_interval_s=0.5
    ) as running:
        engine, state = running.engine, running.engine.state
        running.on_loop(lambda: state.add_book(book, 0, state.position.get(0, 0) - 1))
        r = redis_server.client()

        def big_checkpointed() -> bool:
            try:
                checkpoint = recovery.read_checkpoint(r, 0)
            except Exception:  # Redis still starting
                return False
            entry = checkpoint.books.get("BIG") if checkpoint is not None else None
            # it names a snapshot this Redis holds
            return entry is not None and bool(r.exists(entry.location.removeprefix("redis:")))

        wait("BIG's first checkpoint", big_checkpointed)
        prod = producer(broker.bootstrap)
        produce_orders(prod, [("OTHER", add("o-0", "u", Side.BUY, 10, 1))], lambda s: 1)
        prod.flush(10)
        running.on_loop(lambda: state.dirty.add("BIG"))  # it changed since (for the dump)

        redis_server.process.stop(signal.SIGKILL)
        wait("the engine to miss Redis", lambda: engine._redis_lost > 0)
        old_run_id = engine._redis_run_id
        gaps: list[float] = []
        sampling = threading.Event()

        def sample() -> None:  # how long ago the loop last began a turn, every 2 ms
            while not sampling.is_set():
                gaps.append(time.monotonic() - engine._turned)
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        redis_server.restart()  # empty: no AOF
        r.close()
        r = redis_server.client()
        # other symbols are matched meanwhile: an order a millisecond apart
        sent = 0
        deadline = time.monotonic() + 60
        while not (engine._redis_run_id != old_run_id and big_checkpointed()):
            assert time.monotonic() < deadline, "BIG was never checkpointed again"
            sent += 1
            produce_orders(
                prod, [("OTHER", add(f"o-{sent}", "u", Side.BUY, 10 + sent % 50, 1))], lambda s: 1
            )
            prod.poll(0.001)
        sampling.set()
        sampler.join(5)
        prod.flush(10)
        prod.close()
        checkpoint = recovery.read_checkpoint(r, 0)
        assert checkpoint is not None
        restored, _info = snapshot.load(engine.store.fetch(checkpoint.books["BIG"].location))
        assert restored.resting() == ORDERS  # the new Redis names a snapshot that exists
        r.close()
        reader = EventReader(broker.bootstrap, PARTITIONS)
        assert reader.read_until(lambda rd: len(rd.events.get("OTHER", [])) > sent, timeout=30)
        reader.close()
        worst = max(gaps)
        print(
            f"redis back: BIG ({ORDERS} orders, dump {dump_s:.2f} s in the test) checkpointed "
            f"again; the loop's longest turn meanwhile {worst * 1000:.0f} ms, {sent} OTHER orders"
        )
        assert not running.failure
        assert worst < dump_s / 2, f"the loop stood still for {worst:.2f} s"
