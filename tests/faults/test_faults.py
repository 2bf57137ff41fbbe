"""The fault suite (issue 13 goal 3): one fault on the real services under a modest
concurrent load (tests/faults/harness.py), then 0 acknowledged orders lost, 0 applied twice,
every symbol's seqs 1..N, HOT as a replay of its orders, and the service resumed: an order
sent after the fault acknowledged and its status pushed, and every order acknowledged from
then on pushed too. Each case reports its time to resume (docs/FAULTS.md).

`make test` runs one case per kind of fault (engine, Redis, gateway) at a small size;
`make faults` runs every case at both sizes (mark `faults`) and prints the table.

Three cases are known to fail today and are marked so (xfail, not strict: the table still
gets their numbers); docs/FAULTS.md says why. A broker on memory storage forgets its log
on restart, so what it acknowledged is gone by definition: that case checks instead that
the engine refuses the replaced log loudly rather than skipping or rewinding (it does not,
today).
"""

from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import (
    Outcome,
    Rig,
    kill_engine,
    redis_down_for,
    restart_broker,
    restart_gateway,
    rig,
    run_case,
)

pytestmark = pytest.mark.integration

DURABLE_BROKER_XFAIL = (
    "Tansu on s3:// storage answers the idempotent producers UNKNOWN_PRODUCER_ID / "
    "OUT_OF_ORDER_SEQUENCE_NUMBER within seconds, restart or not: the engine exits for a "
    "restart from its checkpoint every few seconds and falls behind the load"
)
EMPTY_REDIS_XFAIL = (
    "the WebSocket connection registry lives in Redis: after it came back empty the stream "
    "handler finds no connection for any user, so statuses are not pushed until the "
    "clients reconnect"
)

# case -> (the fault, rig options, known failure or None)
CASES: dict[str, tuple[Any, dict[str, bool], str | None]] = {
    "engine-kill-9": (kill_engine, {}, None),
    "redis-restart-aof": (redis_down_for(3.0), {"aof": True}, None),
    "redis-restart-empty": (redis_down_for(3.0), {"aof": False}, EMPTY_REDIS_XFAIL),
    "gateway-restart": (restart_gateway, {}, None),
    "broker-restart-durable": (restart_broker, {"durable_broker": True}, DURABLE_BROKER_XFAIL),
}
SIZES: dict[str, dict[str, Any]] = {
    "small": {"traders": 3, "after_s": 4.0},
    "full": {"traders": 6, "after_s": 12.0},
}
IN_MAKE_TEST = {"engine-kill-9", "redis-restart-aof", "gateway-restart"}


def _params() -> list[Any]:
    out = []
    for case, (_fault, _options, known) in CASES.items():
        for size in SIZES:
            marks = [] if size == "small" and case in IN_MAKE_TEST else [pytest.mark.faults]
            if known is not None:
                marks.append(pytest.mark.xfail(reason=known, strict=False))
            out.append(pytest.param(case, size, marks=marks, id=f"{case}-{size}"))
    return out


def check(outcome: Outcome, the: Rig) -> None:
    logs = the.logs()
    assert not outcome.verdict.problems, f"{outcome.verdict}\n{logs}"
    assert not outcome.gaps, outcome.gaps
    assert outcome.resume_s is not None, f"the service did not resume: {outcome}\n{logs}"
    assert outcome.acked_after > 20, outcome
    unpushed = outcome.unpushed[:5]
    assert not outcome.unpushed, f"acknowledged after resuming, never pushed: {unpushed}"
    assert outcome.gave_up == 0, outcome


@pytest.mark.parametrize(("case", "size"), _params())
def test_a_fault_loses_nothing_and_service_resumes(tmp_path: Path, case: str, size: str) -> None:
    fault, options, _known = CASES[case]
    with rig(tmp_path, **options) as the:
        outcome = run_case(the, f"{case}-{size}", fault, **SIZES[size])
        print(outcome)
        check(outcome, the)


MEMORY_BROKER_XFAIL = (
    "a replaced log passes the engine's position check (engine/service/loop.py: "
    "POSITION_SLACK = 10,000 beyond Tansu's high watermark), so the restarted engine seeks "
    "to its old position in the new log and skips the orders acknowledged there"
)


@pytest.mark.faults
@pytest.mark.xfail(reason=MEMORY_BROKER_XFAIL, strict=False)
def test_a_memory_broker_restart_is_refused_loudly(tmp_path: Path) -> None:
    """Tansu on memory storage comes back with empty topics: the engine must stop on the
    replaced log (its checkpoint's position is outside it), never skip to it or rewind."""
    with rig(tmp_path) as the:
        outcome = run_case(the, "broker-restart-memory-small", restart_broker, after_s=2.0)
        print(outcome)
        assert the.engine is not None
        log = the.engine.process.log_path.read_text(errors="replace")
    assert "is outside its log" in log, log[-2000:]
    assert outcome.resume_s is None  # nothing acknowledged afterwards was applied
