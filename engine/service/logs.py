"""The engine's JSON log lines: the fields of the Lambdas' Powertools Logger (level,
location, message, timestamp, service, then each record's `extra`), written without
importing Powertools, whose import is ~10% of an engine's start (issue 11, recovery after
kill -9). tests/engine/test_logging.py holds the fields to a real Powertools Logger's."""

import json
import logging
import time
from typing import Any

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
"""LogRecord's own attributes: everything else on a record came from `extra`."""


class JsonLines(logging.Formatter):
    def __init__(self, service: str, **keys: Any) -> None:
        super().__init__()
        self.service = service
        self.keys = keys

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "level": record.levelname,
            "location": f"{record.funcName}:{record.lineno}",
            "message": record.getMessage(),
            "timestamp": self.formatTime(record),
            "service": self.service,
            **self.keys,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = self.formatException(record.exc_info)
            out["exception_name"] = record.exc_info[0].__name__
        return json.dumps(out, default=str, separators=(",", ":"))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """Powertools' default: `2026-12-01 16:03:09,204+0000` (local time, milliseconds)."""
        stamp = time.localtime(record.created)
        return (
            time.strftime("%Y-%m-%d %H:%M:%S", stamp)
            + f",{int(record.msecs):03d}"
            + time.strftime("%z", stamp)
        )
