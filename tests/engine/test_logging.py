"""The engine's JSON log lines carry the Lambdas' field names (a real Powertools Logger's)."""

import io
import json
import logging
from datetime import datetime

from aws_lambda_powertools import Logger

from engine.__main__ import SERVICE, configure_logging


def test_engine_log_lines_have_the_lambdas_fields():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        configure_logging("INFO", "eng-1", stream)
        logging.getLogger("hotshard.engine").info("serving", extra={"grpc": "h:1"})
        logging.getLogger("hotshard.engine").debug("not shown")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    (line,) = stream.getvalue().splitlines()
    engine = json.loads(line)
    lambda_stream = io.StringIO()
    # a service name of its own: a Logger of an existing name keeps its first handler
    Logger(service="log_fields_probe", stream=lambda_stream).info("connected")
    lambda_line = json.loads(lambda_stream.getvalue())
    assert set(lambda_line) <= set(engine)
    assert set(engine) - set(lambda_line) == {"grpc", "instance"}
    assert (engine["level"], engine["message"], engine["service"]) == ("INFO", "serving", SERVICE)
    assert (engine["grpc"], engine["instance"]) == ("h:1", "eng-1")


def test_engine_log_lines_keep_powertools_timestamps_and_exceptions():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        configure_logging("INFO", "", stream)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("hotshard.engine").exception("crashed")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    line = json.loads(stream.getvalue().splitlines()[0])
    datetime.strptime(line["timestamp"], "%Y-%m-%d %H:%M:%S,%f%z")  # what bench.recovery reads
    assert line["exception_name"] == "ValueError" and "boom" in line["exception"]
    assert "instance" not in line
