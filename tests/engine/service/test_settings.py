"""Configuration: environment first, then flags; --help explains every option."""

from dataclasses import fields as dc_fields

import pytest

from engine.service.settings import ENV, EngineSettings, parse_args, parse_partitions


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
