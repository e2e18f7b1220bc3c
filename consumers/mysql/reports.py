"""``pwbus report``: the SQL reports of ``schema/reports/*.sql``, rendered or plotted.

A report is one SELECT in a file of its own; its first comment line describes it and the
comments under it say how it computes what it shows. Parameters reach it as session
variables (``@from_ts``, ``@to_ts``, ``@gateway_id``, ``@tz``, ``@days``, ``@months``,
``@interval_s``), so every file also runs by hand in the mysql client.

Days and months are those of a time zone (UTC unless ``--timezone``). MySQL's CONVERT_TZ
needs the server's time zone tables, which MariaDB installs empty, so the offsets are worked
out here from the IANA database (``zoneinfo``) and passed as a short JSON list of
``{start, end, offset}`` spans (one per daylight-saving period); the reports add the offset
in effect to each reading's UTC time. The calendar of the range (its days with their UTC
start and end, its months) is passed the same way, so a day without any data still gets
a row, and a daylight-saving day has its 23 or 25 hours.

Formatting (:func:`format_table`, :func:`format_csv`, :func:`format_json`) is pure; the
database and the file system are touched only by :func:`run_report`, :func:`plot_report`
and :func:`run_report_command`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from powerwall_bus.consumers.mysql.migrate import Connection, connect, database_error
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import MysqlSettings

_LOGGER = logging.getLogger(__name__)

FORMATS = ("table", "csv", "json")
MAX_DAYS = 3660
DEFAULT_INTERVAL_S = 2.0
# The chart's size in pixels is FIGURE_INCHES * FIGURE_DPI, whatever the data.
FIGURE_INCHES = (10.0, 5.5)
FIGURE_DPI = 100
_SQL_TIME = "%Y-%m-%d %H:%M:%S"
_EDGE_PAST = datetime(1970, 1, 1, tzinfo=UTC)
_EDGE_FUTURE = datetime(2200, 1, 1, tzinfo=UTC)

Value = str | int | float | None


@dataclass(frozen=True)
class ReportParams:
    """What a report is asked for: local dates [start, end), a gateway, a time zone."""

    start: date
    end: date
    timezone: str = "UTC"
    gateway: str | None = None  # a DIN
    interval_s: float = DEFAULT_INTERVAL_S

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ConfigError("to", "must be a later date than --from")
        if (self.end - self.start).days > MAX_DAYS:
            raise ConfigError("to", f"the range may span at most {MAX_DAYS} days")
        if not self.interval_s > 0:
            raise ConfigError("interval", "must be greater than 0")
        zone(self.timezone)  # fails early on an unknown zone

    @property
    def zone(self) -> tzinfo:
        """The report's time zone."""
        return zone(self.timezone)


@dataclass(frozen=True)
class ReportResult:
    """A report's columns and rows, values already plain (str, int, float or None)."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Value, ...], ...]
    params: ReportParams | None = field(default=None, compare=False)

    def records(self) -> list[dict[str, Value]]:
        """The rows as dicts keyed by column."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def column(self, name: str) -> list[Value]:
        """One column's values."""
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


# --------------------------------------------------------------------------- the files


def report_names() -> list[str]:
    """The reports shipped with this program (``schema/reports/*.sql``), sorted."""
    folder = resources.files("powerwall_bus.schema").joinpath("reports")
    return sorted(
        entry.name[: -len(".sql")] for entry in folder.iterdir() if entry.name.endswith(".sql")
    )


def load_report(name: str) -> str:
    """The SQL of one report; an unknown name is a :class:`ConfigError` listing the known."""
    names = report_names()
    if name not in names:
        raise ConfigError("report", f"unknown report {name!r}; known: {', '.join(names)}")
    return (
        resources.files("powerwall_bus.schema")
        .joinpath("reports", f"{name}.sql")
        .read_text("utf-8")
    )


def describe_report(sql: str) -> str:
    """The first comment line of a report file: what it shows."""
    for line in sql.splitlines():
        if line.startswith("--"):
            return line.lstrip("-").strip()
    return ""


def report_statement(sql: str) -> str:
    """The file's SELECT without its comment lines and closing semicolon."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";").strip()


# --------------------------------------------------------------------------- parameters


def zone(name: str) -> tzinfo:
    """An IANA time zone by name ("UTC", "Europe/Berlin"); unknown names are a ConfigError."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("timezone", f"unknown time zone {name!r} (e.g. Europe/Berlin)") from None


