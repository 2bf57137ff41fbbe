"""stream_handler Lambda: MSK event source (fills, trades, depth, order_status) -> pushes to
WebSocket connections through the API Gateway Management API (hotshard.edge.push).

Configuration comes from the environment once per cold start; WEBSOCKET_ENDPOINT is the
Management API's https://... (locally the gateway's http://127.0.0.1:PORT), posted to by
hotshard.edge.management (SigV4-signed, kept-alive; boto3's client costs ~1 ms a post).
"""

import os
import time
from typing import Any, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import KafkaEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from hotshard.clients import redis_client
from hotshard.edge.depth import DepthStore
from hotshard.edge.management import ManagementClient, static_credentials
from hotshard.edge.orders import OrderRecords
from hotshard.edge.push import Pusher, push_latencies_ms
from hotshard.edge.runtime import (
    PerThread,
    add_values,
    logs_own_request,
    metrics_enabled,
    quiet_empty_flush,
    traced_where_on,
    tune_gc,
)
from hotshard.edge.sessions import Sessions
from hotshard.edge.settings import EdgeSettings
from hotshard.edge.streams import StreamSeqs
from hotshard.names import METRIC_PUSH_LATENCY, METRICS_NAMESPACE

logger = Logger(service="stream_handler")
# X-Ray (the function has tracing ACTIVE): the handler and boto3 calls become subsegments;
# off outside Lambda (Powertools detects it), so tests and the local gateway trace nothing.
tracer = Tracer(service="stream_handler", patch_modules=("botocore",))
metrics = Metrics(namespace=METRICS_NAMESPACE, service="stream_handler")
quiet_empty_flush()


def build_pusher() -> Pusher:
    settings = EdgeSettings.from_env(os.environ)
    r = redis_client(settings)
    management = ManagementClient(
        settings.websocket_endpoint,
        region=settings.aws_region,
        credentials=static_credentials(os.environ),
        secret=settings.management_secret,
    )
    built = Pusher(Sessions(r), OrderRecords(r), DepthStore(r), management.post, StreamSeqs(r))
    tune_gc()
    return built


pusher = PerThread(build_pusher)


def _handle(event: KafkaEvent, context: LambdaContext) -> dict[str, Any]:
    received = list(event.records)
    stats = pusher().handle((rec.topic, rec.partition, rec.decoded_value) for rec in received)
    if metrics_enabled():
        if stats.pushes:  # event (its record's Kafka timestamp) -> its pushes posted
            stamps = [rec.timestamp for rec in received]
            latencies = push_latencies_ms(stamps, time.time_ns() // 1_000_000)
            add_values(metrics, METRIC_PUSH_LATENCY, MetricUnit.Milliseconds, latencies)
        metrics.add_metric(name="Pushes", unit=MetricUnit.Count, value=stats.pushes)
        metrics.add_metric(name="Posts", unit=MetricUnit.Count, value=stats.posts)
        metrics.add_metric(name="GoneConnections", unit=MetricUnit.Count, value=stats.gone)
    logger.info(
        "batch pushed",
        extra={"records": stats.records, "pushes": stats.pushes, "posts": stats.posts},
    )
    return {
        "records": stats.records,
        "events": stats.events,
        "pushes": stats.pushes,
        "posts": stats.posts,
    }


_handle.__name__ = "handler"  # the X-Ray subsegment keeps its name, "## handler"
_logged = logger.inject_lambda_context(
    metrics.log_metrics(event_source(data_class=KafkaEvent)(_handle))
)
_traced = traced_where_on(tracer, _logged)


@logs_own_request(logger)  # the local feeder invokes it from a thread per topic at once
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One batch (in an X-Ray subsegment where tracing is on: traced_where_on)."""
    return cast(dict[str, Any], _traced(event, context))
