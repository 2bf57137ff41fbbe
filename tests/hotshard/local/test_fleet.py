"""The warm pool given back: the local pool (hotshard.local.fleet) scales in once a
rolled-back migration returned its target, and the migration's fleet
(hotshard.migration.fleet, AWS and local alike) terminates a scaled-out target only when no
other engine of its instance is in use. Against moto's Auto Scaling API (in-process) and a
real Redis; the engine processes the local pool starts are recorded, not run."""

from collections.abc import Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
import redis
from moto import mock_aws

from hotshard import names, registry, route
from hotshard.local.fleet import WarmPool, pool_change
from hotshard.migration import plan
from hotshard.migration.fleet import AutoScalingFleet, Target
from hotshard.registry import EngineRecord

ASG = "hotshard-engines-test"
EXECUTION = "arn:execution:HOT-1"


def test_the_pool_scales_out_below_warm_and_in_above_it() -> None:
    def change(idle: int, desired: int = 1, *, waiting: bool = False) -> int:
        return pool_change(idle=idle, warm=1, waiting=waiting, desired=desired, max_size=3)

    assert change(0) == 1
    assert change(1) == 0
    assert change(2, desired=2) == -1
    assert change(0, waiting=True) == 0  # an engine is starting
    assert change(0, desired=3) == 0  # at the group's maximum


def test_an_instance_goes_back_only_when_none_of_its_engines_is_in_use() -> None:
    engines = [plan.Candidate("i-1-50051", "", (4,)), plan.Candidate("i-1-50052", "", (5,))]
    assert plan.may_scale_in(engines, routed=[0, 1], claimed=[])
    assert not plan.may_scale_in(engines, routed=[5], claimed=[])  # carries a symbol
    assert not plan.may_scale_in(engines, routed=[], claimed=["i-1-50052"])  # being taken


@pytest.fixture
def aws() -> Iterator[Any]:
    with mock_aws():
        yield lambda service: boto3.client(service, region_name="us-east-1")


