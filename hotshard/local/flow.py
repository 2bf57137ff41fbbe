"""Synthetic order flow, deterministic from a seed: for the demo, benchmarks and tests.

`liquibook_stream`: the Liquibook performance-test shape. One symbol, buys and sells
alternating, buy prices uniform on 1880-1889, sell prices on 1884-1893, quantities
100-1000 in steps of 100, plain GTC limits: the overlap trades about a quarter of the
orders and the rest build a large book.

`zipf_stream`: many symbols, Zipf-skewed (the hottest ~40% of the flow), ~60% passive limits
near the touch, ~25% cancels of live orders, ~10% marketable limits, ~5% market orders.
Cancels name orders that are live at that point: a shadow book follows the stream.

`short_stream`: the same 100 Zipf-skewed symbols, but levels stay short: passive limits
1-12 ticks from the touch, and each symbol's cancels come at a rate proportional to its
resting orders (25% of its flow at its target depth), as when every resting order has the
same chance of being cancelled at any moment. ~60% passive, ~25% cancels, ~10% marketable
IOC limits, ~5% market orders; on 1,000,000 commands about 3,000 orders rest on the hot
symbol, ~10,000 in all, at most a few hundred in one level.
"""

import random
from collections.abc import Iterator

from engine.book import Book, Command, Instrument, add, cancel
from hotshard.domain import OrderType, Side, TimeInForce

Stream = list[tuple[str, Command]]


def liquibook_stream(count: int, seed: int = 1) -> Stream:
    rng = random.Random(seed)
    out: Stream = []
    for i in range(count):
        qty = rng.randrange(1, 11) * 100
        if i % 2 == 0:
            out.append(("LB", add(str(i), "u0", Side.BUY, rng.randint(1880, 1889), qty)))
        else:
            out.append(("LB", add(str(i), "u1", Side.SELL, rng.randint(1884, 1893), qty)))
    return out


def zipf_weights(symbols: int, top_share: float) -> list[float]:
    """Weights 1/k^s with s chosen (by bisection) so the first symbol gets `top_share`."""
    lo, hi = 0.0, 5.0
    for _ in range(60):
        s = (lo + hi) / 2
        weights = [1 / k**s for k in range(1, symbols + 1)]
        if weights[0] / sum(weights) < top_share:
            lo = s
        else:
            hi = s
    return weights


def symbol_names(count: int) -> list[str]:
    return [f"S{i:03d}" for i in range(count)]


def zipf_stream(
    count: int, seed: int = 2, symbols: int = 100, top_share: float = 0.40, users: int = 50
) -> Stream:
    rng = random.Random(seed)
    names = symbol_names(symbols)
    weights = zipf_weights(symbols, top_share)
    shadow = {name: Book(Instrument(name)) for name in names}
    mid = {name: 10_000 + 100 * i for i, name in enumerate(names)}
    live: dict[str, list[tuple[str, str]]] = {name: [] for name in names}
    out: Stream = []
    for i, symbol in enumerate(rng.choices(names, weights, k=count)):
        command = _next_command(rng, str(i), symbol, shadow[symbol], mid, live[symbol], users)
        shadow[symbol].apply(command)
        out.append((symbol, command))
    return out


def short_stream(
    count: int,
    seed: int = 3,
    symbols: int = 100,
    top_share: float = 0.40,
    users: int = 50,
    resting: int = 9000,
) -> Stream:
    """`resting`: the depth all symbols together hover around, shared by flow weight."""
    rng = random.Random(seed)
    names = symbol_names(symbols)
    weights = zipf_weights(symbols, top_share)
    total = sum(weights)
    target = {name: max(20.0, resting * w / total) for name, w in zip(names, weights, strict=True)}
    shadow = {name: Book(Instrument(name)) for name in names}
    mid = {name: 10_000 + 100 * i for i, name in enumerate(names)}
    live: dict[str, list[tuple[str, str]]] = {name: [] for name in names}
    out: Stream = []
    for i, symbol in enumerate(rng.choices(names, weights, k=count)):
        book = shadow[symbol]
        command = None
        if rng.random() < 0.25 * book.resting() / target[symbol]:
            victim = _live_order(rng, book, live[symbol])
            if victim is not None:
                command = cancel(*victim)
        if command is None:
            command = _short_order(rng, str(i), book, mid, live[symbol], users)
        book.apply(command)
        out.append((symbol, command))
    return out


def _short_order(
    rng: random.Random,
    order_id: str,
    book: Book,
    mid: dict[str, int],
    live: list[tuple[str, str]],
    users: int,
) -> Command:
    """A new order: 80% passive 1-12 ticks out, 13.3% IOC limits 0-5 ticks through the
    centre, 6.7% market orders; takers are ~4x the size of a passive order."""
    user = f"u{rng.randrange(users)}"
    side = Side.BUY if rng.random() < 0.5 else Side.SELL
    roll = rng.random()
    bid, ask = book.bbo()
    centre = mid[book.symbol] = _centre(mid[book.symbol], bid, ask)
    if roll < 0.8:
        offset = rng.randint(1, 12)
        price = centre - offset if side == Side.BUY else centre + offset
        live.append((order_id, user))
        return add(order_id, user, side, price, rng.randrange(1, 11) * 10)
    qty = rng.randrange(1, 45) * 10
    if roll < 0.9333:
        through = rng.randint(0, 5)
        price = centre + through if side == Side.BUY else centre - through
        return add(order_id, user, side, price, qty, tif=TimeInForce.IOC)
    return add(order_id, user, side, 0, qty, order_type=OrderType.MARKET, tif=TimeInForce.IOC)


def _next_command(
    rng: random.Random,
    order_id: str,
    symbol: str,
    book: Book,
    mid: dict[str, int],
    live: list[tuple[str, str]],
    users: int,
) -> Command:
    user = f"u{rng.randrange(users)}"
    side = Side.BUY if rng.random() < 0.5 else Side.SELL
    qty = rng.randrange(1, 11) * 10
    roll = rng.random()
    if roll < 0.25:
        victim = _live_order(rng, book, live)
        if victim is not None:
            return cancel(*victim)
        roll = 0.5  # nothing live to cancel: place a passive order instead
    bid, ask = book.bbo()
    centre = mid[symbol] = _centre(mid[symbol], bid, ask)
    if roll < 0.85:
        offset = rng.randint(1, 5)
        price = centre - offset if side == Side.BUY else centre + offset
        live.append((order_id, user))
        return add(order_id, user, side, price, qty)
    if roll < 0.95:
        through = rng.randint(0, 3)
        price = centre + through if side == Side.BUY else centre - through
        return add(order_id, user, side, price, qty, tif=TimeInForce.IOC)
    return add(order_id, user, side, 0, qty, order_type=OrderType.MARKET, tif=TimeInForce.IOC)


def _centre(previous: int, bid: tuple[int, int] | None, ask: tuple[int, int] | None) -> int:
    if bid and ask:
        return (bid[0] + ask[0]) // 2
    return previous


def _live_order(
    rng: random.Random, book: Book, live: list[tuple[str, str]]
) -> tuple[str, str] | None:
    while live:
        index = rng.randrange(len(live))
        live[index], live[-1] = live[-1], live[index]
        order_id, user = live.pop()
        if book.open_order(order_id, user) is not None:
            return order_id, user
    return None


def commands(stream: Stream) -> Iterator[Command]:
    return (command for _, command in stream)
