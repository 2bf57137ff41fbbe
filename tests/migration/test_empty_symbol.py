"""`hotshard migrate` of a listed symbol no order was ever sent to (it has no book): the
execution ends NothingToMove (exit 3, the reason printed) before anything changes; its
route is the same, and the warm pool keeps every engine however often it is asked."""

from pathlib import Path

import pytest

from hotshard import names, route
from hotshard.local.commands import EXIT_NOTHING, engine_rows
from hotshard.local.fleet import engine_label
from hotshard.local.up import UpOptions, up
from tests.migration.harness import HOT, SYMBOLS, migrate

pytestmark = pytest.mark.integration


def test_a_symbol_without_a_book_is_not_moved_and_takes_no_warm_engine(tmp_path: Path) -> None:
    options = UpOptions(symbols=SYMBOLS, state_file=tmp_path / "cluster.json", monitor=False)
    with up(options) as cluster:
        r = cluster.redis.client()
        before = route.lookup(r, HOT)
        assert cluster.pool is not None
        desired = cluster.pool.group()["DesiredCapacity"]
        for strategy in ("pre-copy", "stop-and-copy"):
            code, summary, printed = migrate(options.state_file, HOT, strategy)
            assert code == EXIT_NOTHING, printed
            assert summary["status"] == "NOTHING_TO_MOVE", printed
            assert f"nothing to move: NO_BOOK: {HOT} has no book on" in printed, printed
        after = route.lookup(r, HOT)
        claims = list(r.scan_iter(match=names.REDIS_FLEET_CLAIM.format("*")))
        group = cluster.pool.group()
        warm = [row for row in engine_rows(cluster.state()) if row["warm"]]
        r.close()
    assert after == before and after is not None and after.status == "ACTIVE"
    assert claims == []
    assert group["DesiredCapacity"] == desired
    assert len(warm) == options.warm
    assert all(engine_label(row).endswith("(warm)") for row in warm), warm