class Engines:
    """The engine processes a WarmPool starts and stops (recorded, registered in Redis)."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self.running: dict[str, int] = {}
        self.stopped: list[str] = []

    def start(self, ec2_id: str, partition: int) -> str:
        instance = f"{ec2_id}-{50051 + len(self.running) + len(self.stopped)}"
        self.running[instance] = partition
        record = EngineRecord(instance, "127.0.0.1:1", (partition,), 1)
        registry.register_engine(self.r, record, 60_000)
        return instance

    def stop(self, instance: str) -> None:
        partition = self.running.pop(instance)
        registry.deregister_engine(self.r, instance, (partition,))
        self.stopped.append(instance)


def _pool(aws: Any, r: redis.Redis, engines: Engines) -> WarmPool:
    pool = WarmPool(
        autoscaling=aws("autoscaling"),
        ec2=aws("ec2"),
        r=r,
        asg_name=ASG,
        spare=(4, 5, 6),
        warm=1,
        start=engines.start,
        stop=engines.stop,
        slots=lambda: dict(engines.running),
    )
    pool.create()
    return pool


@pytest.mark.integration
def test_a_target_given_back_returns_the_pool_to_its_size(aws: Any, r: redis.Redis) -> None:
    engines = Engines(r)
    pool = _pool(aws, r, engines)
    pool.reconcile()
    (first,) = engines.running
    # A migration takes it: the pool scales out and starts a replacement.
    r.set(names.REDIS_FLEET_CLAIM.format(first), EXECUTION)
    pool.reconcile()
    pool.reconcile()
    assert len(engines.running) == 2 and pool.group()["DesiredCapacity"] == 2
    # It rolls back: the target is idle again (the claim dropped), one engine too many.
    AutoScalingFleet(r, spare=(4, 5, 6)).give_back(
        Target(first, "127.0.0.1:1", engines.running[first]), execution=EXECUTION
    )
    said = pool.reconcile()
    assert any("back to the pool" in line for line in said), said
    pool.reconcile()
    assert len(engines.running) == 1 and len(engines.stopped) == 1
    assert pool.group()["DesiredCapacity"] == 1
    assert len(pool.group()["Instances"]) == 1
    assert list(r.scan_iter(match=names.REDIS_FLEET_CLAIM.format("*"))) == []
    assert pool.reconcile() == []  # steady


def _scaled_out_instance(aws: Any, r: redis.Redis) -> tuple[str, Any]:
    autoscaling = aws("autoscaling")
    image = aws("ec2").describe_images()["Images"][0]["ImageId"]
    autoscaling.create_launch_configuration(
        LaunchConfigurationName="lc", ImageId=image, InstanceType="c5.2xlarge"
    )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=ASG,
        LaunchConfigurationName="lc",
        MinSize=0,
        MaxSize=4,
        DesiredCapacity=1,
        AvailabilityZones=["us-east-1a"],
    )
    (instance,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[ASG])[
        "AutoScalingGroups"
    ][0]["Instances"]
    ec2_id = instance["InstanceId"]
    for port, partition in ((50051, 4), (50052, 5)):
        registry.register_engine(
            r, EngineRecord(f"{ec2_id}-{port}", "127.0.0.1:1", (partition,), 1), 60_000
        )
    return ec2_id, autoscaling


@pytest.mark.integration
def test_a_scaled_out_target_is_terminated_unless_its_instance_is_in_use(
    aws: Any, r: redis.Redis
) -> None:
    ec2_id, autoscaling = _scaled_out_instance(aws, r)
    fleet = AutoScalingFleet(r, spare=(4, 5), asg_name=ASG, autoscaling=lambda: autoscaling)
    target = Target(f"{ec2_id}-50051", "127.0.0.1:1", 4, scaled_out=True)

    def group() -> dict[str, Any]:
        found: dict[str, Any] = autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[ASG]
        )["AutoScalingGroups"][0]
        return found

    # The instance's other engine carries a symbol another move put there: it stays.
    other = names.REDIS_FLEET_CLAIM.format(f"{ec2_id}-50052")
    route.list_symbol_at(r, "AAA", 5, f"{ec2_id}-50052")
    fleet.give_back(target, execution=EXECUTION)
    assert group()["DesiredCapacity"] == 1 and len(group()["Instances"]) == 1
    assert r.get(other) is None  # held for the scale-in, dropped when it did not happen
    route.delist(r, "AAA")
    # Another migration took the instance's other engine: it stays, that claim untouched.
    r.set(other, "arn:execution:BBB-1")
    fleet.give_back(target, execution=EXECUTION)
    assert group()["DesiredCapacity"] == 1 and r.get(other) == b"arn:execution:BBB-1"
    r.delete(other)
    fleet.give_back(target, execution=EXECUTION)
    assert group()["DesiredCapacity"] == 0 and group()["Instances"] == []


@pytest.mark.integration
def test_an_instance_whose_other_engine_owns_symbols_stays_while_that_engine_restarts(
    aws: Any, r: redis.Redis
) -> None:
    """The other engine of the target's instance owns AAA (the routing table says so) but
    is restarting: its registry record has lapsed. Judged by the live engines alone, the
    instance looked free and was terminated with AAA's owner on it."""
    ec2_id, autoscaling = _scaled_out_instance(aws, r)
    fleet = AutoScalingFleet(r, spare=(4, 5), asg_name=ASG, autoscaling=lambda: autoscaling)
    target = Target(f"{ec2_id}-50051", "127.0.0.1:1", 4, scaled_out=True)
    route.list_symbol_at(r, "AAA", 5, f"{ec2_id}-50052")
    registry.deregister_engine(r, f"{ec2_id}-50052", (5,))  # killed, not back yet
    fleet.give_back(target, execution=EXECUTION)
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[ASG])[
        "AutoScalingGroups"
    ]
    assert group["DesiredCapacity"] == 1 and len(group["Instances"]) == 1
    assert r.get(names.REDIS_FLEET_CLAIM.format(target.instance)) is None  # given back
    route.delist(r, "AAA")
    fleet.give_back(target, execution=EXECUTION)
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[ASG])[
        "AutoScalingGroups"
    ]
    assert group["DesiredCapacity"] == 0 and group["Instances"] == []
    fleet.give_back(target, execution=EXECUTION)  # a retry: the instance is gone already
