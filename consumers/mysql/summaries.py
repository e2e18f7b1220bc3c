"""Summary tables kept exact: every bucket is recomputed from the raw rows, never added to.

The summaries (``schema/migrations/0002_summaries.sql``) let reports and Grafana read a
year as a few thousand rows: ``meter_minutes`` and ``meter_hours`` (energy per meter from
the lifetime counters, power min/max/sum/count, site samples and gaps), ``soe_minutes`` and
``block_hours`` (Powerwall capacity).

Why recompute rather than add: a delta added once per inserted message would count twice
on redelivery unless we knew exactly which rows the ``INSERT IGNORE`` took, and a reading
that arrives late (out of order) changes the delta of the reading after it. A bucket
recomputed from the raw rows is a pure function of them, so writing it again changes
nothing, whatever the order or number of deliveries.

The rules are the reports' (``schema/reports/raw/daily.sql``):

* energy delta = this sample's counter - the previous sample's counter of the same gateway
  and meter, the previous sample being the latest earlier one with both counters non-NULL,
  however long before (gaps belong to the later sample); a drop over 1 Wh is a counter
  reset (the delta is the new value), a drop up to 1 Wh is jitter (0); a sample without a
  predecessor has no delta (NULL); samples with a NULL counter have none either;
* sums are rounded to 6 decimals (a micro-Wh), so a bucket recomputed in another order of
  rows is the very same double;
* power: min, max, and sum and count of the non-NULL ``instant_power`` per meter; the site
  meter also keeps the first time its max and its min were reached (the peaks report);
* ``samples`` = site rows; ``max_gap_s`` = the longest time from a site sample to the site
  sample before it (however long before), over the bucket's samples.

:func:`refresh` is what the writer calls inside its batch transaction, with the minutes its
batch touched (plus the minute of each meter's next sample after a run of touched minutes,
whose delta or gap a late reading changes). :func:`summarize` is ``pwbus db summarize``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from powerwall_bus.consumers.mysql.rows import METERS, Rows

_LOGGER = logging.getLogger(__name__)

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)

#: The value columns of meter_minutes / meter_hours, in table order.
ENERGY_COLUMNS = tuple(f"{m}_{d}" for m in METERS for d in ("in", "out"))
POWER_COLUMNS = tuple(f"{m}_p_{s}" for m in METERS for s in ("min", "max", "sum", "n"))
METER_COLUMNS = (
    "samples",
    "max_gap_s",
    *ENERGY_COLUMNS,
    *POWER_COLUMNS,
    "site_max_at",
    "site_min_at",
)


def minute_of(ts: dt.datetime) -> dt.datetime:
    """The start of the UTC minute holding ``ts``."""
    return ts.replace(second=0, microsecond=0)


def hour_of(ts: dt.datetime) -> dt.datetime:
    """The start of the UTC hour holding ``ts``."""
    return ts.replace(minute=0, second=0, microsecond=0)


def runs(
    starts: Iterable[dt.datetime], step: dt.timedelta
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Bucket starts grouped into ranges [first, end) of consecutive buckets."""
    found: list[tuple[dt.datetime, dt.datetime]] = []
    for start in sorted(set(starts)):
        if found and found[-1][1] == start:
            found[-1] = (found[-1][0], start + step)
        else:
            found.append((start, start + step))
    return found


@dataclass
class Touched:
    """The buckets of one gateway a batch wrote into."""

    meter_minutes: set[dt.datetime] = field(default_factory=set)
    soe_minutes: set[dt.datetime] = field(default_factory=set)
    block_hours: set[dt.datetime] = field(default_factory=set)


def touched(rows: Rows, gateways: dict[str, int]) -> dict[int, Touched]:
    """gateway id -> the buckets ``rows`` fall into (the pure part of :func:`refresh`)."""
    found: dict[int, Touched] = {}

    def of(din: str) -> Touched:
        return found.setdefault(gateways[din], Touched())

    for meter in rows.meters:
        of(meter.gateway).meter_minutes.add(minute_of(meter.ts))
    for soe in rows.soe:
        of(soe.gateway).soe_minutes.add(minute_of(soe.ts))
    for block in rows.battery_blocks:
        of(block.gateway).block_hours.add(hour_of(block.ts))
    return found


# --------------------------------------------------------------------------- SQL


def _previous(meter: str, energy: bool) -> str:
    """The last row of one meter before the range (with both counters, if ``energy``)."""
    where = " AND energy_imported IS NOT NULL AND energy_exported IS NOT NULL" if energy else ""
    return (
        f"(SELECT meter, ts, NULL AS p, energy_imported AS e_in, energy_exported AS e_out,"
        f" 0 AS inside FROM meter_readings WHERE gateway_id = %(g)s AND meter = '{meter}'"
        f" AND ts < %(a)s{where} ORDER BY ts DESC LIMIT 1)"
    )


