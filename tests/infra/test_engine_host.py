"""infra/engine_host.py: which partitions an engine process serves, and the readiness wait.

The rules (module docstring of infra/engine_host.py, docs/DEPLOY.md "Partitions") as
scenarios over the registry records and the Auto Scaling group's members; then the
instance-side readers against a real redis-server and moto's Auto Scaling API.
"""

from collections.abc import Iterator
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
import redis
from moto import mock_aws

from hotshard import names
from hotshard.local.services import redis as redis_service
from infra import engine_host
from infra.engine_host import (
    Layout,
    Partition,
    choose_partitions,
    group_members,
    home_holds,
    read_registry,
    ready,
    target_lifecycle_state,
)

# 4 regular partitions (a minimum fleet of 2 instances x 2 processes) and 4 spare ones.
LAYOUT = Layout(regular=((0,), (1,), (2,), (3,)), spare=((4,), (5,), (6,), (7,)))
A, B, C = "i-aaa", "i-bbb", "i-ccc"  # EC2 instances
IN_SERVICE = {A: "InService", B: "InService"}


def engine(instance: str, process: int) -> str:
    return f"{instance}-{50051 + process}"


def choose(
    registry: dict[int, Partition],
    me: str,
    *,
    warm: bool = False,
    members: dict[str, str] | None = None,
) -> tuple[int, ...]:
    index = int(me.rsplit("-", 1)[1]) - 50051
    return choose_partitions(
        LAYOUT,
        registry,
        me,
        index,
        warm=warm,
        members=IN_SERVICE if members is None else members,
    )


def held(owner: str, *partitions: int, routed: bool = False) -> dict[int, Partition]:
    """Partitions leased and homed by `owner`."""
    return {p: Partition(lease=owner, home=owner, routed=routed) for p in partitions}


def homed(owner: str, *partitions: int, routed: bool = False) -> dict[int, Partition]:
    """Partitions homed by `owner` whose lease lapsed (its engine is down or stopped)."""
    return {p: Partition(home=owner, routed=routed) for p in partitions}


def test_the_minimum_fleet_takes_one_regular_group_per_process() -> None:
    assert [choose({}, engine(A, i)) for i in range(2)] == [(0,), (1,)]
    taken = held(engine(A, 0), 0) | held(engine(A, 1), 1)
    assert [choose(taken, engine(B, i)) for i in range(2)] == [(2,), (3,)]


def test_a_warm_pool_instance_takes_spare_groups_never_regular_ones() -> None:
    # At the first deploy the warm-pool instances boot beside the minimum fleet.
    assert [choose({}, engine(C, i), warm=True) for i in range(2)] == [(4,), (5,)]


def test_a_stopped_warm_instance_keeps_its_spare_group() -> None:
    members = {**IN_SERVICE, C: "Warmed:Stopped"}
    registry = homed(engine(C, 0), 4) | homed(engine(C, 1), 5)
    # Another instance prepared for the pool does not take C's groups ...
    assert choose(registry, engine("i-ddd", 0), warm=True, members=members) == (6,)
    # ... and C, taken out of the pool into service, gets them back: empty ones.
    members[C] = "InService"
    full = registry | held(engine(A, 0), 0, 1) | held(engine(B, 0), 2, 3)
    assert choose(full, engine(C, 0), members=members) == (4,)
    assert choose(full, engine(C, 1), members=members) == (5,)


def test_a_spare_partition_with_a_migrated_symbol_stays_with_its_engine() -> None:
    regular = held(engine(A, 0), 0, 1) | held(engine(B, 0), 2, 3)
    members = {**IN_SERVICE, C: "InService"}
    # C's engine got symbol S on spare partition 4, then restarted (or C rebooted): its
    # lease lapsed, its home did not.
    registry = regular | homed(engine(C, 0), 4, routed=True)
    assert choose(registry, engine("i-ddd", 0), members=members | {"i-ddd": "InService"}) == (5,)
    assert choose(registry, engine(C, 0), members=members) == (4,)


