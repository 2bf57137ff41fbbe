"""The fault suite (issue 13 goal 3): one fault on the real services under a modest
concurrent load (tests/faults/harness.py), then 0 acknowledged orders lost, 0 applied twice,
every symbol's seqs 1..N, HOT as a replay of its orders, and the service resumed: an order
sent after the fault acknowledged and its status pushed, and every order acknowledged from
then on pushed too. Each case reports its time to resume (docs/FAULTS.md).

`make test` runs one case per kind of fault (engine, Redis, gateway) at a small size;
`make faults` runs every case at both sizes (mark `faults`) and prints the table.

A case known to fail would be marked so (xfail, not strict: the table still gets its
numbers; docs/FAULTS.md says why); none is today. A broker on memory storage forgets its log
on restart, so what it acknowledged is gone by definition: that case checks the honest
outcome instead (the loss reported, nothing acknowledged after the restart lost or
skipped).
"""

import json
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


# case -> (the fault, rig options, known failure or None)
CASES: dict[str, tuple[Any, dict[str, bool], str | None]] = {
    "engine-kill-9": (kill_engine, {}, None),
    "redis-restart-aof": (redis_down_for(3.0), {"aof": True}, None),
    "redis-restart-empty": (redis_down_for(3.0), {"aof": False}, None),
    "gateway-restart": (restart_gateway, {}, None),
    "broker-restart-durable": (restart_broker, {"durable_broker": True}, None),
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
    assert not outcome.answers.get("INTERNAL"), f"answered 500 INTERNAL: {outcome.internal}"


@pytest.mark.parametrize(("case", "size"), _params())
def test_a_fault_loses_nothing_and_service_resumes(tmp_path: Path, case: str, size: str) -> None:
    fault, options, _known = CASES[case]
    with rig(tmp_path, **options) as the:
        outcome = run_case(the, f"{case}-{size}", fault, **SIZES[size])
        print(outcome)
        check(outcome, the)


@pytest.mark.faults
def test_a_memory_broker_restart_resumes_on_the_new_log_and_reports_the_loss(
    tmp_path: Path,
) -> None:
    """Tansu on memory storage comes back with empty topics (other topic ids, offsets from
    0): what it acknowledged before is gone at the broker, by definition. The honest
    outcome: the engine notices the replaced log (LOG_REPLACED, per partition, with the
    offset after which the old log's records are lost), resumes from offset 0 of the new
    one without skipping any of it, and every order acknowledged after the restart takes
    effect exactly once and is pushed. Before log identities the engine sought to its old
    position in the new log and silently skipped the first orders acknowledged there (249
    in one run)."""
    with rig(tmp_path) as the:
        outcome = run_case(the, "broker-restart-memory-small", restart_broker, after_s=4.0)
        print(outcome)
        assert the.engine is not None
        log = the.engine.process.log_path.read_text(errors="replace")
        logs = the.logs()
    reports = [json.loads(line) for line in log.splitlines() if "LOG_REPLACED" in line]
    assert sorted({r["partition"] for r in reports}) == [0, 1, 2, 3], log[-3000:]
    assert all(r["level"] == "ERROR" and r["lost_after_offset"] >= -1 for r in reports)
    assert outcome.resume_s is not None, f"the service did not resume: {outcome}\n{logs}"
    after = {o for o, t in outcome.acked_at.items() if t > outcome.back_at}
    assert len(after) > 20, outcome
    lost = {p.split()[1] for p in outcome.verdict.problems if "never took effect" in p}
    assert not lost & after, f"acknowledged after the restart, never applied: {lost & after}"
    assert not [p for p in outcome.verdict.problems if "twice" in p or "two events" in p]
    for symbol, events in outcome.events.items():  # the new log: one run of seqs each
        seqs = sorted(e[1] for e in events if e[1])
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), symbol
    assert not outcome.unpushed, f"acknowledged after resuming, not pushed: {outcome.unpushed[:5]}"
    assert outcome.gave_up == 0, outcome
