-- Energy per month, kWh: grid import and export, solar, home, battery; self-consumption and self-sufficiency %; battery cycles.
--
-- This file reads the summaries (meter_hours; meter_minutes when the time zone's offsets or
-- changes are not whole hours, e.g. Asia/Kolkata), which hold the energy deltas per meter
-- computed with the rules below (consumers/mysql/summaries.py), so it gives the numbers of
-- raw/monthly.sql (the same report over the raw readings) while reading a year as 8,760 rows
-- per gateway, and still works once the raw readings are pruned.
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
--   (block_hours: whole UTC hours); NULL without block readings (e.g. Powerwall 3).
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
buckets AS (
    SELECT h.gateway_id, DATE(h.bucket + INTERVAL COALESCE(z.offset_s, 0) SECOND) AS unit,
        h.site_in, h.site_out, h.solar_out, h.load_in, h.battery_in, h.battery_out
    FROM meter_hours AS h
    LEFT JOIN tz AS z ON h.bucket >= z.start_ts AND h.bucket < z.end_ts
    WHERE h.bucket >= @from_ts AND h.bucket < @to_ts
      AND (@gateway_id IS NULL OR h.gateway_id = @gateway_id)
),
energy AS (
    SELECT d.gateway_id, d.unit - INTERVAL (DAYOFMONTH(d.unit) - 1) DAY AS month,
        SUM(d.site_in) / 1000 AS grid_import,
        SUM(d.site_out) / 1000 AS grid_export,
        SUM(d.solar_out) / 1000 AS solar,
        SUM(d.load_in) / 1000 AS home,
        SUM(d.battery_in) / 1000 AS charged,
        SUM(d.battery_out) / 1000 AS discharged
    FROM buckets AS d
    GROUP BY d.gateway_id, month
),
packs AS (
    SELECT b.gateway_id, b.serial, SUM(b.full_pack_sum) / NULLIF(SUM(b.full_pack_n), 0) AS full_wh
    FROM block_hours AS b
    WHERE b.bucket >= @from_ts AND b.bucket < @to_ts
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
