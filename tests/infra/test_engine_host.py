"""infra/engine_host.py: the partition choice and the readiness wait on an engine instance."""

from collections.abc import Mapping

from infra.engine_host import choose_group, ready, target_lifecycle_state

GROUPS = [(0,), (1,), (2,), (3,)]


def owners(**held: str) -> Mapping[int, str | None]:
    out: dict[int, str | None] = {p: None for g in GROUPS for p in g}
    out.update({int(k[1:]): v for k, v in held.items()})
    return out


def test_a_process_takes_the_nth_free_group() -> None:
    assert choose_group(GROUPS, owners(), "h-50051", 0) == (0,)
    assert choose_group(GROUPS, owners(), "h-50053", 2) == (2,)
    # p0 and p1 are held by another instance: the free ones are 2 and 3.
    taken = owners(p0="other-50051", p1="other-50052")
    assert choose_group(GROUPS, taken, "h-50051", 0) == (2,)
    assert choose_group(GROUPS, taken, "h-50052", 1) == (3,)
    assert choose_group(GROUPS, taken, "h-50053", 2) == (2,)  # wraps; the claim decides


def test_a_restarted_process_reclaims_its_own_group() -> None:
    held = owners(p0="a-50051", p3="h-50052")
    assert choose_group(GROUPS, held, "h-50052", 1) == (3,)


def test_no_free_group_means_an_idle_engine() -> None:
    full = owners(p0="a", p1="b", p2="c", p3="d")
    assert choose_group(GROUPS, full, "h-50051", 0) == ()


def test_a_partly_owned_group_is_not_free() -> None:
    groups = [(0, 1), (2, 3)]
    held: dict[int, str | None] = {0: None, 1: "x", 2: None, 3: None}
    assert choose_group(groups, held, "h-50051", 0) == (2, 3)


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
