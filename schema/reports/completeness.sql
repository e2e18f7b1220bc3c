-- Data completeness per day: meter samples stored vs expected at the poll interval, and the longest gap.
--
-- This file reads the summaries (meter_hours: site samples and the longest gap per hour;
-- meter_minutes for the first reading), so it gives the numbers of raw/completeness.sql
-- while reading a year as 8,760 rows per gateway, and still works once the raw readings
-- are pruned.
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
    SELECT sel.gateway_id, (SELECT MIN(b.bucket) FROM meter_minutes AS b
        WHERE b.gateway_id = sel.gateway_id AND b.samples > 0) AS first_ts
    FROM sel
),
per_day AS (
    SELECT h.gateway_id,
        DATE(h.bucket + INTERVAL COALESCE(z.offset_s, 0) SECOND) AS day,
        SUM(h.samples) AS samples,
        MAX(h.max_gap_s) AS longest_gap
    FROM meter_hours AS h
    LEFT JOIN tz AS z ON h.bucket >= z.start_ts AND h.bucket < z.end_ts
    WHERE h.bucket >= @from_ts AND h.bucket < @to_ts
      AND (@gateway_id IS NULL OR h.gateway_id = @gateway_id)
    GROUP BY h.gateway_id, day
    HAVING SUM(h.samples) > 0
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
