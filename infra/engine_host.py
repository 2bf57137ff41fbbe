"""Runs ON an engine instance, not in CDK: `infra/fleet.py` writes this file's source into the
user data as /opt/hotshard/engine_host.py, run with the engine's venv (hotshard and engine
installed). Two commands:

`start BASE_PORT GROUP...` (ExecStart of `engine@<grpc port>.service`): choose this process's
partitions of `orders`, put them in ENGINE_PARTITIONS and exec `python -m engine`; the
process index is its gRPC port minus BASE_PORT.

- The fleet's minimum size covers every partition: the partitions are cut into GROUPs (one
  per process of the in-service minimum fleet, e.g. 12 partitions, 2 x 6 processes -> "0",
  "1", ... "11"); a process serves one group, or none (idle).
- Ownership lives in the registry (`owner:orders:{P}`, hotshard.registry): a process takes a
  group none of whose partitions another live instance owns; its own group again after a
  restart (the instance id, `<hostname>-<grpc port>`, is stable); the N-th free group for
  process N of the instance, so processes of one instance do not collide. Two instances
  racing for one group: the engine's atomic claim fails for one, it exits, systemd starts it
  again and it chooses again.
- An instance launched into the warm pool (IMDS target lifecycle state `Warmed:*`) claims
  nothing: its engines start idle, so the instance can be stopped holding no partition. So do
  engines on instances beyond the minimum fleet: there is no free group. Idle engines receive
  symbols by Restore (migration); an idle engine does not pick up a group freed later (a
  restart of its unit does).

`ready PORT...` (hotshard-ready.service): wait until the engine on every port answers the
gRPC `EngineControl.Health` call with serving=true; exit 1 if one does not within the limit.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence

IMDS = "http://169.254.169.254/latest"
LIFECYCLE_STATE_PATH = "/meta-data/autoscaling/target-lifecycle-state"
READY_TIMEOUT_S = 300.0
STATE_TIMEOUT_S = 120.0


def choose_group(
    groups: Sequence[Sequence[int]],
    owners: Mapping[int, str | None],
    instance: str,
    index: int,
) -> tuple[int, ...]:
    """The partitions this process should serve: the group it already owns, else the
    `index`-th free group (wrapping), else none."""
    for group in groups:
        if group and all(owners.get(p) == instance for p in group):
            return tuple(group)
    free = [g for g in groups if g and all(owners.get(p) is None for p in g)]
    if not free:
        return ()
    return tuple(free[index % len(free)])


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


def start(base_port: int, group_args: Sequence[str]) -> int:
    import redis  # noqa: PLC0415 - the instance's venv has it; CDK never runs this

    from engine.service.settings import EngineSettings, parse_partitions  # noqa: PLC0415
    from hotshard import names, registry  # noqa: PLC0415

    settings = EngineSettings.from_env(os.environ)
    state = target_lifecycle_state()
    if not state:
        print("no Auto Scaling target lifecycle state in IMDS", file=sys.stderr)
        return 1
    chosen: tuple[int, ...] = ()
    if not state.startswith("Warmed:"):
        groups = [parse_partitions(g) for g in group_args]
        r = redis.Redis(
            host=settings.redis_host,
            port=settings.redis_port,
            ssl=settings.redis_tls,
            socket_timeout=10,
            socket_connect_timeout=10,
        )
        owners = {p: registry.partition_owner(r, p) for g in groups for p in g}
        chosen = choose_group(groups, owners, settings.instance, settings.grpc_port - base_port)
    partitions = ",".join(str(p) for p in chosen)
    print(
        f"{settings.instance}: lifecycle state {state}, partitions [{partitions or 'none'}]",
        file=sys.stderr,
    )
    env = {**os.environ, names.ENV_ENGINE_PARTITIONS: partitions}
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


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["start"] and len(argv) >= 2:
        return start(int(argv[1]), argv[2:])
    if argv[:1] == ["ready"]:
        return ready([int(p) for p in argv[1:]])
    print("usage: engine_host.py start BASE_PORT GROUP... | ready PORT...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
