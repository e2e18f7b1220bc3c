"""``pwbus db summarize`` and ``pwbus db prune``: the history's upkeep by hand.

``summarize`` rebuilds the summaries from the raw readings after an import of old history,
a restore or a bulk load straight into the raw tables (the writer keeps the summaries
current by itself for what it writes). ``prune`` applies retention now (the writer does it
once a day by itself) and prints what it removed.
"""

from __future__ import annotations

import contextlib
import sys

from powerwall_bus.consumers.mysql.connection import connect, translated
from powerwall_bus.consumers.mysql.reports import parse_date
from powerwall_bus.consumers.mysql.retention import prune
from powerwall_bus.consumers.mysql.summaries import summarize
from powerwall_bus.shared.settings import MysqlSettings, WriterSettings


def run_summarize(settings: MysqlSettings, date_from: str | None, date_to: str | None) -> int:
    """Rebuild [from, to) (UTC days; open ends: everything); print a line per step; 0."""
    start = parse_date(date_from, "from") if date_from else None
    end = parse_date(date_to, "to") if date_to else None

    def progress(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    connection = connect(settings, io_timeout=None)
    try:
        with translated(settings, "rebuilding the summaries"):
            done = summarize(connection, start, end, progress=progress)
    finally:
        with contextlib.suppress(Exception):
            connection.close()
    sys.stdout.write(
        f"{settings.safe_url}: summaries rebuilt for {done['days']} gateway-days"
        f" ({done['skipped']} kept)\n"
    )
    return 0


def run_prune(settings: MysqlSettings, writer: WriterSettings) -> int:
    """Apply retention to every raw table; one line per table; 0."""
    connection = connect(settings, io_timeout=None)
    try:
        with translated(settings, "applying retention"):
            results = prune(connection, writer.raw_retention_days, writer.vitals_retention_days)
    finally:
        with contextlib.suppress(Exception):
            connection.close()
    keep = (
        f"raw {writer.raw_retention_days} days" if writer.raw_retention_days else "raw forever"
    ) + (
        f", vitals {writer.vitals_retention_days} days"
        if writer.vitals_retention_days
        else ", vitals forever"
    )
    sys.stdout.write(f"{settings.safe_url}: retention ({keep})\n")
    for result in results:
        sys.stdout.write(result.line() + "\n")
    return 0
