"""Shared steps of the integration tests."""

from engine.book import Market
from hotshard.commands import Command
from hotshard.events import Event
from hotshard.local.traffic import partition_of
from tests.integration.conftest import PARTITIONS


def place(symbol: str) -> int:
    return partition_of(symbol, PARTITIONS)


def expected_events(stream: list[tuple[str, Command]]) -> tuple[Market, dict[str, list[Event]]]:
    market = Market(open_listing=True)
    out: dict[str, list[Event]] = {}
    for symbol, command in stream:
        out.setdefault(symbol, []).extend(market.apply(symbol, command))
    return market, out


def total(events: dict[str, list[Event]]) -> int:
    return sum(len(v) for v in events.values())
