-- powerwall-bus schema, version 2: summaries that keep the history small and fast for years.
-- resumable: every statement may run again (a run that stopped half way is resumed)
--
-- The summaries are recomputed from the raw readings bucket by bucket, never added to, so
-- writing a bucket twice (a redelivered message, `pwbus db summarize` run again) changes
-- nothing (consumers/mysql/summaries.py holds the rules). Times are the UTC start of the
-- bucket. Energy: Wh per meter from the lifetime counters with the rules of the reports
-- (a delta belongs to the bucket of its later sample; a drop over 1 Wh is a counter
-- reset, the new value being the energy since; a drop up to 1 Wh is jitter, 0); NULL when
-- no sample of the bucket had an earlier one to be measured from. Power: W, min, max, and
-- sum and count of the non-NULL values (mean = sum / count, exact over any range).
-- samples counts site rows; max_gap_s is the longest time from a site sample to the one
-- before it (however long before), for the samples of the bucket.

CREATE TABLE IF NOT EXISTS meter_minutes (
    gateway_id SMALLINT UNSIGNED NOT NULL,
    bucket DATETIME NOT NULL,
    samples SMALLINT UNSIGNED NOT NULL,
    max_gap_s DOUBLE NULL,
    site_in DOUBLE NULL, site_out DOUBLE NULL,
    battery_in DOUBLE NULL, battery_out DOUBLE NULL,
    load_in DOUBLE NULL, load_out DOUBLE NULL,
    solar_in DOUBLE NULL, solar_out DOUBLE NULL,
    site_p_min DOUBLE NULL, site_p_max DOUBLE NULL, site_p_sum DOUBLE NULL,
    site_p_n SMALLINT UNSIGNED NOT NULL,
    battery_p_min DOUBLE NULL, battery_p_max DOUBLE NULL, battery_p_sum DOUBLE NULL,
    battery_p_n SMALLINT UNSIGNED NOT NULL,
    load_p_min DOUBLE NULL, load_p_max DOUBLE NULL, load_p_sum DOUBLE NULL,
    load_p_n SMALLINT UNSIGNED NOT NULL,
    solar_p_min DOUBLE NULL, solar_p_max DOUBLE NULL, solar_p_sum DOUBLE NULL,
    solar_p_n SMALLINT UNSIGNED NOT NULL,
    site_max_at DATETIME(3) NULL,
    site_min_at DATETIME(3) NULL,
    PRIMARY KEY (gateway_id, bucket)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The same per UTC hour, added up from meter_minutes (a year: 8,760 rows per gateway).
CREATE TABLE IF NOT EXISTS meter_hours (
    gateway_id SMALLINT UNSIGNED NOT NULL,
    bucket DATETIME NOT NULL,
    samples INT UNSIGNED NOT NULL,
    max_gap_s DOUBLE NULL,
    site_in DOUBLE NULL, site_out DOUBLE NULL,
    battery_in DOUBLE NULL, battery_out DOUBLE NULL,
    load_in DOUBLE NULL, load_out DOUBLE NULL,
    solar_in DOUBLE NULL, solar_out DOUBLE NULL,
    site_p_min DOUBLE NULL, site_p_max DOUBLE NULL, site_p_sum DOUBLE NULL,
    site_p_n INT UNSIGNED NOT NULL,
    battery_p_min DOUBLE NULL, battery_p_max DOUBLE NULL, battery_p_sum DOUBLE NULL,
    battery_p_n INT UNSIGNED NOT NULL,
    load_p_min DOUBLE NULL, load_p_max DOUBLE NULL, load_p_sum DOUBLE NULL,
    load_p_n INT UNSIGNED NOT NULL,
    solar_p_min DOUBLE NULL, solar_p_max DOUBLE NULL, solar_p_sum DOUBLE NULL,
    solar_p_n INT UNSIGNED NOT NULL,
    site_max_at DATETIME(3) NULL,
    site_min_at DATETIME(3) NULL,
    PRIMARY KEY (gateway_id, bucket)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- State of energy per minute (the gateway's raw %; the app's scale is (raw - 5) / 0.95).
CREATE TABLE IF NOT EXISTS soe_minutes (
    gateway_id SMALLINT UNSIGNED NOT NULL,
    bucket DATETIME NOT NULL,
    samples SMALLINT UNSIGNED NOT NULL,
    soe_min DOUBLE NOT NULL,
    soe_max DOUBLE NOT NULL,
    soe_sum DOUBLE NOT NULL,
    PRIMARY KEY (gateway_id, bucket)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Powerwall capacity per hour: sum and count of nominal_full_pack_energy (Wh) per pack, so
-- the average over any range of whole hours is exact (the reports' battery cycles).
CREATE TABLE IF NOT EXISTS block_hours (
    gateway_id SMALLINT UNSIGNED NOT NULL,
    serial VARCHAR(40) NOT NULL,
    bucket DATETIME NOT NULL,
    full_pack_sum DOUBLE NULL,
    full_pack_n SMALLINT UNSIGNED NOT NULL,
    PRIMARY KEY (gateway_id, bucket, serial)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Build the summaries from the readings already stored (chunked, with progress lines).
PWBUS STEP summarize_all;
