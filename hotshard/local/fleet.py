"""The local warm pool: idle engine processes on spare partitions, kept in step with an Auto
Scaling group in moto (the one the migration's fleet, hotshard.migration.fleet, takes
engines from and gives them back to, as it does in AWS).

Each InService instance of the group is one engine process named `<instance id>-<gRPC
port>` (the AWS naming, infra/engine_host.py) owning one free spare partition. `reconcile`
(called by the supervisor) starts an engine for a new instance, stops the engine of an
instance that left the group while it carries nothing, raises the desired capacity when
fewer than `warm` engines are idle (a migration took one) and, when more are idle (a
rolled-back migration gave its target back after the pool had replaced it), terminates
one idle instance with the desired capacity decremented: the pool returns to `warm`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from hotshard import names, route
from hotshard.clients import text
from hotshard.migration.fleet import ec2_instance_of

LAUNCH_CONFIGURATION = "hotshard-engine-local"
ZONE = "us-east-1a"
SCALE_IN = "scale-in"  # the claim the pool holds on an engine it is stopping
SCALE_IN_CLAIM_S = 120


def pool_change(*, idle: int, warm: int, waiting: bool, desired: int, max_size: int) -> int:
    """+1: raise the desired capacity (fewer than `warm` idle engines), -1: give one idle
    instance back (more than `warm`), 0: leave it. Nothing while an instance in service
    still waits for its engine (it will be idle soon)."""
    if waiting:
        return 0
    if idle < warm and desired < max_size:
        return 1
    if idle > warm and desired > 0:
        return -1
    return 0


@dataclass
class WarmSlot:
    instance: str
    partition: int


class WarmPool:
    def __init__(
        self,
        *,
        autoscaling: Any,
        ec2: Any,
        r: redis.Redis,
        asg_name: str,
        spare: tuple[int, ...],
        warm: int,
        start: Callable[[str, int], str],
        stop: Callable[[str], None],
        slots: Callable[[], dict[str, int]],
    ) -> None:
        """`start(ec2 id, partition)` starts an engine and returns its instance id; `stop`
        stops one; `slots()` is engine instance -> partition of the warm engines running."""
        self.autoscaling, self.ec2, self.r = autoscaling, ec2, r
        self.asg_name, self.spare, self.warm = asg_name, spare, warm
        self._start, self._stop, self._slots = start, stop, slots
        self.lock = threading.Lock()

    def create(self) -> None:
        image = self.ec2.describe_images()["Images"][0]["ImageId"]
        self.autoscaling.create_launch_configuration(
            LaunchConfigurationName=LAUNCH_CONFIGURATION, ImageId=image, InstanceType="c5.2xlarge"
        )
        self.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=self.asg_name,
            LaunchConfigurationName=LAUNCH_CONFIGURATION,
            MinSize=0,
            MaxSize=len(self.spare),
            DesiredCapacity=min(self.warm, len(self.spare)),
            AvailabilityZones=[ZONE],
        )
        self.r.delete(names.REDIS_SPARE_PARTITIONS)
        if self.spare:
            self.r.sadd(names.REDIS_SPARE_PARTITIONS, *self.spare)

    def group(self) -> dict[str, Any]:
        reply = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[self.asg_name])
        (group,) = reply["AutoScalingGroups"]
        found: dict[str, Any] = group
        return found

    def _routed(self) -> set[int]:
        return {p for p, n in route.partition_loads(self.r).items() if n > 0}

    def _claimed(self, instance: str) -> bool:
        return self.r.get(names.REDIS_FLEET_CLAIM.format(instance)) is not None

    def _claimed_by_migration(self, instance: str) -> bool:
        value = self.r.get(names.REDIS_FLEET_CLAIM.format(instance))
        return value is not None and text(value) != SCALE_IN

    def reconcile(self) -> list[str]:
        """One pass; returns what it did (for the console)."""
        with self.lock:
            return self._reconcile()

    def _reconcile(self) -> list[str]:
        done: list[str] = []
        group = self.group()
        in_service = [
            i["InstanceId"] for i in group["Instances"] if i["LifecycleState"] == "InService"
        ]
        slots = self._slots()
        by_ec2 = {ec2_instance_of(inst): inst for inst in slots}
        routed = self._routed()
        for ec2_id in in_service:
            if ec2_id in by_ec2:
                continue
            used = set(slots.values())
            free = [p for p in self.spare if p not in used and p not in routed]
            if not free:
                break
            instance = self._start(ec2_id, free[0])
            slots[instance] = free[0]
            done.append(f"warm engine {instance} on spare partition {free[0]}")
        for instance, partition in list(slots.items()):
            if ec2_instance_of(instance) in in_service or partition in routed:
                continue
            if self._claimed_by_migration(instance):
                continue
            self._stop(instance)
            del slots[instance]
            self.r.delete(names.REDIS_FLEET_CLAIM.format(instance))
            done.append(f"warm engine {instance} returned (its instance left the group)")
        idle = [
            inst
            for inst, p in slots.items()
            if p not in routed and not self._claimed(inst) and ec2_instance_of(inst) in in_service
        ]
        waiting = len(in_service) > len([i for i in slots if ec2_instance_of(i) in in_service])
        desired = int(group["DesiredCapacity"])
        change = pool_change(
            idle=len(idle),
            warm=self.warm,
            waiting=waiting,
            desired=desired,
            max_size=int(group["MaxSize"]),
        )
        if change > 0:
            self.autoscaling.set_desired_capacity(
                AutoScalingGroupName=self.asg_name, DesiredCapacity=desired + 1
            )
            done.append(f"{self.asg_name}: desired capacity {desired} -> {desired + 1}")
        elif change < 0:
            done += self._scale_in(max(idle))
        return done

    def _scale_in(self, instance: str) -> list[str]:
        """Terminate an idle engine's instance (desired capacity - 1); its engine is stopped
        once the instance has left the group. The pool's own claim keeps a migration from
        taking the engine meanwhile."""
        claim = names.REDIS_FLEET_CLAIM.format(instance)
        if not self.r.set(claim, SCALE_IN, nx=True, ex=SCALE_IN_CLAIM_S):
            return []  # a migration took it just now
        try:
            self.autoscaling.terminate_instance_in_auto_scaling_group(
                InstanceId=ec2_instance_of(instance), ShouldDecrementDesiredCapacity=True
            )
        except Exception:
            self.r.delete(claim)
            raise
        return [f"warm engine {instance}: one idle engine more than --warm, back to the pool"]


def pool_state(row: dict[str, Any]) -> str | None:
    """A warm-pool engine's place: "idle" (in the pool, a migration may take it), "taken"
    (a migration claimed it, or the pool is giving it back), "in use" (it carries a symbol
    or a shadow); None for the regular engines."""
    if not row.get("warm"):
        return None
    if row.get("symbols") or row.get("shadows"):
        return "in use"
    if row.get("claimed_by"):
        return "taken"
    return "idle" if "error" not in row else None


def engine_label(row: dict[str, Any]) -> str:
    """An engine's name in the table: a warm-pool engine is marked (warm) while it is idle;
    once a migration gave it a symbol (or a shadow) it is an engine like the others."""
    state = row.get("pool", pool_state(row))
    return str(row["id"]) + {"idle": " (warm)", "taken": " (warm, taken)"}.get(state or "", "")


def spare_partitions(r: redis.Redis) -> tuple[int, ...]:
    return tuple(sorted(int(text(p)) for p in r.smembers(names.REDIS_SPARE_PARTITIONS)))
