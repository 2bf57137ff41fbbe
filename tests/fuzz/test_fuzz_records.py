"""Raw Kafka record bytes into the engine's functional core: any key and value, junk or
mutated valid records, never raise and never create a book; each record is answered (a
valid order by the book, anything else by a REJECTED status)."""

from hypothesis import given
from hypothesis import strategies as st

from engine.book import Market, add
from engine.service.core import EngineState
from hotshard.domain import Side
from hotshard.wire import decode_order, encode_order
from tests.fuzz.conftest import FUZZ

VALID = encode_order("AAPL", add("o-1", "alice", Side.BUY, 100, 5), route_epoch=1)


@st.composite
def record_bytes(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.binary(max_size=200))
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 6))):  # flip, insert or cut bytes of a valid record
        at = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(st.integers(0, 2))
        if op == 0 and data:
            data[at] = draw(st.integers(0, 255))
        elif op == 1:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at : at + draw(st.integers(1, 8))]
    return bytes(data)


@FUZZ
@given(value=record_bytes(), key=st.none() | st.binary(max_size=80))
def test_decode_order_never_raises(value: bytes, key: bytes | None) -> None:
    decoded = decode_order(value, key)
    assert decoded.command is not None or decoded.reason != 0


@FUZZ
@given(batch=st.lists(st.tuples(st.none() | st.binary(max_size=20), record_bytes()), max_size=20))
def test_the_engine_core_answers_every_record_and_never_raises(batch):
    market = Market()  # listed symbols only: junk must never create a book
    market_books_before = set(market.books)
    state = EngineState(market)
    records = [(0, offset, key, value) for offset, (key, value) in enumerate(batch)]
    result = state.apply_batch(records)
    assert set(market.books) == market_books_before
    assert sum(result.orders.values()) <= len(records)
    if records:
        assert result.last_offsets[0] == len(records) - 1
