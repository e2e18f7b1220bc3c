-- Energy per month, kWh: grid import and export, solar, home, battery; self-consumption and self-sufficiency %; battery cycles.
--
-- Run by `pwbus report monthly`, which sets these session variables (set them yourself to run
-- this file with the mysql client):
--   @from_ts, @to_ts  the range [from, to) in UTC, 'YYYY-MM-DD hh:mm:ss'
--   @gateway_id       gateways.id, or NULL for every gateway (one row per gateway and day;
--                     gateways first seen after the range are left out)
--   @tz               UTC offsets of the report's time zone: JSON
--                     [{"start": utc, "end": utc, "offset": seconds}, ...]; NULL = UTC
--   @months           the calendar: JSON [{"month": "YYYY-MM-01"}, ...]; every month listed
--                     gets a row, with NULL energy when it has no reading at all
--
-- Energy comes from the lifetime counters of meter_readings (Wh), never from power:
--   delta = this sample's counter - the previous sample's counter (same gateway and meter).
--   Counter reset: when a counter drops by more than 1 Wh, the new value is the energy since
--     the reset (the counter restarted from 0); a drop of up to 1 Wh is meter jitter, 0.
--   Gaps: a delta belongs to the month of its later sample, however long the gap before it.
--     So the energy of a gap lands in the month of the first reading after it, and the
--     sum over months equals the counters' total change (the same rules as daily.sql:
--     the months add up to the days).
--     The first sample of the range is measured from the last sample before the range,
--     looked up per meter through the primary key however long ago it was.
--   Samples with a NULL counter are skipped (the next delta spans them).
-- Meters (gateway sign conventions): site.energy_imported = bought from the grid,
--   site.energy_exported = sent to the grid, solar.energy_exported = produced,
--   load.energy_imported = home consumption, battery.energy_imported = charged,
--   battery.energy_exported = discharged.
-- self_consumption_pct = (solar - grid export) / solar: the share of solar used on site.
-- self_sufficiency_pct = (home - grid import) / home: the share of home use not from the grid.
--   Both are clamped to 0..100 (a battery exported to the grid or charged from it would
--   push them outside) and NULL when the denominator is 0.
-- battery_cycles = discharged energy / usable capacity, the capacity being the sum over
--   the Powerwalls of their average nominal_full_pack_energy over the whole range
--   (battery_block_readings); NULL without block readings (e.g. Powerwall 3).
-- Months are calendar months of the time zone in @tz (UTC by default); a range that starts
-- or ends inside a month counts only the part of it in the range.
WITH
tz AS (
    SELECT z.start_ts, z.end_ts, z.offset_s
    FROM JSON_TABLE(@tz, '$[*]' COLUMNS (
        start_ts DATETIME(3) PATH '$.start',
        end_ts DATETIME(3) PATH '$.end',
        offset_s INT PATH '$.offset')) AS z
),
cal AS (
    SELECT c.month FROM JSON_TABLE(@months, '$[*]' COLUMNS (month DATE PATH '$.month')) AS c
),
sel AS (
    SELECT g.id AS gateway_id, g.din FROM gateways AS g
    WHERE (@gateway_id IS NULL OR g.id = @gateway_id) AND g.first_seen < @to_ts
),
steps AS (
    SELECT m.gateway_id, m.meter, m.ts,
        m.energy_imported AS e_in,
        m.energy_exported AS e_out,
        LAG(m.energy_imported) OVER w AS lag_in,
        LAG(m.energy_exported) OVER w AS lag_out
    FROM meter_readings AS m
    WHERE m.ts >= @from_ts AND m.ts < @to_ts
      AND (@gateway_id IS NULL OR m.gateway_id = @gateway_id)
      AND m.energy_imported IS NOT NULL AND m.energy_exported IS NOT NULL
    WINDOW w AS (PARTITION BY m.gateway_id, m.meter ORDER BY m.ts)
),
linked AS (
    -- the first reading of the range continues from the last one before it (a primary key
    -- lookup, made only where LAG found nothing: COALESCE stops at its first non-NULL)
    SELECT s.gateway_id, s.meter, s.ts, s.e_in, s.e_out,
        COALESCE(s.lag_in, (SELECT b.energy_imported FROM meter_readings AS b
            WHERE b.gateway_id = s.gateway_id AND b.meter = s.meter AND b.ts < @from_ts
              AND b.energy_imported IS NOT NULL AND b.energy_exported IS NOT NULL
            ORDER BY b.ts DESC LIMIT 1)) AS prev_in,
        COALESCE(s.lag_out, (SELECT b.energy_exported FROM meter_readings AS b
            WHERE b.gateway_id = s.gateway_id AND b.meter = s.meter AND b.ts < @from_ts
              AND b.energy_imported IS NOT NULL AND b.energy_exported IS NOT NULL
            ORDER BY b.ts DESC LIMIT 1)) AS prev_out
    FROM steps AS s
),
deltas AS (
    SELECT s.gateway_id, s.meter,
        DATE(s.ts + INTERVAL COALESCE(z.offset_s, 0) SECOND) AS local_day,
        CASE WHEN s.prev_in IS NULL THEN NULL
             WHEN s.e_in >= s.prev_in THEN s.e_in - s.prev_in
             WHEN s.prev_in - s.e_in <= 1 THEN 0
             ELSE s.e_in END AS d_in,
        CASE WHEN s.prev_out IS NULL THEN NULL
             WHEN s.e_out >= s.prev_out THEN s.e_out - s.prev_out
             WHEN s.prev_out - s.e_out <= 1 THEN 0
             ELSE s.e_out END AS d_out
    FROM linked AS s
    LEFT JOIN tz AS z ON s.ts >= z.start_ts AND s.ts < z.end_ts
),
energy AS (
    SELECT d.gateway_id, d.local_day - INTERVAL (DAYOFMONTH(d.local_day) - 1) DAY AS month,
        SUM(CASE WHEN d.meter = 'site' THEN d.d_in END) / 1000 AS grid_import,
        SUM(CASE WHEN d.meter = 'site' THEN d.d_out END) / 1000 AS grid_export,
        SUM(CASE WHEN d.meter = 'solar' THEN d.d_out END) / 1000 AS solar,
        SUM(CASE WHEN d.meter = 'load' THEN d.d_in END) / 1000 AS home,
        SUM(CASE WHEN d.meter = 'battery' THEN d.d_in END) / 1000 AS charged,
        SUM(CASE WHEN d.meter = 'battery' THEN d.d_out END) / 1000 AS discharged
    FROM deltas AS d
    GROUP BY d.gateway_id, month
),
packs AS (
    SELECT b.gateway_id, b.serial, AVG(b.nominal_full_pack_energy) AS full_wh
    FROM battery_block_readings AS b
    WHERE b.ts >= @from_ts AND b.ts < @to_ts
      AND (@gateway_id IS NULL OR b.gateway_id = @gateway_id)
    GROUP BY b.gateway_id, b.serial
),
capacity AS (
    SELECT k.gateway_id, SUM(k.full_wh) / 1000 AS kwh FROM packs AS k GROUP BY k.gateway_id
)
SELECT
    DATE_FORMAT(cal.month, '%Y-%m') AS month,
    sel.din AS gateway,
    ROUND(e.grid_import, 3) AS grid_import_kwh,
    ROUND(e.grid_export, 3) AS grid_export_kwh,
    ROUND(e.solar, 3) AS solar_kwh,
    ROUND(e.home, 3) AS home_kwh,
    ROUND(e.charged, 3) AS battery_charged_kwh,
    ROUND(e.discharged, 3) AS battery_discharged_kwh,
    ROUND(CASE WHEN e.solar > 0
        THEN LEAST(100, GREATEST(0, 100 * (e.solar - e.grid_export) / e.solar)) END, 1)
        AS self_consumption_pct,
    ROUND(CASE WHEN e.home > 0
        THEN LEAST(100, GREATEST(0, 100 * (e.home - e.grid_import) / e.home)) END, 1)
        AS self_sufficiency_pct,
    ROUND(e.discharged / NULLIF(capacity.kwh, 0), 3) AS battery_cycles
FROM cal
CROSS JOIN sel
LEFT JOIN energy AS e ON e.gateway_id = sel.gateway_id AND e.month = cal.month
LEFT JOIN capacity ON capacity.gateway_id = sel.gateway_id
ORDER BY cal.month, sel.din
