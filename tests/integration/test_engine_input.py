"""Bad records on `orders` are rejected with a reason and the engine keeps running; SIGTERM
stops it cleanly (final snapshot, deregistered, exit 0)."""

import json
import signal

import pytest

from engine.book import add
from hotshard import recovery, registry
from hotshard.domain import Side, Status
from hotshard.local.traffic import EventReader, produce_orders, produce_raw, producer
from hotshard.reasons import Reason
from tests.integration.conftest import PARTITIONS

pytestmark = pytest.mark.integration


def test_garbage_unknown_symbol_and_negative_quantity_are_rejected_and_matching_goes_on(
    tmp_path, broker, redis_server, engines
):
    symbols = tmp_path / "symbols.json"
    symbols.write_text(json.dumps({"AAA": {}, "BBB": {"tick": 5}}))
    engine = engines("0-3", "input", "--symbols", str(symbols))
    prod = producer(broker.bootstrap)
    produce_orders(prod, [("AAA", add("ok1", "u", Side.BUY, 100, 5))], lambda s: 0)
    produce_raw(prod, 0, b"AAA", b"\xff\x00 not an order")
    produce_raw(prod, 0, None, b"\x12\x34\x56")
    produce_orders(prod, [("ZZZ", add("z", "u", Side.BUY, 100, 5))], lambda s: 0)
    produce_orders(prod, [("AAA", add("neg", "u", Side.BUY, 100, -5))], lambda s: 0)
    produce_orders(prod, [("BBB", add("tick", "u", Side.BUY, 101, 5))], lambda s: 0)
    produce_orders(prod, [("AAA", add("ok2", "v", Side.SELL, 100, 5))], lambda s: 0)
    assert prod.flush(10) == 0

    reader = EventReader(broker.bootstrap, PARTITIONS)
    assert reader.read_until(lambda r: any(e[2] == "ok2" for e in r.events.get("AAA", [])), 30)
    reader.poll(0.3)
    status: dict[str, tuple[int, str, str]] = {}
    for symbol in sorted(reader.events):
        for e in reader.sorted_events(symbol):
            if e[0] == 1:  # the first order_status of each order
                status.setdefault(e[2], (e[1], Status(e[4]).name, Reason(e[5]).name))
    assert status["ok1"] == (1, "ACCEPTED", "NONE")
    assert status[""] == (0, "REJECTED", "MALFORMED")  # keyless garbage: no book to number it
    assert status["z"] == (0, "REJECTED", "UNKNOWN_SYMBOL")
    assert status["neg"] == (3, "REJECTED", "NON_POSITIVE_QUANTITY")
    assert status["tick"] == (1, "REJECTED", "PRICE_OFF_TICK")
    assert status["ok2"][:2] == (4, "ACCEPTED")  # then trade, fills, FILLED
    aaa = [e for e in reader.sorted_events("AAA") if e[0] == 1]
    assert (aaa[1][1], aaa[1][5]) == (2, Reason.MALFORMED)  # garbage keyed AAA, in sequence
    reader.close()

    r = redis_server.client()
    assert registry.read_engine(r, "input") is not None
    assert engine.process.stop(signal.SIGTERM, timeout=20) == 0
    assert registry.read_engine(r, "input") is None
    assert registry.partition_owner(r, 0) is None
    checkpoint = recovery.read_checkpoint(r, 0)
    assert checkpoint is not None and checkpoint.offset == 6 and "AAA" in checkpoint.symbols
    entry = checkpoint.books["AAA"]
    assert entry.seq == reader.sorted_events("AAA")[-1][1] and entry.location.startswith("redis:")


def test_a_second_engine_cannot_take_owned_partitions(tmp_path, engines):
    engines("0-1", "owner")
    with pytest.raises(Exception, match="engine exited"):
        engines("1-2", "intruder")
