"""Both edge Lambdas have tracing ACTIVE (tests/infra): each handler runs under Powertools'
Tracer, whose X-Ray SDK ships with the package (aws-lambda-powertools[tracer])."""

import contextlib
import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass

import aws_xray_sdk
from aws_lambda_powertools import Tracer

import statemachine.tasks
from hotshard.edge.push import PushStats
from lambdas.order_router import handler as order_router
from lambdas.stream_handler import handler as stream_handler


@dataclass
class FakeContext:
    function_name: str = "order_router"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:order_router"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


class Subsegment:
    def __init__(self) -> None:
        self.annotations: dict[str, object] = {}

    def put_annotation(self, key: str, value: object) -> None:
        self.annotations[key] = value

    def put_metadata(self, *args: object, **kwargs: object) -> None:
        pass


class Provider:
    """Stands in for the X-Ray recorder: records the subsegments the Tracer opens."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, Subsegment]] = []

    @contextlib.contextmanager
    def in_subsegment(self, name: str) -> Iterator[Subsegment]:
        segment = Subsegment()
        self.opened.append((name, segment))
        yield segment


def test_the_router_handler_runs_in_an_xray_subsegment(monkeypatch):
    assert aws_xray_sdk.__name__ == "aws_xray_sdk"  # shipped: the tracer can record
    assert isinstance(order_router.tracer, Tracer)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    provider = Provider()
    monkeypatch.setattr(order_router.tracer, "provider", provider)
    monkeypatch.setattr(order_router.tracer, "disabled", False)  # as in Lambda

    class Api:  # the handler's work itself is tested in test_order_router.py
        def handle(self, event, context):
            return {"statusCode": 400, "body": "{}"}

    monkeypatch.setattr(order_router, "api", Api)
    reply = order_router.handler({"unknown": "shape"}, FakeContext())
    assert reply["statusCode"] == 400
    ((name, segment),) = provider.opened
    assert name == "## handler"
    assert segment.annotations["Service"] == "order_router"
    # where Powertools turned tracing off (outside Lambda), no subsegment per request
    monkeypatch.setattr(order_router.tracer, "disabled", True)
    assert order_router.handler({"unknown": "shape"}, FakeContext())["statusCode"] == 400
    assert len(provider.opened) == 1


def test_the_stream_handler_runs_in_an_xray_subsegment_where_tracing_is_on(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    provider = Provider()
    monkeypatch.setattr(stream_handler.tracer, "provider", provider)
    monkeypatch.setattr(stream_handler.tracer, "disabled", False)  # as in Lambda
    batches: list[list[tuple[str, int, bytes]]] = []

    class Pusher:  # the handler's work itself is tested in test_stream_handler.py
        def handle(self, records):
            batches.append(list(records))
            return PushStats(records=len(batches[-1]))

    monkeypatch.setattr(stream_handler, "pusher", Pusher)
    event = {"eventSource": "aws:kafka", "records": {}}
    context = FakeContext(function_name="stream_handler")
    assert stream_handler.handler(event, context)["records"] == 0
    ((name, segment),) = provider.opened
    assert name == "## handler"
    assert segment.annotations["Service"] == "stream_handler"
    # where Powertools turned tracing off (outside Lambda), no subsegment per batch
    monkeypatch.setattr(stream_handler.tracer, "disabled", True)
    assert stream_handler.handler(event, context)["records"] == 0
    assert len(provider.opened) == 1
    assert len(batches) == 2


def test_every_python_lambda_handler_has_a_tracer():
    """Every function of the CDK app has tracing ACTIVE (infra/constructs/python_function.py);
    each handler module of ours runs under a Tracer. The Kafka topics custom resource is
    the one exception: a CloudFormation hook run once per deploy, traced by Lambda's own
    segment only."""
    modules = ["lambdas.order_router.handler", "lambdas.stream_handler.handler"] + [
        f"statemachine.tasks.{m.name}" for m in pkgutil.iter_modules(statemachine.tasks.__path__)
    ]
    assert len(modules) >= 10
    for name in modules:
        module = importlib.import_module(name)
        assert isinstance(getattr(module, "tracer", None), Tracer), name
