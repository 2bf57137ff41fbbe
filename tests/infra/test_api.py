import json

import pytest
from aws_cdk.assertions import Match, Template

from tests.infra.iam import actions_of, role_statements


@pytest.fixture(scope="module")
def api(templates: dict[str, Template]) -> Template:
    return templates["HotshardApi"]


def test_websocket_routes_all_reach_the_router(api: Template) -> None:
    routes = api.find_resources("AWS::ApiGatewayV2::Route")
    keys = {r["Properties"]["RouteKey"] for r in routes.values()}
    assert {"$connect", "$disconnect", "order", "cancel", "subscribe"} <= keys
    api.has_resource_properties(
        "AWS::ApiGatewayV2::Api",
        {"ProtocolType": "WEBSOCKET", "RouteSelectionExpression": "$request.body.action"},
    )


def test_http_routes_use_the_cognito_jwt_authorizer(api: Template) -> None:
    routes = api.find_resources(
        "AWS::ApiGatewayV2::Route", {"Properties": {"AuthorizationType": "JWT"}}
    )
    keys = {r["Properties"]["RouteKey"] for r in routes.values()}
    assert keys == {"POST /orders", "GET /orders/{id}", "DELETE /orders/{id}"}
    api.has_resource_properties(
        "AWS::ApiGatewayV2::Authorizer",
        {
            "AuthorizerType": "JWT",
            "JwtConfiguration": Match.object_like({"Issuer": Match.any_value()}),
        },
    )


def test_lambdas_run_in_the_vpc_with_powertools_settings(api: Template) -> None:
    functions = api.find_resources("AWS::Lambda::Function")
    handlers = {f["Properties"]["Handler"]: f["Properties"] for f in functions.values()}
    for handler in (
        "lambdas.order_router.handler.handler",
        "lambdas.stream_handler.handler.handler",
    ):
        props = handlers[handler]
        assert props["Runtime"] == "python3.11"
        assert len(props["VpcConfig"]["SubnetIds"]) == 3
        variables = props["Environment"]["Variables"]
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "hotshard"
        assert {"KAFKA_BROKERS", "REDIS_HOST", "REDIS_PORT"} <= set(variables)


def test_stream_handler_consumes_the_event_topics_from_msk(api: Template) -> None:
    mappings = api.find_resources("AWS::Lambda::EventSourceMapping")
    topics = sorted(t for m in mappings.values() for t in m["Properties"]["Topics"])
    assert topics == ["depth", "fills", "order_status", "trades"]
    for mapping in mappings.values():
        assert "Fn::ImportValue" in json.dumps(mapping["Properties"]["EventSourceArn"])


def test_stream_handler_may_post_only_to_this_apis_connections(api: Template) -> None:
    stmts = role_statements(api, "StreamHandler")
    (manage,) = [s for s in stmts if s["Action"] == "execute-api:ManageConnections"]
    assert "/live/POST/@connections/*" in json.dumps(manage["Resource"])
    assert "kafka-cluster:WriteData" not in actions_of(stmts)


def test_router_writes_orders_and_reads_nothing(api: Template) -> None:
    actions = actions_of(role_statements(api, "OrderRouter"))
    assert "kafka-cluster:WriteData" in actions
    assert "kafka-cluster:ReadData" not in actions
