"""A digest of everything the book outputs on fixed streams, for comparing its two builds.

    HOTSHARD_BOOK=python|native python -m tests.engine.book.digest

Prints the build in use, then one line per stream: its name and the SHA-256 of the repr of
every command's events (types included: an IntEnum where an int belongs would differ), the
depth updates, and snapshots taken along the way (their bytes and their reloads' output).
"""

import hashlib
import random

import engine.book
from engine.book import Book, Command, Instrument, snapshot
from hotshard.commands import add, cancel, replace
from hotshard.domain import OrderType, Side, TimeInForce
from hotshard.local.flow import liquibook_stream, short_stream, zipf_stream

SNAPSHOT_EVERY = 997


def mixed_stream(count: int, seed: int = 7) -> list[Command]:
    """Every action and rule the book has, valid and not, on a few reused ids and users."""
    rng = random.Random(seed)
    ids = [str(i) for i in range(40)]
    users = ["alice", "bob", "carol"]
    out: list[Command] = []
    for _ in range(count):
        oid, user = rng.choice(ids), rng.choice(users)
        roll = rng.random()
        if roll < 0.55:
            out.append(
                add(
                    oid,
                    user,
                    rng.choice([Side.BUY, Side.SELL]),
                    rng.randint(94, 106),
                    rng.choice([5, 10, 15, 20, 40]),
                    order_type=rng.choice([OrderType.LIMIT] * 6 + [OrderType.MARKET]),
                    tif=rng.choice([TimeInForce.GTC] * 4 + [TimeInForce.IOC, TimeInForce.FOK]),
                    post_only=rng.random() < 0.15,
                )
            )
        elif roll < 0.75:
            out.append(cancel(oid, user))
        elif roll < 0.93:
            out.append(replace(oid, user, rng.randint(94, 106), rng.choice([0, 5, 10, 20, 30])))
        else:  # out of range, off tick or lot, unknown enums
            out.append(
                (
                    rng.choice([1, 2, 3, 9]),
                    oid,
                    user,
                    rng.choice([0, 1, 2, 3]),
                    rng.choice([0, 1, 2, 7]),
                    rng.choice([0, 1, 2, 3, 4]),
                    rng.random() < 0.5,
                    rng.choice([rng.randint(-3, 300), 1 << 70, -(1 << 70)]),
                    rng.choice([-5, 0, 3, 7, 1 << 40, 1 << 70]),
                    rng.choice([0, 0, 0, 100, -3, 1 << 70]),
                    rng.choice([0, 0, 0, 5, -5, 1 << 70]),
                    rng.random() < 0.2,
                )
            )
    return out


def special_stream(count: int, seed: int = 9) -> list[Command]:
    """Stops, stop-limits, icebergs and all-or-none orders among plain ones, valid and not,
    with cancels and replaces of all of them."""
    rng = random.Random(seed)
    ids = [str(i) for i in range(40)]
    users = ["alice", "bob", "carol"]
    out: list[Command] = []
    for _ in range(count):
        oid, user = rng.choice(ids), rng.choice(users)
        roll = rng.random()
        if roll < 0.62:
            kind = rng.choice(["plain", "plain", "stop", "stop_limit", "iceberg", "aon", "bad"])
            otype = {"stop": OrderType.STOP, "stop_limit": OrderType.STOP_LIMIT}.get(
                kind, rng.choice([OrderType.LIMIT] * 5 + [OrderType.MARKET])
            )
            out.append(
                add(
                    oid,
                    user,
                    rng.choice([Side.BUY, Side.SELL]),
                    rng.randint(94, 106),
                    rng.choice([5, 10, 15, 20, 40]),
                    order_type=otype,
                    tif=rng.choice([TimeInForce.GTC] * 5 + [TimeInForce.IOC, TimeInForce.FOK]),
                    post_only=rng.random() < 0.05,
                    stop_price=rng.randint(94, 106) if kind.startswith("stop") else 0,
                    display_quantity=rng.choice([5, 10]) if kind == "iceberg" else 0,
                    all_or_none=kind == "aon" or (kind == "bad" and rng.random() < 0.5),
                )
            )
        elif roll < 0.8:
            out.append(cancel(oid, user))
        else:
            out.append(replace(oid, user, rng.randint(94, 106), rng.choice([0, 5, 10, 20, 30])))
    return out


def digest(instrument: Instrument, commands: list[Command]) -> str:
    h = hashlib.sha256()
    book = Book(instrument)
    for i, command in enumerate(commands):
        h.update(repr(book.apply(command)).encode())
        if i % 50 == 49:
            h.update(repr(book.depth_update()).encode())
        if i % SNAPSHOT_EVERY == SNAPSHOT_EVERY - 1:
            data = snapshot.dump(book, input_offset=i)
            h.update(data)
            book, _ = snapshot.load(data)
            h.update(snapshot.dump(book, input_offset=i))
    h.update(repr((book.depth(1000), book.resting(), book.seq)).encode())
    return h.hexdigest()


def streams() -> dict[str, tuple[Instrument, list[Command]]]:
    return {
        "liquibook": (Instrument("LB"), [c for _, c in liquibook_stream(20_000)]),
        "zipf-hot": (Instrument("S000"), [c for s, c in zipf_stream(40_000) if s == "S000"]),
        "short-hot": (Instrument("S000"), [c for s, c in short_stream(40_000) if s == "S000"]),
        "mixed": (
            Instrument("M", tick=2, lot=5, price_min=92, price_max=104, dedup_window=7),
            mixed_stream(20_000),
        ),
        "mixed-stp": (
            Instrument("M", self_trade_prevention=True, max_quantity=30, dedup_window=0),
            mixed_stream(20_000, seed=8),
        ),
        "special": (Instrument("X", lot=5, dedup_window=50), special_stream(20_000)),
        "special-stp": (
            Instrument("X", self_trade_prevention=True, dedup_window=0),
            special_stream(20_000, seed=10),
        ),
    }


def main() -> None:
    print(f"build {engine.book.BUILD}")
    for name, (instrument, commands) in streams().items():
        print(f"{name} {digest(instrument, commands)}")


if __name__ == "__main__":
    main()
