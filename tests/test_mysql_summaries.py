"""Summaries: kept by the writer's transactions, rebuilt by `pwbus db summarize`, read by
the reports with the numbers of the raw-data reports.

Two data sets, on the real MariaDB:

* the hand-worked set of test_mysql_reports (hourly samples, a counter reset, jitter, a day
  without data, three gateways), bulk-loaded into the raw tables and then summarized;
* a generated set around the daylight-saving change of 2024-03-31 in Europe/Berlin: two
  gateways, samples every minute with gaps (one of 3 hours over midnight), a counter reset,
  jitter drops, NULL counters and NULL powers, written through the writer's database layer
  in batches that arrive out of order and are delivered twice.

Every report is compared, raw against summaries, over ranges that cut days, cross the gap and
the DST change, in UTC, Europe/Berlin and Asia/Kolkata (a half-hour offset: minutes).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

import pytest

from powerwall_bus.consumers.mysql import reports, summaries
from powerwall_bus.consumers.mysql.connection import connect
from powerwall_bus.consumers.mysql.db import Database
from powerwall_bus.consumers.mysql.migrate import migrate
from powerwall_bus.consumers.mysql.reports import ReportParams
from powerwall_bus.consumers.mysql.rows import MeterRow, Rows, SoeRow
from powerwall_bus.shared.settings import MysqlSettings
from tests.test_mysql_reports import load_data_set

REPORTS = ("daily", "monthly", "hourly", "peaks", "completeness", "outages")
SUMMARY_TABLES = ("meter_minutes", "meter_hours", "soe_minutes", "block_hours")


def _compare(connection: Any, start: str, end: str, **kwargs: Any) -> int:
    """Run every report raw and from summaries; assert equal; the rows compared."""
    params = ReportParams(dt.date.fromisoformat(start), dt.date.fromisoformat(end), **kwargs)
    compared = 0
    for name in REPORTS:
        fast = reports.run_report(connection, name, params)
        slow = reports.run_report(connection, name, params, raw=True)
        assert fast.columns == slow.columns, name
        assert fast.rows == slow.rows, (name, start, end, kwargs)
        compared += len(fast.rows)
    return compared


def _snapshot(connection: Any) -> dict[str, list[tuple[Any, ...]]]:
    cursor = connection.cursor()
    found = {}
    for table in SUMMARY_TABLES:
        cursor.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3")
        found[table] = list(cursor.fetchall())
    connection.commit()
    cursor.close()
    return found


def _assert_same(got: dict[str, list[Any]], expected: dict[str, list[Any]]) -> None:
    """Equal summaries, or the first few differing buckets of each table."""
    problems = []
    for table in SUMMARY_TABLES:
        width = 3 if table == "block_hours" else 2
        a = {row[:width]: row for row in got[table]}
        b = {row[:width]: row for row in expected[table]}
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        problems += [f"{table} {k}: {a.get(k)} != {b.get(k)}" for k in keys[:3]]
    assert not problems, "\n".join(problems)


@pytest.fixture
def connection(mysql_db: MysqlSettings) -> Iterator[Any]:
    db = connect(mysql_db)
    migrate(db)
    yield db
    db.close()


# --------------------------------------------------------------------------- the hand set


def test_hand_worked_set_reports_match_after_summarize(connection: Any) -> None:
    load_data_set(connection)
    assert _snapshot(connection)["meter_minutes"] == []  # bulk loads are not summarized
    done = summaries.summarize(connection)
    assert done["days"] > 0
    first = _snapshot(connection)
    assert first["meter_hours"] and first["block_hours"]
    compared = 0
    for start, end in (("2024-03-01", "2024-03-04"), ("2024-03-02", "2024-03-05")):
        for zone in ("UTC", "Europe/Berlin", "Asia/Kolkata"):
            compared += _compare(connection, start, end, timezone=zone)
    assert compared > 50
    compared += _compare(connection, "2024-03-01", "2024-03-04", gateway="GW-B")
    # summarize twice changes nothing
    summaries.summarize(connection)
    _assert_same(_snapshot(connection), first)
    daily = reports.run_report(
        connection, "daily", ReportParams(dt.date(2024, 3, 1), dt.date(2024, 3, 4))
    ).records()
    a = {r["day"]: r for r in daily if r["gateway"] == "GW-A"}
    # the hand-worked numbers of test_mysql_reports: the reset and the jitter handled
    assert a["2024-03-01"]["grid_import_kwh"] == 2.4
    assert a["2024-03-02"]["grid_import_kwh"] is None
    assert a["2024-03-03"]["solar_kwh"] == 4.8 + 4.8


# --------------------------------------------------------------------------- the writer set

START = dt.datetime(2024, 3, 29, 20, 0)
STEP = dt.timedelta(seconds=60)


def _generated(gateway: str, seed: int) -> list[Rows]:
    """Batches of meter and soe rows (about 4 days at 20 s), as the writer would get them."""
    rng = random.Random(seed)
    counters = {m: [1000.0 * (i + 1), 500.0 * (i + 1)] for i, m in enumerate(summaries.METERS)}
    batches: list[Rows] = []
    ts = START
    end = START + dt.timedelta(days=4)
    batch = Rows()
    while ts < end:
        if dt.datetime(2024, 3, 30, 22, 30) <= ts < dt.datetime(2024, 3, 31, 1, 30):
            ts += STEP  # a 3-hour gap over midnight (and the DST change in Berlin)
            continue
        if rng.random() < 0.03:
            ts += STEP * rng.randint(2, 40)  # short gaps
        for meter in summaries.METERS:
            inc = counters[meter]
            # whole Wh, so a day's kWh never ends on a rounding tie at 3 decimals
            inc[0] += rng.randint(0, 30)
            inc[1] += rng.randint(0, 20)
            e_in, e_out = inc
            roll = rng.random()
            if roll < 0.01:
                e_out -= 1.0  # jitter: a drop of up to 1 Wh
            elif roll < 0.015:
                inc[0] = e_in = float(rng.randint(0, 50))  # the counter was reset
            nulls = rng.random() < 0.01
            power = None if rng.random() < 0.01 else float(rng.randint(-5000, 5000))
            batch.meters.append(
                MeterRow(
                    gateway,
                    ts,
                    meter,
                    power,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None if nulls else e_in,
                    None if nulls else e_out,
                )
            )
        batch.soe.append(SoeRow(gateway, ts, rng.uniform(5, 100), 0.0))
        if len(batch.meters) >= 4 * rng.randint(20, 200):
            batches.append(batch)
            batch = Rows()
        ts += STEP
    batches.append(batch)
    return batches


def test_writer_keeps_summaries_exact_out_of_order_and_redelivered(
    mysql_db: MysqlSettings, connection: Any
) -> None:
    batches = _generated("GW-1", 1) + _generated("GW-2", 2)
    rng = random.Random(7)
    order = list(range(len(batches)))
    rng.shuffle(order[: len(order) // 2])  # late and early batches
    sample = order[: len(order) // 2]
    rng.shuffle(sample)
    order = sample + order[len(order) // 2 :]
    database = Database(mysql_db)
    try:
        for index in order:
            database.write(batches[index])
        for index in rng.sample(range(len(batches)), 10):  # redelivered batches
            database.write(batches[index])
    finally:
        database.close()
    by_writer = _snapshot(connection)
    assert len(by_writer["meter_minutes"]) > 5000
    assert by_writer["soe_minutes"]
    # rebuilt from scratch, the summaries are the same
    cursor = connection.cursor()
    for table in SUMMARY_TABLES:
        cursor.execute(f"DELETE FROM {table}")
    connection.commit()
    summaries.summarize(connection)
    _assert_same(_snapshot(connection), by_writer)
    compared = 0
    for start, end, zone in (
        ("2024-03-29", "2024-04-03", "UTC"),
        ("2024-03-29", "2024-04-03", "Europe/Berlin"),
        ("2024-03-31", "2024-04-01", "Europe/Berlin"),
        ("2024-03-30", "2024-04-02", "Asia/Kolkata"),
        ("2024-03-29", "2024-04-03", "America/New_York"),
    ):
        compared += _compare(connection, start, end, timezone=zone)
    assert compared > 100
    # the SoE summary agrees with the raw readings
    cursor.execute(
        "SELECT COUNT(*), MIN(percentage), MAX(percentage) FROM soe_readings WHERE gateway_id = 1"
    )
    raw_count, raw_min, raw_max = cursor.fetchone()
    cursor.execute(
        "SELECT SUM(samples), MIN(soe_min), MAX(soe_max) FROM soe_minutes WHERE gateway_id = 1"
    )
    assert tuple(cursor.fetchone()) == (raw_count, raw_min, raw_max)
    cursor.close()


def test_summarize_range_keeps_pruned_days(connection: Any) -> None:
    load_data_set(connection)
    summaries.summarize(connection)
    before = _snapshot(connection)
    params = ReportParams(dt.date(2024, 3, 1), dt.date(2024, 3, 4))
    daily = reports.run_report(connection, "daily", params)
    cursor = connection.cursor()
    cursor.execute("DELETE FROM meter_readings WHERE ts < '2024-03-03'")  # as pruning does
    cursor.execute("DELETE FROM battery_block_readings WHERE ts < '2024-03-03'")
    connection.commit()
    done = summaries.summarize(connection, dt.date(2024, 2, 1), dt.date(2024, 3, 10))
    assert done["skipped"] == 1  # GW-A's oldest raw day: its first delta is unknowable now
    _assert_same(_snapshot(connection), before)
    assert reports.run_report(connection, "daily", params).rows == daily.rows
    cursor.close()
