"""The SQL reports against a small data set whose answers were worked out by hand.

The data (all times UTC, one sample an hour so every number stays small):

Gateway GW-A (first seen 2024-02-28):
  * a sample at 2024-02-29 23:00, the last one before the range ("hour 0" of the counters);
  * 2024-03-01: a sample every hour 00:00..23:00 except 05:00 (23 samples);
  * 2024-03-02: no sample at all (the writer was down);
  * 2024-03-03: a sample every hour 00:00..23:00 (24 samples);
  * 2024-03-04 00:00: one sample whose counters jump by 1,000,000 Wh (must stay outside
    ranges that end at 2024-03-04).
  Energy counters grow linearly per hour since 2024-02-29 23:00 (Wh per hour):
    site imported 100, site exported 50, solar exported 200, load imported 300,
    battery imported (charged) 40, battery exported (discharged) 30;
  except: the site import counter resets at 2024-03-03 12:00 (reads 30, then +100/h), and
  the site export counter dips 0.4 Wh at 2024-03-03 06:00 (meter jitter, not a reset).
  Powers (W): 2024-03-01 hour h: site 1000 - 100h, solar 100h, load 2000, battery -500;
  2024-03-03 hour h: site 500 + 10h (4000 at 14:00 and at 16:00), solar 100h, load 2000,
  battery 300; the sample before the range: site 12345; the 03-04 sample: site 77777.
  Battery blocks: P1 13000 Wh (03-01) and 14000 Wh (03-03), P2 13500 Wh (03-01), and
  P1 1000 Wh on 02-28 (before the range): capacity 13500 + 13500 = 27 kWh.
  Grid: connected 02-28 10:00, down 12:00-13:00 (before the range); down 03-01 23:30,
  TransitionToGrid 03-02 00:10, connected 03-02 00:45 (one outage of 75 min over
  midnight); connected again 03-02 06:00 (a repeated state, not a change); down 03-03 20:00
  until 03-05 01:00.
Gateway GW-B (first seen 2024-03-01 10:00): samples at 03-01 10:00 and 11:00, site import
  50000 -> 57000 Wh, every other counter constant; site power 9000 W then 8000 W; grid down
  03-01 09:00-09:30.
Gateway GW-C: first seen 2024-03-10, no data (after the ranges used here).
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from powerwall_bus.consumers.mysql import plots, reports, summaries
from powerwall_bus.consumers.mysql.connection import connect
from powerwall_bus.consumers.mysql.migrate import migrate
from powerwall_bus.consumers.mysql.reports import ReportParams, ReportResult
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import MysqlSettings
from tests.support import services

REPO = Path(__file__).resolve().parents[1]
PRIOR = datetime(2024, 2, 29, 23, 0)
# MySQL 8's default modes, so a query MariaDB lets through but MySQL 8 refuses fails here too
MYSQL8_SQL_MODE = (
    "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,"
    "ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
)
RATES = {  # Wh per hour: (imported, exported)
    "site": (100.0, 50.0),
    "solar": (0.0, 200.0),
    "load": (300.0, 0.0),
    "battery": (40.0, 30.0),
}
BASE = {
    "site": (1000.0, 500.0),
    "solar": (1.0, 2000.0),
    "load": (3000.0, 0.0),
    "battery": (4000.0, 3500.0),
}


def _linear(meter: str, at: datetime) -> tuple[float, float]:
    hours = (at - PRIOR).total_seconds() / 3600
    base_in, base_out = BASE[meter]
    rate_in, rate_out = RATES[meter]
    return base_in + rate_in * hours, base_out + rate_out * hours


def _gateway_a_rows() -> list[tuple[Any, ...]]:
    """(ts, meter, power, imported, exported) for GW-A."""
    rows: list[tuple[Any, ...]] = []
    powers = {"site": 12345.0, "solar": 0.0, "load": 0.0, "battery": 0.0}
    for meter in RATES:
        rows.append((PRIOR, meter, powers[meter], *_linear(meter, PRIOR)))
    for hour in range(24):
        if hour == 5:
            continue
        at = datetime(2024, 3, 1, hour)
        powers = {
            "site": 1000.0 - 100 * hour,
            "solar": 100.0 * hour,
            "load": 2000.0,
            "battery": -500.0,
        }
        for meter in RATES:
            rows.append((at, meter, powers[meter], *_linear(meter, at)))
    for hour in range(24):
        at = datetime(2024, 3, 3, hour)
        site_power = 4000.0 if hour in (14, 16) else 500.0 + 10 * hour
        powers = {"site": site_power, "solar": 100.0 * hour, "load": 2000.0, "battery": 300.0}
        for meter in RATES:
            imported, exported = _linear(meter, at)
            if meter == "site" and hour >= 12:
                imported = 30.0 + 100 * (hour - 12)  # the counter was reset
            if meter == "site" and hour == 6:
                exported = _linear("site", datetime(2024, 3, 3, 5))[1] - 0.4  # jitter
            rows.append((at, meter, powers[meter], imported, exported))
    at = datetime(2024, 3, 4, 0)
    for meter in RATES:
        imported, exported = _linear(meter, at)
        if meter == "site":
            imported = 30.0 + 100 * 12
        rows.append(
            (at, meter, 77777.0 if meter == "site" else 0.0, imported + 1e6, exported + 1e6)
        )
    return rows


def _gateway_b_rows() -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for at, site_in, site_power in (
        (datetime(2024, 3, 1, 10), 50000.0, 9000.0),
        (datetime(2024, 3, 1, 11), 57000.0, 8000.0),
    ):
        rows.append((at, "site", site_power, site_in, 100.0))
        rows.append((at, "solar", 0.0, 0.0, 500.0))
        rows.append((at, "load", 1000.0, 800.0, 0.0))
        rows.append((at, "battery", 0.0, 10.0, 20.0))
    return rows


def load_data_set(connection: Any) -> None:
    """Insert the data set described in the module docstring."""
    cursor = connection.cursor()
    cursor.executemany(
        "INSERT INTO gateways (id, din, first_seen) VALUES (%s, %s, %s)",
        [
            (1, "GW-A", datetime(2024, 2, 28, 10)),
            (2, "GW-B", datetime(2024, 3, 1, 10)),
            (3, "GW-C", datetime(2024, 3, 10)),
        ],
    )
    meter_sql = (
        "INSERT INTO meter_readings (gateway_id, ts, meter, instant_power, energy_imported,"
        " energy_exported) VALUES (%s, %s, %s, %s, %s, %s)"
    )
    cursor.executemany(meter_sql, [(1, *row) for row in _gateway_a_rows()])
    cursor.executemany(meter_sql, [(2, *row) for row in _gateway_b_rows()])
    cursor.executemany(
        "INSERT INTO battery_block_readings (gateway_id, ts, serial, nominal_full_pack_energy)"
        " VALUES (%s, %s, %s, %s)",
        [
            (1, datetime(2024, 2, 28, 12), "P1", 1000.0),
            (1, datetime(2024, 3, 1, 12), "P1", 13000.0),
            (1, datetime(2024, 3, 3, 12), "P1", 14000.0),
            (1, datetime(2024, 3, 1, 12), "P2", 13500.0),
        ],
    )
    cursor.executemany(
        "INSERT INTO grid_status_changes (gateway_id, ts, grid_status) VALUES (%s, %s, %s)",
        [
            (1, datetime(2024, 2, 28, 10), "SystemGridConnected"),
            (1, datetime(2024, 2, 28, 12), "SystemIslandedActive"),
            (1, datetime(2024, 2, 28, 13), "SystemGridConnected"),
            (1, datetime(2024, 3, 1, 23, 30), "SystemIslandedActive"),
            (1, datetime(2024, 3, 2, 0, 10), "SystemTransitionToGrid"),
            (1, datetime(2024, 3, 2, 0, 45), "SystemGridConnected"),
            (1, datetime(2024, 3, 2, 6), "SystemGridConnected"),
            (1, datetime(2024, 3, 3, 20), "SystemIslandedActive"),
            (1, datetime(2024, 3, 5, 1), "SystemGridConnected"),
            (2, datetime(2024, 3, 1, 8), "SystemGridConnected"),
            (2, datetime(2024, 3, 1, 9), "SystemIslandedActive"),
            (2, datetime(2024, 3, 1, 9, 30), "SystemGridConnected"),
        ],
    )
    connection.commit()
    cursor.close()


@pytest.fixture(scope="module")
def report_db(mysql_admin_url: str) -> Iterator[MysqlSettings]:
    """One migrated database holding the data set, shared by this module's (read-only) tests."""
    with services.scratch_database(mysql_admin_url) as settings:
        connection = connect(settings)
        migrate(connection)
        load_data_set(connection)
        summaries.summarize(connection)  # a bulk load: the reports read the summaries
        connection.close()
        yield settings


