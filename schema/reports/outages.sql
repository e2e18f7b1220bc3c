-- Grid outages overlapping the range: start, end, duration; one still open at the end of the range is ongoing.
--
-- Run by `pwbus report outages`, which sets these session variables:
--   @from_ts, @to_ts  the range [from, to) in UTC, 'YYYY-MM-DD hh:mm:ss'
--   @gateway_id       gateways.id, or NULL for every gateway
--   @tz               UTC offsets of the report's time zone: JSON
--                     [{"start": utc, "end": utc, "offset": seconds}, ...]; NULL = UTC
--
-- From grid_status_changes (only changes are stored). The grid is up in the state
-- SystemGridConnected; every other state (SystemIslandedActive, SystemTransitionToGrid,
-- SystemIslandedReady, SystemTransitionToIsland, SystemWaitForUser) counts as down, and
-- consecutive down states are one outage. An outage starts at the first change to a down
-- state and ends at the next change to SystemGridConnected.
-- Listed: every outage that overlaps [from, to), with its real start (possibly before the
-- range, e.g. an outage that began the evening before). One without a change back to
-- SystemGridConnected before the end of the range is ongoing: no end, and its duration runs
-- to the end of the range (or to now, if that is earlier).
-- Times are shown in the report's time zone, durations in seconds and hours.
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
    WHERE @gateway_id IS NULL OR g.id = @gateway_id
),
changes AS (
    SELECT c.gateway_id, c.ts,
        CASE WHEN c.grid_status = 'SystemGridConnected' THEN 0 ELSE 1 END AS down,
        LAG(CASE WHEN c.grid_status = 'SystemGridConnected' THEN 0 ELSE 1 END)
            OVER (PARTITION BY c.gateway_id ORDER BY c.ts) AS was_down
    FROM grid_status_changes AS c
    WHERE c.ts < @to_ts AND (@gateway_id IS NULL OR c.gateway_id = @gateway_id)
),
edges AS (
    SELECT e.gateway_id, e.ts, e.down
    FROM changes AS e
    WHERE (e.was_down IS NULL AND e.down = 1) OR e.down <> e.was_down
),
spans AS (
    SELECT e.gateway_id, e.down, e.ts AS started,
        LEAD(e.ts) OVER (PARTITION BY e.gateway_id ORDER BY e.ts) AS ended
    FROM edges AS e
),
outages AS (
    SELECT s.gateway_id, s.started, s.ended,
        TIMESTAMPDIFF(MICROSECOND, s.started,
            COALESCE(s.ended, LEAST(CAST(@to_ts AS DATETIME(3)), UTC_TIMESTAMP(3)))) / 1000000
            AS seconds
    FROM spans AS s
    WHERE s.down = 1 AND (s.ended IS NULL OR s.ended > @from_ts)
)
SELECT
    sel.din AS gateway,
    DATE_FORMAT(o.started + INTERVAL COALESCE(zs.offset_s, 0) SECOND, '%Y-%m-%d %H:%i:%s')
        AS started,
    DATE_FORMAT(o.ended + INTERVAL COALESCE(ze.offset_s, 0) SECOND, '%Y-%m-%d %H:%i:%s')
        AS ended,
    CASE WHEN o.ended IS NULL THEN 1 ELSE 0 END AS ongoing,
    ROUND(o.seconds) AS duration_s,
    ROUND(o.seconds / 3600, 2) AS duration_h
FROM outages AS o
JOIN sel ON sel.gateway_id = o.gateway_id
LEFT JOIN tz AS zs ON o.started >= zs.start_ts AND o.started < zs.end_ts
LEFT JOIN tz AS ze ON o.ended >= ze.start_ts AND o.ended < ze.end_ts
ORDER BY o.started, sel.din
