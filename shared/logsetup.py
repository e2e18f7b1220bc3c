"""Logging for every entry point: one format, one level, and secrets scrubbed from every line.

The redaction filter is a second line of defence: code never formats a password, token or
cookie into a message on purpose, but an exception text from a library might echo a URL
with credentials in it. Every secret the settings hold is replaced by ``***``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class RedactingFilter(logging.Filter):
    """Replace known secret strings in the fully formatted message and traceback."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Register more secrets (short ones are ignored: they would mangle ordinary text)."""
        self._secrets.update(s for s in secrets if s and len(s) >= 4)

    def scrub(self, text: str) -> str:
        """Return ``text`` with every registered secret masked."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            scrubbed = self.scrub(message)
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
            if record.exc_info and record.exc_info[1] is not None:
                text = logging.Formatter().formatException(record.exc_info)
                record.exc_text = self.scrub(text)
                record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry)


_filter = RedactingFilter()


def configure_logging(
    level: str = "INFO", *, json_lines: bool = False, secrets: Iterable[str] = ()
) -> RedactingFilter:
    """Set up the root logger once per process; returns the redaction filter."""
    _filter.add(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(_FORMAT))
    handler.addFilter(_filter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries that chat at INFO/DEBUG about every connection.
    for noisy in ("pika", "urllib3", "aiohttp.access", "mysql.connector"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return _filter


def redaction_filter() -> RedactingFilter:
    """The process-wide filter, so components can register secrets they learn (tokens)."""
    return _filter
