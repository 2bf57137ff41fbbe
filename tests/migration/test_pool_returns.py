"""A rolled-back migration gives its target back and the warm pool returns to `--warm`:
`hotshard up`, some orders so HOT has a book, a task raising at TransferSnapshot (after
ProvisionNewInstance took the warm engine and the pool scaled out to replace it), then
`hotshard migrate` exits 2 and the pool scales back in: `--warm` idle engines, no claim,
the group's desired capacity back, HOT on its source, `hotshard engines` saying so."""

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import statemachine
from hotshard import names, route
from hotshard.local.commands import EXIT_ROLLED_BACK, engine_rows
from hotshard.local.control import FAULT_KEY
from hotshard.local.up import UpOptions, up
from tests.migration.harness import HOT, HOTSHARD, REPO, SYMBOLS, drive, migrate

pytestmark = pytest.mark.integration


def _settled(cluster: Any, warm: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The warm rows and the group once the pool is back to `warm` idle engines (or 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        rows = [row for row in engine_rows(cluster.state()) if row["warm"]]
        group = cluster.pool.group()
        idle = [row for row in rows if row.get("pool") == "idle"]  # one being stopped has none
        if (len(idle) == len(rows) == warm and group["DesiredCapacity"] == warm) or (
            time.monotonic() > deadline
        ):
            return rows, group
        time.sleep(0.5)


def test_a_rolled_back_target_returns_to_the_warm_pool(tmp_path: Path) -> None:
    options = UpOptions(symbols=SYMBOLS, state_file=tmp_path / "cluster.json", monitor=False)
    with up(options) as cluster:
        asyncio.run(drive(cluster.state(), seed=5, seconds=1.0))
        r = cluster.redis.client()
        before = route.lookup(r, HOT)
        r.set(FAULT_KEY.format(statemachine.module_of("TransferSnapshot")), "fatal")
        code, summary, printed = migrate(options.state_file, HOT, "pre-copy")
        assert code == EXIT_ROLLED_BACK and summary["status"] == "ROLLED_BACK", printed
        rows, group = _settled(cluster, options.warm)
        after = route.lookup(r, HOT)
        claims = list(r.scan_iter(match=names.REDIS_FLEET_CLAIM.format("*")))
        r.close()
        shown = subprocess.run(
            [*HOTSHARD, "engines", "--state-file", str(options.state_file)],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
            check=True,
        ).stdout
    assert [row["pool"] for row in rows] == ["idle"] * options.warm, rows
    assert group["DesiredCapacity"] == options.warm, group
    assert claims == []
    assert before is not None and after is not None
    assert (after.instance, after.partition, after.status) == (
        before.instance,
        before.partition,
        "ACTIVE",
    )
    assert f"warm pool: {options.warm} idle of --warm {options.warm}, 0 taken" in shown, shown
