"""Log lines: plain text by default, or one JSON object per line (``--log-format json``).

JSON lines carry ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger`` and
``message``; access-log lines (logger ``vpngw.access``) add ``request_id``, ``client``,
``access_key_id``, ``method``, ``path``, ``action``, ``status``, ``code`` and
``duration_ms``; a line with a traceback adds ``exception``. docs/operations.md lists them.
Nothing else of a record is copied, so no field can carry what the message itself leaves
out (parameters, secrets).

Every value a client can choose (a path, an action name, a parameter name inside an error
code, an AccessKeyId) may hold control characters. Both formats escape them (:func:`escape`)
in the message and in every field, so one record is always exactly one line and no client
can forge a line or send escape sequences to an operator's terminal. A traceback keeps its
line breaks, but every line after the first is indented, so no line of it can pass for a
record of its own.
"""

from __future__ import annotations

import datetime
import json
import logging
import re

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_FIELDS = (
    "request_id",
    "client",
    "access_key_id",
    "method",
    "path",
    "action",
    "status",
    "code",
    "duration_ms",
)

# C0 controls, DEL, C1 controls, the Unicode line and paragraph separators, and the
# backslash itself (so that an escape in the log is never ambiguous with the same text sent).
_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
TRACEBACK_INDENT = "    "


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape(value: str) -> str:
    """``value`` with every control character (and the backslash) written as an escape."""
    return _UNSAFE.sub(_escape_one, value)


def escape_multiline(text: str, indent: str = TRACEBACK_INDENT) -> str:
    """A traceback: each line escaped, the lines after the first indented."""
    return f"\n{indent}".join(escape(line) for line in text.split("\n"))


class TextFormatter(logging.Formatter):
    """The text format, with the message escaped and tracebacks indented."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802  (logging's name)
        record.message = escape(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: logging._SysExcInfoType) -> str:  # noqa: N802
        return TRACEBACK_INDENT + escape_multiline(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return TRACEBACK_INDENT + escape_multiline(stack_info)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": escape(record.getMessage()),
        }
        for field in ACCESS_FIELDS:
            if field in record.__dict__:
                value = record.__dict__[field]
                line[field] = escape(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = escape_multiline(self.formatException(record.exc_info), indent="")
        return json.dumps(line, ensure_ascii=False)


def configure(log_format: str = "text") -> None:
    """The root logger's one handler (stderr), in ``text`` or ``json``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])  # a no-op when handlers exist (pytest)
