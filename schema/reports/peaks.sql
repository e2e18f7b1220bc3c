-- Peak grid import and export per day, W, and when (time in the report's time zone).
--
-- This file reads the summaries (meter_hours; meter_minutes when the time zone's offsets or
-- changes are not whole hours), so it gives the numbers of raw/peaks.sql (the same report
-- over the raw readings) while reading a year as 8,760 rows per gateway, and still works
-- once the raw readings are pruned.
--
-- Run by `pwbus report peaks`, which sets these session variables:
--   @from_ts, @to_ts  the range [from, to) in UTC, 'YYYY-MM-DD hh:mm:ss'
--   @gateway_id       gateways.id, or NULL for every gateway (one row per gateway and day)
--   @tz               UTC offsets of the report's time zone: JSON
--                     [{"start": utc, "end": utc, "offset": seconds}, ...]; NULL = UTC
--   @days             the calendar: JSON [{"day": "YYYY-MM-DD", ...}, ...]
--
-- From the site meter's instant_power (> 0 import, < 0 export): the highest import and the
-- highest export (shown positive) of each day, with the first reading that reached it.
-- NULL when the day had no import (or no export) at all.
WITH
tz AS (
    SELECT z.start_ts, z.end_ts, z.offset_s
    FROM JSON_TABLE(@tz, '$[*]' COLUMNS (
        start_ts DATETIME(3) PATH '$.start',
        end_ts DATETIME(3) PATH '$.end',
        offset_s INT PATH '$.offset')) AS z
),
cal AS (
    SELECT c.day FROM JSON_TABLE(@days, '$[*]' COLUMNS (day DATE PATH '$.day')) AS c
),
sel AS (
    SELECT g.id AS gateway_id, g.din FROM gateways AS g
    WHERE (@gateway_id IS NULL OR g.id = @gateway_id) AND g.first_seen < @to_ts
),
buckets AS (
    SELECT h.gateway_id, COALESCE(z.offset_s, 0) AS offset_s,
        DATE(h.bucket + INTERVAL COALESCE(z.offset_s, 0) SECOND) AS day,
        h.site_p_max, h.site_max_at, h.site_p_min, h.site_min_at
    FROM meter_hours AS h
    LEFT JOIN tz AS z ON h.bucket >= z.start_ts AND h.bucket < z.end_ts
    WHERE h.bucket >= @from_ts AND h.bucket < @to_ts
      AND (@gateway_id IS NULL OR h.gateway_id = @gateway_id)
),
ranked AS (
    SELECT b.*,
        MAX(b.site_p_max) OVER (PARTITION BY b.gateway_id, b.day) AS top,
        MIN(b.site_p_min) OVER (PARTITION BY b.gateway_id, b.day) AS bottom
    FROM buckets AS b
),
peaks AS (
    SELECT r.gateway_id, r.day,
        MAX(CASE WHEN r.top > 0 THEN r.top END) AS import_w,
        MIN(CASE WHEN r.top > 0 AND r.site_p_max = r.top
            THEN r.site_max_at + INTERVAL r.offset_s SECOND END) AS import_at,
        MAX(CASE WHEN r.bottom < 0 THEN -r.bottom END) AS export_w,
        MIN(CASE WHEN r.bottom < 0 AND r.site_p_min = r.bottom
            THEN r.site_min_at + INTERVAL r.offset_s SECOND END) AS export_at
    FROM ranked AS r
    GROUP BY r.gateway_id, r.day
)
SELECT
    DATE_FORMAT(cal.day, '%Y-%m-%d') AS day,
    sel.din AS gateway,
    ROUND(k.import_w, 1) AS peak_import_w,
    DATE_FORMAT(k.import_at, '%Y-%m-%d %H:%i:%s') AS peak_import_at,
    ROUND(k.export_w, 1) AS peak_export_w,
    DATE_FORMAT(k.export_at, '%Y-%m-%d %H:%i:%s') AS peak_export_at
FROM cal
CROSS JOIN sel
LEFT JOIN peaks AS k ON k.gateway_id = sel.gateway_id AND k.day = cal.day
ORDER BY cal.day, sel.din