@pytest.fixture
def db(report_db: MysqlSettings) -> Iterator[Any]:
    """A connection with MySQL 8's strict SQL modes."""
    connection = connect(report_db)
    cursor = connection.cursor()
    cursor.execute(f"SET SESSION sql_mode = '{MYSQL8_SQL_MODE}'")
    cursor.close()
    yield connection
    connection.close()


def run(db: Any, name: str, start: str, end: str, **kwargs: Any) -> ReportResult:
    params = ReportParams(date.fromisoformat(start), date.fromisoformat(end), **kwargs)
    return reports.run_report(db, name, params)


def pwbus(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "PWBUS_"))}
    env["MYSQL_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "powerwall_bus", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def db_url(settings: MysqlSettings, password: str | None = None) -> str:
    secret = settings.password if password is None else password
    auth = f"{settings.user}:{secret}" if secret else settings.user
    return f"mysql://{auth}@{settings.host}:{settings.port}/{settings.database}"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --------------------------------------------------------------------------- daily, monthly

DAILY_COLUMNS = (
    "day",
    "gateway",
    "grid_import_kwh",
    "grid_export_kwh",
    "solar_kwh",
    "home_kwh",
    "battery_charged_kwh",
    "battery_discharged_kwh",
    "self_consumption_pct",
    "self_sufficiency_pct",
    "battery_cycles",
)
NO_DATA = (None,) * 9


def test_daily_energy_matches_the_hand_computation(db: Any) -> None:
    result = run(db, "daily", "2024-03-01", "2024-03-04")
    assert result.columns == DAILY_COLUMNS
    assert result.rows == (
        # 03-01, GW-A: 24 hourly deltas (from 02-29 23:00 to 03-01 23:00; the missing 05:00
        # sample just makes one delta span 2 h): import 24*100 Wh, export 24*50, solar 24*200,
        # home 24*300, charged 24*40, discharged 24*30.
        # self-consumption (4.8 - 1.2) / 4.8 = 75 %; self-sufficiency (7.2 - 2.4) / 7.2 = 66.7 %
        # cycles 0.72 kWh / 27 kWh = 0.0267
        ("2024-03-01", "GW-A", 2.4, 1.2, 4.8, 7.2, 0.96, 0.72, 75.0, 66.7, 0.027),
        # GW-B: one delta, 57000 - 50000 Wh imported; nothing else moved; no solar and no home
        # use, so no percentages; no battery blocks, so no cycles.
        ("2024-03-01", "GW-B", 7.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, None, None),
        ("2024-03-02", "GW-A", *NO_DATA),  # no reading that day: unknown, not 0
        ("2024-03-02", "GW-B", *NO_DATA),
        # 03-03, GW-A: the first delta spans the 25 h gap from 03-01 23:00 and belongs to 03-03,
        # so every meter has 25 + 23 = 48 hours of energy, except the site import, reset at
        # 12:00: 25*100 (gap) + 11*100 (01..11h) + 30 (since the reset) + 11*100 (13..23h)
        # = 4730 Wh. Site export: 48*50 = 2400 Wh plus 0.4 Wh of jitter counted back after the
        # dip (the dip itself is not a reset) = 2400.4 Wh -> 2.4.
        # self-consumption (9600 - 2400.4) / 9600 = 75.0 %; self-sufficiency
        # (14400 - 4730) / 14400 = 67.15 %; cycles 1.44 / 27 = 0.0533
        ("2024-03-03", "GW-A", 4.73, 2.4, 9.6, 14.4, 1.92, 1.44, 75.0, 67.2, 0.053),
        ("2024-03-03", "GW-B", *NO_DATA),
    )


def test_daily_gateway_filter_keeps_only_that_gateway(db: Any) -> None:
    result = run(db, "daily", "2024-03-01", "2024-03-02", gateway="GW-B")
    assert result.rows == (("2024-03-01", "GW-B", 7.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, None, None),)
    assert set(run(db, "daily", "2024-03-01", "2024-03-02", gateway="GW-A").column("gateway")) == {
        "GW-A"
    }


def test_gateway_seen_only_after_the_range_is_left_out(db: Any) -> None:
    assert "GW-C" not in run(db, "daily", "2024-03-01", "2024-03-04").column("gateway")
    later = run(db, "daily", "2024-03-10", "2024-03-11")
    assert later.column("gateway") == ["GW-A", "GW-B", "GW-C"]


def test_unknown_gateway_is_a_clear_error(db: Any) -> None:
    with pytest.raises(ConfigError, match=r"no gateway 'GW-X'.*GW-A, GW-B, GW-C"):
        run(db, "daily", "2024-03-01", "2024-03-02", gateway="GW-X")


def test_first_day_of_a_range_counts_from_the_sample_before_it(db: Any) -> None:
    # Range starting 03-03: the 25 h delta from 03-01 23:00 still belongs to 03-03, and the
    # 03-04 00:00 sample (a jump of 1,000,000 Wh) stays outside a range ending 03-04.
    result = run(db, "daily", "2024-03-03", "2024-03-04", gateway="GW-A")
    # cycles: only P1's 14000 Wh block reading falls in this range, so the capacity is
    # 14 kWh and 1.44 / 14 = 0.103 (P2 has no reading in the range)
    assert result.rows == (
        ("2024-03-03", "GW-A", 4.73, 2.4, 9.6, 14.4, 1.92, 1.44, 75.0, 67.2, 0.103),
    )


def test_the_sample_at_the_end_of_the_range_belongs_to_the_next_day(db: Any) -> None:
    result = run(db, "daily", "2024-03-04", "2024-03-05", gateway="GW-A")
    (row,) = result.rows
    # 03-03 23:00 -> 03-04 00:00: one hour at 300 Wh plus the 1,000,000 Wh jump
    assert row[0] == "2024-03-04"
    assert row[5] == 1000.3


def test_days_in_a_time_zone(db: Any) -> None:
    # Europe/Berlin is UTC+1 in March: its 03-01 runs 02-29 23:00 to 03-01 23:00 UTC. The
    # sample at 02-29 23:00 is now inside the range and has no earlier one: no delta. The
    # deltas up to 03-01 22:00 UTC add up to the counter's change from 02-29 23:00 to then:
    # 23 h * 300 Wh = 6.9 kWh; 03-01 23:00 UTC is 03-02 00:00 in Berlin: 1 h, 0.3 kWh.
    result = run(db, "daily", "2024-03-01", "2024-03-03", gateway="GW-A", timezone="Europe/Berlin")
    home = dict(zip(result.column("day"), result.column("home_kwh"), strict=True))
    assert home == {"2024-03-01": 6.9, "2024-03-02": 0.3}


def test_monthly_matches_the_hand_computation(db: Any) -> None:
    result = run(db, "monthly", "2024-03-01", "2024-03-04")
    assert result.columns == ("month", *DAILY_COLUMNS[1:])
    assert result.rows == (
        # GW-A: 03-01 + 03-03 of the daily test: import 2400 + 4730 = 7130 Wh, export
        # 1200 + 2400.4 = 3600.4 Wh, solar 4800 + 9600, home 7200 + 14400, charged 960 + 1920,
        # discharged 720 + 1440; self-consumption (14400 - 3600.4) / 14400 = 75.0 %,
        # self-sufficiency (21600 - 7130) / 21600 = 66.99 %, cycles 2.16 / 27 = 0.08
        ("2024-03", "GW-A", 7.13, 3.6, 14.4, 21.6, 2.88, 2.16, 75.0, 67.0, 0.08),
        ("2024-03", "GW-B", 7.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, None, None),
    )


def test_months_add_up_to_their_days(db: Any) -> None:
    daily = run(db, "daily", "2024-02-01", "2024-04-01", gateway="GW-A")
    monthly = run(db, "monthly", "2024-02-01", "2024-04-01", gateway="GW-A")
    assert monthly.column("month") == ["2024-02", "2024-03"]
    for column in DAILY_COLUMNS[2:8]:
        march = [
            float(v)
            for d, v in zip(daily.column("day"), daily.column(column), strict=True)
            if str(d).startswith("2024-03") and isinstance(v, int | float)
        ]
        assert monthly.column(column)[1] == pytest.approx(sum(march), abs=0.002)
    # February holds only the 02-29 23:00 sample, which has no earlier one: no energy known
    assert monthly.rows[0][2:8] == (None,) * 6
    # March includes the 03-04 sample's 1,000,000 Wh jump: the days and the month agree on it
    assert monthly.column("home_kwh")[1] == pytest.approx(7.2 + 14.4 + 1000.3)


# --------------------------------------------------------------------------- hourly, peaks


def test_hourly_profile_matches_the_hand_computation(db: Any) -> None:
    result = run(db, "hourly", "2024-03-01", "2024-03-04")
    assert result.columns == (
        "hour",
        "gateway",
        "grid_w",
        "solar_w",
        "home_w",
        "battery_w",
        "samples",
    )
    rows = {(r["gateway"], r["hour"]): r for r in result.records()}
    assert len([key for key in rows if key[0] == "GW-A"]) == 24
    # hour 0: site (1000 on 03-01 + 500 on 03-03) / 2, battery (-500 + 300) / 2
    assert rows[("GW-A", 0)] == {
        "hour": 0,
        "gateway": "GW-A",
        "grid_w": 750.0,
        "solar_w": 0.0,
        "home_w": 2000.0,
        "battery_w": -100.0,
        "samples": 2,
    }
    # hour 5: 03-01 05:00 is missing, so only 03-03's reading: site 500 + 50, battery 300
    assert (rows[("GW-A", 5)]["grid_w"], rows[("GW-A", 5)]["battery_w"]) == (550.0, 300.0)
    assert rows[("GW-A", 5)]["samples"] == 1
    # hour 14: (1000 - 1400 + 4000) / 2; hour 23: (1000 - 2300 + 500 + 230) / 2
    assert rows[("GW-A", 14)]["grid_w"] == 1800.0
    assert rows[("GW-A", 23)]["grid_w"] == -285.0
    assert rows[("GW-A", 23)]["solar_w"] == 2300.0
    # the 02-29 23:00 reading (site 12345 W) is outside the range and not averaged in;
    # GW-B has readings at 10:00 and 11:00 only
    assert {key[1] for key in rows if key[0] == "GW-B"} == {10, 11}
    assert rows[("GW-B", 10)]["grid_w"] == 9000.0


def test_hourly_profile_in_a_time_zone(db: Any) -> None:
    result = run(db, "hourly", "2024-03-01", "2024-03-04", gateway="GW-A", timezone="Europe/Berlin")
    rows = {r["hour"]: r for r in result.records()}
    # Berlin is UTC+1, so the range is 02-29 23:00 .. 03-03 23:00 UTC and Berlin's hour 0 is
    # 23:00 UTC: on 02-29 (now inside the range: site 12345 W) and 03-01 (-1300 W); 03-02 has
    # no reading and 03-03 23:00 UTC is past the end
    assert rows[0]["samples"] == 2
    assert rows[0]["grid_w"] == (12345 - 1300) / 2
    # hour 1 in Berlin = 00:00 UTC: the UTC report's hour 0
    assert rows[1]["grid_w"] == 750.0


def test_peaks_match_the_hand_computation(db: Any) -> None:
    result = run(db, "peaks", "2024-03-01", "2024-03-04")
    assert result.columns == (
        "day",
        "gateway",
        "peak_import_w",
        "peak_import_at",
        "peak_export_w",
        "peak_export_at",
    )
    assert result.rows == (
        # 03-01: site 1000 - 100h: most import 1000 W at 00:00, most export 1300 W at 23:00
        ("2024-03-01", "GW-A", 1000.0, "2024-03-01 00:00:00", 1300.0, "2024-03-01 23:00:00"),
        ("2024-03-01", "GW-B", 9000.0, "2024-03-01 10:00:00", None, None),
        ("2024-03-02", "GW-A", None, None, None, None),
        ("2024-03-02", "GW-B", None, None, None, None),
        # 03-03: 4000 W at 14:00 and again at 16:00: the first one; no export that day
        ("2024-03-03", "GW-A", 4000.0, "2024-03-03 14:00:00", None, None),
        ("2024-03-03", "GW-B", None, None, None, None),
    )


def test_peaks_gateway_filter_and_time_zone(db: Any) -> None:
    result = run(db, "peaks", "2024-03-03", "2024-03-04", gateway="GW-A", timezone="Europe/Berlin")
    # Berlin 03-03 = 03-02 23:00 .. 03-03 23:00 UTC: peak 4000 W at 14:00 UTC = 15:00 local;
    # the 23:00 UTC reading (730 W) is Berlin's 03-04
    assert result.rows == (("2024-03-03", "GW-A", 4000.0, "2024-03-03 15:00:00", None, None),)


# --------------------------------------------------------------------------- outages


OUTAGE_COLUMNS = ("gateway", "started", "ended", "ongoing", "duration_s", "duration_h")


def test_outages_match_the_hand_computation(db: Any) -> None:
    result = run(db, "outages", "2024-03-01", "2024-03-04")
    assert result.columns == OUTAGE_COLUMNS
    assert result.rows == (
        ("GW-B", "2024-03-01 09:00:00", "2024-03-01 09:30:00", 0, 1800, 0.5),
        # over midnight, IslandedActive then TransitionToGrid: one outage, 23:30 -> 00:45
        ("GW-A", "2024-03-01 23:30:00", "2024-03-02 00:45:00", 0, 4500, 1.25),
        # still down at the end of the range (back only on 03-05): ongoing, 20:00 -> 24:00
        ("GW-A", "2024-03-03 20:00:00", None, 1, 14400, 4.0),
    )


def test_an_outage_that_began_before_the_range_is_listed_with_its_real_start(db: Any) -> None:
    result = run(db, "outages", "2024-03-02", "2024-03-03", gateway="GW-A")
    # the 02-28 outage ended long before; the 03-03 one starts after the range
    assert result.rows == (("GW-A", "2024-03-01 23:30:00", "2024-03-02 00:45:00", 0, 4500, 1.25),)


def test_an_outage_ends_when_the_range_includes_its_end(db: Any) -> None:
    result = run(db, "outages", "2024-03-03", "2024-03-06", gateway="GW-A")
    # 03-03 20:00 -> 03-05 01:00 = 29 h
    assert result.rows == (("GW-A", "2024-03-03 20:00:00", "2024-03-05 01:00:00", 0, 104400, 29.0),)


def test_outage_times_in_a_time_zone(db: Any) -> None:
    result = run(
        db, "outages", "2024-03-02", "2024-03-03", gateway="GW-A", timezone="Europe/Berlin"
    )
    assert result.rows == (("GW-A", "2024-03-02 00:30:00", "2024-03-02 01:45:00", 0, 4500, 1.25),)


# --------------------------------------------------------------------------- completeness


def test_completeness_matches_the_hand_computation(db: Any) -> None:
    result = run(db, "completeness", "2024-03-01", "2024-03-04", interval_s=3600)
    assert result.columns == (
        "day",
        "gateway",
        "samples",
        "expected",
        "completeness_pct",
        "longest_gap_s",
    )
    assert result.rows == (
        # 24 hourly samples expected; 05:00 missing: 23/24 = 95.8 %, longest gap 04:00-06:00
        ("2024-03-01", "GW-A", 23, 24, 95.8, 7200.0),
        # GW-B's first reading is at 10:00: the 10 hours before it are not missing, 2/14
        ("2024-03-01", "GW-B", 2, 14, 14.3, 3600.0),
        # the day without data is listed, at 0 %
        ("2024-03-02", "GW-A", 0, 24, 0.0, None),
        ("2024-03-02", "GW-B", 0, 24, 0.0, None),
        # all 24; the first sample comes 25 h after 03-01 23:00
        ("2024-03-03", "GW-A", 24, 24, 100.0, 90000.0),
        ("2024-03-03", "GW-B", 0, 24, 0.0, None),
    )


def test_completeness_default_interval_is_two_seconds(db: Any) -> None:
    result = run(db, "completeness", "2024-03-01", "2024-03-02", gateway="GW-A")
    # 86400 s / 2 s = 43200 expected; 23 / 43200 = 0.05 %
    assert result.rows == (("2024-03-01", "GW-A", 23, 43200, 0.1, 7200.0),)


def test_completeness_of_a_daylight_saving_day(db: Any) -> None:
    # Berlin's 2024-03-31 has 23 hours; 2024-10-27 has 25
    spring = run(
        db,
        "completeness",
        "2024-03-31",
        "2024-04-01",
        gateway="GW-A",
        timezone="Europe/Berlin",
        interval_s=3600,
    )
    autumn = run(
        db,
        "completeness",
        "2024-10-27",
        "2024-10-28",
        gateway="GW-A",
        timezone="Europe/Berlin",
        interval_s=3600,
    )
    assert spring.column("expected") == [23]
    assert autumn.column("expected") == [25]
    assert spring.column("completeness_pct") == [0.0]


# --------------------------------------------------------------------------- parameters


def test_offset_spans_follow_daylight_saving() -> None:
    tz = reports.zone("Europe/Berlin")
    spans = reports.offset_spans(
        tz, datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 11, 1, tzinfo=UTC)
    )
    assert [(a.isoformat(), b.isoformat(), o) for a, b, o in spans] == [
        ("1970-01-01T00:00:00+00:00", "2024-03-31T01:00:00+00:00", 3600),
        ("2024-03-31T01:00:00+00:00", "2024-10-27T01:00:00+00:00", 7200),
        ("2024-10-27T01:00:00+00:00", "2200-01-01T00:00:00+00:00", 3600),
    ]
    utc = reports.offset_spans(
        reports.zone("UTC"), datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)
    )
    assert [o for _a, _b, o in utc] == [0]


