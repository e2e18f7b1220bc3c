"""The Grafana dashboard's queries, run on the real MariaDB as Grafana would send them.

Grafana's MySQL data source replaces its macros before sending a query; the expansions
here follow Grafana's documentation of the MySQL data source:

  $__timeFilter(c)        c BETWEEN FROM_UNIXTIME(from) AND FROM_UNIXTIME(to)
  $__timeFrom()           FROM_UNIXTIME(from)
  $__timeTo()             FROM_UNIXTIME(to)
  $__timeGroup(c, '5m')   cast(cast(UNIX_TIMESTAMP(c)/(300) as signed)*300 as signed)
  $__timeGroupAlias(c,i)  the same, AS "time"
  $__unixEpochFrom()      from (epoch seconds), $__unixEpochTo() likewise
  $__interval             the panel's interval (e.g. 5m), $gateway a quoted list

with the session time zone +00:00, as the dashboard's README asks of the data source.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from powerwall_bus.consumers.mysql import reports
from powerwall_bus.consumers.mysql.connection import connect
from powerwall_bus.consumers.mysql.db import Database
from powerwall_bus.consumers.mysql.migrate import migrate
from powerwall_bus.consumers.mysql.reports import ReportParams
from powerwall_bus.consumers.mysql.rows import GridStatusRow, MeterRow, Rows, SoeRow
from powerwall_bus.shared.settings import MysqlSettings
from tests.support import services

DASHBOARD = Path(__file__).resolve().parents[1] / "configuration" / "grafana" / "powerwall-bus.json"
START = dt.datetime(2026, 5, 1)
DAYS = 3
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(interval: str) -> int:
    match = re.fullmatch(r"'?(\d+)([smhd])'?", interval.strip())
    assert match, interval
    return int(match.group(1)) * UNITS[match.group(2)]


def expand(
    sql: str, start: dt.datetime, end: dt.datetime, interval: str, gateways: list[str]
) -> str:
    """Grafana's macro expansion (as documented for the MySQL data source)."""
    epoch_from = int(start.replace(tzinfo=dt.UTC).timestamp())
    epoch_to = int(end.replace(tzinfo=dt.UTC).timestamp())
    sql = sql.replace("$__interval", interval)
    sql = sql.replace("$gateway", ", ".join(f"'{g}'" for g in gateways))

    def group(column: str, step: str) -> str:
        n = _seconds(step)
        return f"cast(cast(UNIX_TIMESTAMP({column})/({n}) as signed)*{n} as signed)"

    sql = re.sub(
        r"\$__timeGroupAlias\(([^,()]+),\s*([^)]+)\)",
        lambda m: group(m.group(1), m.group(2)) + ' AS "time"',
        sql,
    )
    sql = re.sub(
        r"\$__timeGroup\(([^,()]+),\s*([^)]+)\)", lambda m: group(m.group(1), m.group(2)), sql
    )
    sql = re.sub(
        r"\$__timeFilter\(([^()]+)\)",
        lambda m: f"{m.group(1)} BETWEEN FROM_UNIXTIME({epoch_from}) AND FROM_UNIXTIME({epoch_to})",
        sql,
    )
    sql = sql.replace("$__timeFrom()", f"FROM_UNIXTIME({epoch_from})")
    sql = sql.replace("$__timeTo()", f"FROM_UNIXTIME({epoch_to})")
    sql = sql.replace("$__unixEpochFrom()", str(epoch_from))
    sql = sql.replace("$__unixEpochTo()", str(epoch_to))
    assert "$" not in sql, sql
    return sql


def _data() -> list[Rows]:
    batches = []
    for gateway, scale in (("GW-1", 1.0), ("GW-2", 2.0)):
        rows = Rows()
        for n in range(DAYS * 24 * 12):  # every 5 minutes
            ts = START + dt.timedelta(minutes=5 * n)
            wh = 25.0 * n * scale
            for meter, power in (
                ("site", 500.0),
                ("solar", 1500.0),
                ("load", 800.0),
                ("battery", -200.0),
            ):
                rows.meters.append(
                    MeterRow(
                        gateway, ts, meter, power * scale, None, None, None, None, None, wh, wh / 2
                    )
                )
            rows.soe.append(SoeRow(gateway, ts, 5 + 0.95 * (50 + n % 40), 0.0))
        rows.grid_status = [
            GridStatusRow(gateway, START, "SystemGridConnected", None),
            GridStatusRow(gateway, START + dt.timedelta(hours=30), "SystemIslandedActive", None),
            GridStatusRow(gateway, START + dt.timedelta(hours=31), "SystemGridConnected", None),
        ]
        batches.append(rows)
    return batches