def test_a_restarted_engine_takes_back_what_it_adopted() -> None:
    # A's process 0 owns group 0 and adopted partitions 3 and 9 (outside the layout).
    registry = homed(engine(A, 0), 0, 3) | {9: Partition(home=engine(A, 0), routed=True)}
    registry |= held(engine(A, 1), 1) | held(engine(B, 0), 2)
    assert choose(registry, engine(A, 0)) == (0, 3, 9)
    # With a regular group nobody holds, it covers that one as well.
    del registry[2]
    assert choose(registry, engine(A, 0)) == (0, 2, 3, 9)


def test_a_lease_wins_over_a_home() -> None:
    registry = {0: Partition(lease=engine(B, 1), home=engine(A, 0))}
    assert choose(registry, engine(A, 0)) == (1,)


def test_a_terminated_instances_groups_go_to_the_next_engine_that_starts() -> None:
    members = {B: "InService", C: "InService"}  # A left the group
    registry = homed(engine(A, 0), 0) | homed(engine(A, 1), 1) | held(engine(B, 0), 2, 3)
    # C came from the warm pool owning spare group 4: it keeps it and covers A's group.
    registry |= homed(engine(C, 0), 4) | homed(engine(C, 1), 5)
    assert choose(registry, engine(C, 0), members=members) == (0, 4)
    assert choose(registry, engine(C, 1), members=members) == (1, 5)


def test_an_orphaned_spare_partition_with_symbols_gets_an_owner() -> None:
    regular = held(engine(A, 0), 0, 1) | held(engine(B, 0), 2, 3)
    orphan = homed(engine(C, 0), 6, routed=True)
    # C left the group (terminated) ...
    assert choose(regular | orphan, engine(B, 1)) == (6,)
    # ... or went back into the warm pool (scale-in): stopped, it cannot serve symbols.
    members = {**IN_SERVICE, C: "Warmed:Stopped"}
    assert choose(regular | orphan, engine(B, 1), members=members) == (6,)
    # A warm-pool instance never takes a partition with symbols on it.
    assert choose(regular | orphan, engine("i-ddd", 0), warm=True, members=members) == (4,)


def test_an_unknown_group_membership_lets_every_home_hold() -> None:
    registry = homed(engine(A, 0), 0) | held(engine(B, 0), 1, 2, 3)
    assert choose(registry, engine(C, 0), members={B: "InService"}) == (0,)
    assert engine_host.choose_partitions(
        LAYOUT, registry, engine(C, 0), 0, warm=False, members=None
    ) == (4,)  # A's group is not taken: it may be in service


def test_a_partly_held_group_is_not_free() -> None:
    layout = Layout(regular=((0, 1), (2, 3)), spare=((4, 5),))
    registry = {1: Partition(lease="x-50051")}
    assert choose_partitions(layout, registry, engine(A, 0), 0, warm=False, members={}) == (2, 3)


def test_processes_of_one_instance_pick_different_groups() -> None:
    full = held(engine(A, 0), 0, 1, 2, 3)
    picks = [choose(full, engine(C, i), warm=True) for i in range(4)]
    assert picks == [(4,), (5,), (6,), (7,)]
    assert choose(full, engine(C, 5), warm=True) == (5,)  # wraps; the claim decides


def test_nothing_free_means_an_idle_engine() -> None:
    everything = held(engine(A, 0), 0, 1, 2, 3) | held(engine(B, 0), 4, 5, 6, 7)
    assert choose(everything, engine(C, 0)) == ()
    assert choose(everything, engine(C, 0), warm=True) == ()


@pytest.mark.parametrize(
    ("state", "routed", "holds"),
    [
        ("InService", True, True),
        ("Pending:Wait", True, True),
        ("Warmed:Stopped", False, True),
        ("Warmed:Stopped", True, False),
        ("Terminating:Wait", False, False),
        ("Warmed:Terminated", False, False),
        (None, False, False),
    ],
)
def test_a_home_holds_while_its_instance_is_in_the_group(
    state: str | None, routed: bool, holds: bool
) -> None:
    members = {} if state is None else {A: state}
    assert home_holds(engine(A, 0), routed, members) is holds


def test_lifecycle_state_is_polled_until_imds_has_it() -> None:
    answers = iter(["", "", "Warmed:Stopped"])
    sleeps: list[float] = []
    state = target_lifecycle_state(lambda _p: next(answers), sleep=sleeps.append)
    assert state == "Warmed:Stopped"
    assert len(sleeps) == 2
    assert target_lifecycle_state(lambda _p: "", timeout_s=0, sleep=sleeps.append) == ""


