"""Partitions, retention and the migration to them, on the real MariaDB.

* a database filled by the schema of version 1 (unpartitioned raw tables, no summaries)
  migrates: raw tables copied day by day into daily partitions (progress lines), resumed
  after an interruption, summaries built; the reports give the raw-data numbers;
* `pwbus db migrate` refuses while a writer holds the migration lock;
* rows of any date are accepted; partitions are created ahead;
* `pwbus db prune` drops old days (never ones without summaries), prints what it removed,
  and the reports over the pruned days still give the same numbers; the writer's own
  retention thread does the same once a day.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from powerwall_bus.consumers.mysql import migrate as mig
from powerwall_bus.consumers.mysql import reports, retention, summaries
from powerwall_bus.consumers.mysql.connection import connect
from powerwall_bus.consumers.mysql.db import Database
from powerwall_bus.consumers.mysql.reports import ReportParams
from powerwall_bus.consumers.mysql.rows import MeterRow, Rows, SoeRow
from powerwall_bus.shared.settings import MysqlSettings

REPO = Path(__file__).resolve().parents[1]
TODAY = dt.datetime.now(dt.UTC).date()
RAW = tuple(retention.RAW_TABLES)


def pwbus(*args: str, settings: MysqlSettings, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "PWBUS_"))}
    auth = f"{settings.user}:{settings.password}" if settings.password else settings.user
    clean["MYSQL_URL"] = f"mysql://{auth}@{settings.host}:{settings.port}/{settings.database}"
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "powerwall_bus", *args],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def db(mysql_db: MysqlSettings) -> Iterator[Any]:
    connection = connect(mysql_db)
    yield connection
    connection.close()


def _rows(gateway: str, day: dt.date, hours: int = 3, start_wh: float = 0.0) -> Rows:
    """Meter and soe rows every 5 minutes for a few hours of one day."""
    rows = Rows()
    for n in range(hours * 12):
        ts = dt.datetime.combine(day, dt.time(10)) + dt.timedelta(minutes=5 * n)
        wh = start_wh + 10.0 * n
        for meter in summaries.METERS:
            rows.meters.append(
                MeterRow(gateway, ts, meter, 100.0 + n, None, None, None, None, None, wh, wh / 2)
            )
        rows.soe.append(SoeRow(gateway, ts, 50.0 + n / 10, 0.0))
    return rows


def _bulk(connection: Any, rows: Rows, gateway_id: int) -> None:
    """Rows straight into the raw tables (an import: no summaries)."""
    cursor = connection.cursor()
    cursor.executemany(
        "INSERT INTO meter_readings (gateway_id, ts, meter, instant_power, energy_imported,"
        " energy_exported) VALUES (%s, %s, %s, %s, %s, %s)",
        [
            (gateway_id, r.ts, r.meter, r.instant_power, r.energy_imported, r.energy_exported)
            for r in rows.meters
        ],
    )
    cursor.executemany(
        "INSERT INTO soe_readings (gateway_id, ts, percentage, app_percentage)"
        " VALUES (%s, %s, %s, %s)",
        [(gateway_id, r.ts, r.percentage, r.app_percentage) for r in rows.soe],
    )
    connection.commit()
    cursor.close()


def _count(connection: Any, table: str) -> int:
    cursor = connection.cursor()
    cursor.execute(f"SELECT COUNT(*) FROM {table}")
    (found,) = cursor.fetchone()
    connection.commit()
    cursor.close()
    return int(found)


def _daily(connection: Any, start: dt.date, end: dt.date) -> Any:
    return reports.run_report(connection, "daily", ReportParams(start, end)).rows


# --------------------------------------------------------------------------- migration


def test_migration_of_a_database_filled_by_the_first_schema(
    mysql_db: MysqlSettings, db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    first = mig.available_migrations()[:1]
    assert mig.migrate(db, first) == 1
    cursor = db.cursor()
    cursor.execute(
        "INSERT INTO gateways (id, din, first_seen) VALUES (1, 'GW-1', '2020-01-01'),"
        " (2, 'GW-2', '2020-01-01')"
    )
    db.commit()
    days = [TODAY - dt.timedelta(days=n) for n in (200, 40, 5, 2, 1)]
    for number, day in enumerate(days):
        _bulk(db, _rows("GW-1", day, start_wh=1000.0 * number), 1)
    _bulk(db, _rows("GW-2", days[3]), 2)
    cursor.execute("INSERT INTO vitals_devices (id, gateway_id, din) VALUES (1, 1, 'PW-1')")
    cursor.execute("INSERT INTO vitals_signals (id, name) VALUES (1, 'METER_X_CTA_I')")
    cursor.execute(
        "INSERT INTO vitals_readings VALUES (1, 1, %s, 1.5), (1, 1, %s, 2.5)",
        (dt.datetime.combine(days[1], dt.time(1)), dt.datetime.combine(days[4], dt.time(1))),
    )
    db.commit()
    before = {table: _count(db, table) for table in RAW}
    raw_daily = reports.run_report(
        db, "daily", ReportParams(days[0], TODAY + dt.timedelta(days=1)), raw=True
    ).rows

    # an interrupted earlier run: meter_readings half copied into its __new table
    cursor.execute("CREATE TABLE meter_readings__new LIKE meter_readings")
    cursor.execute(
        "ALTER TABLE meter_readings__new "
        + retention.layout(TODAY - dt.timedelta(days=31), TODAY + dt.timedelta(days=3))
    )
    cursor.execute(
        "INSERT INTO meter_readings__new SELECT * FROM meter_readings WHERE ts < %s",
        (dt.datetime.combine(days[2], dt.time(11)),),
    )
    db.commit()

    caplog.set_level(logging.INFO)
    assert mig.migrate(db) == len(mig.available_migrations())
    progress = [r.getMessage() for r in caplog.records if "partitioning" in r.getMessage()]
    assert any("meter_readings: copied" in line and "days" in line for line in progress)
    assert any("summarize" in r.getMessage() for r in caplog.records)

    assert {table: _count(db, table) for table in RAW} == before  # nothing lost, no doubles
    for table in RAW:
        partitions = retention.daily_partitions(cursor, table)
        assert partitions is not None and TODAY + dt.timedelta(days=3) in partitions, table
    cursor.execute("SHOW TABLES LIKE '%%\\_\\_%%'")
    assert cursor.fetchall() == []  # no __new or __old left
    # the summaries were built, and the reports read them with the raw numbers
    assert _daily(db, days[0], TODAY + dt.timedelta(days=1)) == raw_daily
    assert any(row[2] for row in raw_daily)  # energy was there to compare
    cursor.close()


class _CrashBefore:
    """A connection whose cursors fail once on the first statement starting with ``text``,
    as if the process died just before it (the statements before it are done)."""

    def __init__(self, connection: Any, text: str) -> None:
        self._connection, self._text, self.crashed = connection, text, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        real = self._connection.cursor(*args, **kwargs)
        outer = self

        class Cursor:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def __iter__(self) -> Any:
                return iter(real)

            def execute(self, sql: str, *rest: Any, **options: Any) -> Any:
                if not outer.crashed and sql.startswith(outer._text):
                    outer.crashed = True
                    raise KeyboardInterrupt  # not a database error: nothing handles it
                return real.execute(sql, *rest, **options)

        return Cursor()


def test_migration_stopped_between_the_swap_and_the_drop_resumes(db: Any) -> None:
    first = mig.available_migrations()[:1]
    assert mig.migrate(db, first) == 1
    cursor = db.cursor()
    cursor.execute("INSERT INTO gateways (id, din, first_seen) VALUES (1, 'GW-1', '2020-01-01')")
    db.commit()
    for day in (TODAY - dt.timedelta(days=3), TODAY - dt.timedelta(days=1)):
        _bulk(db, _rows("GW-1", day), 1)
    before = {table: _count(db, table) for table in RAW}
    crashing = _CrashBefore(db, "DROP TABLE meter_readings__old")
    with pytest.raises(KeyboardInterrupt):
        mig.migrate(crashing)
    assert crashing.crashed
    cursor.execute("SHOW TABLES LIKE 'meter\\_readings\\_\\_old'")
    assert cursor.fetchall()  # swapped, the old copy not yet dropped
    assert retention.daily_partitions(cursor, "meter_readings") is not None
    db.rollback()
    assert mig.migrate(db) == len(mig.available_migrations())  # resumed, not refused
    assert {table: _count(db, table) for table in RAW} == before
    cursor.execute("SHOW TABLES LIKE '%%\\_\\_%%'")
    assert cursor.fetchall() == []
    assert _count(db, "meter_minutes") > 0
    cursor.close()


def test_migrate_refuses_while_a_writer_holds_the_lock(mysql_db: MysqlSettings, db: Any) -> None:
    assert mig.migrate(db, mig.available_migrations()[:1]) == 1
    writer = Database(mysql_db)
    try:
        assert writer.hold_migration_lock()
        refused = pwbus("db", "migrate", settings=mysql_db)
        assert refused.returncode == 1
        assert "holds the migration lock" in refused.stderr
        assert "0002_summaries.sql" in refused.stderr
        assert mig.current_version(db) == 1
    finally:
        writer.close()  # the writer stops: its lock goes with its connection
    done = pwbus("db", "migrate", settings=mysql_db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"schema version {len(mig.available_migrations())}")
    # up to date: a running writer does not stand in the way of saying so
    writer = Database(mysql_db)
    try:
        assert writer.hold_migration_lock()
        again = pwbus("db", "migrate", settings=mysql_db)
        assert again.returncode == 0, again.stderr
    finally:
        writer.close()


# --------------------------------------------------------------------------- retention


def test_partitions_accept_any_date_and_prune_keeps_what_has_no_summary(
    mysql_db: MysqlSettings, db: Any
) -> None:
    mig.migrate(db)
    writer = Database(mysql_db)
    old = [TODAY - dt.timedelta(days=n) for n in (12, 11, 10)]
    recent = TODAY - dt.timedelta(days=2)
    try:
        for number, day in enumerate([*old, recent]):
            writer.write(_rows("GW-1", day, start_wh=500.0 * number))
        # an import of long-gone history (into p_past) and of a far-future clock
        writer.write(_rows("GW-1", dt.date(1999, 6, 1)))
        writer.write(_rows("GW-1", dt.date(2150, 1, 1), hours=1))
    finally:
        writer.close()
    unsummarized = TODAY - dt.timedelta(days=9)
    _bulk(db, _rows("GW-1", unsummarized, start_wh=9000.0), 1)  # a bulk load, no summaries
    cursor = db.cursor()
    cursor.execute("INSERT INTO vitals_devices (id, gateway_id, din) VALUES (1, 1, 'PW-1')")
    cursor.execute("INSERT INTO vitals_signals (id, name) VALUES (1, 'METER_X_CTA_I')")
    cursor.execute(
        "INSERT INTO vitals_readings VALUES (1, 1, %s, 1.0), (1, 1, %s, 2.0)",
        (dt.datetime.combine(TODAY - dt.timedelta(days=5), dt.time()), dt.datetime.now()),
    )
    db.commit()
    spans = [(dt.date(1999, 5, 31), dt.date(1999, 6, 3)), (TODAY - dt.timedelta(days=15), TODAY)]
    before = [_daily(db, *span) for span in spans]
    meters_before = _count(db, "meter_readings")

    done = pwbus("db", "prune", settings=mysql_db, PWBUS_RAW_RETENTION_DAYS="7")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "retention (raw 7 days, vitals 3 days)" in lines[0]
    meter_line = next(line for line in lines if line.startswith("meter_readings:"))
    # every daily partition before the cutoff (31 days back, from the migration, to 8 days
    # ago), empty or not, but the one holding a day without summaries
    first, last = TODAY - dt.timedelta(days=31), TODAY - dt.timedelta(days=8)
    assert f"dropped 23 daily partition(s) ({first} to {last})" in meter_line
    assert "deleted 144 older rows from p_past" in meter_line  # 1999: 36 samples x 4 meters
    assert f"kept 1 day(s) without summaries (from {unsummarized}" in meter_line
    assert any(line.startswith("vitals_readings: dropped 28 daily") for line in lines)
    per_day = 36 * 4
    assert _count(db, "meter_readings") == meters_before - 4 * per_day
    assert _count(db, "vitals_readings") == 1
    # summaries are forever: the reports over the pruned days are unchanged
    assert [_daily(db, *span) for span in spans] == before
    # once summarized, the bulk-loaded day goes too; a second prune changes nothing more
    summaries.summarize(db, unsummarized, unsummarized + dt.timedelta(days=1))
    again = pwbus("db", "prune", settings=mysql_db, PWBUS_RAW_RETENTION_DAYS="7")
    assert f"dropped 1 daily partition(s) ({unsummarized})" in again.stdout
    assert pwbus("db", "prune", settings=mysql_db).stdout.count("nothing to remove") == len(RAW)
    cursor.close()


def test_the_writer_keeper_prunes_once_a_day(mysql_db: MysqlSettings, db: Any) -> None:
    mig.migrate(db)
    writer = Database(mysql_db)
    try:
        writer.write(_rows("GW-1", TODAY - dt.timedelta(days=20)))
        writer.write(_rows("GW-1", TODAY))
    finally:
        writer.close()
    days = [TODAY + dt.timedelta(days=5)]  # the keeper's clock: five days on
    keeper = retention.RetentionKeeper(
        lambda: connect(mysql_db), raw_days=7, vitals_days=3, clock=lambda: days[0], retry_s=0.05
    )
    keeper.start()
    try:
        deadline = dt.datetime.now() + dt.timedelta(seconds=20)
        while keeper.runs < 1 and dt.datetime.now() < deadline:
            keeper._stop.wait(0.05)
    finally:
        keeper.stop()
    assert keeper.runs == 1  # once for the day, however often it wakes
    assert keeper.last_day == days[0]
    cursor = db.cursor()
    partitions = retention.daily_partitions(cursor, "meter_readings")
    assert partitions is not None
    assert TODAY - dt.timedelta(days=20) not in partitions
    assert days[0] + dt.timedelta(days=3) in partitions  # created ahead of its today
    assert _count(db, "meter_readings") == 36 * 4  # today's rows stay
    cursor.close()


def test_layout_planning_is_pure() -> None:
    day = dt.date(2026, 12, 1)
    assert retention.partition_name(day) == "p20261201"
    assert retention.days_to_add([day], day, 2) == [dt.date(2026, 12, 2), dt.date(2026, 12, 3)]
    assert retention.days_to_add([dt.date(2026, 12, 5)], day, 2) == []
    assert retention.cutoff(day, 0) is None
    assert retention.cutoff(day, 7) == dt.date(2026, 11, 24)
    clause = retention.layout(day, day)
    assert "p_past VALUES LESS THAN ('2026-12-01 00:00:00')" in clause
    assert "p20261201 VALUES LESS THAN ('2026-12-02 00:00:00')" in clause
    assert clause.endswith("PARTITION p_future VALUES LESS THAN (MAXVALUE))")


def test_the_keeper_turns_itself_off_without_alter_privileges(
    mysql_db: MysqlSettings, db: Any, caplog: pytest.LogCaptureFixture
) -> None:
    mig.migrate(db)
    user = f"pwbus_k_{uuid.uuid4().hex[:8]}"
    cursor = db.cursor()
    cursor.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'Keeper-pw1'")
    cursor.execute(f"GRANT SELECT, INSERT, DELETE ON `{mysql_db.database}`.* TO '{user}'@'%'")
    try:
        auth = f"mysql://{user}:Keeper-pw1@{mysql_db.host}:{mysql_db.port}/{mysql_db.database}"
        limited = MysqlSettings(url=auth)
        keeper = retention.RetentionKeeper(
            lambda: connect(limited),
            raw_days=7,
            vitals_days=3,
            clock=lambda: TODAY + dt.timedelta(days=10),  # partitions to add: needs ALTER
            retry_s=0.05,
        )
        caplog.set_level(logging.WARNING)
        keeper.start()
        keeper._thread.join(20)
        assert not keeper._thread.is_alive()  # it stopped by itself
        warnings = [r.getMessage() for r in caplog.records if "retention is off" in r.getMessage()]
        assert len(warnings) == 1 and "pwbus db prune" in warnings[0]
    finally:
        cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        cursor.close()