def _meter_minutes_select() -> str:
    """meter_minutes over [a, b) of gateway g: a delta per sample (window functions), then
    per minute and meter one row of sums, then one row per minute (a pivot of at most four
    rows: a CASE per column over four rows, not over every sample)."""
    meters = ", ".join(f"'{m}'" for m in METERS)  # a range scan of the primary key per meter
    # the reading before the range, per meter (its counters, and the site gap)
    previous = " UNION ALL ".join(_previous(m, False) for m in METERS)
    both = "b.energy_imported IS NOT NULL AND b.energy_exported IS NOT NULL"

    def of(meter: str, column: str) -> str:
        return f"MAX(CASE WHEN meter = '{meter}' THEN {column} END)"

    pivot = []
    for meter in METERS:
        pivot += [f"ROUND({of(meter, f's_{d}')}, 6)" for d in ("in", "out")]
    for meter in METERS:
        pivot += [
            of(meter, "p_min"),
            of(meter, "p_max"),
            f"ROUND({of(meter, 'p_sum')}, 6)",
            f"COALESCE({of(meter, 'p_n')}, 0)",
        ]
    # The first sample at the minute's highest (lowest) power: the first of the samples
    # ordered by power, then time (GROUP_CONCAT skips NULL powers; only the first item is
    # read, so a list cut at group_concat_max_len does not matter).
    first_at = (
        "CAST(SUBSTRING_INDEX(GROUP_CONCAT(CASE WHEN p IS NOT NULL THEN ts END"
        " ORDER BY p {order}, ts SEPARATOR ','), ',', 1) AS DATETIME(3))"
    )
    return f"""
SELECT %(g)s, TIMESTAMP'2000-01-01 00:00:00' + INTERVAL minute_key MINUTE,
    COALESCE(SUM(CASE WHEN meter = 'site' THEN n END), 0),
    MAX(CASE WHEN meter = 'site' THEN gap_us END) / 1000000,
    {", ".join(pivot)},
    {of("site", "max_at")}, {of("site", "min_at")}
FROM (
SELECT minute_key, meter, COUNT(*) AS n, MAX(TIMESTAMPDIFF(MICROSECOND, lag_ts, ts)) AS gap_us,
    SUM(d_in) AS s_in, SUM(d_out) AS s_out,
    MIN(p) AS p_min, MAX(p) AS p_max, SUM(p) AS p_sum, COUNT(p) AS p_n,
    CASE WHEN meter = 'site' THEN {first_at.format(order="DESC")} END AS max_at,
    CASE WHEN meter = 'site' THEN {first_at.format(order="ASC")} END AS min_at
FROM (
    SELECT meter, ts, p, lag_ts, minute_key,
        CASE WHEN NOT has_e OR prev_in IS NULL THEN NULL
             WHEN e_in >= prev_in THEN e_in - prev_in
             WHEN prev_in - e_in <= 1 THEN 0
             ELSE e_in END AS d_in,
        CASE WHEN NOT has_e OR prev_out IS NULL THEN NULL
             WHEN e_out >= prev_out THEN e_out - prev_out
             WHEN prev_out - e_out <= 1 THEN 0
             ELSE e_out END AS d_out
    FROM (
        SELECT l.*,
            -- the previous reading lacked a counter (rare): look the last one up
            CASE WHEN lag_has_e = 0 AND has_e THEN (SELECT b.energy_imported
                FROM meter_readings AS b WHERE b.gateway_id = %(g)s AND b.meter = l.meter
                  AND b.ts < l.ts AND {both} ORDER BY b.ts DESC LIMIT 1)
                ELSE lag_in END AS prev_in,
            CASE WHEN lag_has_e = 0 AND has_e THEN (SELECT b.energy_exported
                FROM meter_readings AS b WHERE b.gateway_id = %(g)s AND b.meter = l.meter
                  AND b.ts < l.ts AND {both} ORDER BY b.ts DESC LIMIT 1)
                ELSE lag_out END AS prev_out
        FROM (
            SELECT meter, ts, p, e_in, e_out, inside, has_e,
                TIMESTAMPDIFF(MINUTE, '2000-01-01', ts) AS minute_key,
                LAG(e_in) OVER w AS lag_in,
                LAG(e_out) OVER w AS lag_out,
                LAG(has_e) OVER w AS lag_has_e,
                LAG(ts) OVER w AS lag_ts
            FROM (
                SELECT r.*, (r.e_in IS NOT NULL AND r.e_out IS NOT NULL) AS has_e FROM (
                    SELECT meter, ts, instant_power AS p, energy_imported AS e_in,
                        energy_exported AS e_out, 1 AS inside
                    FROM meter_readings
                    WHERE gateway_id = %(g)s AND meter IN ({meters})
                      AND ts >= %(a)s AND ts < %(b)s
                    UNION ALL {previous}
                ) AS r
            ) AS h
            WINDOW w AS (PARTITION BY meter ORDER BY ts)
        ) AS l
        WHERE inside = 1
    ) AS k
) AS d
GROUP BY minute_key, meter
) AS per_meter
GROUP BY minute_key
"""


