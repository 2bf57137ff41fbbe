"""The local MSK event source and stream_handler as a process of their own: the feeder
(hotshard.local.feeder) invoking the stream_handler Lambda module, which posts to a
gateway's Management API (WEBSOCKET_ENDPOINT), as in AWS where the stream handler runs
apart from API Gateway and the order_router.

    python -m hotshard.local.stream --kafka-brokers 127.0.0.1:PORT --redis-port PORT \\
        --management-url http://127.0.0.1:PORT

Prints one JSON line {"stream": "reading"} once it reads, then runs until SIGTERM/SIGINT.
"""

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace

from hotshard.clients import kafka_base
from hotshard.edge.settings import EdgeSettings
from hotshard.local.edge import LOCAL_AWS
from hotshard.local.feeder import TopicFeeders
from hotshard.local.gateway import environment
from lambdas.stream_handler import handler as stream_handler


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hotshard.local.stream", description=__doc__)
    base = EdgeSettings.from_env(os.environ)
    p.add_argument("--kafka-brokers", default=base.kafka_brokers)
    p.add_argument("--redis-host", default=base.redis_host)
    p.add_argument("--redis-port", type=int, default=base.redis_port)
    p.add_argument("--management-url", required=True)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    settings = replace(
        base,
        kafka_brokers=args.kafka_brokers,
        redis_host=args.redis_host,
        redis_port=args.redis_port,
        websocket_endpoint=args.management_url,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    env = {**{k: v for k, v in LOCAL_AWS.items() if k not in os.environ}, **settings.env()}
    with environment(env):
        stream_handler.pusher.cache_clear()
        feeder = TopicFeeders(kafka_base(settings), stream_handler.handler)
        feeder.start()
        try:
            print(json.dumps({"stream": "reading"}), flush=True)
            stop.wait()
        finally:
            feeder.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
