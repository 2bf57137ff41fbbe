import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from hotshard import names
from hotshard.edge import api as edge_api
from hotshard.edge.settings import EdgeSettings
from hotshard.kafka import AUTH_MSK_IAM
from hotshard.local import gateway
from infra.api import USER_CLAIM, WEBSOCKET_ROUTES
from infra.config import InfraConfig
from tests.infra.iam import actions_of, role_statements


@pytest.fixture(scope="module")
def api(templates: dict[str, Template]) -> Template:
    return templates["HotshardApi"]


def _websocket_routes(api: Template) -> dict[str, dict[str, Any]]:
    routes = api.find_resources("AWS::ApiGatewayV2::Route")
    return {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in routes.values()
        if "AuthorizationType" not in r["Properties"]
        or r["Properties"]["AuthorizationType"] != "JWT"
    }


def test_websocket_routes_are_the_routers_routes(api: Template) -> None:
    assert set(_websocket_routes(api)) == set(edge_api.ROUTES)
    assert set(WEBSOCKET_ROUTES) == set(edge_api.ROUTES) - {"$connect", "$disconnect"}
    assert set(WEBSOCKET_ROUTES) == set(gateway.WS_ROUTES)
    api.has_resource_properties(
        "AWS::ApiGatewayV2::Api",
        {"ProtocolType": "WEBSOCKET", "RouteSelectionExpression": "$request.body.action"},
    )


def test_frame_routes_return_the_routers_reply_to_the_client(api: Template) -> None:
    routes = _websocket_routes(api)
    for key in WEBSOCKET_ROUTES:
        assert routes[key]["RouteResponseSelectionExpression"] == "$default", key
    for key in ("$connect", "$disconnect"):
        assert "RouteResponseSelectionExpression" not in routes[key], key
    responses = api.find_resources("AWS::ApiGatewayV2::RouteResponse")
    assert len(responses) == len(WEBSOCKET_ROUTES)
    for response in responses.values():
        assert response["Properties"]["RouteResponseKey"] == "$default"


def test_http_routes_use_the_cognito_jwt_authorizer(api: Template) -> None:
    routes = api.find_resources(
        "AWS::ApiGatewayV2::Route", {"Properties": {"AuthorizationType": "JWT"}}
    )
    keys = {r["Properties"]["RouteKey"] for r in routes.values()}
    assert keys == {
        "POST /orders",
        "GET /orders",
        "DELETE /orders",
        "GET /orders/{id}",
        "DELETE /orders/{id}",
        "GET /fills",
        "GET /instruments",
        "GET /balance",
        "GET /depth/{symbol}",
    }
    assert keys == {f"{method} {path}" for method, path in gateway.HTTP_ROUTES}
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
        assert props["Runtime"] == "python3.12"
        assert len(props["VpcConfig"]["SubnetIds"]) == 3
        variables = props["Environment"]["Variables"]
        assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "hotshard"
        assert {"KAFKA_BROKERS", "REDIS_HOST", "REDIS_PORT"} <= set(variables)
        settings = EdgeSettings.from_env({k: v for k, v in variables.items() if isinstance(v, str)})
        assert settings.kafka_auth == AUTH_MSK_IAM, handler
        assert settings.redis_tls is True, handler


def test_router_names_the_user_by_sub_and_checks_cognito_tokens(api: Template) -> None:
    functions = api.find_resources("AWS::Lambda::Function")
    (router,) = [
        f["Properties"]
        for f in functions.values()
        if f["Properties"]["Handler"] == "lambdas.order_router.handler.handler"
    ]
    variables = router["Environment"]["Variables"]
    assert variables[names.ENV_JWT_USER_CLAIM] == USER_CLAIM == "sub"
    assert "cognito-idp" in json.dumps(variables[names.ENV_JWT_ISSUER])
    assert names.ENV_JWT_AUDIENCE in variables
    assert names.ENV_JWT_SECRET not in variables
    assert variables[names.ENV_AUTO_LIST] == "false"  # symbols are listed on purpose by default


def test_stream_handler_consumes_the_event_topics_from_msk(api: Template) -> None:
    mappings = api.find_resources("AWS::Lambda::EventSourceMapping")
    topics = sorted(t for m in mappings.values() for t in m["Properties"]["Topics"])
    assert topics == ["depth", "fills", "order_status", "trades"]
    for mapping in mappings.values():
        assert "Fn::ImportValue" in json.dumps(mapping["Properties"]["EventSourceArn"])
        # MSK's default window (0.5 s) would hold every push back; the feeder mirrors this
        assert mapping["Properties"]["MaximumBatchingWindowInSeconds"] == 0
        assert mapping["Properties"]["BatchSize"] == 500


def test_stream_handler_may_post_only_to_this_apis_connections(api: Template) -> None:
    stmts = role_statements(api, "StreamHandler")
    (manage,) = [s for s in stmts if s["Action"] == "execute-api:ManageConnections"]
    assert "/live/POST/@connections/*" in json.dumps(manage["Resource"])
    assert "kafka-cluster:WriteData" not in actions_of(stmts)


def test_router_writes_orders_and_reads_nothing(api: Template) -> None:
    actions = actions_of(role_statements(api, "OrderRouter"))
    assert "kafka-cluster:WriteData" in actions
    assert "kafka-cluster:ReadData" not in actions


def test_both_stages_are_throttled_as_configured(api: Template) -> None:
    config = InfraConfig.from_context({})
    stages = {
        s["Properties"]["StageName"]: s["Properties"]
        for s in api.find_resources("AWS::ApiGatewayV2::Stage").values()
    }
    assert set(stages) == {"$default", "live"}
    assert stages["$default"]["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": config.http_throttle_rate,
        "ThrottlingBurstLimit": config.http_throttle_burst,
    }
    assert stages["live"]["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": config.websocket_throttle_rate,
        "ThrottlingBurstLimit": config.websocket_throttle_burst,
    }
    assert (config.http_throttle_rate, config.http_throttle_burst) == (5000, 2500)
    # Still one HTTP stage, deployed on every change, with its access logs.
    assert stages["$default"]["AutoDeploy"] is True
    assert "AccessLogSettings" in stages["$default"]
    assert "AccessLogSettings" in stages["live"]


def test_auto_listing_knows_the_spare_partitions(api: Template) -> None:
    functions = api.find_resources("AWS::Lambda::Function")
    (router,) = [
        f["Properties"]
        for f in functions.values()
        if f["Properties"]["Handler"] == "lambdas.order_router.handler.handler"
    ]
    assert router["Environment"]["Variables"][names.ENV_SPARE_PARTITIONS] == "12-47"
