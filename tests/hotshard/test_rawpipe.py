"""RawPipeline: one write, replies in order, scripts without SCRIPT EXISTS; a Redis that
forgot its scripts runs each refused command once, in order, after loading them."""

from typing import Any

import pytest
import redis
from redis.connection import Connection

from hotshard.domain import Side
from hotshard.rawpipe import RawPipeline, hash_items, pack, pack_python

pytestmark = pytest.mark.integration

INCR_BY = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
APPEND = "return redis.call('APPEND', KEYS[1], ARGV[1])"


def test_pack_writes_what_redis_py_writes() -> None:
    commands = [
        ("EVALSHA", "ab" * 20, 2, "k:1", "k:é", 0, -17, 3.25, b"\x00raw"),
        ("HSET", "h", "f", 12345678901234567890),
    ]
    conn: Any = Connection()  # type: ignore[no-untyped-call]
    expected = b"".join(conn.pack_commands(commands))
    assert pack(commands) == expected
    with pytest.raises(redis.DataError):
        pack([("SET", "k", True)])


def test_pack_in_c_writes_what_the_python_packer_and_redis_py_write() -> None:
    """hiredis packs; whatever it takes must come out byte for byte as the Python packer
    and redis-py's encoder write it (floats by repr, big ints, text as UTF-8), and what it
    does not take (an IntEnum, a bool) goes the Python way."""
    import random  # noqa: PLC0415

    rng = random.Random(12)
    values: list[Any] = [0, -1, 2**63, -(2**70), 0.1, 1 / 3, 1e20, -0.0, 1e-300, float("inf")]
    values += ["", "é", "k:\u00e9\u4e2d", b"", b"\x00\xff", "x" * 600]
    values += [rng.randint(-(2**64), 2**64) for _ in range(200)]
    values += [rng.uniform(-1e6, 1e6) for _ in range(200)] + [rng.random() for _ in range(100)]
    conn: Any = Connection()  # type: ignore[no-untyped-call]
    for start in range(0, len(values), 7):
        commands = [("EVALSHA", "ab" * 20, 1, *values[start : start + 7])]
        assert pack(commands) == pack_python(commands) == b"".join(conn.pack_commands(commands))
    # an IntEnum (which redis-py with hiredis refuses) goes the Python way
    mixed: list[Any] = [("HSET", "h", "side", Side.BUY), ("GET", "k")]
    assert (
        pack(mixed) == pack_python(mixed) == pack_python([("HSET", "h", "side", 1), ("GET", "k")])
    )
    with pytest.raises(redis.DataError):
        pack([("GET", "k"), ("SET", "k", None)])  # type: ignore[list-item]


def test_replies_in_order_and_errors_as_replies(r: redis.Redis) -> None:
    incr = r.register_script(INCR_BY)
    pipe = RawPipeline(r)
    pipe.command("SET", "n", 1)
    pipe.script(incr, ["n"], [4])
    pipe.command("HSET", "n", "f", 1)  # WRONGTYPE
    pipe.command("SMEMBERS", "nobody")
    replies = pipe.execute(raise_on_error=False)
    assert replies[:2] == [b"OK", 5]
    assert isinstance(replies[2], redis.ResponseError)
    assert replies[3] == []
    pipe.command("HSET", "n", "f", 1)
    with pytest.raises(redis.ResponseError):
        pipe.execute()
    assert pipe.execute() == []  # nothing left queued


def test_scripts_forgotten_by_redis_are_loaded_and_each_refused_command_runs_once(
    r: redis.Redis,
) -> None:
    incr = r.register_script(INCR_BY)
    append = r.register_script(APPEND)
    r.script_flush()
    pipe = RawPipeline(r)
    pipe.script(incr, ["c"], [1])
    pipe.command("APPEND", "log", "a")  # runs the first time: must not run twice
    pipe.script(append, ["log"], ["b"])
    pipe.script(incr, ["c"], [10])
    pipe.script(append, ["log"], ["c"])
    assert pipe.execute() == [1, 1, 2, 11, 3]
    assert r.get("c") == b"11"
    assert r.get("log") == b"abc"
    assert r.script_exists(incr.sha, append.sha) == [True, True]


def test_a_pipeline_sends_no_script_exists(r: redis.Redis) -> None:
    incr = r.register_script(INCR_BY)
    incr(keys=["w"], args=[1])  # loaded
    before = _calls(r, "script|exists")
    pipe = RawPipeline(r)
    for _ in range(3):
        pipe.script(incr, ["w"], [1])
    assert pipe.execute() == [2, 3, 4]
    assert _calls(r, "script|exists") == before


def _calls(r: redis.Redis, command: str) -> int:
    stats = r.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_sent_only_commands_apply_in_order_and_their_replies_are_not_anyone_elses(
    r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    r.set("s", "text")
    pipe = RawPipeline(r)
    pipe.command("HSET", "h", "state", "ACCEPTED")
    pipe.command("HSET", "s", "f", 1)  # WRONGTYPE: logged, nobody waits for it
    pipe.send_only()
    pipe.command("HSET", "h", "offset", 7)
    pipe.send_only()
    pipe.command("HGETALL", "h")
    pipe.command("GET", "s")
    replies = pipe.execute()
    assert dict(hash_items(replies[0])) == {b"state": b"ACCEPTED", b"offset": b"7"}
    assert replies[1] == b"text"
    assert "WRONGTYPE" in caplog.text
    pipe.command("INCR", "n")
    assert pipe.execute() == [1]  # nothing left unread


def test_unread_replies_of_a_dropped_connection_do_not_answer_the_next_command(
    r: redis.Redis,
) -> None:
    pipe = RawPipeline(r)
    pipe.command("CLIENT", "ID")
    (mine,) = pipe.execute()
    pipe.command("SET", "k", "v")
    pipe.send_only()
    r.client_kill_filter(_id=mine)
    pipe.command("GET", "k")
    pipe.command("INCR", "n")
    assert pipe.execute() == [b"v", 1]


def test_send_only_takes_no_script_calls(r: redis.Redis) -> None:
    pipe = RawPipeline(r)
    pipe.script(r.register_script(INCR_BY), ["c"], [1])
    with pytest.raises(ValueError):
        pipe.send_only()
