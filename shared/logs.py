"""Logging: structured fields (``action``, ids) and secrets redacted everywhere.

Every handler gets a filter that replaces any configured secret (bot token,
SMTP and database passwords, secret key, webhook secrets) with ``***`` in the
final message, its arguments and extra fields: a token inside a logged URL or
an exception text never reaches a log line.

``VESTNIK_LOG_FORMAT=json``: one JSON object per line from every process,
Dramatiq's main process (``vestnik.workers.run``) and gunicorn's error and
access logs (``webapp/access_log.py``) included; ``time`` is ISO 8601 with
the UTC offset; the structured fields (``action``, ``notification_id``,
``event_id``, ...) are keys, and a field whose value is None is left out
(a success has no ``reason``).  ``text`` (the default) writes the same
fields as ``key=value`` after the message.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import Any

from vestnik.shared import threadsafe_ast
from vestnik.shared.config import Settings, secrets_of

_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self.redact(value))
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record; None means "not applicable" and is left out."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_") and v is not None}


def iso_time(record: logging.LogRecord) -> str:
    """``2026-12-01T21:04:05.123+03:00``: local time with its offset, unambiguous across hosts."""
    return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")


class KeyValueFormatter(logging.Formatter):
    """``time level logger message key=value ...`` with the structured extras."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return iso_time(record)

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = _extras(record)
        if not extras:
            return base
        return base + " " + " ".join(f"{k}={v}" for k, v in extras.items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601 with offset), level, logger, message, the fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": iso_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(_extras(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            data["exception"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, default=str, ensure_ascii=False)


def vestnik_formatter(settings: Settings) -> logging.Formatter:
    return (JsonFormatter() if settings.log_format == "json"
            else KeyValueFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))


def configure_logging(settings: Settings, *, stream: Any = None) -> None:
    # Every Vestnik process sets its logging up here, and its threads format tracebacks (which parse
    # source on Python 3.11): one parse at a time, or a record can be lost (shared/threadsafe_ast.py).
    threadsafe_ast.install()
    root = logging.getLogger()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(vestnik_formatter(settings))
    handler.addFilter(RedactSecrets(secrets_of(settings)))
    # One handler: ours replaces any earlier one (Dramatiq's CLI installs its own),
    # so each line appears once, with the structured fields and redacted.
    for old in [h for h in root.handlers if type(h) is logging.StreamHandler]:
        root.removeHandler(old)
    handler._vestnik = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    logging.getLogger("pika").setLevel(logging.WARNING)
