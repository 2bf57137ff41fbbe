"""The demo through real services: Tansu, redis-server and two engine processes on free
127.0.0.1 ports; the generated flow goes through Kafka and the summary is built from the
consumed (de-duplicated) events. Everything is stopped at the end.

    python -m engine.demo [--orders N] [--symbols K] [--seed S] [--top T]
"""

import time
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from engine.flow import zipf_stream
from hotshard import kafka
from hotshard.domain import Status
from hotshard.events import KIND, STATUS, STATUS_CODE, TRADE
from hotshard.local import services
from hotshard.local.traffic import EventReader, partition_of, produce_orders, producer

PARTITIONS = 4


@dataclass
class Tally:
    offsets: set[int] = field(default_factory=set)
    trades: int = 0
    volume: int = 0
    statuses: Counter[str] = field(default_factory=Counter)


def run(orders: int, symbols: int, seed: int, top: int, console: Console) -> int:
    stream = zipf_stream(orders, seed=seed, symbols=symbols)
    with (
        services.tansu() as broker,
        services.redis_server() as redis_srv,
        services.workdir("hotshard-demo-") as wd,
    ):
        console.print(f"broker [bold]{broker.bootstrap}[/], redis [bold]{redis_srv.port}[/]")
        kafka.create_topics(broker.admin(), PARTITIONS)
        engines = [
            services.start_engine(
                workdir=wd,
                brokers=broker.bootstrap,
                redis_port=redis_srv.port,
                partitions=parts,
                instance=f"demo-{i}",
            )
            for i, parts in enumerate(("0-1", "2-3"))
        ]
        for e in engines:
            console.print(f"engine {e.instance}: gRPC {e.address}")
        try:
            reader = EventReader(broker.bootstrap, PARTITIONS, group="hotshard-demo")
            began = time.monotonic()
            prod = producer(broker.bootstrap)
            produce_orders(prod, stream, lambda s: partition_of(s, PARTITIONS))
            prod.flush(60)
            expected_orders = len(stream)
            tallies: dict[str, Tally] = {}

            def done(r: EventReader) -> bool:
                return sum(len(set(v)) for v in r.offsets.values()) >= expected_orders

            with console.status("streaming orders through Kafka and the engines"):
                finished = reader.read_until(done, timeout=300)
            elapsed = time.monotonic() - began
            for symbol, events in reader.events.items():
                tally = tallies.setdefault(symbol, Tally())
                tally.offsets.update(reader.offsets[symbol])
                for event in events:
                    if event[KIND] == TRADE:
                        tally.trades += 1
                        tally.volume += event[5]
                    elif event[KIND] == STATUS:
                        tally.statuses[Status(int(event[STATUS_CODE])).name] += 1
            reader.close()
        finally:
            for e in engines:
                e.process.stop()
    table = Table(title=f"hottest {top} symbols of {len(tallies)}", title_justify="left")
    for column in ("symbol", "orders", "trades", "volume", "accepted", "filled", "cancelled"):
        table.add_column(column, justify="left" if column == "symbol" else "right")
    ranked = sorted(tallies.items(), key=lambda item: (-len(item[1].offsets), item[0]))[:top]
    for symbol, t in ranked:
        table.add_row(
            symbol,
            f"{len(t.offsets):,}",
            f"{t.trades:,}",
            f"{t.volume:,}",
            f"{t.statuses['ACCEPTED']:,}",
            f"{t.statuses['FILLED']:,}",
            f"{t.statuses['CANCELLED']:,}",
        )
    console.print(table)
    trades = sum(t.trades for t in tallies.values())
    console.print(
        f"[bold]{len(stream):,}[/] orders through Kafka and 2 engine processes in "
        f"{elapsed:.1f} s ([bold]{len(stream) / elapsed:,.0f}[/] orders/s end to end): "
        f"{trades:,} trades; {reader.guard.dropped} duplicate events dropped, "
        f"{len(reader.guard.gaps)} gaps."
    )
    return 0 if finished and not reader.guard.gaps else 1
