"""CPU per order of the order_router Lambda handler, as the local gateway runs it: the real
handler module (Powertools decorators and all) invoked with API Gateway WebSocket `order` /
`cancel` events from a pool of handler threads, at a paced rate, against a local
redis-server and Tansu on free ports. No WebSocket and no engine: what the router's own
code costs per order, measured as CPU time (this process, Tansu and Redis), which a
loaded machine changes far less than it changes rates and latencies.

    python -m bench.router_cpu [--orders N] [--rate R] [--threads T] [--json]

The flow is bench.edge's (seeded crossing limits on 4 symbols, ~15% cancels, 8 users).
"""

import argparse
import json
import os
import platform
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.edge import Flow, cpu_times, thread_times
from hotshard import kafka, route
from hotshard.edge.sessions import BATCH, Sessions
from hotshard.edge.settings import EdgeSettings
from hotshard.local.edge import LOCAL_AWS, order_router
from hotshard.local.gateway import HANDLER_THREADS, LambdaContext, environment
from hotshard.local.services.broker import tansu
from hotshard.local.services.redis import redis_server
from hotshard.local.shapes import websocket_event

SYMBOLS = ("E00", "E01", "E02", "E03")
USERS = 8


def run(orders: int, rate: float, threads: int, warmup: int) -> dict[str, Any]:
    with redis_server() as rs, tansu() as broker:
        kafka.create_topics(broker.admin(), 4)
        settings = EdgeSettings(
            kafka_brokers=broker.bootstrap, redis_port=rs.port, jwt_secret="bench-secret-0123"
        )
        env = {**{k: v for k, v in LOCAL_AWS.items() if k not in os.environ}, **settings.env()}
        with environment(env):
            order_router.api.cache_clear()
            r = rs.client()
            for partition, symbol in enumerate(SYMBOLS):
                route.list_symbol_at(r, symbol, partition, "bench")
            sessions = Sessions(r)
            conns = [f"conn-{k}=" for k in range(USERS)]
            for k, conn in enumerate(conns):
                sessions.connect(conn, f"trader-{k}", 0, pushes=BATCH)
            flows = [Flow(f"trader-{k}", SYMBOLS, 7000 + k, 0.15) for k in range(USERS)]

            def event(i: int, tag: str) -> dict[str, Any]:
                k = i % USERS
                frame = flows[k].next(tag)
                return websocket_event(
                    frame["action"],
                    conns[k],
                    domain="127.0.0.1:1",
                    stage="live",
                    connected_at_ms=0,
                    body=json.dumps({**frame, "request_id": i}, separators=(",", ":")),
                )

            outcomes: Counter[str] = Counter()
            lock = threading.Lock()

            def invoke(ev: dict[str, Any]) -> None:
                reply = order_router.handler(ev, LambdaContext("order_router"))
                kind = json.loads(reply["body"]).get("type", "?")
                with lock:
                    outcomes[kind] += 1

            pool = ThreadPoolExecutor(threads, thread_name_prefix="invoke")
            try:
                for future in [pool.submit(invoke, event(i, "w")) for i in range(warmup)]:
                    future.result()
                outcomes.clear()
                events = [event(i, "m") for i in range(orders)]
                pids = {"redis": rs.process.popen.pid}
                if broker.process is not None:
                    pids["tansu"] = broker.process.popen.pid
                me = {"router": os.getpid()}
                threads_before = thread_times(me)
                before, began_cpu, began = cpu_times(pids), os.times(), time.perf_counter()
                futures = []
                for i, ev in enumerate(events):
                    delay = began + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    futures.append(pool.submit(invoke, ev))
                for future in futures:
                    future.result()
                wall = time.perf_counter() - began
                ended_cpu, after = os.times(), cpu_times(pids)
                threads_after = thread_times(me)
            finally:
                pool.shutdown()
                order_router.api().close()
                order_router.api.cache_clear()
    own = (ended_cpu.user - began_cpu.user) + (ended_cpu.system - began_cpu.system)
    per = {name: 1000 * (after[name] - before[name]) / orders for name in before}
    return {
        "orders": orders,
        "offered_per_s": rate,
        "achieved_per_s": round(orders / wall, 1),
        "threads": threads,
        "outcomes": dict(outcomes),
        "router_cpu_ms_per_order": round(1000 * own / orders, 3),
        "router_system_ms_per_order": round(
            1000 * (ended_cpu.system - began_cpu.system) / orders, 3
        ),
        **{f"{name}_cpu_ms_per_order": round(v, 3) for name, v in per.items()},
        "router_threads_ms_per_order": {
            kind: round(1000 * (v - threads_before.get((proc, kind), 0.0)) / orders, 3)
            for (proc, kind), v in sorted(threads_after.items())
        },
        "load": [round(x, 1) for x in os.getloadavg()],
        "machine": f"{platform.machine()} {platform.python_version()}",
    }


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.router_cpu", description=__doc__)
    p.add_argument("--orders", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=1000.0, help="orders/s offered")
    p.add_argument("--threads", type=int, default=HANDLER_THREADS)
    p.add_argument("--warmup", type=int, default=500)
    args = p.parse_args(argv)
    print(json.dumps(run(args.orders, args.rate, args.threads, args.warmup)))


if __name__ == "__main__":
    main()
