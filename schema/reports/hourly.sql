-- Average power by hour of day over the range, W: grid (+ import, - export), solar, home, battery (+ discharge, - charge).
--
-- This file reads the summaries (meter_hours; meter_minutes when the time zone's offsets or
-- changes are not whole hours), so it gives the numbers of raw/hourly.sql (the same report
-- over the raw readings) while reading a year as 8,760 rows per gateway, and still works
-- once the raw readings are pruned.
--
-- Run by `pwbus report hourly`, which sets these session variables:
--   @from_ts, @to_ts  the range [from, to) in UTC, 'YYYY-MM-DD hh:mm:ss'
--   @gateway_id       gateways.id, or NULL for every gateway (24 rows per gateway)
--   @tz               UTC offsets of the report's time zone: JSON
--                     [{"start": utc, "end": utc, "offset": seconds}, ...]; NULL = UTC
--
-- hour = the hour of day (0-23) of each reading in the report's time zone. Each value is the
-- mean instant_power of that meter over every reading of that hour in the range, i.e. the
-- average power of a typical day. Readings come at a fixed interval, so this is a time
-- average; hours with gaps simply have fewer readings, and an hour without any reading in
-- the whole range has no row. Signs as the gateway gives them.
WITH
tz AS (
    SELECT z.start_ts, z.end_ts, z.offset_s
    FROM JSON_TABLE(@tz, '$[*]' COLUMNS (
        start_ts DATETIME(3) PATH '$.start',
        end_ts DATETIME(3) PATH '$.end',
        offset_s INT PATH '$.offset')) AS z
),
sel AS (
    SELECT g.id AS gateway_id, g.din FROM gateways AS g
    WHERE (@gateway_id IS NULL OR g.id = @gateway_id) AND g.first_seen < @to_ts
),
buckets AS (
    SELECT h.*, HOUR(h.bucket + INTERVAL COALESCE(z.offset_s, 0) SECOND) AS hour
    FROM meter_hours AS h
    LEFT JOIN tz AS z ON h.bucket >= z.start_ts AND h.bucket < z.end_ts
    WHERE h.bucket >= @from_ts AND h.bucket < @to_ts
      AND (@gateway_id IS NULL OR h.gateway_id = @gateway_id)
)
SELECT
    s.hour AS hour,
    sel.din AS gateway,
    ROUND(SUM(s.site_p_sum) / NULLIF(SUM(s.site_p_n), 0), 1) AS grid_w,
    ROUND(SUM(s.solar_p_sum) / NULLIF(SUM(s.solar_p_n), 0), 1) AS solar_w,
    ROUND(SUM(s.load_p_sum) / NULLIF(SUM(s.load_p_n), 0), 1) AS home_w,
    ROUND(SUM(s.battery_p_sum) / NULLIF(SUM(s.battery_p_n), 0), 1) AS battery_w,
    SUM(s.samples) AS samples
FROM buckets AS s
JOIN sel ON sel.gateway_id = s.gateway_id
GROUP BY sel.din, s.hour
ORDER BY sel.din, s.hour