_METER_MINUTES_SELECT = _meter_minutes_select()
_COLUMN_LIST = ", ".join(("gateway_id", "bucket", *METER_COLUMNS))


def _meter_hours_select() -> str:
    sums = ", ".join(f"ROUND(SUM({c}), 6)" for c in ENERGY_COLUMNS)
    power = []
    for meter in METERS:
        power += [
            f"MIN({meter}_p_min)",
            f"MAX({meter}_p_max)",
            f"ROUND(SUM({meter}_p_sum), 6)",
            f"SUM({meter}_p_n)",
        ]
    return f"""
SELECT %(g)s, hour, SUM(samples), MAX(max_gap_s), {sums}, {", ".join(power)},
    MIN(CASE WHEN site_p_max = top THEN site_max_at END),
    MIN(CASE WHEN site_p_min = bottom THEN site_min_at END)
FROM (
    SELECT m.*, CAST(DATE_FORMAT(bucket, '%Y-%m-%d %H:00:00') AS DATETIME) AS hour,
        MAX(site_p_max) OVER (PARTITION BY DATE_FORMAT(bucket, '%Y%m%d%H')) AS top,
        MIN(site_p_min) OVER (PARTITION BY DATE_FORMAT(bucket, '%Y%m%d%H')) AS bottom
    FROM meter_minutes AS m
    WHERE gateway_id = %(g)s AND bucket >= %(a)s AND bucket < %(b)s
) AS x
GROUP BY hour
"""


_METER_HOURS_SELECT = _meter_hours_select()

_SOE_MINUTES_SELECT = """
SELECT %(g)s, CAST(DATE_FORMAT(ts, '%Y-%m-%d %H:%i:00') AS DATETIME) AS bucket,
    COUNT(*), MIN(percentage), MAX(percentage), SUM(percentage)
FROM soe_readings
WHERE gateway_id = %(g)s AND ts >= %(a)s AND ts < %(b)s
GROUP BY bucket
"""

_BLOCK_HOURS_SELECT = """
SELECT %(g)s, serial, CAST(DATE_FORMAT(ts, '%Y-%m-%d %H:00:00') AS DATETIME) AS bucket,
    SUM(nominal_full_pack_energy), COUNT(nominal_full_pack_energy)
FROM battery_block_readings
WHERE gateway_id = %(g)s AND ts >= %(a)s AND ts < %(b)s
GROUP BY serial, bucket
"""


def _next(meter: str, energy: bool) -> str:
    where = " AND energy_imported IS NOT NULL AND energy_exported IS NOT NULL" if energy else ""
    return (
        f"(SELECT ts FROM meter_readings WHERE gateway_id = %(g)s AND meter = '{meter}'"
        f" AND ts >= %(b)s{where} ORDER BY ts LIMIT 1)"
    )


#: The next sample after a range, per meter (its delta) and for the site meter (its gap).
_NEXT_SAMPLES = "SELECT " + ", ".join([_next(m, True) for m in METERS] + [_next("site", False)])


# --------------------------------------------------------------------------- recomputing


def _replace(cursor: Any, table: str, columns: str, select: str, g: int, a: Any, b: Any) -> None:
    """Delete the buckets of [a, b) and insert them again from ``select``."""
    span = {"g": g, "a": a, "b": b}
    cursor.execute(
        f"DELETE FROM {table} WHERE gateway_id = %(g)s AND bucket >= %(a)s AND bucket < %(b)s", span
    )
    cursor.execute(f"INSERT INTO {table} ({columns}) {select}", span)


def meter_range(cursor: Any, gateway: int, start: dt.datetime, end: dt.datetime) -> None:
    """Recompute meter_minutes over [start, end) (whole minutes) and the hours around it."""
    _replace(cursor, "meter_minutes", _COLUMN_LIST, _METER_MINUTES_SELECT, gateway, start, end)
    hours_end = hour_of(end - MINUTE) + HOUR
    _replace(
        cursor, "meter_hours", _COLUMN_LIST, _METER_HOURS_SELECT, gateway, hour_of(start), hours_end
    )


def soe_range(cursor: Any, gateway: int, start: dt.datetime, end: dt.datetime) -> None:
    """Recompute soe_minutes over [start, end)."""
    _replace(
        cursor,
        "soe_minutes",
        "gateway_id, bucket, samples, soe_min, soe_max, soe_sum",
        _SOE_MINUTES_SELECT,
        gateway,
        start,
        end,
    )


