"""Orders in through the real broker -> the events the in-process books give, out."""

import pytest

from hotshard.local.flow import zipf_stream
from hotshard.local.traffic import EventReader, produce_orders, producer
from tests.integration.conftest import PARTITIONS
from tests.integration.helpers import expected_events, place, total

pytestmark = pytest.mark.integration


def test_two_engines_over_four_partitions_publish_exactly_the_books_events(broker, engines):
    engines("0-1", "flow-a")
    engines("2-3", "flow-b")
    stream = zipf_stream(6000, seed=11, symbols=12)
    assert len({place(s) for s, _ in stream}) == PARTITIONS
    market, expected = expected_events(stream)
    prod = producer(broker.bootstrap)
    produce_orders(prod, stream, place)
    assert prod.flush(10) == 0

    reader = EventReader(broker.bootstrap, PARTITIONS)
    assert reader.read_until(lambda r: r.count() >= total(expected), timeout=60)
    assert not reader.guard.gaps
    assert reader.guard.dropped == 0  # no crash, no replay
    for symbol, events in expected.items():
        assert reader.sorted_events(symbol) == events, symbol
        produced = sum(1 for s, _ in stream if place(s) == place(symbol))
        assert all(0 <= offset < produced for offset in reader.offsets[symbol])
        bids, asks = market.books[symbol].depth(10_000)
        book = reader.depth[symbol]
        assert sorted(book["bids"].items(), reverse=True) == bids
        assert sorted(book["asks"].items()) == asks
    reader.close()
