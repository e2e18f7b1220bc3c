"""Retention: raw tables partitioned by day, old days dropped, summaries kept forever.

Layout of every raw table (``RANGE COLUMNS(ts)``, valid on MySQL 8 and MariaDB)::

    p_past      VALUES LESS THAN ('<first daily partition>')   any older date: imports, restores
    pYYYYMMDD   VALUES LESS THAN ('<the next day>')            one per UTC day
    p_future    VALUES LESS THAN (MAXVALUE)                    anything later

so a row of any date is accepted. Daily partitions are created :data:`AHEAD` days ahead by
splitting ``p_future`` (empty, or nearly: only rows dated after the last daily partition),
which is a metadata change, not a copy.

Pruning keeps ``retention_days`` whole UTC days before today (``raw_retention_days`` for
meters, SoE, battery blocks and poller events; ``vitals_retention_days`` for vitals; 0
keeps everything). An old daily partition is dropped whole (a file removed: no row-by-row
delete, no bloat, a metadata lock held for milliseconds); rows in ``p_past`` older than
the cutoff (an import) are deleted in small chunks. Raw rows are never removed before their
summaries exist: a day of meter, SoE or battery-block rows whose first and last minute have
no summary is kept (a bulk load not yet summarized), and the prune says so.

DDL here runs with a short ``lock_wait_timeout``: behind a long report holding the table,
it gives up (and is tried again later) instead of making the writer queue behind it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mysql.connector.errors as mysql_errors

from powerwall_bus.consumers.mysql.summaries import DAY

_LOGGER = logging.getLogger(__name__)

#: The raw tables and which retention setting applies to each.
RAW_TABLES: dict[str, str] = {
    "meter_readings": "raw",
    "soe_readings": "raw",
    "battery_block_readings": "raw",
    "poller_events": "raw",
    "vitals_readings": "vitals",
}
#: A raw table -> the summary that must exist before its rows go (and its gateway column).
SUMMARY_OF = {
    "meter_readings": "meter_minutes",
    "soe_readings": "soe_minutes",
    "battery_block_readings": "block_hours",
}
AHEAD = 3  # daily partitions kept ready beyond today
FIRST_DAYS_BACK = 31  # a new layout starts its daily partitions this many days ago
DELETE_CHUNK = 5000
LOCK_WAIT_S = 5
_DAILY = re.compile(r"^p(\d{8})$")
_PRIVILEGE_ERRNOS = frozenset({1142, 1227})  # table / global privilege missing


def partition_name(day: dt.date) -> str:
    """``p20261201``."""
    return f"p{day:%Y%m%d}"


def _bound(day: dt.date) -> str:
    return f"'{day.isoformat()} 00:00:00'"


def daily_clause(days: Sequence[dt.date]) -> str:
    """The PARTITION definitions of some days (each up to the next day)."""
    return ", ".join(
        f"PARTITION {partition_name(d)} VALUES LESS THAN ({_bound(d + DAY)})" for d in days
    )


def layout(first: dt.date, last: dt.date) -> str:
    """``PARTITION BY ...`` for a new table: p_past, the days [first, last], p_future."""
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    return (
        f"PARTITION BY RANGE COLUMNS(ts) (PARTITION p_past VALUES LESS THAN ({_bound(first)}),"
        f" {daily_clause(days)}, PARTITION p_future VALUES LESS THAN (MAXVALUE))"
    )


def days_to_add(existing: Sequence[dt.date], today: dt.date, ahead: int = AHEAD) -> list[dt.date]:
    """The daily partitions missing up to ``today + ahead`` (after the newest existing)."""
    newest = max(existing) if existing else today - DAY
    last = today + dt.timedelta(days=ahead)
    count = (last - newest).days
    return [newest + dt.timedelta(days=n) for n in range(1, count + 1)]


def cutoff(today: dt.date, retention_days: int) -> dt.date | None:
    """The first day kept (None: keep everything)."""
    return None if retention_days <= 0 else today - dt.timedelta(days=retention_days)


# --------------------------------------------------------------------------- the database


def _scalar(cursor: Any, sql: str, params: Sequence[Any] = ()) -> Any:
    cursor.execute(sql, tuple(params))
    row = cursor.fetchone()
    cursor.fetchall()
    return None if row is None else row[0]


def daily_partitions(cursor: Any, table: str) -> list[dt.date] | None:
    """The days of a table's daily partitions; None when the table is not partitioned."""
    cursor.execute(
        "SELECT partition_name FROM information_schema.partitions"
        " WHERE table_schema = DATABASE() AND table_name = %s AND partition_name IS NOT NULL",
        (table,),
    )
    names = [str(row[0]) for row in cursor.fetchall()]
    if not names:
        return None
    days = []
    for name in names:
        match = _DAILY.match(name)
        if match:
            days.append(dt.datetime.strptime(match.group(1), "%Y%m%d").date())
    return sorted(days)


def _ddl(cursor: Any, statement: str) -> None:
    cursor.execute(f"SET SESSION lock_wait_timeout = {LOCK_WAIT_S}")
    cursor.execute(statement)


