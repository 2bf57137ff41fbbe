"""Replay a file of client orders through the books and write every event: a backtest tool.

    python -m engine.replay --input orders.jsonl --output events.jsonl
                            [--depth-levels N] [--symbols symbols.json]
    hotshard replay ...      (the same tool and options)

Input: one JSON order per line in the client format (docs/FORMATS.md). Output: one JSON
event per line; all events of an input line come before those of the next. A malformed
line gives an order_status REJECTED with a reason and the replay goes on. The output is a
pure function of the input: two runs give byte-identical files.
"""

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from engine.book import Book, Instrument, Market
from engine.book.instrument import DEFAULT_DEDUP_WINDOW
from engine.runtime import tune_gc
from hotshard.codec import InvalidOrderError, decode_order_json, depth_json, dumps, event_json
from hotshard.domain import Status
from hotshard.events import KIND, STATUS, STATUS_CODE, TRADE, Event, unsequenced_rejection


@dataclass
class ReplayStats:
    lines: int = 0
    events: int = 0
    trades: int = 0
    rejected: int = 0
    statuses: Counter[str] = field(default_factory=Counter)


EDGE_DEFAULT = "*"
EDGE_ONLY = ("max_notional",)


def load_symbols(path: Path, dedup_window: int = DEFAULT_DEDUP_WINDOW) -> dict[str, Instrument]:
    """Read a symbols config: {"SYM": {"tick": 1, "lot": 1, "price_min": 1, "price_max": N,
    "self_trade_prevention": false, "dedup_window": 100000}, ...}; every key optional (a
    symbol without `dedup_window` gets `dedup_window`). The edge's keys (`max_notional`,
    the default entry "*") are left to the router, so one file serves both
    (hotshard.edge.limits)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"cannot read symbols config {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise SystemExit(f"symbols config {path} must be a JSON object keyed by symbol")
    instruments = {}
    for symbol, spec in raw.items():
        if symbol == EDGE_DEFAULT:
            continue
        try:
            rules: dict[str, Any] = {"dedup_window": dedup_window}
            rules.update((k, v) for k, v in (spec or {}).items() if k not in EDGE_ONLY)
            instruments[symbol] = Instrument(symbol, **rules)
        except (TypeError, ValueError) as exc:
            raise SystemExit(f"symbols config {path}, symbol {symbol}: {exc}") from exc
    return instruments


def replay_lines(
    lines: Iterable[str | bytes], market: Market, depth_levels: int, stats: ReplayStats
) -> Iterator[dict[str, Any]]:
    """Events of each line, in order, as client JSON objects."""
    for line in lines:
        if not line.strip():
            continue
        stats.lines += 1
        book: Book | None = None
        try:
            request = decode_order_json(line)
        except InvalidOrderError as bad:
            symbol = bad.symbol
            book = market.book(symbol)
            events: list[Event] = []
            if book is not None:
                book.reject(bad.order_id, bad.user_id, bad.reason, events)
            else:
                events.append(unsequenced_rejection(bad.order_id, bad.user_id, bad.reason))
        else:
            symbol = request.symbol
            book = market.book(symbol)
            events = market.apply(symbol, request.command)
        for event in events:
            stats.events += 1
            if event[KIND] == STATUS:
                status = Status(int(event[STATUS_CODE])).name
                stats.statuses[status] += 1
                stats.rejected += status == "REJECTED"
            elif event[KIND] == TRADE:
                stats.trades += 1
            yield event_json(symbol, event)
        if depth_levels:
            bids, asks = book.depth(depth_levels) if book is not None else ([], [])
            yield depth_json(symbol, book.seq if book is not None else 0, bids, asks)


def _levels(value: str) -> int:
    levels = int(value)
    if levels < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return levels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The replay's options (`python -m engine.replay` and `hotshard replay` share them)."""
    parser.add_argument(
        "--input", required=True, help="orders, one JSON object per line ('-' for stdin)"
    )
    parser.add_argument(
        "--output", required=True, help="where to write events, one per line ('-' for stdout)"
    )
    parser.add_argument(
        "--depth-levels",
        type=_levels,
        default=0,
        metavar="N",
        help="after each input line, write one depth event with the top N levels per side "
        "of that line's symbol (default 0: no depth events)",
    )
    parser.add_argument(
        "--symbols",
        type=Path,
        metavar="CONFIG",
        help="JSON object of listed symbols and their rules (tick, lot, price_min, price_max, "
        "self_trade_prevention, dedup_window); orders for other symbols are rejected with "
        "UNKNOWN_SYMBOL. Without it every symbol is accepted with tick 1, lot 1, no band",
    )
    parser.add_argument("--quiet", action="store_true", help="no summary on stderr")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.replay",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Replay as `args` (parsed by a parser given `add_arguments`) says."""
    market = Market(load_symbols(args.symbols)) if args.symbols else Market(open_listing=True)
    stats = ReplayStats()
    tune_gc()
    with ExitStack() as stack:
        source: IO[str] = (
            sys.stdin
            if args.input == "-"
            else stack.enter_context(open(args.input, encoding="utf-8", errors="replace"))
        )
        sink: IO[str] = (
            sys.stdout
            if args.output == "-"
            else stack.enter_context(open(args.output, "w", encoding="utf-8"))
        )
        for event in replay_lines(source, market, args.depth_levels, stats):
            sink.write(dumps(event))
            sink.write("\n")
    if not args.quiet:
        print(
            f"replayed {stats.lines:,} lines: {stats.events:,} events, {stats.trades:,} trades, "
            f"{stats.rejected:,} rejected; statuses {dict(sorted(stats.statuses.items()))}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
