"""Runs ON an engine instance, not in CDK: `infra/fleet.py` ships this file in the engine
asset (/opt/hotshard/app/infra/engine_host.py), run as a script with the engine's venv
(hotshard and engine installed). Two commands (`--help` on each):

`start` (ExecStart of `engine@<grpc port>.service`): choose this process's partitions of
`orders`, put them in ENGINE_PARTITIONS, name the process ENGINE_INSTANCE_ID
`<EC2 instance id>-<grpc port>` and exec `python -m engine`.

`ready PORT...` (hotshard-ready.service): wait until the engine on every port answers the
gRPC `EngineControl.Health` call with serving=true; exit 1 if one does not within the limit.

Partitions (docs/DEPLOY.md "Partitions" is the contract with the engine):

- `orders` has regular partitions, cut into one group per process of the minimum fleet, and
  spare ones after them, one group per process that can run beyond it (instances above
  fleetMinSize and in the warm pool). Every topic mirrors these numbers.
- Warm pool or in service comes from IMDS: the instance's Auto Scaling target lifecycle
  state. A registry race alone cannot tell them apart: at the first deploy warm-pool
  instances boot beside the minimum fleet and could take regular groups, which then lapse
  when the instance is stopped.
- Two records per partition in Redis: the lease `owner:orders:{P}` (the engine consuming P;
  expires within seconds of its death) and the home `home:orders:{P}` (the engine whose
  claim on P survives restarts; no TTL). The engine writes both when it claims P, at start
  or when it adopts P later (Restore, Promote), and never deletes a home on shutdown.
- A home holds its partition for its engine while that engine's EC2 instance is in the
  Auto Scaling group (in service, or in the warm pool for a partition no symbol is routed
  to); a lease always holds it. So a stopped warm-pool instance keeps its spare group, an
  engine that restarts (or an instance that reboots) gets its partitions back, routed or
  not, and a terminated instance's partitions are free for others.
- In service, a process takes its own partitions (homed or leased to it and held by no one
  else) plus one group that needs an owner: a free regular group, else a free spare group
  with symbols routed to it (its instance left the group). With neither, and nothing of its
  own, it takes a free spare group: an engine beyond the minimum fleet is a migration
  target. In the warm pool, a process takes its own unrouted partitions, else a free spare
  group with nothing routed to it, never a regular one.
- Process N of an instance takes the N-th of the groups it may choose (wrapping), so the
  processes of one instance do not collide; two instances racing for one group: the
  engine's atomic claim fails for one, it exits, systemd starts it again and it chooses
  again. A process that finds nothing starts idle (symbols reach it only by Restore).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

IMDS = "http://169.254.169.254/latest"
LIFECYCLE_STATE_PATH = "/meta-data/autoscaling/target-lifecycle-state"
INSTANCE_ID_PATH = "/meta-data/instance-id"
WARM_PREFIX = "Warmed:"
READY_TIMEOUT_S = 300.0
STATE_TIMEOUT_S = 120.0

Group = tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    """The partition groups of `orders`: regular (the minimum fleet's) and spare."""

    regular: tuple[Group, ...]
    spare: tuple[Group, ...]

    @property
    def partitions(self) -> tuple[int, ...]:
        return tuple(p for group in (*self.regular, *self.spare) for p in group)


@dataclass(frozen=True)
class Partition:
    """What the registry says about one partition."""

    lease: str | None = None  # owner:orders:{P}: the engine consuming it now (expires)
    home: str | None = None  # home:orders:{P}: the engine whose claim survives restarts
    routed: bool = False  # at least one symbol is routed to it (route-load)


def ec2_instance_of(engine: str) -> str:
    """`i-0abc-50051` -> `i-0abc`: engine ids in AWS are `<EC2 instance id>-<grpc port>`."""
    return engine.rpartition("-")[0]


def home_holds(home: str, routed: bool, members: Mapping[str, str] | None) -> bool:
    """Whether `home` still holds a partition: its instance is in the group (`members`:
    EC2 instance id -> lifecycle state; None when unknown, then every home holds). A
    routed partition must be consumed, so a stopped warm-pool home does not hold it."""
    if members is None:
        return True
    state = members.get(ec2_instance_of(home))
    if state is None or "Terminat" in state or "Detach" in state:
        return False
    return not (routed and state.startswith(WARM_PREFIX))


def choose_partitions(
    layout: Layout,
    registry: Mapping[int, Partition],
    me: str,
    index: int,
    *,
    warm: bool,
    members: Mapping[str, str] | None,
) -> tuple[int, ...]:
    """The partitions engine `me`, process `index` of its instance, should serve (sorted;
    empty = idle). `warm`: the instance is being prepared for the warm pool."""

    def view(p: int) -> Partition:
        return registry.get(p, Partition())

    def held_by_other(p: int) -> bool:
        v = view(p)
        if v.lease is not None and v.lease != me:
            return True
        return v.home is not None and v.home != me and home_holds(v.home, v.routed, members)

    def free(groups: Iterable[Group]) -> list[Group]:
        return [g for g in groups if g and not any(held_by_other(p) for p in g)]

    def nth(groups: Sequence[Group]) -> Group:
        return groups[index % len(groups)] if groups else ()

    def routed(group: Group) -> bool:
        return any(view(p).routed for p in group)

    def mine(p: int) -> bool:
        v = view(p)
        return me in (v.lease, v.home) and not held_by_other(p) and not (warm and v.routed)

    own = [p for p in sorted({*layout.partitions, *registry}) if mine(p)]
    if warm:
        return tuple(own) or nth([g for g in free(layout.spare) if not routed(g)])
    regular = free(g for g in layout.regular if not set(g) & set(own))
    orphans = [g for g in free(layout.spare) if routed(g) and not set(g) & set(own)]
    chosen = {*own, *nth(regular or orphans)}
    return tuple(sorted(chosen)) or nth([g for g in free(layout.spare) if not routed(g)])


# ---------------------------------------------------------------------- the instance side


def imds_get(path: str, timeout_s: float = 2.0) -> str:
    """One IMDSv2 read; '' when the path is missing or IMDS does not answer."""
    try:
        put = urllib.request.Request(
            f"{IMDS}/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        )
        with urllib.request.urlopen(put, timeout=timeout_s) as reply:
            token = reply.read().decode()
        get = urllib.request.Request(f"{IMDS}{path}", headers={"X-aws-ec2-metadata-token": token})
        with urllib.request.urlopen(get, timeout=timeout_s) as reply:
            return str(reply.read().decode().strip())
    except OSError:
        return ""


def target_lifecycle_state(
    read: Callable[[str], str] = imds_get,
    timeout_s: float = STATE_TIMEOUT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """InService, Warmed:Stopped, ...: where Auto Scaling is taking this instance. It may
    appear a few seconds after boot; '' if it never does (start fails, systemd retries)."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = read(LIFECYCLE_STATE_PATH)
        if state or time.monotonic() >= deadline:
            return state
        sleep(2.0)


def read_registry(r: Any, partitions: Sequence[int]) -> dict[int, Partition]:
    """Leases, homes and routed partitions from Redis, in three round trips."""
    from hotshard import names, route  # noqa: PLC0415 - the instance's venv has it

    def texts(template: str) -> list[str | None]:
        values = r.mget([template.format(p) for p in partitions]) if partitions else []
        return [v.decode() if isinstance(v, bytes) else v for v in values]

    leases = texts(names.REDIS_PARTITION_OWNER)
    homes = texts(names.REDIS_PARTITION_HOME)
    loads = route.partition_loads(r)
    return {
        p: Partition(lease, home, loads.get(p, 0) > 0)
        for p, lease, home in zip(partitions, leases, homes, strict=True)
    }


def group_members(autoscaling: Any, group: str) -> dict[str, str]:
    """EC2 instance id -> lifecycle state, for the group's instances and its warm pool."""
    members: dict[str, str] = {}
    pages = autoscaling.get_paginator("describe_auto_scaling_groups").paginate(
        AutoScalingGroupNames=[group]
    )
    for page in pages:
        for asg in page["AutoScalingGroups"]:
            for instance in asg.get("Instances", []):
                members[instance["InstanceId"]] = instance["LifecycleState"]
    token = ""
    while True:
        kwargs = {"AutoScalingGroupName": group, **({"NextToken": token} if token else {})}
        reply = autoscaling.describe_warm_pool(**kwargs)
        for instance in reply.get("Instances", []):
            members[instance["InstanceId"]] = instance["LifecycleState"]
        token = reply.get("NextToken", "")
        if not token:
            return members


def fleet_members(group: str, region: str) -> dict[str, str] | None:
    """group_members over the Auto Scaling API; None (every home holds) if it fails."""
    import boto3  # type: ignore[import-untyped]  # noqa: PLC0415
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]  # noqa: PLC0415

    try:
        return group_members(boto3.client("autoscaling", region_name=region), group)
    except (BotoCoreError, ClientError) as exc:
        print(f"Auto Scaling group members unknown ({exc}): every home holds", file=sys.stderr)
        return None


def parse_groups(args: Sequence[str]) -> tuple[Group, ...]:
    from engine.service.settings import parse_partitions  # noqa: PLC0415

    return tuple(parse_partitions(a) for a in args)


def start(args: argparse.Namespace) -> int:
    import redis  # noqa: PLC0415 - the instance's venv has it; CDK never runs this

    from engine.service.settings import EngineSettings  # noqa: PLC0415
    from hotshard import names  # noqa: PLC0415

    settings = EngineSettings.from_env(os.environ)
    ec2_id = imds_get(INSTANCE_ID_PATH)
    state = target_lifecycle_state()
    if not ec2_id or not state:
        print("no instance id or Auto Scaling target lifecycle state in IMDS", file=sys.stderr)
        return 1
    me = f"{ec2_id}-{settings.grpc_port}"
    layout = Layout(parse_groups(args.regular), parse_groups(args.spare))
    r = redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        ssl=settings.redis_tls,
        socket_timeout=10,
        socket_connect_timeout=10,
    )
    try:
        registry = read_registry(r, layout.partitions)
    finally:
        r.close()
    chosen = choose_partitions(
        layout,
        registry,
        me,
        settings.grpc_port - args.base_port,
        warm=state.startswith(WARM_PREFIX),
        members=fleet_members(args.asg, settings.aws_region),
    )
    partitions = ",".join(str(p) for p in chosen)
    print(f"{me}: lifecycle state {state}, partitions [{partitions or 'none'}]", file=sys.stderr)
    env = {
        **os.environ,
        names.ENV_ENGINE_PARTITIONS: partitions,
        names.ENV_ENGINE_INSTANCE_ID: me,
    }
    os.execve(sys.executable, [sys.executable, "-m", "engine"], env)
    return 0  # not reached


def serving(port: int, timeout_s: float = 2.0) -> bool:
    """The engine on `port` answers Health with serving=true."""
    import grpc  # noqa: PLC0415

    from hotshard.v1 import control_pb2, control_pb2_grpc  # noqa: PLC0415

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = control_pb2_grpc.EngineControlStub(channel)  # type: ignore[no-untyped-call]
        try:
            reply = stub.Health(control_pb2.HealthRequest(), timeout=timeout_s)
        except grpc.RpcError:
            return False
        return bool(reply.serving)


def ready(
    ports: Sequence[int],
    check: Callable[[int], bool] = serving,
    timeout_s: float = READY_TIMEOUT_S,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    deadline = time.monotonic() + timeout_s
    for port in ports:
        while not check(port):
            if time.monotonic() >= deadline:
                print(f"engine on port {port} is not serving", file=sys.stderr)
                return 1
            sleep(1.0)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="engine_host.py", description="hotshard engine host: partitions and readiness"
    )
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "start",
        help="choose this process's partitions and exec python -m engine",
        description="Choose ENGINE_PARTITIONS for the engine on $GRPC_PORT (see the module "
        "docstring), set ENGINE_INSTANCE_ID=<EC2 instance id>-<port>, exec python -m engine.",
    )
    run.add_argument("--base-port", type=int, required=True, help="gRPC port of process 0")
    run.add_argument("--asg", required=True, help="the fleet's Auto Scaling group name")
    run.add_argument(
        "--regular", nargs="+", required=True, metavar="GROUP", help="regular groups, e.g. 0-1"
    )
    run.add_argument("--spare", nargs="*", default=[], metavar="GROUP", help="spare groups")
    wait = commands.add_parser(
        "ready",
        help="wait until every engine port answers Health with serving=true",
        description=f"Exit 0 once every port serves, 1 after {READY_TIMEOUT_S:.0f} s.",
    )
    wait.add_argument("ports", nargs="+", type=int, metavar="PORT")
    return top


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    if args.command == "start":
        return start(args)
    return ready(args.ports)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