def ensure_ahead(cursor: Any, table: str, today: dt.date, ahead: int = AHEAD) -> list[dt.date]:
    """Split p_future so daily partitions exist up to today + ahead; the days added."""
    existing = daily_partitions(cursor, table)
    if existing is None:
        return []
    missing = days_to_add(existing, today, ahead)
    if missing:
        _ddl(
            cursor,
            f"ALTER TABLE {table} REORGANIZE PARTITION p_future INTO ({daily_clause(missing)},"
            " PARTITION p_future VALUES LESS THAN (MAXVALUE))",
        )
    return missing


def _summarized(cursor: Any, table: str, where: str, params: Sequence[Any]) -> bool:
    """True when every gateway's first and last row in ``where`` have summary buckets."""
    summary = SUMMARY_OF.get(table)
    if summary is None:
        return True
    cursor.execute(
        f"SELECT gateway_id, MIN(ts), MAX(ts) FROM {table} {where} GROUP BY gateway_id",
        tuple(params),
    )
    for gateway, first, last in cursor.fetchall():
        for ts in (first, last):
            bucket = ts.replace(second=0, microsecond=0)
            if summary == "block_hours":
                bucket = bucket.replace(minute=0)
            found = _scalar(
                cursor,
                f"SELECT COUNT(*) FROM {summary} WHERE gateway_id = %s AND bucket = %s",
                (gateway, bucket),
            )
            if not found:
                return False
    return True


@dataclass
class Pruned:
    """What one table's prune removed and kept."""

    table: str
    dropped: list[dt.date] = field(default_factory=list)
    past_rows: int = 0
    kept: list[dt.date] = field(default_factory=list)  # old days without summaries yet
    added: list[dt.date] = field(default_factory=list)

    def line(self) -> str:
        """One line for ``pwbus db prune`` and the writer's log."""
        parts = []
        if self.dropped:
            span = f"{self.dropped[0]}" + (
                f" to {self.dropped[-1]}" if len(self.dropped) > 1 else ""
            )
            parts.append(f"dropped {len(self.dropped)} daily partition(s) ({span})")
        if self.past_rows:
            parts.append(f"deleted {self.past_rows} older rows from p_past")
        if self.kept:
            parts.append(
                f"kept {len(self.kept)} day(s) without summaries (from {self.kept[0]}:"
                " run `pwbus db summarize` first)"
            )
        if self.added:
            parts.append(f"created partitions up to {self.added[-1]}")
        return f"{self.table}: " + ("; ".join(parts) if parts else "nothing to remove")


def prune_table(connection: Any, table: str, keep_from: dt.date | None, today: dt.date) -> Pruned:
    """Create partitions ahead, then remove the table's rows dated before ``keep_from``."""
    cursor = connection.cursor()
    result = Pruned(table)
    try:
        result.added = ensure_ahead(cursor, table, today)
        days = daily_partitions(cursor, table)
        if keep_from is None or days is None:
            return result
        for day in days:
            if day >= keep_from:
                break
            name = partition_name(day)
            if not _summarized(cursor, table, f"PARTITION ({name})", ()):
                result.kept.append(day)
                continue
            _ddl(cursor, f"ALTER TABLE {table} DROP PARTITION {name}")
            result.dropped.append(day)
        # p_past: rows of an import, older than every daily partition
        edge = min([keep_from, *days]) if days else keep_from
        limit = dt.datetime.combine(edge, dt.time())
        while True:
            first = _scalar(cursor, f"SELECT MIN(ts) FROM {table} PARTITION (p_past)")
            if first is None or first >= limit:
                break
            day = first.date()
            start = dt.datetime.combine(day, dt.time())
            where = "PARTITION (p_past) WHERE ts >= %s AND ts < %s"
            if not _summarized(cursor, table, where, (start, start + DAY)):
                result.kept.append(day)
                limit = start  # stop here: keep this day and everything after it
                break
            while True:
                cursor.execute(
                    f"DELETE FROM {table} PARTITION (p_past) WHERE ts < %s LIMIT {DELETE_CHUNK}",
                    (start + DAY,),
                )
                deleted = max(0, cursor.rowcount)
                connection.commit()
                result.past_rows += deleted
                if deleted < DELETE_CHUNK:
                    break
        connection.commit()
    finally:
        cursor.close()
    return result


def prune(
    connection: Any, raw_days: int, vitals_days: int, today: dt.date | None = None
) -> list[Pruned]:
    """Apply retention to every partitioned raw table; what each lost."""
    today = today or dt.datetime.now(dt.UTC).date()
    results = []
    for table, kind in RAW_TABLES.items():
        days = raw_days if kind == "raw" else vitals_days
        results.append(prune_table(connection, table, cutoff(today, days), today))
    return results


# --------------------------------------------------------------------------- migration


