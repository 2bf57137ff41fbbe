"""schemathesis against docs/openapi.yaml on the real local gateway (gateway + order_router
Lambda handler, real Redis and Tansu): every case it draws from the document, valid and
invalid alike, answers without a 5xx, with a status code, content type and body the
document declares for that operation, and every record its cases put on Kafka is a valid
order. The edge is the fuzz suites' (tests.hotshard.edge.kit.recorded_edge).
HOTSHARD_SCHEMA_EXAMPLES sets the cases per operation (default 25; make test runs it,
make fuzz does not)."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from hotshard.local.edge import LocalEdge
from tests.hotshard.edge.kit import RecordingProducer, recorded_edge, token

pytestmark = pytest.mark.integration

OPENAPI = Path(__file__).resolve().parents[3] / "docs" / "openapi.yaml"
EXAMPLES = int(os.environ.get("HOTSHARD_SCHEMA_EXAMPLES", "25"))
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)
SCHEMA = schemathesis.openapi.from_path(OPENAPI)
OPERATIONS: list[Any] = [result.ok() for result in SCHEMA.get_all_operations()]  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def schema_edge(redis_server: Any, broker: Any) -> Iterator[tuple[LocalEdge, RecordingProducer]]:
    with recorded_edge(redis_server, broker) as served:  # the fuzz suites' edge
        yield served


def test_the_document_lists_the_operations() -> None:
    assert len(OPERATIONS) >= 8, [op.label for op in OPERATIONS]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_every_operation_answers_as_the_document_says(
    schema_edge: tuple[LocalEdge, RecordingProducer], operation: Any
) -> None:
    edge, recording = schema_edge
    base_url = edge.gateway.http_url
    auth = {"Authorization": f"Bearer {token('schema')}"}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def call(case: Any) -> None:
        case.headers = {**(case.headers or {}), **auth}
        response = case.call(base_url=base_url, timeout=15)
        case.validate_response(response, checks=CHECKS)

    call()
    recording.assert_all_valid()  # what its cases put on Kafka are valid orders
