"""The in-process demo (`hotshard demo --in-process`): the generated flow through the books
of one Market, no broker, Redis or engine process; then what happened, per symbol.

The flow is Zipf-skewed across symbols (the hottest takes ~40%): passive limits near the
touch, cancels of live orders, marketable limits and market orders (hotshard/local/flow.py).
Each chunk of the flow is applied book by book (each book sees its own commands in flow
order, as an engine batch does), so the time each book spends matching is measured on its
own: a symbol's orders/s is its orders over its book's time, not over the whole market's.
"""

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.book import Book, Command, Market
from engine.runtime import tune_gc
from hotshard.domain import Status
from hotshard.events import KIND, QUANTITY, STATUS, STATUS_CODE, TRADE
from hotshard.local.flow import Stream, zipf_stream

CHUNK = 10_000


@dataclass
class SymbolTally:
    orders: int = 0
    seconds: float = 0.0
    """Time its book spent matching its orders."""
    trades: int = 0
    volume: int = 0
    statuses: Counter[Status] = field(default_factory=Counter)


def replay(
    stream: Stream, market: Market, progress: Progress | None = None
) -> dict[str, SymbolTally]:
    """Apply the stream, chunk by chunk and book by book; returns per-symbol tallies."""
    tallies: dict[str, SymbolTally] = {}
    task = progress.add_task("matching", total=len(stream)) if progress is not None else None
    for start in range(0, len(stream), CHUNK):
        chunk = stream[start : start + CHUNK]
        by_symbol: dict[str, list[Command]] = {}
        for symbol, command in chunk:
            by_symbol.setdefault(symbol, []).append(command)
        for symbol, commands in by_symbol.items():
            book = market.book(symbol)
            assert book is not None  # an open-listing market lists every symbol
            began = time.perf_counter()
            events = book.apply_all(commands)
            elapsed = time.perf_counter() - began
            tally = tallies.get(symbol) or tallies.setdefault(symbol, SymbolTally())
            tally.orders += len(commands)
            tally.seconds += elapsed
            for event in events:
                if event[KIND] == TRADE:
                    tally.trades += 1
                    tally.volume += int(event[QUANTITY])
                elif event[KIND] == STATUS:
                    tally.statuses[Status(int(event[STATUS_CODE]))] += 1
        if progress is not None and task is not None:
            progress.advance(task, len(chunk))
    return tallies


Row = tuple[str, SymbolTally, Book]
Column = tuple[str, Callable[[Row], str]]


def _side(level: tuple[int, int] | None) -> str:
    return f"{level[0]:,} x {level[1]:,}" if level else "-"


def _table(title: str, columns: list[Column], rows: list[Row]) -> Table:
    """A table whose every row has one cell per column, by construction."""
    table = Table(title=title, title_justify="left")
    for header, _ in columns:
        table.add_column(header, justify="left" if header == "symbol" else "right")
    for row in rows:
        table.add_row(*(cell(row) for _, cell in columns))
    return table


def ranked(market: Market, tallies: dict[str, SymbolTally], top: int) -> list[Row]:
    """The `top` symbols with the most orders (ties: by name)."""
    order = sorted(tallies.items(), key=lambda item: (-item[1].orders, item[0]))[:top]
    return [(symbol, tally, market.books[symbol]) for symbol, tally in order]


def summary(market: Market, tallies: dict[str, SymbolTally], top: int) -> Table:
    total = sum(t.orders for t in tallies.values())
    columns: list[Column] = [
        ("symbol", lambda r: r[0]),
        ("orders", lambda r: f"{r[1].orders:,}"),
        ("share", lambda r: f"{r[1].orders / total:.1%}"),
        ("orders/s", lambda r: f"{r[1].orders / max(r[1].seconds, 1e-9):,.0f}"),
        ("trades", lambda r: f"{r[1].trades:,}"),
        ("volume", lambda r: f"{r[1].volume:,}"),
        ("resting", lambda r: f"{r[2].resting():,}"),
        ("best bid", lambda r: _side(r[2].bbo()[0])),
        ("best ask", lambda r: _side(r[2].bbo()[1])),
    ]
    return _table(f"hottest {top} symbols of {len(tallies)}", columns, ranked(market, tallies, top))


def status_table(market: Market, tallies: dict[str, SymbolTally], top: int) -> Table:
    """order_status events of the hottest symbols, one column per status."""

    def count(status: Status) -> Callable[[Row], str]:
        return lambda r: f"{r[1].statuses[status]:,}"

    columns: list[Column] = [("symbol", lambda r: r[0])]
    columns += [(status.name.lower().replace("_", " "), count(status)) for status in Status]
    return _table(
        f"order_status events of the hottest {top}", columns, ranked(market, tallies, top)
    )


def run(orders: int, symbols: int, seed: int, top: int, console: Console) -> int:
    console.rule("[bold]hotshard demo: the matching core")
    with Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("generating", total=None)
        stream = zipf_stream(orders, seed=seed, symbols=symbols)
        progress.update(task, total=1, completed=1)
        market = Market(open_listing=True)
        tune_gc()
        tallies = replay(stream, market, progress)

    busy = sum(t.seconds for t in tallies.values())
    events = sum(sum(t.statuses.values()) for t in tallies.values())
    trades = sum(t.trades for t in tallies.values())
    console.print(summary(market, tallies, top))
    console.print(status_table(market, tallies, top))
    console.print(
        f"[bold]{len(stream):,}[/] orders across {len(tallies)} symbols "
        f"in {busy:.2f} s of matching "
        f"([bold]{len(stream) / max(busy, 1e-9):,.0f}[/] orders/s on one core): "
        f"{trades:,} trades, {2 * trades:,} fills, {events:,} order_status events, "
        f"{sum(b.resting() for b in market):,} orders resting."
    )
    return 0