def test_session_variables_hold_the_range_and_the_calendar() -> None:
    params = ReportParams(date(2024, 3, 30), date(2024, 4, 2), timezone="Europe/Berlin")
    values = reports.session_variables(params, 7)
    assert values["from_ts"] == "2024-03-29 23:00:00"
    assert values["to_ts"] == "2024-04-01 22:00:00"
    assert values["gateway_id"] == 7
    days = json.loads(values["days"])
    assert days[1] == {
        "day": "2024-03-31",
        "start": "2024-03-30 23:00:00",
        "end": "2024-03-31 22:00:00",
    }
    assert [d["day"] for d in days] == ["2024-03-30", "2024-03-31", "2024-04-01"]
    assert json.loads(values["months"]) == [{"month": "2024-03-01"}, {"month": "2024-04-01"}]


@pytest.mark.parametrize(
    ("start", "end", "kwargs", "message"),
    [
        ("2024-03-02", "2024-03-01", {}, "later date"),
        ("2024-03-01", "2024-03-01", {}, "later date"),
        ("2024-03-01", "2024-03-02", {"timezone": "Mars/Olympus"}, "unknown time zone"),
        ("2024-03-01", "2024-03-02", {"interval_s": 0}, "greater than 0"),
        ("2000-01-01", "2024-03-02", {}, "at most"),
    ],
)
def test_bad_parameters_are_config_errors(
    start: str, end: str, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ReportParams(date.fromisoformat(start), date.fromisoformat(end), **kwargs)


def test_report_files_are_found_and_described() -> None:
    names = reports.report_names()
    assert names == ["completeness", "daily", "hourly", "monthly", "outages", "peaks"]
    for name in names:
        sql = reports.load_report(name)
        assert reports.describe_report(sql), name
        statement = reports.report_statement(sql)
        assert statement.startswith("WITH") and not statement.endswith(";"), name
    with pytest.raises(ConfigError, match="unknown report 'yearly'; known: completeness, daily"):
        reports.load_report("yearly")


# --------------------------------------------------------------------------- formatting

SAMPLE = ReportResult(
    "daily",
    ("day", "gateway", "solar_kwh", "self_consumption_pct"),
    (("2024-03-01", "GW-A", 4.8, 75.0), ("2024-03-02", "GW-A", 12.25, None)),
    ReportParams(date(2024, 3, 1), date(2024, 3, 3), gateway="GW-A"),
)


def test_format_table_aligns_columns() -> None:
    text = reports.format_table(SAMPLE, title="t")
    assert text.splitlines() == [
        "t",
        "day         gateway  solar_kwh  self_consumption_pct",
        "----------  -------  ---------  --------------------",
        "2024-03-01  GW-A          4.80                  75.0",
        "2024-03-02  GW-A         12.25",
    ]
    empty = ReportResult("daily", ("day",), ())
    assert reports.format_table(empty).splitlines()[-1] == "(no rows)"


def test_format_csv_and_json() -> None:
    rows = list(csv.reader(io.StringIO(reports.format_csv(SAMPLE))))
    assert rows == [
        ["day", "gateway", "solar_kwh", "self_consumption_pct"],
        ["2024-03-01", "GW-A", "4.8", "75.0"],
        ["2024-03-02", "GW-A", "12.25", ""],
    ]
    document = json.loads(reports.format_json(SAMPLE))
    assert document["report"] == "daily"
    assert (document["from"], document["to"], document["timezone"], document["gateway"]) == (
        "2024-03-01",
        "2024-03-03",
        "UTC",
        "GW-A",
    )
    assert document["rows"][1] == {
        "day": "2024-03-02",
        "gateway": "GW-A",
        "solar_kwh": 12.25,
        "self_consumption_pct": None,
    }


def test_render_refuses_an_unknown_format() -> None:
    with pytest.raises(ConfigError, match="table, csv, json"):
        reports.render(SAMPLE, "xml")


# --------------------------------------------------------------------------- charts


@pytest.mark.parametrize("name", ["daily", "monthly", "hourly", "completeness", "peaks"])
def test_plot_writes_a_png_of_the_expected_size(db: Any, tmp_path: Path, name: str) -> None:
    pytest.importorskip("matplotlib")
    result = run(db, name, "2024-03-01", "2024-03-04", interval_s=3600)
    path = tmp_path / f"{name}.png"
    plots.plot_report(result, path)
    assert png_size(path) == (1000, 550)
    assert path.stat().st_size > 5000  # something was drawn


def test_plot_refuses_a_report_without_a_chart(db: Any, tmp_path: Path) -> None:
    result = run(db, "outages", "2024-03-01", "2024-03-04")
    with pytest.raises(ConfigError, match="has no chart"):
        plots.plot_report(result, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------- command line


def test_cli_report_csv_equals_the_hand_computation(report_db: MysqlSettings) -> None:
    done = pwbus(
        "report",
        "daily",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-02",
        "--gateway",
        "GW-A",
        "--format",
        "csv",
        url=db_url(report_db),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        ",".join(DAILY_COLUMNS),
        "2024-03-01,GW-A,2.4,1.2,4.8,7.2,0.96,0.72,75.0,66.7,0.027",
    ]


def test_cli_report_json_and_table(report_db: MysqlSettings) -> None:
    done = pwbus(
        "report",
        "outages",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-04",
        "--format",
        "json",
        url=db_url(report_db),
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert [r["duration_s"] for r in document["rows"]] == [1800, 4500, 14400]
    assert document["rows"][2]["ongoing"] == 1 and document["rows"][2]["ended"] is None
    table = pwbus(
        "report",
        "completeness",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-02",
        "--interval",
        "3600",
        url=db_url(report_db),
    )
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("completeness: 2024-03-01 to 2024-03-01 (1 day)")
    assert lines[1].split() == list(
        ("day", "gateway", "samples", "expected", "completeness_pct", "longest_gap_s")
    )
    assert lines[3].split() == ["2024-03-01", "GW-A", "23", "24", "95.8", "7200.0"]


def test_cli_report_plot(report_db: MysqlSettings, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "daily.png"
    done = pwbus(
        "report",
        "daily",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-04",
        "--plot",
        str(path),
        url=db_url(report_db),
    )
    assert done.returncode == 0, done.stderr
    assert png_size(path) == (1000, 550)
    assert "GW-A" in done.stdout  # the table is printed too


def test_cli_unknown_report_is_one_line(report_db: MysqlSettings) -> None:
    done = pwbus(
        "report", "yearly", "--from", "2024-03-01", "--to", "2024-03-02", url=db_url(report_db)
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "pwbus report: configuration: report: unknown report 'yearly'; known: completeness,"
        " daily, hourly, monthly, outages, peaks"
    ]
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "2024-3-1", "--to", "2024-03-02"), "from: expected YYYY-MM-DD or one of today"),
        (("--from", "2024-03-02", "--to", "2024-03-01"), "to: must be a later date"),
        (("--from", "2024-03-01", "--to", "2024-03-02", "--format", "xml"), "format: must be"),
        (("--from", "2024-03-01", "--to", "2024-03-02", "--plot", "x.png"), "has no chart"),
    ],
)
def test_cli_bad_arguments_are_one_line(
    report_db: MysqlSettings, args: tuple[str, ...], message: str
) -> None:
    name = "outages" if "--plot" in args else "daily"
    done = pwbus("report", name, *args, url=db_url(report_db))
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert message in done.stderr


def test_cli_refused_login_is_one_line(report_db: MysqlSettings) -> None:
    done = pwbus(
        "report",
        "daily",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-02",
        url=db_url(report_db, password="not-the-password"),
    )
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert "refused the login" in done.stderr
    assert "not-the-password" not in done.stderr
