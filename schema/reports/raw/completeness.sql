-- Data completeness per day: meter samples stored vs expected at the poll interval, and the longest gap.
--
-- Run by `pwbus report completeness`, which sets these session variables:
--   @from_ts, @to_ts  the range [from, to) in UTC, 'YYYY-MM-DD hh:mm:ss'
--   @gateway_id       gateways.id, or NULL for every gateway first seen before the range ends
--   @tz               UTC offsets of the report's time zone: JSON
--                     [{"start": utc, "end": utc, "offset": seconds}, ...]; NULL = UTC
--   @days             the calendar: JSON [{"day": "YYYY-MM-DD", "start": utc, "end": utc}, ...]
--   @interval_s       the expected interval between meter samples, s (the poller's 2 s)
--
-- samples = readings of the site meter that day (one per /api/meters/aggregates sample).
-- expected = the day's length / @interval_s; the length comes from the calendar, so a day
-- with a daylight-saving change has 23 or 25 hours, and a day that has not ended yet counts
-- only up to now (a day entirely in the future expects nothing: NULL %). Time before the
-- gateway's first reading (from the start of its minute) is not expected either: a gateway
-- installed at noon is not half missing on its first day.
-- completeness_pct = 100 * samples / expected (above 100 when samples come faster).
-- A day without any sample has a row with 0 samples and 0 %.
-- longest_gap_s = the longest time between two consecutive samples, counted on the day of
-- the later one (as energy deltas are: the first sample of the range is measured from the
-- last one before it, however long ago); NULL without an earlier sample.
WITH
tz AS (
    SELECT z.start_ts, z.end_ts, z.offset_s
    FROM JSON_TABLE(@tz, '$[*]' COLUMNS (
        start_ts DATETIME(3) PATH '$.start',
        end_ts DATETIME(3) PATH '$.end',
        offset_s INT PATH '$.offset')) AS z
),
cal AS (
    SELECT c.day, c.start_ts, c.end_ts
    FROM JSON_TABLE(@days, '$[*]' COLUMNS (
        day DATE PATH '$.day',
        start_ts DATETIME(3) PATH '$.start',
        end_ts DATETIME(3) PATH '$.end')) AS c
),
sel AS (
    SELECT g.id AS gateway_id, g.din FROM gateways AS g
    WHERE (@gateway_id IS NULL OR g.id = @gateway_id) AND g.first_seen < @to_ts
),
firsts AS (
    SELECT sel.gateway_id, CAST(DATE_FORMAT((SELECT MIN(m.ts) FROM meter_readings AS m
        WHERE m.gateway_id = sel.gateway_id AND m.meter = 'site'), '%Y-%m-%d %H:%i:00')
        AS DATETIME) AS first_ts
    FROM sel
),
site AS (
    SELECT m.gateway_id, m.ts,
        COALESCE(LAG(m.ts) OVER (PARTITION BY m.gateway_id ORDER BY m.ts),
            (SELECT MAX(b.ts) FROM meter_readings AS b WHERE b.gateway_id = m.gateway_id
               AND b.meter = 'site' AND b.ts < @from_ts)) AS prev_ts
    FROM meter_readings AS m
    WHERE m.meter = 'site' AND m.ts >= @from_ts AND m.ts < @to_ts
      AND (@gateway_id IS NULL OR m.gateway_id = @gateway_id)
),
per_day AS (
    SELECT s.gateway_id,
        DATE(s.ts + INTERVAL COALESCE(z.offset_s, 0) SECOND) AS day,
        COUNT(*) AS samples,
        MAX(TIMESTAMPDIFF(MICROSECOND, s.prev_ts, s.ts)) / 1000000 AS longest_gap
    FROM site AS s
    LEFT JOIN tz AS z ON s.ts >= z.start_ts AND s.ts < z.end_ts
    GROUP BY s.gateway_id, day
),
expected AS (
    SELECT cal.day, f.gateway_id,
        GREATEST(0, TIMESTAMPDIFF(SECOND, GREATEST(cal.start_ts, COALESCE(f.first_ts, cal.start_ts)),
            LEAST(cal.end_ts, UTC_TIMESTAMP(3)))) / @interval_s AS samples
    FROM cal CROSS JOIN firsts AS f
)
SELECT
    DATE_FORMAT(cal.day, '%Y-%m-%d') AS day,
    sel.din AS gateway,
    COALESCE(d.samples, 0) AS samples,
    ROUND(x.samples) AS expected,
    ROUND(100 * COALESCE(d.samples, 0) / NULLIF(x.samples, 0), 1) AS completeness_pct,
    ROUND(d.longest_gap, 1) AS longest_gap_s
FROM cal
CROSS JOIN sel
JOIN expected AS x ON x.day = cal.day AND x.gateway_id = sel.gateway_id
LEFT JOIN per_day AS d ON d.gateway_id = sel.gateway_id AND d.day = cal.day
ORDER BY cal.day, sel.din
