"""Relaying a child's output into the stack's log, record by record.

The stack starts every child with ``PWBUS_LOG_JSON=yes``, so each line a child logs is one
JSON object (``{"time", "level", "logger", "message", "exception"?}``, see
:mod:`powerwall_bus.shared.logsetup`). The relay decodes those records and logs them again
under ``pwbus.stack.<component>`` at their own level, in the format the user chose for the
stack. A line that is not such a record (a one-line ``pwbus <command>: ...`` error, or what
a library prints) is passed on as it is: at WARNING from stderr, at INFO from stdout.
"""

from __future__ import annotations

import asyncio
import json
import logging

LINE_LIMIT = 1 << 20  # longest output line passed on, bytes

_LEVELS = logging.getLevelNamesMapping()


def decode_record(text: str) -> tuple[int, str] | None:
    """A child's JSON log record as (level, message); None when the line is not one."""
    if not text.startswith("{"):
        return None
    try:
        entry = json.loads(text)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("level"), str):
        return None
    level = _LEVELS.get(entry["level"], logging.INFO)
    message = f"{entry.get('logger', '?')}: {entry.get('message', '')}"
    if entry.get("exception"):
        message += f"\n{entry['exception']}"
    return level, message


async def relay_output(name: str, stream: asyncio.StreamReader | None, floor: int) -> None:
    """Log every line of ``stream`` under ``pwbus.stack.<name>`` until it closes."""
    if stream is None:
        return
    logger = logging.getLogger(f"pwbus.stack.{name}")
    while True:
        try:
            raw = await stream.readline()
        except ValueError:  # longer than LINE_LIMIT: asyncio dropped it
            logger.warning("(an output line longer than %d bytes was dropped)", LINE_LIMIT)
            continue
        if not raw:
            return
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not text:
            continue
        record = decode_record(text)
        if record is not None:
            logger.log(record[0], "%s", record[1])
        else:
            logger.log(floor, "%s", text)
