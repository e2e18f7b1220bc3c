-- powerwall-bus schema, version 4: views shaped for Grafana's MySQL data source.
--
-- Each view has a DATETIME column `time` (UTC; set the data source's session time zone to
-- +00:00, as Grafana recommends), a `gateway` (its DIN) and value columns, and reads the
-- summaries, so a panel over a year reads minutes or hours, never the raw readings.
-- configuration/grafana/powerwall-bus.json is a dashboard that uses them.

-- Power per minute, W (means of the minute; grid > 0 import, battery > 0 discharge).
CREATE OR REPLACE VIEW grafana_power AS
SELECT m.bucket AS time, g.din AS gateway,
    m.site_p_sum / NULLIF(m.site_p_n, 0) AS grid_w,
    m.solar_p_sum / NULLIF(m.solar_p_n, 0) AS solar_w,
    m.load_p_sum / NULLIF(m.load_p_n, 0) AS home_w,
    m.battery_p_sum / NULLIF(m.battery_p_n, 0) AS battery_w,
    m.site_p_min AS grid_min_w, m.site_p_max AS grid_max_w
FROM meter_minutes AS m JOIN gateways AS g ON g.id = m.gateway_id;

-- Energy per UTC hour, kWh, from the lifetime counters (the reports' rules).
CREATE OR REPLACE VIEW grafana_energy AS
SELECT h.bucket AS time, g.din AS gateway,
    h.site_in / 1000 AS grid_import_kwh, h.site_out / 1000 AS grid_export_kwh,
    h.solar_out / 1000 AS solar_kwh, h.load_in / 1000 AS home_kwh,
    h.battery_in / 1000 AS battery_charged_kwh, h.battery_out / 1000 AS battery_discharged_kwh
FROM meter_hours AS h JOIN gateways AS g ON g.id = h.gateway_id;

-- Energy per UTC day, kWh (a daily bar chart: one row per gateway and day).
CREATE OR REPLACE VIEW grafana_energy_daily AS
SELECT CAST(DATE(h.bucket) AS DATETIME) AS time, g.din AS gateway,
    SUM(h.site_in) / 1000 AS grid_import_kwh, SUM(h.site_out) / 1000 AS grid_export_kwh,
    SUM(h.solar_out) / 1000 AS solar_kwh, SUM(h.load_in) / 1000 AS home_kwh,
    SUM(h.battery_in) / 1000 AS battery_charged_kwh,
    SUM(h.battery_out) / 1000 AS battery_discharged_kwh
FROM meter_hours AS h JOIN gateways AS g ON g.id = h.gateway_id
GROUP BY g.din, CAST(DATE(h.bucket) AS DATETIME);

-- State of energy per minute, % on the app's scale ((raw - 5) / 0.95): mean, min, max.
CREATE OR REPLACE VIEW grafana_soe AS
SELECT s.bucket AS time, g.din AS gateway,
    (s.soe_sum / s.samples - 5) / 0.95 AS soe_pct,
    (s.soe_min - 5) / 0.95 AS soe_min_pct,
    (s.soe_max - 5) / 0.95 AS soe_max_pct
FROM soe_minutes AS s JOIN gateways AS g ON g.id = s.gateway_id;

-- Grid status changes: 1 while connected, 0 in any other state (an outage).
CREATE OR REPLACE VIEW grafana_grid AS
SELECT c.ts AS time, g.din AS gateway, c.grid_status,
    CASE WHEN c.grid_status = 'SystemGridConnected' THEN 1 ELSE 0 END AS grid_up
FROM grid_status_changes AS c JOIN gateways AS g ON g.id = c.gateway_id;

-- Grafana filters on time alone (every gateway): an index per summary keeps that a range.
ALTER TABLE meter_minutes ADD KEY ix_meter_minutes_bucket (bucket);
ALTER TABLE meter_hours ADD KEY ix_meter_hours_bucket (bucket);
ALTER TABLE soe_minutes ADD KEY ix_soe_minutes_bucket (bucket);
