-- powerwall-bus schema, version 1: readings as the poller publishes them.
-- MySQL 8 and MariaDB 10.6+. Times are UTC with milliseconds (DATETIME(3)).
-- Every table's primary key makes a redelivered message a no-op (INSERT IGNORE).
-- Statements are separated by lines that end with ';' and are applied in order, once.

CREATE TABLE IF NOT EXISTS gateways (
    id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT,
    din VARCHAR(64) NOT NULL,
    first_seen DATETIME(3) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_gateways_din (din)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- One row per meter per sample (/api/meters/aggregates, every 2 s by default).
-- Powers in W (site > 0 import, battery > 0 discharge), voltage V, frequency Hz,
-- current A, energy counters in Wh as the gateway reports them (lifetime, monotonic).
CREATE TABLE IF NOT EXISTS meter_readings (
    gateway_id SMALLINT UNSIGNED NOT NULL,
    ts DATETIME(3) NOT NULL,
    meter ENUM('site', 'battery', 'load', 'solar') NOT NULL,
    instant_power DOUBLE NULL,
    instant_reactive_power DOUBLE NULL,
    instant_apparent_power DOUBLE NULL,
    instant_average_voltage DOUBLE NULL,
    frequency DOUBLE NULL,
    instant_total_current DOUBLE NULL,
    energy_imported DOUBLE NULL,
    energy_exported DOUBLE NULL,
    PRIMARY KEY (gateway_id, meter, ts),
    KEY ix_meter_readings_ts (ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- State of energy: the gateway's raw % and the app's scale ((raw - 5) / 0.95).
CREATE TABLE IF NOT EXISTS soe_readings (
    gateway_id SMALLINT UNSIGNED NOT NULL,
    ts DATETIME(3) NOT NULL,
    percentage DOUBLE NOT NULL,
    app_percentage DOUBLE NOT NULL,
    PRIMARY KEY (gateway_id, ts),
    KEY ix_soe_readings_ts (ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Grid status, stored only when it changes (plus the first sample a writer sees).
CREATE TABLE IF NOT EXISTS grid_status_changes (
    gateway_id SMALLINT UNSIGNED NOT NULL,
    ts DATETIME(3) NOT NULL,
    grid_status VARCHAR(40) NOT NULL,
    grid_services_active TINYINT(1) NULL,
    PRIMARY KEY (gateway_id, ts),
    KEY ix_grid_status_changes_ts (ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Per Powerwall, from /api/system_status battery_blocks (every 30 s by default).
CREATE TABLE IF NOT EXISTS battery_block_readings (
    gateway_id SMALLINT UNSIGNED NOT NULL,
    ts DATETIME(3) NOT NULL,
    serial VARCHAR(40) NOT NULL,
    p_out DOUBLE NULL,
    q_out DOUBLE NULL,
    v_out DOUBLE NULL,
    f_out DOUBLE NULL,
    i_out DOUBLE NULL,
    energy_charged DOUBLE NULL,
    energy_discharged DOUBLE NULL,
    nominal_energy_remaining DOUBLE NULL,
    nominal_full_pack_energy DOUBLE NULL,
    PRIMARY KEY (gateway_id, serial, ts),
    KEY ix_battery_block_readings_ts (ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Vitals, compactly: numeric signals only, one narrow row per (device, signal, sample),
-- with the device DINs and signal names kept once in dictionary tables.
CREATE TABLE IF NOT EXISTS vitals_devices (
    id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT,
    gateway_id SMALLINT UNSIGNED NOT NULL,
    din VARCHAR(96) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_vitals_devices (gateway_id, din)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS vitals_signals (
    id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT,
    name VARCHAR(96) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_vitals_signals_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS vitals_readings (
    device_id SMALLINT UNSIGNED NOT NULL,
    signal_id SMALLINT UNSIGNED NOT NULL,
    ts DATETIME(3) NOT NULL,
    value DOUBLE NOT NULL,
    PRIMARY KEY (device_id, signal_id, ts),
    KEY ix_vitals_readings_ts (ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The poller's status messages (every 30 s and on changes): state and the full payload.
CREATE TABLE IF NOT EXISTS poller_events (
    gateway_id SMALLINT UNSIGNED NOT NULL,
    ts DATETIME(3) NOT NULL,
    gateway_state VARCHAR(32) NOT NULL,
    firmware VARCHAR(40) NULL,
    payload LONGTEXT NOT NULL,
    PRIMARY KEY (gateway_id, ts),
    KEY ix_poller_events_ts (ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
