"""What a migration task reads from its environment (set by infra/migration.py in AWS and
by the local control plane on one machine)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from hotshard import names
from hotshard.clients import TRUE, env_value

ENV_CATCH_UP_LAG = "CATCH_UP_LAG"
ENV_CATCH_UP_WAIT_S = "CATCH_UP_WAIT_S"


def parse_partitions(text: str) -> tuple[int, ...]:
    """`"12-15,20"` -> (12, 13, 14, 15, 20); empty -> ()."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if last < first:
            raise ValueError(f"partition range {part!r} runs backwards")
        out.extend(range(first, last + 1))
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class MigrationSettings:
    kafka_brokers: str = "127.0.0.1:9092"
    kafka_auth: str = "none"
    aws_region: str = "us-east-1"
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_tls: bool = False
    engine_asg: str = ""  # the fleet's Auto Scaling group ("" : no scaling out)
    spare_partitions: tuple[int, ...] = ()
    catch_up_lag: int = 64
    catch_up_wait_s: float = 20.0
    # after a symbol's migration ends, an alarm does not move it again for this long (0: no
    # cooldown); another symbol above the alarm's threshold may move meanwhile
    cooldown_s: float = 0.0
    cpu_alarm_threshold: float | None = None  # None: unknown, no other symbol moves
    rate_alarm_threshold: float | None = None

    def alarm_threshold(self, *, by_rate: bool) -> float | None:
        return self.rate_alarm_threshold if by_rate else self.cpu_alarm_threshold

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MigrationSettings:
        env = os.environ if env is None else env
        d = cls()
        return cls(
            kafka_brokers=env_value(env, names.ENV_KAFKA_BROKERS, d.kafka_brokers),
            kafka_auth=env_value(env, names.ENV_KAFKA_AUTH, d.kafka_auth),
            aws_region=env_value(env, names.ENV_AWS_REGION, d.aws_region),
            redis_host=env_value(env, names.ENV_REDIS_HOST, d.redis_host),
            redis_port=int(env_value(env, names.ENV_REDIS_PORT, str(d.redis_port))),
            redis_tls=env_value(env, names.ENV_REDIS_TLS, "false").lower() in TRUE,
            engine_asg=env_value(env, names.ENV_ENGINE_ASG, ""),
            spare_partitions=parse_partitions(env_value(env, names.ENV_SPARE_PARTITIONS, "")),
            catch_up_lag=int(env_value(env, ENV_CATCH_UP_LAG, str(d.catch_up_lag))),
            catch_up_wait_s=float(env_value(env, ENV_CATCH_UP_WAIT_S, str(d.catch_up_wait_s))),
            cooldown_s=float(env_value(env, names.ENV_MIGRATION_COOLDOWN_S, str(d.cooldown_s))),
            cpu_alarm_threshold=_threshold(env, names.ENV_CPU_ALARM_THRESHOLD),
            rate_alarm_threshold=_threshold(env, names.ENV_RATE_ALARM_THRESHOLD),
        )


def _threshold(env: Mapping[str, str], name: str) -> float | None:
    value = env_value(env, name, "")
    return float(value) if value else None
