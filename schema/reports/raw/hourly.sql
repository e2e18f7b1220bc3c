-- Average power by hour of day over the range, W: grid (+ import, - export), solar, home, battery (+ discharge, - charge).
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
samples AS (
    SELECT m.gateway_id, m.meter, m.instant_power,
        HOUR(m.ts + INTERVAL COALESCE(z.offset_s, 0) SECOND) AS hour
    FROM meter_readings AS m
    LEFT JOIN tz AS z ON m.ts >= z.start_ts AND m.ts < z.end_ts
    WHERE m.ts >= @from_ts AND m.ts < @to_ts
      AND (@gateway_id IS NULL OR m.gateway_id = @gateway_id)
)
SELECT
    s.hour AS hour,
    sel.din AS gateway,
    ROUND(AVG(CASE WHEN s.meter = 'site' THEN s.instant_power END), 1) AS grid_w,
    ROUND(AVG(CASE WHEN s.meter = 'solar' THEN s.instant_power END), 1) AS solar_w,
    ROUND(AVG(CASE WHEN s.meter = 'load' THEN s.instant_power END), 1) AS home_w,
    ROUND(AVG(CASE WHEN s.meter = 'battery' THEN s.instant_power END), 1) AS battery_w,
    SUM(CASE WHEN s.meter = 'site' THEN 1 ELSE 0 END) AS samples
FROM samples AS s
JOIN sel ON sel.gateway_id = s.gateway_id
GROUP BY sel.din, s.hour
ORDER BY sel.din, s.hour
