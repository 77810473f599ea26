"""One JSON object per log line, for the log collectors of a production deployment.

Selected by ARENA_LOG_FORMAT=json (the default outside the demo) in settings.LOGGING, for the web
processes and the Celery workers alike. Each line has `ts`, `level`, `logger`, `msg`, and the
fields a call passed with `extra=` (`event`, `battle_id`, `response_id`, `model`, `latency_ms`,
...), so a collector can index them without parsing messages. Prompts and answers are never
logged by the arena's own code: the events carry ids and counts only.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import orjson

# Every attribute that logging itself puts on a record; anything else came from `extra=`.
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra that JSON cannot hold (a datetime, a UUID) still gets logged.
        return orjson.dumps(entry, default=str).decode()