def partition_table(
    connection: Any, table: str, today: dt.date, progress: Callable[[str], None]
) -> None:
    """Move one table to the daily layout: a copy in day-sized chunks, then a swap.

    Resumable: the copy goes to ``<table>__new`` with INSERT IGNORE and restarts at the
    newest day already there; the swap is one RENAME; a leftover ``__old`` is dropped.
    """
    cursor = connection.cursor()
    try:
        new, old = f"{table}__new", f"{table}__old"
        if daily_partitions(cursor, table) is not None:
            cursor.execute(f"DROP TABLE IF EXISTS {old}")
            ensure_ahead(cursor, table, today)
            return
        first_day = today - dt.timedelta(days=FIRST_DAYS_BACK)
        if daily_partitions(cursor, new) is None:
            cursor.execute(f"DROP TABLE IF EXISTS {new}")
            cursor.execute(f"CREATE TABLE {new} LIKE {table}")
            cursor.execute(
                f"ALTER TABLE {new} {layout(first_day, today + dt.timedelta(days=AHEAD))}"
            )
        resume = _scalar(cursor, f"SELECT MAX(ts) FROM {new}")
        start = _scalar(cursor, f"SELECT MIN(ts) FROM {table}")
        last = _scalar(cursor, f"SELECT MAX(ts) FROM {table}")
        copied = 0
        if start is not None:
            day = (resume or start).date()
            total = (last.date() - start.date()).days + 1
            while True:
                begin = dt.datetime.combine(day, dt.time())
                cursor.execute(
                    f"INSERT IGNORE INTO {new} SELECT * FROM {table} WHERE ts >= %s AND ts < %s",
                    (begin, begin + DAY),
                )
                copied += max(0, cursor.rowcount)
                connection.commit()
                done = (day - start.date()).days + 1
                progress(
                    f"partitioning {table}: copied {day} ({done} of {total} days, {copied} rows)"
                )
                following = _scalar(
                    cursor, f"SELECT MIN(ts) FROM {table} WHERE ts >= %s", (begin + DAY,)
                )
                if following is None:
                    break
                day = following.date()
        cursor.execute(f"RENAME TABLE {table} TO {old}, {new} TO {table}")
        cursor.execute(f"DROP TABLE {old}")
        progress(f"partitioning {table}: done ({copied} rows in daily partitions)")
    finally:
        cursor.close()


def partition_all(
    connection: Any, progress: Callable[[str], None], today: dt.date | None = None
) -> None:
    """Every raw table to the daily layout (the migration step ``partition_raw``)."""
    today = today or dt.datetime.now(dt.UTC).date()
    for table in RAW_TABLES:
        partition_table(connection, table, today, progress)


# --------------------------------------------------------------------------- the writer's


class RetentionKeeper:
    """A thread of the writer: once a UTC day, partitions ahead and retention (own connection).

    It never blocks the writer's batches: it has its own connection, and its DDL gives up
    after :data:`LOCK_WAIT_S` rather than queueing the writer behind a long reader. Failures
    are logged and retried an hour later; an account without ALTER and DROP on the raw
    tables (``pwbus db users`` grants only SELECT and INSERT) turns it off with one warning
    saying to run ``pwbus db prune`` as an administrator instead.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        raw_days: int,
        vitals_days: int,
        *,
        clock: Callable[[], dt.date] | None = None,
        retry_s: float = 3600.0,
    ) -> None:
        self._connect = connect
        self.raw_days = raw_days
        self.vitals_days = vitals_days
        self._today = clock or (lambda: dt.datetime.now(dt.UTC).date())
        self._retry_s = retry_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mysql-retention", daemon=True)
        self.last_day: dt.date | None = None
        self.runs = 0

    def start(self) -> None:
        """Start the thread (once)."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to end and wait for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run_once(self) -> list[Pruned]:
        """One retention pass on a fresh connection."""
        connection = self._connect()
        try:
            results = prune(connection, self.raw_days, self.vitals_days, self._today())
        finally:
            try:
                connection.close()
            except Exception:
                _LOGGER.debug("closing the retention connection failed", exc_info=True)
        for result in results:
            if result.dropped or result.past_rows or result.kept:
                _LOGGER.info("retention: %s", result.line())
        self.runs += 1
        return results

    def _run(self) -> None:
        while not self._stop.is_set():
            today = self._today()
            if self.last_day != today:
                try:
                    self.run_once()
                    self.last_day = today
                except mysql_errors.Error as exc:
                    if getattr(exc, "errno", None) in _PRIVILEGE_ERRNOS:
                        _LOGGER.warning(
                            "retention is off: this account may not alter the raw tables (%s);"
                            " run `pwbus db prune` as an administrator once a day, or grant"
                            " ALTER, DROP on them to the writer",
                            exc.msg,
                        )
                        return
                    _LOGGER.warning("retention failed (trying again in an hour): %s", exc)
                    self._stop.wait(self._retry_s)
                    continue
                except Exception as exc:
                    _LOGGER.warning("retention failed (trying again in an hour): %s", exc)
                    self._stop.wait(self._retry_s)
                    continue
            self._stop.wait(min(self._retry_s, 600.0))
