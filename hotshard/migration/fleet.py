"""Where a migration's target engine comes from, and where it goes back to.

`Fleet` is the interface the tasks use. `AutoScalingFleet` is the one implementation, for
AWS and for one machine alike: the engines' registry in Redis says which engines are live
and which partitions they own; an idle warm engine owns only spare partitions, none of
them routed. `take` claims one for the execution (a Redis key, so two migrations never
share a target); with none idle it raises the Auto Scaling group's desired capacity once
(an instance leaves the warm pool, its engine registers) and answers InstanceNotReady
until the new engine serves. `give_back` (a rollback) drops the claim and, for an engine
the execution scaled out for, terminates its instance with the desired capacity
decremented, which returns it to the warm pool (ReuseOnScaleIn). Locally the same calls
go to moto's Auto Scaling API and hotshard.local.fleet plays the warm pool.

Engine instance ids are `<EC2 instance id>-<gRPC port>` (infra/engine_host.py; locally
the fleet manager names its engines the same way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import redis

from hotshard import names, registry, route
from hotshard.clients import text
from hotshard.migration import plan
from hotshard.migration.engines import EngineClient
from hotshard.migration.errors import (
    EngineUnavailable,
    InstanceNotReady,
    MigrationError,
    NoTarget,
)

CLAIM_TTL_S = 6 * 3600
SCALE_IN = "scale-in:{}"  # the claim on an instance's idle engines while it is given back
SCALE_IN_CLAIM_S = 600  # they go with the instance; this only outlives a failed attempt


@dataclass(frozen=True)
class Target:
    instance: str
    address: str
    partition: int
    scaled_out: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Fleet(Protocol):
    def take(self, *, execution: str, source: str, requested: str | None) -> Target: ...

    def give_back(self, target: Target, *, execution: str) -> None: ...

    def release(self, target: Target, *, execution: str) -> None: ...


def ec2_instance_of(engine: str) -> str | None:
    """The EC2 instance id in an engine's id (`i-0abc-50051` -> `i-0abc`), None if none."""
    head, _, port = engine.rpartition("-")
    return head if head.startswith("i-") and port.isdigit() else None


