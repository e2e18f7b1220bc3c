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
database and the file system are touched only by :func:`run_report` and
:func:`run_report_command`. Charts (``--plot``) are :mod:`~consumers.mysql.plots`, the only
module that imports matplotlib.
"""

from __future__ import annotations

import contextlib
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
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from powerwall_bus.consumers.mysql.connection import connect, translated
from powerwall_bus.consumers.mysql.migrate import Connection
from powerwall_bus.shared.errors import ConfigError

if TYPE_CHECKING:
    from powerwall_bus.consumers.mysql.command import ReportCommand

_LOGGER = logging.getLogger(__name__)

FORMATS = ("table", "csv", "json")
MAX_DAYS = 3660
DEFAULT_INTERVAL_S = 2.0
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


def load_report(name: str, *, raw: bool = False) -> str:
    """The SQL of one report (``raw``: its version over the raw readings, ``reports/raw/``;
    a report that reads no summaries, like ``outages``, has one version only); an unknown
    name is a :class:`ConfigError` listing the known."""
    names = report_names()
    if name not in names:
        raise ConfigError("report", f"unknown report {name!r}; known: {', '.join(names)}")
    reports = resources.files("powerwall_bus.schema").joinpath("reports")
    raw_version = reports.joinpath("raw", f"{name}.sql")
    chosen = raw_version if raw and raw_version.is_file() else reports.joinpath(f"{name}.sql")
    return chosen.read_text("utf-8")


def hour_aligned(spans: Sequence[tuple[datetime, datetime, int]]) -> bool:
    """True when every offset and every change between offsets falls on a whole UTC hour,
    so hourly summaries split days exactly (else the reports read meter_minutes)."""
    return all(not (offset % 3600 or start.minute or start.second) for start, _end, offset in spans)


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


def _spans(params: ReportParams) -> list[tuple[datetime, datetime, int]]:
    tz = params.zone
    start = local_midnight(params.start, tz)
    end = local_midnight(params.end, tz)
    return offset_spans(tz, start - timedelta(days=7), end + timedelta(days=1))


def session_variables(params: ReportParams, gateway_id: int | None) -> dict[str, Any]:
    """The values of the session variables every report reads."""
    tz = params.zone
    start = local_midnight(params.start, tz)
    end = local_midnight(params.end, tz)
    spans = _spans(params)
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


def run_report(
    connection: Connection, name: str, params: ReportParams, *, raw: bool = False
) -> ReportResult:
    """Run one report and return its rows with plain Python values.

    It reads the summaries, hourly ones when the time zone allows (:func:`hour_aligned`),
    else per minute; ``raw`` runs the version over the raw readings instead (slow; kept to
    check the summaries against).
    """
    statement = report_statement(load_report(name, raw=raw))
    gid = gateway_id(connection, params.gateway) if params.gateway else None
    variables = session_variables(params, gid)
    if not raw and not hour_aligned(_spans(params)):
        statement = statement.replace("meter_hours", "meter_minutes")
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
        return format_table(result, title=report_title(result))
    raise ConfigError("format", f"must be one of {', '.join(FORMATS)}")


def report_title(result: ReportResult) -> str:
    """The title of table and chart: the resolved range, e.g. ``daily: 2024-03-01 to
    2024-03-03 (3 days), UTC`` (both days included)."""
    params = result.params
    if params is None:
        return result.name
    where = f", gateway {params.gateway}" if params.gateway else ""
    days = (params.end - params.start).days
    last = params.end - timedelta(days=1)
    count = "1 day" if days == 1 else f"{days} days"
    return f"{result.name}: {params.start} to {last} ({count}), {params.timezone}{where}"


# --------------------------------------------------------------------------- command


def run_report_command(args: ReportCommand) -> int:
    """``pwbus report NAME --from --to [--gateway] [--format] [--plot] [--timezone]``.

    Every argument is checked before connecting; matplotlib is imported only for ``--plot``.
    """
    load_report(args.name)  # an unknown name fails before connecting
    if args.format not in FORMATS:
        raise ConfigError("format", f"must be one of {', '.join(FORMATS)}")
    from powerwall_bus.consumers.mysql.dates import DEFAULT_RANGES, resolve

    today = datetime.now(zone(args.timezone)).date()
    start, end = resolve(args.date_from, args.date_to, today, DEFAULT_RANGES.get(args.name, "7d"))
    params = ReportParams(
        start=start,
        end=end,
        timezone=args.timezone,
        gateway=args.gateway,
        interval_s=args.interval,
    )
    if args.plot:
        from powerwall_bus.consumers.mysql.plots import check_chart

        check_chart(args.name)
    settings = args.mysql
    connection = connect(settings)
    try:
        with translated(settings, f"running report {args.name}"):
            result = run_report(connection, args.name, params, raw=args.raw)
    finally:
        with contextlib.suppress(Exception):
            connection.close()
    sys.stdout.write(render(result, args.format))
    if args.plot:
        from powerwall_bus.consumers.mysql.plots import plot_report

        plot_report(result, Path(args.plot))
        _LOGGER.info("chart written to %s", args.plot)
    return 0
