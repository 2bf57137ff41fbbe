"""Router overhead per order: validation + pre-trade checks + one Redis round trip (route,
idempotency, reservation) + produce with the broker's acknowledgement + the record update,
i.e. OrderRouter.submit, against a local redis-server and Tansu started on free ports.

    python -m bench.router [--orders N] [--warmup N] [--balance]

Orders are sent one at a time (each waits for its own acknowledgement, as a Lambda does).
Prints p50/p90/p99/max in ms and the rate; target: p99 <= 2 ms of its own work per order.
"""

import argparse
import json
import platform
import time
from collections.abc import Sequence

import redis

from hotshard import kafka, route
from hotshard.edge.router import OrderRouter
from hotshard.edge.settings import EdgeSettings, order_producer
from hotshard.local.services.broker import tansu
from hotshard.local.services.redis import redis_server


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def run(orders: int, warmup: int, balance: bool) -> dict[str, object]:
    with redis_server() as rs, tansu() as broker:
        kafka.create_topics(broker.admin(), 4)
        r = redis.Redis(host=rs.host, port=rs.port)
        route.list_symbol_at(r, "AAPL", 0, "bench")
        if balance:
            r.hset("balance:alice", mapping={"CASH": 10**15})
        settings = EdgeSettings(kafka_brokers=broker.bootstrap, redis_port=rs.port)
        producer = order_producer(settings)
        router = OrderRouter(r, producer, balance_check=balance)
        order = {"symbol": "AAPL", "side": "BUY", "price": 100, "quantity": 1}
        for i in range(warmup):
            router.submit("alice", {**order, "order_id": f"w-{i}"})
        took: list[float] = []
        for i in range(orders):
            began = time.perf_counter_ns()
            router.submit("alice", {**order, "order_id": f"o-{i}"})
            took.append((time.perf_counter_ns() - began) / 1e6)
        redis_rtt: list[float] = []
        for _ in range(1000):
            began = time.perf_counter_ns()
            route.lookup(r, "AAPL")
            redis_rtt.append((time.perf_counter_ns() - began) / 1e6)
        took.sort()
        redis_rtt.sort()
        return {
            "orders": orders,
            "balance_check": balance,
            "p50_ms": round(percentile(took, 0.50), 3),
            "p90_ms": round(percentile(took, 0.90), 3),
            "p99_ms": round(percentile(took, 0.99), 3),
            "max_ms": round(took[-1], 3),
            "orders_per_s": round(orders / (sum(took) / 1000), 1),
            "redis_hgetall_p50_ms": round(percentile(redis_rtt, 0.50), 3),
            "machine": f"{platform.machine()} {platform.python_implementation()} "
            f"{platform.python_version()}",
        }


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.router", description=__doc__)
    p.add_argument("--orders", type=int, default=5000)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--balance", action="store_true")
    args = p.parse_args(argv)
    print(json.dumps(run(args.orders, args.warmup, args.balance)))


if __name__ == "__main__":
    main()