class AutoScalingFleet:
    def __init__(
        self,
        r: redis.Redis,
        *,
        spare: Iterable[int],
        asg_name: str = "",
        autoscaling: Callable[[], Any] | None = None,
        serving: Callable[[str], bool] | None = None,
    ) -> None:
        self.r = r
        self.spare = tuple(spare)
        self.asg_name = asg_name
        self._autoscaling = autoscaling
        self._serving = serving or _serving

    # ------------------------------------------------------------------ take

    def take(self, *, execution: str, source: str, requested: str | None) -> Target:
        live = registry.live_engines(self.r)
        mine = [e for e in live if self._claimant(e.instance) == execution]
        scaled = self.r.get(names.REDIS_FLEET_SCALED.format(execution)) is not None
        if mine:  # a retry of this task: the engine it already took
            chosen, q = mine[0], min(mine[0].partitions)
            return self._ready(chosen.instance, chosen.address, q, scaled)
        candidates = [plan.Candidate(e.instance, e.address, e.partitions) for e in live]
        routed = [p for p, n in route.partition_loads(self.r).items() if n > 0]
        try:
            found, q = plan.choose_target(
                candidates,
                source=source,
                spare=self.spare,
                routed=routed,
                claimed=self._claimed(),
                requested=requested,
            )
        except NoTarget:
            if requested is not None or not self.asg_name:
                raise
            self._scale_out(execution)
            raise InstanceNotReady(f"no idle warm engine yet; {self.asg_name} scaled out") from None
        claim = names.REDIS_FLEET_CLAIM.format(found.instance)
        if not self.r.set(claim, execution, nx=True, ex=CLAIM_TTL_S):
            raise InstanceNotReady(f"{found.instance} was taken by another migration: try again")
        return self._ready(found.instance, found.address, q, scaled)

    def _ready(self, instance: str, address: str, q: int, scaled: bool) -> Target:
        if not self._serving(address):
            raise InstanceNotReady(f"{instance} at {address} is not serving yet")
        return Target(instance, address, q, scaled)

    def _claimant(self, instance: str) -> str | None:
        value = self.r.get(names.REDIS_FLEET_CLAIM.format(instance))
        return None if value is None else text(value)

    def _claimed(self) -> list[str]:
        prefix = names.REDIS_FLEET_CLAIM.format("")
        return [text(k)[len(prefix) :] for k in self.r.scan_iter(match=prefix + "*", count=500)]

    def _scale_out(self, execution: str) -> None:
        if not self.r.set(names.REDIS_FLEET_SCALED.format(execution), "1", nx=True, ex=CLAIM_TTL_S):
            return  # this execution asked already
        client = self._client()
        group = client.describe_auto_scaling_groups(AutoScalingGroupNames=[self.asg_name])
        (asg,) = group["AutoScalingGroups"]
        desired = int(asg["DesiredCapacity"])
        if desired >= int(asg["MaxSize"]):
            self.r.delete(names.REDIS_FLEET_SCALED.format(execution))
            raise NoTarget(f"{self.asg_name} is at its maximum size {desired}")
        client.set_desired_capacity(
            AutoScalingGroupName=self.asg_name, DesiredCapacity=desired + 1, HonorCooldown=False
        )

    def _client(self) -> Any:
        if self._autoscaling is not None:
            return self._autoscaling()
        import boto3  # type: ignore[import-untyped]  # noqa: PLC0415

        return boto3.client("autoscaling")

    # ------------------------------------------------------------------ back

    def release(self, target: Target, *, execution: str) -> None:
        """The migration is done with the target (it now carries the symbol): drop the claim."""
        if self._claimant(target.instance) == execution:
            self.r.delete(names.REDIS_FLEET_CLAIM.format(target.instance))
        self.r.delete(names.REDIS_FLEET_SCALED.format(execution))

    def give_back(self, target: Target, *, execution: str) -> None:
        """A rollback: the target is idle again. One the execution scaled out for goes back
        to the warm pool (terminated with the desired capacity decremented), unless another
        engine process of its instance is in use (plan.may_scale_in): it carries a routed
        partition, it is claimed, or the routing table names it as a symbol's owner (an
        engine restarting has no registry record, yet its symbols are routed to it). The
        instance's idle engines are claimed first, so no migration takes one meanwhile."""
        ec2_id = ec2_instance_of(target.instance)
        if target.scaled_out and self.asg_name and ec2_id is not None:
            held = self._hold_instance(ec2_id, target.instance, execution)
            if held is not None and self._instance_free(ec2_id, execution):
                self._terminate(ec2_id)
            else:
                for instance in held or []:
                    self.r.delete(names.REDIS_FLEET_CLAIM.format(instance))
        self.release(target, execution=execution)

    def _hold_instance(self, ec2_id: str, target: str, execution: str) -> list[str] | None:
        """Claim the instance's other unclaimed live engines for this scale-in (None: one
        is claimed by another migration; the claims taken are dropped)."""
        mine = (execution, SCALE_IN.format(execution))
        held: list[str] = []
        for engine in registry.live_engines(self.r):
            if ec2_instance_of(engine.instance) != ec2_id or engine.instance == target:
                continue
            if self._claimant(engine.instance) in mine:
                continue
            key = names.REDIS_FLEET_CLAIM.format(engine.instance)
            if not self.r.set(key, mine[1], nx=True, ex=SCALE_IN_CLAIM_S):
                for instance in held:
                    self.r.delete(names.REDIS_FLEET_CLAIM.format(instance))
                return None
            held.append(engine.instance)
        return held

    def _terminate(self, ec2_id: str) -> None:
        """Back to the warm pool, once: an instance no longer in the group (a retry after it
        was given back, or terminated meanwhile) or leaving it has nothing to give back."""
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]  # noqa: PLC0415

        client = self._client()
        group = client.describe_auto_scaling_groups(AutoScalingGroupNames=[self.asg_name])
        states = [
            i["LifecycleState"]
            for g in group["AutoScalingGroups"]
            for i in g["Instances"]
            if i["InstanceId"] == ec2_id
        ]
        if not states or states[0].startswith(("Terminat", "Warmed")):
            return
        try:
            client.terminate_instance_in_auto_scaling_group(
                InstanceId=ec2_id, ShouldDecrementDesiredCapacity=True
            )
        except ClientError as exc:  # gone between the two calls
            if exc.response.get("Error", {}).get("Code") != "ValidationError":
                raise

    def _instance_free(self, ec2_id: str, execution: str) -> bool:
        engines = [
            plan.Candidate(e.instance, e.address, e.partitions)
            for e in registry.live_engines(self.r)
            if ec2_instance_of(e.instance) == ec2_id
        ]
        mine = (None, execution, SCALE_IN.format(execution))
        others = [e.instance for e in engines if self._claimant(e.instance) not in mine]
        routed = [p for p, n in route.partition_loads(self.r).items() if n > 0]
        owning = [o for o in route.owners(self.r) if ec2_instance_of(o) == ec2_id]
        return not owning and plan.may_scale_in(engines, routed=routed, claimed=others)


def _serving(address: str) -> bool:
    try:
        with EngineClient(address, timeout_s=5.0) as client:
            return bool(client.health().serving)
    except (EngineUnavailable, MigrationError):
        return False
