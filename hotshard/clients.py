"""Where the shared services are: the Kafka and Redis settings every process reads the same
way (the engine, the Lambdas, the local gateway), the clients built from them, and `text`,
the one way to read strings out of a Redis reply."""

from collections.abc import Mapping
from typing import Any, Protocol

import redis

from hotshard import kafka, names

TRUE = ("1", "true", "yes", "on")


class ServiceSettings(Protocol):
    @property
    def kafka_brokers(self) -> str: ...
    @property
    def kafka_auth(self) -> str: ...
    @property
    def aws_region(self) -> str: ...
    @property
    def redis_host(self) -> str: ...
    @property
    def redis_port(self) -> int: ...
    @property
    def redis_tls(self) -> bool: ...


def env_value(env: Mapping[str, str], key: str, default: str) -> str:
    """The variable's value; unset or empty -> `default`."""
    value = env.get(key, "")
    return value if value != "" else default


def from_env(env: Mapping[str, str], defaults: ServiceSettings) -> dict[str, Any]:
    """The service fields read from `env` (names in hotshard.names), else `defaults`'."""
    return {
        "kafka_brokers": env_value(env, names.ENV_KAFKA_BROKERS, defaults.kafka_brokers),
        "kafka_auth": env_value(env, names.ENV_KAFKA_AUTH, defaults.kafka_auth),
        "aws_region": env_value(env, names.ENV_AWS_REGION, defaults.aws_region),
        "redis_host": env_value(env, names.ENV_REDIS_HOST, defaults.redis_host),
        "redis_port": int(env_value(env, names.ENV_REDIS_PORT, str(defaults.redis_port))),
        "redis_tls": env_value(env, names.ENV_REDIS_TLS, str(defaults.redis_tls)).lower() in TRUE,
    }


def to_env(settings: ServiceSettings) -> dict[str, str]:
    """The environment that reproduces the service fields of `settings`."""
    return {
        names.ENV_KAFKA_BROKERS: settings.kafka_brokers,
        names.ENV_KAFKA_AUTH: settings.kafka_auth,
        names.ENV_AWS_REGION: settings.aws_region,
        names.ENV_REDIS_HOST: settings.redis_host,
        names.ENV_REDIS_PORT: str(settings.redis_port),
        names.ENV_REDIS_TLS: str(settings.redis_tls).lower(),
    }


def redis_client(
    settings: ServiceSettings, timeout_s: float = 5.0, *, quick_retries: int | None = None
) -> redis.Redis:
    """A client that reconnects by itself: a command that meets a dropped connection (a
    restart, a failover) is retried on a new one, by default redis-py's 10 times with
    jittered backoff up to 1 s (~3.5 s: a restart that short is not even seen).
    `quick_retries`: fewer, faster tries (a loop that must not stall on a Redis that is
    down; the engine)."""
    client = redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        ssl=settings.redis_tls,
        socket_timeout=timeout_s,
        socket_connect_timeout=min(timeout_s, 1.0) if quick_retries is not None else timeout_s,
        health_check_interval=30,
    )
    if quick_retries is not None:
        from redis.backoff import ExponentialWithJitterBackoff  # noqa: PLC0415
        from redis.retry import Retry  # noqa: PLC0415

        client.set_retry(Retry(ExponentialWithJitterBackoff(cap=0.1, base=0.01), quick_retries))
    return client


def kafka_base(settings: ServiceSettings) -> dict[str, Any]:
    """The Kafka client configuration every client of these settings starts from."""
    return kafka.client_config(
        settings.kafka_brokers, auth=settings.kafka_auth, region=settings.aws_region
    )


def text(reply: Any) -> str:
    """A Redis reply as a string. The clients built here keep replies as bytes (snapshots
    are binary), so every string read back from Redis goes through this."""
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def text_fields(raw: Mapping[Any, Any]) -> dict[str, str]:
    """A Redis hash reply (HGETALL) as strings."""
    return {text(k): text(v) for k, v in raw.items()}
