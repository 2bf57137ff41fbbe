"""EventReader.read_to_end on the real broker: Tansu's high watermark is the first offset of
a partition's last batch + 1 (/work/shared/notes/local-kafka.md), so a reader's position
passes it once that batch's first record is consumed, while the rest of the batch may still
be in the client's queue: a fault case took the unread tail of one symbol's fills for lost
events ("BBB: seqs missing [34, 35, 40, 41, ...]")."""

from engine.book import Market, add
from hotshard.domain import Side
from hotshard.local.traffic import EventReader, producer
from hotshard.names import TOPIC_ORDER_STATUS
from hotshard.wire import encode_symbol_batch
from tests.integration.conftest import PARTITIONS

RECORDS = 3000


def test_read_to_end_reads_the_whole_last_batch(broker):
    market = Market(open_listing=True)
    prod = producer(broker.bootstrap, **{"linger.ms": 2000, "batch.num.messages": 10_000})
    try:
        for i in range(RECORDS):  # one record per order: more than one consume() returns
            [event] = market.apply("TAIL", add(f"o{i}", "u", Side.BUY, 100, 1))
            value = encode_symbol_batch("TAIL", i, i + 1, [event], [1], [i], None, -1)
            prod.produce(TOPIC_ORDER_STATUS, value.order_status, b"TAIL", 0)
        assert prod.flush(30) == 0
    finally:
        prod.close()
    reader = EventReader(broker.bootstrap, PARTITIONS)
    try:
        assert reader.read_to_end(30)
        assert len(reader.events["TAIL"]) == RECORDS
    finally:
        reader.close()
