"""The Python steps of the schema migrations (``PWBUS STEP name`` in a migration file).

Each step may run again after an interruption and picks up where it stopped (migrations
that use them are marked resumable); each says what it is doing with progress lines in the
log (``pwbus db migrate`` shows them on stderr).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from powerwall_bus.consumers.mysql import summaries

_LOGGER = logging.getLogger(__name__)


def _summarize_all(connection: Any) -> None:
    """Build every summary from the raw rows already stored (day by day, committed)."""
    done = summaries.summarize(connection, progress=lambda line: _LOGGER.info("%s", line))
    _LOGGER.info("summaries built: %d gateway-days", done["days"])


def _partition_raw(connection: Any) -> None:
    """Move the raw tables to daily RANGE partitions (a chunked, resumable copy)."""
    from powerwall_bus.consumers.mysql.retention import partition_all

    partition_all(connection, progress=lambda line: _LOGGER.info("%s", line))


STEPS: dict[str, Callable[[Any], None]] = {
    "summarize_all": _summarize_all,
    "partition_raw": _partition_raw,
}


def run_step(connection: Any, name: str) -> None:
    """Run one named step; an unknown name is a migration error."""
    from powerwall_bus.consumers.mysql.migrate import MigrationError

    step = STEPS.get(name)
    if step is None:
        raise MigrationError(f"unknown migration step {name!r}")
    step(connection)
    connection.commit()