def block_range(cursor: Any, gateway: int, start: dt.datetime, end: dt.datetime) -> None:
    """Recompute block_hours over [start, end) (whole hours)."""
    _replace(
        cursor,
        "block_hours",
        "gateway_id, serial, bucket, full_pack_sum, full_pack_n",
        _BLOCK_HOURS_SELECT,
        gateway,
        start,
        end,
    )


def refresh(cursor: Any, buckets: dict[int, Touched]) -> None:
    """Recompute every bucket a batch touched, in the batch's own transaction."""
    for gateway, touched_ in sorted(buckets.items()):
        spans = runs(touched_.meter_minutes, MINUTE)
        extra: set[dt.datetime] = set()
        for _start, end in spans:
            cursor.execute(_NEXT_SAMPLES, {"g": gateway, "b": end})
            for found in cursor.fetchone():
                if found is not None:
                    extra.add(minute_of(found))
        covered = set(touched_.meter_minutes)
        for start, end in runs(covered | extra, MINUTE):
            meter_range(cursor, gateway, start, end)
        for start, end in runs(touched_.soe_minutes, MINUTE):
            soe_range(cursor, gateway, start, end)
        for start, end in runs(touched_.block_hours, HOUR):
            block_range(cursor, gateway, start, end)


# --------------------------------------------------------------------------- rebuilding


@dataclass(frozen=True)
class DayPlan:
    """One UTC day of one gateway that :func:`summarize` rebuilds."""

    gateway: int
    day: dt.date


def _days(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    day = start
    while day < end:
        yield day
        day += dt.timedelta(days=1)


def raw_days(
    cursor: Any, table: str, gateway_column: str = "gateway_id"
) -> dict[int, set[dt.date]]:
    """gateway id -> the UTC days with rows in one raw table (one pass over its ts index
    per gateway: a loose index scan, day by day)."""
    cursor.execute("SELECT id FROM gateways ORDER BY id")
    found: dict[int, set[dt.date]] = {}
    for (gateway,) in cursor.fetchall():
        days: set[dt.date] = set()
        start: Any = None
        while True:
            cursor.execute(
                f"SELECT MIN(ts) FROM {table} WHERE {gateway_column} = %s"
                + (" AND ts >= %s" if start is not None else ""),
                (gateway, start) if start is not None else (gateway,),
            )
            (first,) = cursor.fetchone()
            if first is None:
                break
            days.add(first.date())
            start = dt.datetime.combine(first.date() + dt.timedelta(days=1), dt.time())
        if days:
            found[int(gateway)] = days
    return found


def summarize(
    connection: Any,
    start: dt.date | None = None,
    end: dt.date | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Rebuild the summaries of the UTC days [start, end) that have raw rows; counts.

    Days without raw rows (pruned, or never written) keep their summaries. A gateway's
    oldest raw day keeps its meter summaries when it has some and older ones exist: its
    first sample's predecessor was pruned, so its first delta could no longer be recomputed
    (a day without summaries yet is built, its first delta unknown). Commits day
    by day, so it can be stopped and run again.
    """
    say = progress or (lambda line: _LOGGER.info("%s", line))
    cursor = connection.cursor()
    done = {"days": 0, "skipped": 0}
    try:
        tables = (
            ("meter_readings", meter_range),
            ("soe_readings", soe_range),
            ("battery_block_readings", block_range),
        )
        for table, rebuild in tables:
            per_gateway = raw_days(cursor, table)
            for gateway, days in sorted(per_gateway.items()):
                wanted = sorted(
                    d for d in days if (start is None or d >= start) and (end is None or d < end)
                )
                if table == "meter_readings" and wanted and wanted[0] == min(days):
                    midnight = dt.datetime.combine(wanted[0], dt.time())
                    cursor.execute(
                        "SELECT (SELECT 1 FROM meter_minutes WHERE gateway_id = %s"
                        " AND bucket < %s LIMIT 1), (SELECT 1 FROM meter_minutes"
                        " WHERE gateway_id = %s AND bucket >= %s AND bucket < %s LIMIT 1)",
                        (gateway, midnight, gateway, midnight, midnight + DAY),
                    )
                    earlier, already = cursor.fetchone()
                    if earlier and already:
                        say(
                            f"summarize: kept the summaries of gateway {gateway} on {wanted[0]}"
                            " (its oldest raw day: the reading before it was pruned)"
                        )
                        wanted = wanted[1:]
                        done["skipped"] += 1
                for number, day in enumerate(wanted, start=1):
                    first = dt.datetime.combine(day, dt.time())
                    rebuild(cursor, gateway, first, first + DAY)
                    connection.commit()
                    done["days"] += 1
                    if number == len(wanted) or number % 30 == 0:
                        say(
                            f"summarize {table}: gateway {gateway}, {day}"
                            f" ({number} of {len(wanted)} days)"
                        )
    finally:
        cursor.close()
    return done
