"""Configuration: environment first, then flags; --help explains every option."""

import json
from dataclasses import fields as dc_fields
from dataclasses import replace

import pytest

from engine.book import DedupBudgetError, add
from engine.service.core import EngineState
from engine.service.settings import (
    ENV,
    LEGACY_CONSUME,
    EngineSettings,
    market_for,
    parse_args,
    parse_partitions,
)
from hotshard.domain import Side, Status
from hotshard.events import REASON, SEQ, STATUS, STATUS_CODE
from hotshard.names import TOPIC_ORDER_STATUS
from hotshard.reasons import Reason
from hotshard.wire import event_tuple, parse_batch
from tests.engine.service.test_core import records


def test_partition_lists_and_ranges():
    assert parse_partitions("0-3,8, 2") == (0, 1, 2, 3, 8)
    assert parse_partitions("") == ()
    with pytest.raises(ValueError):
        parse_partitions("3-1")
    with pytest.raises(ValueError):
        parse_partitions("x")


def test_environment_gives_defaults_that_flags_override():
    env = {
        "KAFKA_BROKERS": "k:1",
        "REDIS_PORT": "7000",
        "GRPC_PORT": "6001",
        "LOG_LEVEL": "debug",
        "ENGINE_PARTITIONS": "1-2",
    }
    s = parse_args([], env)
    assert (s.kafka_brokers, s.redis_port, s.grpc_port, s.log_level, s.partitions) == (
        "k:1",
        7000,
        6001,
        "DEBUG",
        (1, 2),
    )
    s = parse_args(["--redis-port", "7001", "--partitions", "5"], env)
    assert (s.redis_port, s.partitions) == (7001, (5,))
    assert EngineSettings.from_env({}).kafka_brokers == EngineSettings().kafka_brokers


def test_instance_id_defaults_to_host_and_port():
    s = parse_args(["--grpc-port", "7777"], {})
    assert s.instance.endswith("-7777")


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"], {})
    text = capsys.readouterr().out
    for flag in (
        "--kafka-brokers",
        "--kafka-auth",
        "--redis-host",
        "--redis-port",
        "--grpc-port",
        "--partitions",
        "--snapshot-interval-s",
        "--snapshot-s3-threshold",
        "--snapshot-bucket",
        "--log-level",
    ):
        assert flag in text
    for env in (
        "KAFKA_BROKERS",
        "REDIS_HOST",
        "REDIS_PORT",
        "AWS_REGION",
        "GRPC_PORT",
        "LOG_LEVEL",
    ):
        assert env in text


def test_bad_values_are_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--batch-size", "0"], {})
    with pytest.raises(SystemExit):
        parse_args(["--kafka-auth", "scram"], {})
    for wait in ("-0.5", "-2", "1001"):
        with pytest.raises(SystemExit):
            parse_args(["--batch-wait-ms", wait], {})


def test_the_batch_wait_defaults_to_what_is_buffered_and_minus_one_is_the_old_consume():
    assert parse_args([], {}).batch_wait_ms == 0.0
    assert parse_args(["--batch-wait-ms", "1.5"], {}).batch_wait_ms == 1.5
    assert parse_args([], {"ENGINE_BATCH_WAIT_MS": "-1"}).batch_wait_ms == LEGACY_CONSUME


def test_every_option_has_an_environment_variable(capsys):
    """Each field of EngineSettings is a flag and has its own variable, shown in --help, and
    setting the variable alone changes the setting."""
    names = [f.name for f in dc_fields(EngineSettings)]
    assert sorted(ENV) == sorted(names)
    assert len(set(ENV.values())) == len(ENV)
    with pytest.raises(SystemExit):
        parse_args(["--help"], {})
    text = capsys.readouterr().out
    samples = {str: "x-1", int: "7", float: "2.5", bool: "true"}
    default = EngineSettings()
    for name in names:
        assert f"--{name.replace('_', '-')}" in text
        assert f"[{ENV[name]}]" in text
        value = getattr(default, name)
        raw = {"partitions": "3-4", "symbols": "/tmp/s.json", "kafka_auth": "msk-iam"}.get(
            name, samples.get(type(value), "x-1")
        )
        if name == "log_level":
            raw = "debug"
        if name == "ownership_ttl_s":
            raw = "30"
        got = getattr(EngineSettings.from_env({ENV[name]: raw}), name)
        assert got != value, name


def test_the_dedup_budget_is_an_option_and_the_engine_market_keeps_it(tmp_path):
    """--dedup-ids / --dedup-window (or their variables) bound the ended-order ids the
    engine's books remember together; a symbol whose window no longer fits is refused
    DEDUP_BUDGET_FULL outside any sequence, through the engine's own batch path."""
    s = parse_args(["--dedup-ids", "30"], {"ENGINE_DEDUP_WINDOW": "10"})
    assert (s.dedup_ids, s.dedup_window) == (30, 10)
    assert EngineSettings().dedup_ids == 1_000_000 and EngineSettings().dedup_window == 10_000
    state = EngineState(market_for(s))
    stream = [(f"S{i}", add(f"o{i}", "u", Side.BUY, 10, 1)) for i in range(4)]
    result = state.apply_batch(records(stream, partitions=1))
    statuses = [
        (batch.symbol, ev[SEQ], ev[STATUS_CODE], ev[REASON])
        for topic, _, _, value in result.outputs
        if topic == TOPIC_ORDER_STATUS
        for batch in [parse_batch(STATUS, value)]
        for ev, _ in (event_tuple(STATUS, msg) for msg in batch.events)
    ]
    assert sorted(statuses) == [
        ("S0", 1, int(Status.ACCEPTED), 0),
        ("S1", 1, int(Status.ACCEPTED), 0),
        ("S2", 1, int(Status.ACCEPTED), 0),
        ("S3", 0, int(Status.REJECTED), int(Reason.DEDUP_BUDGET_FULL)),
    ]
    assert sorted(state.market.books) == ["S0", "S1", "S2"]


def test_listed_symbols_take_the_default_window_and_must_fit(tmp_path):
    listing = tmp_path / "symbols.json"
    listing.write_text(json.dumps({"A": {}, "B": {"dedup_window": 5}}))
    s = parse_args(["--symbols", str(listing), "--dedup-ids", "20", "--dedup-window", "15"], {})
    market = market_for(s)
    assert (market.instruments["A"].dedup_window, market.instruments["B"].dedup_window) == (15, 5)
    with pytest.raises(DedupBudgetError):
        market_for(replace(s, dedup_ids=19))


def test_a_window_over_the_budget_is_refused():
    with pytest.raises(SystemExit):
        parse_args(["--dedup-ids", "10", "--dedup-window", "11"], {})
    with pytest.raises(SystemExit):
        parse_args(["--dedup-window", "-1"], {})
