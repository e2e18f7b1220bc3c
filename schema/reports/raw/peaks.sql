-- Peak grid import and export per day, W, and when (time in the report's time zone).
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
site AS (
    SELECT m.gateway_id, m.instant_power AS power,
        m.ts + INTERVAL COALESCE(z.offset_s, 0) SECOND AS local_ts
    FROM meter_readings AS m
    LEFT JOIN tz AS z ON m.ts >= z.start_ts AND m.ts < z.end_ts
    WHERE m.meter = 'site' AND m.ts >= @from_ts AND m.ts < @to_ts
      AND (@gateway_id IS NULL OR m.gateway_id = @gateway_id)
      AND m.instant_power IS NOT NULL
),
ranked AS (
    SELECT s.gateway_id, DATE(s.local_ts) AS day, s.power, s.local_ts,
        ROW_NUMBER() OVER (PARTITION BY s.gateway_id, DATE(s.local_ts)
                           ORDER BY s.power DESC, s.local_ts) AS import_rank,
        ROW_NUMBER() OVER (PARTITION BY s.gateway_id, DATE(s.local_ts)
                           ORDER BY s.power, s.local_ts) AS export_rank
    FROM site AS s
),
peaks AS (
    SELECT r.gateway_id, r.day,
        MAX(CASE WHEN r.import_rank = 1 AND r.power > 0 THEN r.power END) AS import_w,
        MAX(CASE WHEN r.import_rank = 1 AND r.power > 0 THEN r.local_ts END) AS import_at,
        MAX(CASE WHEN r.export_rank = 1 AND r.power < 0 THEN -r.power END) AS export_w,
        MAX(CASE WHEN r.export_rank = 1 AND r.power < 0 THEN r.local_ts END) AS export_at
    FROM ranked AS r
    WHERE r.import_rank = 1 OR r.export_rank = 1
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
