"""The edge's configuration: read once from the environment (names in hotshard.names) at a
Lambda's cold start or the gateway's start, passed down as one frozen object."""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hotshard import clients, kafka, names
from hotshard.clients import kafka_base
from hotshard.kafka import AUTH_NONE

ROUTER_LINGER_MS = 1


@dataclass(frozen=True, slots=True)
class EdgeSettings:
    kafka_brokers: str = "127.0.0.1:9092"
    kafka_auth: str = AUTH_NONE
    aws_region: str = "us-east-1"
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_tls: bool = False
    jwt_secret: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_user_claim: str = "sub"
    limits_path: Path | None = None
    balance_check: bool = False
    auto_list: bool = False
    delivery_timeout_ms: int = 5000
    websocket_endpoint: str = ""
    management_secret: str = ""
    """Locally: the secret the gateway's Management API wants in MANAGEMENT_SECRET_HEADER
    (in AWS empty: the Management API takes IAM-signed requests)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "EdgeSettings":
        d = cls()

        def get(key: str, default: str) -> str:
            return clients.env_value(env, key, default)

        limits = get(names.ENV_EDGE_LIMITS, "")
        return replace(
            d,
            **clients.from_env(env, d),
            jwt_secret=get(names.ENV_JWT_SECRET, ""),
            jwt_issuer=get(names.ENV_JWT_ISSUER, ""),
            jwt_audience=get(names.ENV_JWT_AUDIENCE, ""),
            jwt_user_claim=get(names.ENV_JWT_USER_CLAIM, d.jwt_user_claim),
            limits_path=Path(limits) if limits else None,
            balance_check=get(names.ENV_BALANCE_CHECK, "false").lower() in clients.TRUE,
            auto_list=get(names.ENV_AUTO_LIST, "false").lower() in clients.TRUE,
            delivery_timeout_ms=int(get(names.ENV_DELIVERY_TIMEOUT_MS, str(d.delivery_timeout_ms))),
            websocket_endpoint=get(names.ENV_WEBSOCKET_ENDPOINT, ""),
            management_secret=get(names.ENV_MANAGEMENT_SECRET, ""),
        )

    def env(self) -> dict[str, str]:
        """The environment that reproduces these settings (the gateway hands it on)."""
        return {
            **clients.to_env(self),
            names.ENV_JWT_SECRET: self.jwt_secret,
            names.ENV_JWT_ISSUER: self.jwt_issuer,
            names.ENV_JWT_AUDIENCE: self.jwt_audience,
            names.ENV_JWT_USER_CLAIM: self.jwt_user_claim,
            names.ENV_EDGE_LIMITS: str(self.limits_path or ""),
            names.ENV_BALANCE_CHECK: str(self.balance_check).lower(),
            names.ENV_AUTO_LIST: str(self.auto_list).lower(),
            names.ENV_DELIVERY_TIMEOUT_MS: str(self.delivery_timeout_ms),
            names.ENV_WEBSOCKET_ENDPOINT: self.websocket_endpoint,
            names.ENV_MANAGEMENT_SECRET: self.management_secret,
        }


def order_producer(settings: EdgeSettings) -> Any:
    """The router's producer: idempotent, acks=all, lingering ROUTER_LINGER_MS: every
    order waits for its own acknowledgement, and the orders of requests handled side by
    side in that millisecond share one produce request (one batch on the partition, where
    the broker's fetch cost grows with the number of batches)."""
    from confluent_kafka import Producer  # noqa: PLC0415

    config = kafka.producer_config(kafka_base(settings), linger_ms=ROUTER_LINGER_MS)
    return Producer({**config, "client.id": "order-router"})  # names it in librdkafka's logs
