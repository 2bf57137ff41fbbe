"""What every migration task Lambda shares: the typed event, one Context per container
(Redis, the broker, the fleet, engine channels), and `run`, which calls the step, logs it
and turns a lost store connection into StoreUnavailable (retried by the ASL).

The local control plane (hotshard.local.control) runs the same handlers in-process and
swaps the Context factory with `use_context` (its moto endpoint, its Redis)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypedDict

import redis

from hotshard import clients
from hotshard.migration import steps
from hotshard.migration.errors import StoreUnavailable
from hotshard.migration.fleet import AutoScalingFleet
from hotshard.migration.markers import Broker
from hotshard.migration.settings import MigrationSettings


class MigrationState(TypedDict, total=False):
    """The execution's state as a Task sees it (statemachine/migration.asl.json). The
    start input: strategy, symbol | engine, target; DetectHotSymbol gets it as `input`
    with the execution's id. Each later key is one step's result."""

    strategy: str
    symbol: str
    engine: str
    target: Any
    input: dict[str, Any]
    execution: str
    migration: dict[str, Any]
    pause: dict[str, Any]
    drain: dict[str, Any]
    snapshot: dict[str, Any]
    catchup: dict[str, Any]
    switch: dict[str, Any]
    replay: dict[str, Any]
    cleanup: dict[str, Any]
    error: dict[str, Any]


def default_context(execution: str) -> steps.Context:
    settings = MigrationSettings.from_env()
    r = clients.redis_client(settings)
    fleet = AutoScalingFleet(r, spare=settings.spare_partitions, asg_name=settings.engine_asg)
    return steps.Context(settings, r, fleet, Broker(clients.kafka_base(settings)), execution)


_factory: Callable[[str], steps.Context] = default_context


def use_context(factory: Callable[[str], steps.Context] | None) -> None:
    """Replace how tasks build their Context (None: back to the environment's)."""
    global _factory  # noqa: PLW0603 - one per process, like a Lambda container's
    _factory = factory or default_context


def step_input(task: str, event: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """(execution id, the state the step reads). DetectHotSymbol's Parameters wrap the
    start input as {input, execution}; later steps carry it in $.migration."""
    if task == "DetectHotSymbol" and "input" in event:
        return str(event.get("execution", "")), dict(event["input"])
    migration = event.get("migration") or {}
    return str(migration.get("execution", "")), event


def run(task: str, event: Mapping[str, Any], logger: Any) -> dict[str, Any]:
    execution, state = step_input(task, event)
    ctx = _factory(execution)
    try:
        result = steps.STEPS[task](ctx, state)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.warning("store unavailable", extra={"task": task, "error": str(exc)})
        raise StoreUnavailable(f"{task}: redis: {exc}") from exc
    except Exception as exc:
        logger.warning("step failed", extra={"task": task, "error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        ctx.close()
    logger.info("step done", extra={"task": task, "result": result})
    return result
