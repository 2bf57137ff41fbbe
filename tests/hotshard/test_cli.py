"""`hotshard`: one console script, a --help on every command that documents every option,
`hotshard replay` = `python -m engine.replay`, `hotshard demo --in-process` end to end."""

import io
import json
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from hotshard.cli import main, parser
from hotshard.local.services.redis import redis_server

ORDERS = [
    {"symbol": "AAPL", "order_id": "1", "user_id": "a", "side": "SELL", "price": 10, "quantity": 5},
    {"symbol": "AAPL", "order_id": "2", "user_id": "b", "side": "BUY", "price": 10, "quantity": 2},
    "not json",
]


def test_every_command_and_option_is_documented():
    p = parser()
    (sub,) = p._subparsers._group_actions  # type: ignore[union-attr]
    assert set(sub.choices) == {"demo", "replay", "fund", "up", "migrate", "routes", "engines"}  # type: ignore[arg-type]
    for name, command in sub.choices.items():  # type: ignore[union-attr]
        undocumented = [
            a.option_strings for a in command._actions if a.dest != "help" and not a.help
        ]
        assert undocumented == [], (name, undocumented)
    for word in ("demo", "replay", "hotshard-client"):
        assert word in p.format_help()


def test_help_is_there_for_each_command():
    for argv in (["--help"], ["demo", "--help"], ["replay", "--help"], ["fund", "--help"]):
        out = io.StringIO()
        with redirect_stdout(out), pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0 and "usage: hotshard" in out.getvalue()


def test_bad_demo_options_are_refused_with_a_reason(capsys):
    with pytest.raises(SystemExit) as done:
        main(["demo", "--orders", "0"])
    assert done.value.code == 2 and "must be positive" in capsys.readouterr().err


def test_replay_writes_what_python_m_engine_replay_writes(tmp_path: Path) -> None:
    source = tmp_path / "orders.jsonl"
    source.write_text("\n".join(o if isinstance(o, str) else json.dumps(o) for o in ORDERS))
    ours, theirs = tmp_path / "ours.jsonl", tmp_path / "theirs.jsonl"
    common = ["--input", str(source), "--depth-levels", "2", "--quiet"]
    assert main(["replay", *common, "--output", str(ours)]) == 0
    subprocess.run(
        [sys.executable, "-m", "engine.replay", *common, "--output", str(theirs)], check=True
    )
    assert ours.read_bytes() == theirs.read_bytes()
    assert b'"type":"trade"' in ours.read_bytes() and b"MALFORMED" in ours.read_bytes()


def test_the_in_process_demo_shows_its_tables_and_a_summary(capsys):
    assert main(["demo", "--in-process", "--orders", "20000", "--symbols", "8", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "hottest 3 symbols of 8" in out and "order_status events of the hottest 3" in out
    assert "20,000 orders across 8 symbols" in out


@pytest.mark.integration
def test_fund_credits_a_users_balance_in_redis(capsys):
    with redis_server() as server:
        assert main(["fund", "alice", "CASH", "700", "--redis-port", str(server.port)]) == 0
        assert main(["fund", "alice", "CASH", "-200", "--redis-port", str(server.port)]) == 0
        last = capsys.readouterr().out.strip().splitlines()[-1]
        assert json.loads(last) == {"user_id": "alice", "balances": {"CASH": 500}}