def test_ready_waits_for_every_port_to_serve() -> None:
    calls: list[int] = []

    def check(port: int) -> bool:
        calls.append(port)
        return calls.count(port) >= 2

    assert ready([50051, 50052], check, sleep=lambda _s: None) == 0
    assert calls == [50051, 50051, 50052, 50052]
    assert ready([50051], lambda _p: False, timeout_s=0, sleep=lambda _s: None) == 1


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["start", "--help"], ["ready", "--help"]):
        with pytest.raises(SystemExit) as stop:
            engine_host.main(argv)
        assert stop.value.code == 0
        assert "usage: engine_host.py" in capsys.readouterr().out
    args = engine_host.parser().parse_args(
        ["start", "--base-port", "50051", "--asg", "g", "--regular", "0", "1", "--spare", "2-3"]
    )
    assert (args.base_port, args.asg, args.regular, args.spare) == (50051, "g", ["0", "1"], ["2-3"])


# ---------------------------------------------------------------------- the readers


@pytest.fixture(scope="module")
def r() -> Iterator[redis.Redis]:
    with redis_service.redis_server() as server:
        client = redis.Redis(host=server.host, port=server.port)
        yield client
        client.close()


@pytest.mark.integration
def test_the_registry_is_read_from_redis(r: redis.Redis) -> None:
    r.flushdb()
    r.set(names.REDIS_PARTITION_OWNER.format(0), "i-aaa-50051", px=10_000)
    r.set(names.REDIS_PARTITION_HOME.format(0), "i-aaa-50051")
    r.set(names.REDIS_PARTITION_HOME.format(5), "i-ccc-50052")
    r.hset(names.REDIS_ROUTE_LOAD, mapping={"5": 2, "1": 0})
    assert read_registry(r, [0, 1, 5]) == {
        0: Partition("i-aaa-50051", "i-aaa-50051", False),
        1: Partition(None, None, False),
        5: Partition(None, "i-ccc-50052", True),
    }
    assert read_registry(r, []) == {}


class WarmPoolPages:
    """Auto Scaling's DescribeWarmPool in pages (moto returns no warm-pool instances)."""

    def __init__(self, client: Any, pages: list[list[dict[str, str]]]) -> None:
        self._client, self._pages = client, pages

    def get_paginator(self, name: str) -> Any:
        return self._client.get_paginator(name)

    def describe_warm_pool(self, **kwargs: Any) -> dict[str, Any]:
        page = int(kwargs.get("NextToken") or 0)
        reply: dict[str, Any] = {"Instances": self._pages[page]}
        if page + 1 < len(self._pages):
            reply["NextToken"] = str(page + 1)
        return reply


@pytest.mark.integration
def test_group_members_lists_the_group_and_its_warm_pool() -> None:
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="ap-northeast-2")
        image = ec2.describe_images()["Images"][0]["ImageId"]
        ec2.create_launch_template(
            LaunchTemplateName="engines",
            LaunchTemplateData={"ImageId": image, "InstanceType": "t3.micro"},
        )
        autoscaling = boto3.client("autoscaling", region_name="ap-northeast-2")
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName="hotshard-engines",
            LaunchTemplate={"LaunchTemplateName": "engines", "Version": "$Latest"},
            MinSize=2,
            MaxSize=3,
            AvailabilityZones=["ap-northeast-2a"],
        )
        pool = [
            [{"InstanceId": "i-warm1", "LifecycleState": "Warmed:Stopped"}],
            [{"InstanceId": "i-warm2", "LifecycleState": "Warmed:Pending"}],
        ]
        members = group_members(WarmPoolPages(autoscaling, pool), "hotshard-engines")
        in_service = {i for i, s in members.items() if s == "InService"}
        assert len(in_service) == 2 and all(i.startswith("i-") for i in in_service)
        assert members["i-warm1"] == "Warmed:Stopped"
        assert members["i-warm2"] == "Warmed:Pending"
        assert len(members) == 4
        # The real API answers a group without a warm pool the same way moto does.
        assert set(group_members(autoscaling, "hotshard-engines")) == in_service
