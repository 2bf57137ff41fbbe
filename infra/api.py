"""API: WebSocket and HTTP APIs on API Gateway, the order_router and stream_handler Lambdas.

- WebSocket API: `$connect`, `$disconnect`, `order`, `replace`, `cancel`, `subscribe`,
  `unsubscribe`, `cancel_all`, `cancel_on_disconnect`, `ping` (route selection on
  `$request.body.action`, hotshard.edge.api.ROUTES), all integrated with order_router. The
  frame routes return the router's reply (an `ack`, `subscribed`/`unsubscribed`,
  `cancel_all`, `pong`, ... or `error` frame) to the client as the route response. API
  Gateway closes a connection idle for 10 minutes and any connection after 2 hours
  (service limits, not settable): clients `ping` and reconnect (docs/asyncapi.yaml).
- HTTP API: `POST /orders`, `GET /orders`, `DELETE /orders`, `DELETE /orders/{id}`,
  `GET /orders/{id}`, `GET /fills`, `GET /instruments`, `GET /balance`, `GET /depth/{symbol}`
  -> order_router, behind a Cognito JWT authorizer. API Gateway offers JWT authorizers to
  HTTP APIs only; on the WebSocket API the router checks the same Cognito token on
  `$connect` (JWT_ISSUER and JWT_AUDIENCE are in its environment) and refuses the
  connection without a valid one. That check fetches the pool's JWKS
  (https://cognito-idp.<region>.amazonaws.com/<pool>/.well-known/jwks.json, cached an hour
  per cold start) through the VPC's NAT gateway: Cognito has no VPC endpoint for it.
- The user is the token's `sub` claim (JWT_USER_CLAIM, see USER_CLAIM below).
- stream_handler: MSK event sources on fills, trades, depth and order_status; allowed to
  post to the WebSocket Management API (`@connections`) of this API's stage only.
- Throttling: each stage caps steady requests (messages on the WebSocket) per second and
  the burst above it (`httpThrottle*`, `webSocketThrottle*`); past them API Gateway answers
  429 without calling the router. Both stay below the account's regional quota (10,000/s,
  burst 5,000 by default), which all APIs of the account share.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Environment, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from hotshard import names
from infra.cache import CacheStack
from infra.config import InfraConfig
from infra.constructs.nag import acknowledge, acknowledge_wildcards
from infra.constructs.python_function import HotshardFunction, deps_layer, log_group
from infra.dashboard import STREAM_SERVICE
from infra.messaging import MessagingStack
from infra.network import NetworkStack

STAGE = "live"
# Frame routes: each one's reply goes back to the client (route response).
WEBSOCKET_ROUTES = names.WEBSOCKET_ROUTES
HTTP_ROUTES = (
    ("/orders", (apigw.HttpMethod.POST, apigw.HttpMethod.GET, apigw.HttpMethod.DELETE)),
    ("/orders/{id}", (apigw.HttpMethod.GET, apigw.HttpMethod.DELETE)),
    ("/fills", (apigw.HttpMethod.GET,)),
    ("/instruments", (apigw.HttpMethod.GET,)),
    ("/balance", (apigw.HttpMethod.GET,)),
    ("/depth/{symbol}", (apigw.HttpMethod.GET,)),
)
# The claim that names the user, on the WebSocket ($connect token) and on HTTP (the JWT
# authorizer's claims) alike. Both accept Cognito ID tokens (`aud`) and access tokens
# (`client_id`, hotshard.edge.auth); `sub` is the one user claim both kinds carry
# (`cognito:username` is on ID tokens only, `username` on access tokens only), and it is
# never reused for another user. So a user is the same whichever token a client sends.
USER_CLAIM = "sub"
STREAM_TOPICS = (names.TOPIC_FILLS, names.TOPIC_TRADES, names.TOPIC_DEPTH, names.TOPIC_ORDER_STATUS)


class ApiStack(Stack):
    """The public edge: Cognito, WebSocket + HTTP APIs, router and stream handler."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        env: Environment,
        network: NetworkStack,
        messaging: MessagingStack,
        cache: CacheStack,
    ) -> None:
        super().__init__(scope, construct_id, env=env, description="hotshard API edge")
        self.user_pool = cognito.UserPool(
            self,
            "Users",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(username=True, email=True),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_digits=True,
                require_lowercase=True,
                require_uppercase=True,
                require_symbols=True,
            ),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.client = self.user_pool.add_client(
            "Clients",
            auth_flows=cognito.AuthFlow(user_password=True, user_srp=True),
            generate_secret=False,
            access_token_validity=Duration.hours(1),
            id_token_validity=Duration.hours(1),
        )
        acknowledge(
            self.user_pool,
            "AwsSolutions-COG2",
            "trading clients are programs that sign in with USER_PASSWORD_AUTH; an MFA prompt "
            "would stop them. Operators can require MFA per user",
        )
        acknowledge(
            self.user_pool,
            "AwsSolutions-COG3",
            "threat protection needs the Cognito Plus plan; the default deployment stays on "
            "Essentials so its cost is the one in docs/DEPLOY.md",
        )
        acknowledge(
            self.user_pool,
            "AwsSolutions-COG8",
            "the Plus plan is not required: the pool only issues tokens for the HTTP API "
            "authorizer and the router's $connect check",
        )
        issuer = f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool.user_pool_id}"

        self.websocket = apigw.WebSocketApi(
            self,
            "WebSocket",
            route_selection_expression="$request.body.action",
            description="hotshard orders and market data over WebSocket",
        )
        ws_stage = apigw.WebSocketStage(
            self,
            "WebSocketStage",
            web_socket_api=self.websocket,
            stage_name=STAGE,
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(
                rate_limit=config.websocket_throttle_rate,
                burst_limit=config.websocket_throttle_burst,
            ),
        )
        self.http = apigw.HttpApi(
            self,
            "Http",
            description="hotshard orders over HTTP",
            default_authorizer=authorizers.HttpUserPoolAuthorizer(
                "Cognito", self.user_pool, user_pool_clients=[self.client]
            ),
            create_default_stage=False,
        )
        # The $default stage, as HttpApi would create it, plus throttling.
        http_stage = self.http.add_stage(
            "DefaultStage",
            stage_name="$default",
            auto_deploy=True,
            throttle=apigw.ThrottleSettings(
                rate_limit=config.http_throttle_rate, burst_limit=config.http_throttle_burst
            ),
        )
        self._access_logs(config, ws_stage.node.default_child, "WebSocketAccessLogs")
        self._access_logs(config, http_stage.node.default_child, "HttpAccessLogs")

        layers = [layer] if (layer := deps_layer(self, config)) else []
        common = {**messaging.client_environment, **cache.client_environment}
        self.router = HotshardFunction(
            self,
            "OrderRouter",
            config=config,
            code_dirs=("lambdas/order_router",),
            entry_file="lambdas/order_router/handler.py",
            handler="lambdas.order_router.handler.handler",
            service="order_router",
            description="hotshard order_router: validate, route, produce to Kafka",
            vpc=network.vpc,
            security_group=network.router_sg,
            environment={
                **common,
                names.ENV_JWT_ISSUER: issuer,
                names.ENV_JWT_AUDIENCE: self.client.user_pool_client_id,
                names.ENV_JWT_USER_CLAIM: USER_CLAIM,
                names.ENV_AUTO_LIST: "true" if config.auto_list else "false",
                # Auto-listing must never put a symbol on a spare partition.
                names.ENV_SPARE_PARTITIONS: config.spare_partition_list,
            },
            layers=layers,
            timeout=Duration.seconds(10),
        )
        messaging.grant_kafka(
            self.router.role, write=[names.TOPIC_ORDERS, names.TOPIC_PENDING_ORDERS]
        )
        router_ws = integrations.WebSocketLambdaIntegration("Router", self.router.function)
        for route in ("$connect", "$disconnect"):
            self.websocket.add_route(route, integration=router_ws)
        for route in WEBSOCKET_ROUTES:
            self.websocket.add_route(route, integration=router_ws, return_response=True)
        acknowledge(
            self.websocket,
            "AwsSolutions-APIG4",
            "WebSocket APIs offer no JWT authorizer: order_router verifies the Cognito token "
            "on $connect and refuses the connection without a valid one; the other routes "
            "exist only on a connection that passed that check",
        )
        router_http = integrations.HttpLambdaIntegration("RouterHttp", self.router.function)
        for path, methods in HTTP_ROUTES:
            self.http.add_routes(path=path, methods=list(methods), integration=router_http)

        self.stream = HotshardFunction(
            self,
            "StreamHandler",
            config=config,
            code_dirs=("lambdas/stream_handler",),
            entry_file="lambdas/stream_handler/handler.py",
            handler="lambdas.stream_handler.handler.handler",
            service=STREAM_SERVICE,
            description="hotshard stream_handler: push fills, trades, depth, status to clients",
            vpc=network.vpc,
            security_group=network.stream_sg,
            environment={**common, names.ENV_WEBSOCKET_ENDPOINT: ws_stage.callback_url},
            layers=layers,
            timeout=Duration.seconds(60),
        )
        messaging.grant_kafka(self.stream.role, read=STREAM_TOPICS)
        connections = (
            f"arn:{self.partition}:execute-api:{self.region}:{self.account}:"
            f"{self.websocket.api_id}/{STAGE}/POST/@connections/*"
        )
        self.stream.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["execute-api:ManageConnections"], resources=[connections])
        )
        acknowledge_wildcards(
            self.stream.role,
            [connections],
            "connection ids are created by API Gateway at run time; the grant is limited to "
            "POST on @connections of this API's live stage",
        )
        # The MSK event source is an L2 EventSourceMapping: ManagedKafkaEventSource would
        # attach the AWSLambdaMSKExecutionRole managed policy (kafka:* on "*").
        self.stream.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kafka:DescribeClusterV2", "kafka:GetBootstrapBrokers"],
                resources=[messaging.cluster_arn],
            )
        )
        for topic in STREAM_TOPICS:
            lambda_.EventSourceMapping(
                self,
                f"From-{topic}",
                target=self.stream.function,
                event_source_arn=messaging.cluster_arn,
                kafka_topic=topic,
                kafka_consumer_group_id=f"{names.KAFKA_GROUP_PREFIX}stream-{topic}",
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=names.STREAM_BATCH_SIZE,
                max_batching_window=Duration.seconds(names.STREAM_BATCH_WINDOW_S),
            )

        CfnOutput(self, "WebSocketUrl", value=ws_stage.url)
        CfnOutput(self, "HttpUrl", value=self.http.api_endpoint)
        CfnOutput(self, "UserPoolId", value=self.user_pool.user_pool_id)
        CfnOutput(self, "UserPoolClientId", value=self.client.user_pool_client_id)

    def _access_logs(self, config: InfraConfig, stage: object, construct_id: str) -> None:
        """Send a stage's access logs (JSON, one line a request) to its own log group."""
        assert isinstance(stage, apigw.CfnStage)
        group = log_group(self, construct_id, days=config.log_retention_days)
        stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
            destination_arn=group.log_group_arn,
            format=(
                '{"requestId":"$context.requestId","ip":"$context.identity.sourceIp",'
                '"route":"$context.routeKey","status":"$context.status",'
                '"latencyMs":"$context.integrationLatency","error":"$context.error.message"}'
            ),
        )