def parse_date(text: str, key: str) -> date:
    """A YYYY-MM-DD date from the command line."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(key, f"expected a date YYYY-MM-DD, got {text!r}") from None


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The UTC instant at which ``day`` starts in ``tz``."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def _offset_s(instant: datetime, tz: tzinfo) -> int:
    offset = instant.astimezone(tz).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def offset_spans(
    tz: tzinfo, start: datetime, end: datetime
) -> list[tuple[datetime, datetime, int]]:
    """UTC spans with the zone's offset from UTC in each, covering [start, end).

    The first span reaches back to 1970 and the last one forward to 2200 (keeping the offset
    at the range's edges), so readings just outside the range still get one. Changes are
    found by stepping every 15 minutes, then narrowed to the second.
    """
    spans: list[tuple[datetime, datetime, int]] = []
    span_start = _EDGE_PAST
    current = _offset_s(start, tz)
    step = timedelta(minutes=15)
    probe = start
    while probe < end:
        following = min(probe + step, end)
        offset = _offset_s(following, tz)
        if offset != current:
            low, high = probe, following  # offset(low) == current, offset(high) != current
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                middle = middle.replace(microsecond=0)
                if middle <= low:
                    break
                if _offset_s(middle, tz) == current:
                    low = middle
                else:
                    high = middle
            spans.append((span_start, high, current))
            span_start, current = high, _offset_s(high, tz)
        probe = following
    spans.append((span_start, _EDGE_FUTURE, current))
    return spans


def session_variables(params: ReportParams, gateway_id: int | None) -> dict[str, Any]:
    """The values of the session variables every report reads."""
    tz = params.zone
    start = local_midnight(params.start, tz)
    end = local_midnight(params.end, tz)
    spans = offset_spans(tz, start - timedelta(days=7), end + timedelta(days=1))
    days = []
    day = params.start
    while day < params.end:
        following = day + timedelta(days=1)
        days.append(
            {
                "day": day.isoformat(),
                "start": _sql_time(local_midnight(day, tz)),
                "end": _sql_time(local_midnight(following, tz)),
            }
        )
        day = following
    months: list[dict[str, str]] = []
    month = params.start.replace(day=1)
    while month < params.end:
        months.append({"month": month.isoformat()})
        month = (month + timedelta(days=32)).replace(day=1)
    return {
        "from_ts": _sql_time(start),
        "to_ts": _sql_time(end),
        "gateway_id": gateway_id,
        "tz": json.dumps(
            [{"start": _sql_time(a), "end": _sql_time(b), "offset": o} for a, b, o in spans]
        ),
        "days": json.dumps(days),
        "months": json.dumps(months),
        "interval_s": params.interval_s,
    }


def _sql_time(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime(_SQL_TIME)


# --------------------------------------------------------------------------- running


def gateway_id(connection: Connection, din: str) -> int:
    """The id of the gateway with this DIN; an unknown DIN is a ConfigError naming the known."""
    cursor = connection.cursor()
    try:
        cursor.execute("SELECT id, din FROM gateways ORDER BY din")
        rows = cursor.fetchall()
    finally:
        cursor.close()
    for row_id, row_din in rows:
        if _plain(row_din) == din:
            return int(row_id)
    known = ", ".join(str(_plain(row[1])) for row in rows) or "none yet"
    raise ConfigError("gateway", f"no gateway {din!r} in the database; known: {known}")


def run_report(connection: Connection, name: str, params: ReportParams) -> ReportResult:
    """Run one report and return its rows with plain Python values."""
    statement = report_statement(load_report(name))
    gid = gateway_id(connection, params.gateway) if params.gateway else None
    variables = session_variables(params, gid)
    cursor = connection.cursor()
    try:
        assignments = ", ".join(f"@{key} = %({key})s" for key in variables)
        cursor.execute(f"SET {assignments}", variables)
        cursor.execute(statement)
        rows = cursor.fetchall()
        columns = tuple(str(d[0]) for d in cursor.description)
    finally:
        cursor.close()
    plain = tuple(tuple(_plain(value) for value in row) for row in rows)
    return ReportResult(name, columns, plain, params)


def _plain(value: Any) -> Value:
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Decimal):
        return int(value) if value.as_tuple().exponent == 0 else float(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.strftime(_SQL_TIME)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# --------------------------------------------------------------------------- formatting


def _cell(value: Value, decimals: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value == 0:
            value = 0.0  # no "-0.0"
        return f"{value:.{decimals}f}"
    return str(value)


def _decimals(values: Sequence[Value]) -> int:
    most = 0
    for value in values:
        if isinstance(value, float):
            text = repr(value)
            if "e" in text or "E" in text:
                return 3
            most = max(most, len(text.partition(".")[2]))
    return min(most, 3)


def format_table(result: ReportResult, title: str = "") -> str:
    """An aligned text table: numbers right-aligned, empty cells for NULL."""
    columns = result.columns
    decimals = [_decimals([row[i] for row in result.rows]) for i in range(len(columns))]
    cells = [[_cell(v, decimals[i]) for i, v in enumerate(row)] for row in result.rows]
    widths = [max([len(name)] + [len(row[i]) for row in cells]) for i, name in enumerate(columns)]
    numeric = [
        all(isinstance(row[i], int | float) for row in result.rows if row[i] is not None)
        and any(row[i] is not None for row in result.rows)
        for i in range(len(columns))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(widths[i]) if numeric[i] else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    lines = [title] if title else []
    lines.append(line(list(columns)))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(line(row) for row in cells)
    if not result.rows:
        lines.append("(no rows)")
    return "\n".join(lines) + "\n"


def format_csv(result: ReportResult) -> str:
    """CSV with a header line; NULL is an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()


def format_json(result: ReportResult) -> str:
    """``{"report", "from", "to", "timezone", "gateway", "rows": [{column: value}]}``."""
    params = result.params
    document: dict[str, Any] = {
        "report": result.name,
        "from": params.start.isoformat() if params else None,
        "to": params.end.isoformat() if params else None,
        "timezone": params.timezone if params else None,
        "gateway": params.gateway if params else None,
        "rows": result.records(),
    }
    return json.dumps(document, indent=2) + "\n"


def render(result: ReportResult, output_format: str) -> str:
    """The report in one of :data:`FORMATS`."""
    if output_format == "csv":
        return format_csv(result)
    if output_format == "json":
        return format_json(result)
    if output_format == "table":
        return format_table(result, title=_title(result))
    raise ConfigError("format", f"must be one of {', '.join(FORMATS)}")


def _title(result: ReportResult) -> str:
    params = result.params
    if params is None:
        return result.name
    where = f", gateway {params.gateway}" if params.gateway else ""
    return f"{result.name}: {params.start} to {params.end} (exclusive), {params.timezone}{where}"


# --------------------------------------------------------------------------- charts

# Where the energy of a day comes from (stacked up) and where it goes (stacked down).
_ENERGY_SOURCES = (
    ("solar_kwh", "solar produced", "#f2b705"),
    ("grid_import_kwh", "from grid", "#7f7f7f"),
    ("battery_discharged_kwh", "battery discharged", "#2e9e5b"),
)
_ENERGY_USES = (
    ("home_kwh", "home used", "#3a6fb0"),
    ("grid_export_kwh", "to grid", "#b5b5b5"),
    ("battery_charged_kwh", "battery charged", "#9fd8b5"),
)
_PROFILE_LINES = (
    ("solar_w", "solar", "#f2b705"),
    ("home_w", "home", "#3a6fb0"),
    ("grid_w", "grid (+ import)", "#7f7f7f"),
    ("battery_w", "battery (+ discharge)", "#2e9e5b"),
)
CHARTS = {
    "daily": "energy",
    "monthly": "energy",
    "hourly": "profile",
    "completeness": "completeness",
    "peaks": "peaks",
}


def plot_report(result: ReportResult, path: Path) -> None:
    """Draw the report as a PNG: stacked energy bars, the hourly profile, or daily bars.

    One panel per gateway. Raises ConfigError for a report without a chart, or when
    matplotlib is missing (``pip install 'powerwall-bus[plot]'``).
    """
    kind = CHARTS.get(result.name)
    if kind is None:
        charted = ", ".join(sorted(CHARTS))
        raise ConfigError("plot", f"report {result.name!r} has no chart; charts: {charted}")
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plot", "needs matplotlib: pip install 'powerwall-bus[plot]'") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    gateways = sorted({str(g) for g in result.column("gateway")}) or ["(no data)"]
    figure, axes_grid = pyplot.subplots(
        len(gateways),
        1,
        figsize=FIGURE_INCHES,
        dpi=FIGURE_DPI,
        squeeze=False,
        sharex=True,
    )
    try:
        for axes, gateway in zip(axes_grid[:, 0], gateways, strict=True):
            rows = [r for r in result.records() if str(r["gateway"]) == gateway]
            if kind == "energy":
                _plot_energy(axes, rows, result.columns[0])
            elif kind == "profile":
                _plot_profile(axes, rows)
            elif kind == "completeness":
                _plot_completeness(axes, rows)
            else:
                _plot_peaks(axes, rows)
            axes.set_title(gateway, fontsize=9, loc="right", color="#555555")
            axes.grid(axis="y", color="#e0e0e0", linewidth=0.8)
            axes.set_axisbelow(True)
            axes.label_outer()
        figure.suptitle(_title(result), fontsize=11)
        handles, labels = axes_grid[0, 0].get_legend_handles_labels()
        if handles:
            figure.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
        figure.tight_layout(rect=(0, 0, 0.83 if handles else 1, 1))
        figure.savefig(path, format="png", dpi=FIGURE_DPI)
    finally:
        pyplot.close(figure)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _label_axis(axes: Any, labels: list[str]) -> None:
    positions = list(range(len(labels)))
    every = max(1, len(labels) // 16)
    axes.set_xticks(positions[::every])
    axes.set_xticklabels(
        labels[::every],
        rotation=45 if len(labels) > 8 else 0,
        ha="right" if len(labels) > 8 else "center",
        fontsize=8,
    )


def _mark_missing(axes: Any, rows: list[dict[str, Value]], columns: list[str]) -> None:
    """Write "no data" on the periods whose values are all NULL."""
    for position, row in enumerate(rows):
        if all(row[c] is None for c in columns):
            axes.text(
                position,
                0,
                "no data",
                ha="center",
                va="bottom",
                fontsize=7,
                color="#888888",
                rotation=90,
            )


def _plot_energy(axes: Any, rows: list[dict[str, Value]], period: str) -> None:
    labels = [str(r[period]) for r in rows]
    positions = list(range(len(rows)))
    bottom = [0.0] * len(rows)
    for column, label, colour in _ENERGY_SOURCES:
        values = [_number(r[column]) for r in rows]
        axes.bar(positions, values, bottom=bottom, color=colour, label=label, width=0.8)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    bottom = [0.0] * len(rows)
    for column, label, colour in _ENERGY_USES:
        values = [-_number(r[column]) for r in rows]
        axes.bar(
            positions,
            values,
            bottom=bottom,
            color=colour,
            label=label,
            width=0.8,
            edgecolor="white",
            linewidth=0.3,
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes.axhline(0, color="#333333", linewidth=0.8)
    axes.set_ylabel("kWh  (up: sources, down: uses)", fontsize=8)
    _label_axis(axes, labels)
    _mark_missing(axes, rows, [c for c, _l, _c in _ENERGY_SOURCES + _ENERGY_USES])


def _plot_profile(axes: Any, rows: list[dict[str, Value]]) -> None:
    hours = [_number(r["hour"]) for r in rows]
    for column, label, colour in _PROFILE_LINES:
        values = [_number(r[column]) / 1000 for r in rows]
        axes.plot(hours, values, label=label, color=colour, linewidth=2, marker="o", markersize=3)
    axes.axhline(0, color="#333333", linewidth=0.8)
    axes.set_xticks(range(0, 24, 2))
    axes.set_xlim(-0.5, 23.5)
    axes.set_xlabel("hour of day", fontsize=8)
    axes.set_ylabel("average power, kW", fontsize=8)


def _plot_completeness(axes: Any, rows: list[dict[str, Value]]) -> None:
    labels = [str(r["day"]) for r in rows]
    values = [_number(r["completeness_pct"]) for r in rows]
    colours = ["#2e9e5b" if v >= 99 else "#f2b705" if v >= 90 else "#c0392b" for v in values]
    axes.bar(range(len(rows)), values, color=colours, width=0.8)
    axes.axhline(100, color="#333333", linewidth=0.8, linestyle="--")
    axes.set_ylabel("samples stored, %", fontsize=8)
    _label_axis(axes, labels)


def _plot_peaks(axes: Any, rows: list[dict[str, Value]]) -> None:
    labels = [str(r["day"]) for r in rows]
    positions = range(len(rows))
    axes.bar(
        positions,
        [_number(r["peak_import_w"]) / 1000 for r in rows],
        color="#7f7f7f",
        label="peak import",
        width=0.8,
    )
    axes.bar(
        positions,
        [-_number(r["peak_export_w"]) / 1000 for r in rows],
        color="#f2b705",
        label="peak export",
        width=0.8,
    )
    axes.axhline(0, color="#333333", linewidth=0.8)
    axes.set_ylabel("kW  (up: import, down: export)", fontsize=8)
    _label_axis(axes, labels)
    _mark_missing(axes, rows, ["peak_import_w", "peak_export_w"])


# --------------------------------------------------------------------------- command


def run_report_command(args: argparse.Namespace, settings: MysqlSettings) -> int:
    """``pwbus report NAME --from --to [--gateway] [--format] [--plot] [--timezone]``."""
    import mysql.connector

    load_report(args.name)  # an unknown name fails before connecting
    if args.format not in FORMATS:
        raise ConfigError("format", f"must be one of {', '.join(FORMATS)}")
    params = ReportParams(
        start=parse_date(args.date_from, "from"),
        end=parse_date(args.date_to, "to"),
        timezone=args.timezone,
        gateway=args.gateway,
        interval_s=args.interval,
    )
    if args.plot and args.name not in CHARTS:
        charted = ", ".join(sorted(CHARTS))
        raise ConfigError("plot", f"report {args.name!r} has no chart; charts: {charted}")
    connection = connect(settings)
    try:
        result = run_report(connection, args.name, params)
    except mysql.connector.Error as exc:
        raise database_error(exc, settings) from None
    finally:
        connection.close()
    sys.stdout.write(render(result, args.format))
    if args.plot:
        plot_report(result, Path(args.plot))
        _LOGGER.info("chart written to %s", args.plot)
    return 0