@pytest.fixture(scope="module")
def grafana_db(mysql_admin_url: str) -> Iterator[MysqlSettings]:
    """One database holding the data, shared by this module's (read-only) tests."""
    with services.scratch_database(mysql_admin_url) as settings:
        connection = connect(settings)
        migrate(connection)
        connection.close()
        writer = Database(settings)
        try:
            for rows in _data():
                writer.write(rows)
        finally:
            writer.close()
        yield settings


@pytest.fixture
def db(grafana_db: MysqlSettings) -> Iterator[Any]:
    """A connection as Grafana's data source opens one (session time zone +00:00)."""
    connection = connect(grafana_db)
    cursor = connection.cursor()
    cursor.execute("SET SESSION time_zone = '+00:00'")
    cursor.close()
    yield connection
    connection.close()


def _panels() -> dict[str, dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    return {panel["title"]: panel for panel in dashboard["panels"]}


def _run(db: Any, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    cursor = db.cursor()
    cursor.execute(sql)
    rows = cursor.fetchall()
    columns = [str(d[0]) for d in cursor.description]
    cursor.close()
    db.commit()
    return columns, rows


def test_the_dashboard_is_grafana_json_over_the_views() -> None:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    assert dashboard["__inputs"][0]["pluginId"] == "mysql"
    titles = set(_panels())
    assert {"Power flow", "Daily energy (UTC days)", "State of energy", "Outages"} <= titles
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert re.search(r"FROM grafana_\w+", target["rawSql"]), panel["title"]


@pytest.mark.parametrize("interval", ["1m", "5m", "1h"])
def test_every_panel_query_runs_and_answers(db: Any, interval: str) -> None:
    start, end = START, START + dt.timedelta(days=DAYS)
    for title, panel in _panels().items():
        for target in panel["targets"]:
            sql = expand(target["rawSql"], start, end, interval, ["GW-1", "GW-2"])
            columns, rows = _run(db, sql)
            assert rows, title
            if target["format"] == "time_series":
                assert columns[0] == "time", title
                assert all(value is not None for row in rows for value in row[1:]), title
    columns, rows = _run(
        db,
        expand(_panels()["Power flow"]["targets"][0]["rawSql"], start, end, interval, ["GW-1"]),
    )
    assert columns == ["time", "grid", "solar", "home", "battery"]
    step = _seconds(interval)
    assert all(int(row[0]) % step == 0 for row in rows)
    assert {float(row[1]) for row in rows} == {500.0}  # GW-1's grid power, mean of each bucket


def test_daily_energy_panel_matches_the_daily_report(db: Any) -> None:
    start, end = START, START + dt.timedelta(days=DAYS)
    sql = expand(
        _panels()["Daily energy (UTC days)"]["targets"][0]["rawSql"], start, end, "1h", ["GW-2"]
    )
    _columns, rows = _run(db, sql)
    daily = reports.run_report(
        db, "daily", ReportParams(start.date(), end.date(), gateway="GW-2")
    ).records()
    assert [round(float(row[1]), 3) for row in rows] == [r["grid_import_kwh"] for r in daily]
    assert [round(float(row[3]), 3) for row in rows] == [r["solar_kwh"] for r in daily]


def test_grid_and_outage_panels_show_the_outage(db: Any) -> None:
    start, end = START + dt.timedelta(hours=29), START + dt.timedelta(hours=40)
    panels = _panels()
    _columns, timeline = _run(
        db,
        expand(panels["Grid (1 = connected)"]["targets"][0]["rawSql"], start, end, "1m", ["GW-1"]),
    )
    # the state in force at the start of the range, then the outage and the return
    assert [int(row[1]) for row in timeline] == [1, 0, 1]
    _columns, outages = _run(
        db, expand(panels["Outages"]["targets"][0]["rawSql"], start, end, "1m", ["GW-1", "GW-2"])
    )
    assert [(row[0], row[2]) for row in outages] == [
        (START + dt.timedelta(hours=30), "SystemIslandedActive")
    ] * 2
