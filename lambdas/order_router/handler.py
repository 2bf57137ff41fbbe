"""order_router Lambda: API Gateway WebSocket routes and HTTP API -> hotshard.edge.api.

Configuration comes from the environment once per cold start (hotshard.edge.settings);
every request is one call into EdgeApi, which turns refusals into 4xx / error frames.
"""

import os
from typing import Any, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from hotshard.edge.api import EdgeApi, build
from hotshard.edge.runtime import (
    ColdStart,
    logs_own_request,
    metrics_enabled,
    quiet_empty_flush,
    traced_where_on,
    tune_gc,
)
from hotshard.edge.settings import EdgeSettings
from hotshard.names import METRICS_NAMESPACE

logger = Logger(service="order_router")
# X-Ray (the function has tracing ACTIVE): the handler and boto3 calls become subsegments;
# off outside Lambda (Powertools detects it), so tests and the local gateway trace nothing.
tracer = Tracer(service="order_router", patch_modules=("botocore",))
metrics = Metrics(namespace=METRICS_NAMESPACE, service="order_router")
quiet_empty_flush()


def count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def _uncounted(_name: str) -> None:
    return


def _cold_start() -> EdgeApi:
    counter = count if metrics_enabled() else _uncounted
    built = build(EdgeSettings.from_env(os.environ), logger=logger, count=counter)
    tune_gc()
    return built


api = ColdStart(_cold_start)
"""The container's EdgeApi, built on the first request (once, however many come at once)."""


def _request_id(event: dict[str, Any]) -> str | None:
    """The request id as correlation id, read directly: correlation_id_path= would compile
    and run a JMESPath query on every request (~5% of the router's CPU per order)."""
    request_id = (event.get("requestContext") or {}).get("requestId")
    return request_id if isinstance(request_id, str) else None


def _handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return api().handle(event, context)


_handle.__name__ = "handler"  # the X-Ray subsegment keeps its name, "## handler"
_logged = logger.inject_lambda_context(metrics.log_metrics(_handle))
_traced = traced_where_on(tracer, _logged)


@logs_own_request(logger, _request_id)  # the local gateway invokes it from many threads
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """One request (in an X-Ray subsegment where tracing is on: traced_where_on)."""
    return cast(dict[str, Any], _traced(event, context))


def _handle_many(events: list[dict[str, Any]], context: LambdaContext) -> list[dict[str, Any]]:
    return api().handle_many(events, context)


_handle_many.__name__ = "handler_many"
_logged_many = logger.inject_lambda_context(metrics.log_metrics(_handle_many))


@logs_own_request(logger)  # several requests: no correlation id, each line names its connection
def handler_many(events: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
    """Several requests at once, each answered as `handler` answers it (EdgeApi.handle_many):
    what the local gateway calls with the WebSocket frames that arrived together. API
    Gateway invokes `handler`, one request per invocation; this entry is not deployed."""
    return cast(list[dict[str, Any]], _logged_many(events, context))
