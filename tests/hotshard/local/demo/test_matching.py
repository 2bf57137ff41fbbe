"""hotshard.local.demo.matching: every column of the summary holds what its header names,
counted here independently from the events of a second, identical run."""

from collections import Counter

from rich.table import Table

from engine.book import Market
from hotshard.domain import Status
from hotshard.events import KIND, STATUS, STATUS_CODE, TRADE
from hotshard.local.demo.matching import replay, status_table, summary
from hotshard.local.flow import Stream, zipf_stream


def columns(table: Table) -> dict[str, list[str]]:
    return {str(c.header): [str(cell) for cell in c.cells] for c in table.columns}


def expected(stream: Stream) -> tuple[Market, dict[str, Counter[Status]], dict[str, int]]:
    """Statuses and trades per symbol, from a run applied order by order."""
    market = Market(open_listing=True)
    statuses: dict[str, Counter[Status]] = {}
    trades: Counter[str] = Counter()
    for symbol, command in stream:
        for event in market.apply(symbol, command):
            if event[KIND] == STATUS:
                statuses.setdefault(symbol, Counter())[Status(int(event[STATUS_CODE]))] += 1
            elif event[KIND] == TRADE:
                trades[symbol] += 1
    return market, statuses, dict(trades)


def test_every_column_of_every_row_holds_what_its_header_names():
    stream = zipf_stream(25_000, seed=11, symbols=6)
    market = Market(open_listing=True)
    tallies = replay(stream, market)
    reference, statuses, trades = expected(stream)

    shown = columns(summary(market, tallies, top=4))
    assert all(len(cells) == 4 and all(cells) for cells in shown.values()), shown
    for row, symbol in enumerate(shown["symbol"]):
        book = reference.books[symbol]
        assert shown["resting"][row] == f"{book.resting():,}"
        assert shown["trades"][row] == f"{trades.get(symbol, 0):,}"
        bid, ask = book.bbo()
        assert shown["best bid"][row] == (f"{bid[0]:,} x {bid[1]:,}" if bid else "-")
        assert shown["best ask"][row] == (f"{ask[0]:,} x {ask[1]:,}" if ask else "-")

    counts = columns(status_table(market, tallies, top=4))
    assert counts["symbol"] == shown["symbol"]
    for row, symbol in enumerate(counts["symbol"]):
        for status in Status:
            header = status.name.lower().replace("_", " ")
            assert counts[header][row] == f"{statuses[symbol][status]:,}", (symbol, status)
    assert any(counts["filled"]) and any(c != "0" for c in counts["cancelled"])


def test_a_symbols_rate_is_its_orders_over_its_own_books_time():
    stream = zipf_stream(20_000, seed=3, symbols=5)
    market = Market(open_listing=True)
    tallies = replay(stream, market)
    assert sum(t.orders for t in tallies.values()) == len(stream)
    assert all(t.seconds > 0 for t in tallies.values())
    shown = columns(summary(market, tallies, top=5))
    for row, symbol in enumerate(shown["symbol"]):
        tally = tallies[symbol]
        assert shown["orders/s"][row] == f"{tally.orders / tally.seconds:,.0f}"
