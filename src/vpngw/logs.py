"""Log lines: plain text by default, or one JSON object per line (``--log-format json``).

JSON lines carry ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and
``message``; access-log lines (logger ``vpngw.access``) add ``request_id``, ``method``,
``path``, ``action``, ``status``, ``code`` and ``duration_ms``; a line with a traceback
adds ``exception``. docs/operations.md lists them. Nothing else of a record is copied, so
no field can carry what the message itself leaves out (parameters, secrets).
"""

from __future__ import annotations

import datetime
import json
import logging

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_FIELDS = ("request_id", "method", "path", "action", "status", "code", "duration_ms")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ACCESS_FIELDS:
            if field in record.__dict__:
                line[field] = record.__dict__[field]
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(log_format: str = "text") -> None:
    """The root logger's one handler (stderr), in ``text`` or ``json``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler])  # a no-op when handlers exist (pytest)
