"""The meter family: ``/api/meters/aggregates``, state of energy, grid status and meter details.

The live ones are rendered from the snapshot: the aggregates are what every poller reads
every second or two, so :func:`aggregates` builds plain dict literals without helpers.
``/api/meters/site`` and ``/api/meters/solar`` repeat the same meters' readings with their
phase detail (``Cached_readings``); ``/api/meters/readings`` shows the raw synchrometer CTs,
zeroed with an error while the site controller owns them. :func:`meters`,
:func:`meter_x_cts` and :func:`meter_y_cts` describe the installed meters, which never change.
"""

from __future__ import annotations

from powerwall_bus.simulator.endpoints.base import (
    METER_TIMEOUT_NS,
    NEURIO_FIRMWARE,
    PVAC_TIMEOUT_NS,
    SQRT3_HALF,
    UNUSED_TIME,
    SiteFacts,
    Switches,
    n,
    rfc3339,
    snapshot_ns,
    sub_second_ns,
)
from powerwall_bus.simulator.snapshot import Snapshot

# --------------------------------------------------------------------------- live


def aggregates(facts: SiteFacts, snap: Snapshot, _sw: Switches) -> dict[str, object]:
    """``/api/meters/aggregates``: the hot path, so plain dict literals and no helpers."""
    now_ns = snapshot_ns(snap)
    offset = snap.utc_offset_s
    step = snap.step
    sync_time = rfc3339(now_ns - sub_second_ns(step, 1), offset)
    battery_time = rfc3339(now_ns - sub_second_ns(step, 2), offset)
    solar_time = rfc3339(now_ns - sub_second_ns(step, 3), offset)
    site, battery, load, solar = snap.site, snap.battery, snap.load, snap.solar
    site_v = site.voltage_v * SQRT3_HALF
    load_v = load.voltage_v * SQRT3_HALF
    load_current = load.power_w / load_v if load_v else 0.0
    solar_current = solar.current_a
    options = facts.options
    solar_exported: int | float
    solar_imported: int | float
    if options.has_pvac:
        # the PVAC counts whole Wh, and never counts energy drawn
        solar_exported, solar_imported = int(solar.energy_exported_wh), 0
        solar_frequency, solar_timeout = n(solar.frequency_hz), PVAC_TIMEOUT_NS
    else:
        solar_exported, solar_imported = solar.energy_exported_wh, solar.energy_imported_wh
        solar_frequency = n(solar.frequency_hz) if options.has_solar else 0
        solar_timeout = METER_TIMEOUT_NS
    return {
        "site": {
            "last_communication_time": sync_time,
            "instant_power": n(site.power_w),
            "instant_reactive_power": n(site.reactive_power_var),
            "instant_apparent_power": n(site.apparent_power_va),
            "frequency": 0,
            "energy_exported": site.energy_exported_wh,
            "energy_imported": site.energy_imported_wh,
            "instant_average_voltage": n(site_v),
            "instant_average_current": n(site.current_a),
            "i_a_current": 0,
            "i_b_current": 0,
            "i_c_current": 0,
            "last_phase_voltage_communication_time": UNUSED_TIME,
            "last_phase_power_communication_time": UNUSED_TIME,
            "last_phase_energy_communication_time": UNUSED_TIME,
            "timeout": METER_TIMEOUT_NS,
            "num_meters_aggregated": 1,
            "instant_total_current": n(site.current_a),
        },
        "battery": {
            "last_communication_time": battery_time,
            "instant_power": n(battery.power_w),
            "instant_reactive_power": n(battery.reactive_power_var),
            "instant_apparent_power": n(battery.apparent_power_va),
            "frequency": n(battery.frequency_hz),
            "energy_exported": n(battery.energy_exported_wh),
            "energy_imported": n(battery.energy_imported_wh),
            "instant_average_voltage": n(battery.voltage_v),
            "instant_average_current": n(battery.current_a),
            "i_a_current": 0,
            "i_b_current": 0,
            "i_c_current": 0,
            "last_phase_voltage_communication_time": UNUSED_TIME,
            "last_phase_power_communication_time": UNUSED_TIME,
            "last_phase_energy_communication_time": UNUSED_TIME,
            "timeout": METER_TIMEOUT_NS,
            "num_meters_aggregated": len(snap.blocks),
            "instant_total_current": n(battery.current_a),
        },
        "load": {
            "last_communication_time": sync_time,
            "instant_power": n(load.power_w),
            "instant_reactive_power": n(load.reactive_power_var),
            "instant_apparent_power": n(load.apparent_power_va),
            "frequency": 0,
            "energy_exported": 0,
            "energy_imported": load.energy_imported_wh,
            "instant_average_voltage": n(load_v),
            "instant_average_current": n(load_current),
            "i_a_current": 0,
            "i_b_current": 0,
            "i_c_current": 0,
            "last_phase_voltage_communication_time": UNUSED_TIME,
            "last_phase_power_communication_time": UNUSED_TIME,
            "last_phase_energy_communication_time": UNUSED_TIME,
            "timeout": METER_TIMEOUT_NS,
            "instant_total_current": n(load_current),
        },
        "solar": {
            "last_communication_time": solar_time,
            "instant_power": n(solar.power_w),
            "instant_reactive_power": n(solar.reactive_power_var),
            "instant_apparent_power": n(solar.apparent_power_va),
            "frequency": solar_frequency,
            "energy_exported": solar_exported,
            "energy_imported": solar_imported,
            "instant_average_voltage": n(solar.voltage_v),
            "instant_average_current": n(solar_current),
            "i_a_current": 0,
            "i_b_current": 0,
            "i_c_current": 0,
            "last_phase_voltage_communication_time": UNUSED_TIME,
            "last_phase_power_communication_time": UNUSED_TIME,
            "last_phase_energy_communication_time": UNUSED_TIME,
            "timeout": solar_timeout,
            "num_meters_aggregated": 1 if options.has_solar else 0,
            "instant_total_current": n(solar_current),
        },
    }


def soe(_facts: SiteFacts, snap: Snapshot, _sw: Switches) -> dict[str, object]:
    """``/api/system_status/soe``: the state of energy as the gateway reports it."""
    return {"percentage": snap.soe_percent}


def grid_status(_facts: SiteFacts, snap: Snapshot, _sw: Switches) -> dict[str, object]:
    """``/api/system_status/grid_status``."""
    return {"grid_status": snap.grid_status, "grid_services_active": False}


def cached_readings(
    facts: SiteFacts, snap: Snapshot, sw: Switches, *, solar: bool
) -> dict[str, object]:
    """``Cached_readings`` of the meter behind the site (synchrometer X) or solar (Neurio)."""
    now_ns = snapshot_ns(snap)
    offset = snap.utc_offset_s
    meter = snap.solar if solar else snap.site
    stamp = rfc3339(now_ns - sub_second_ns(snap.step, 3 if solar else 1), offset)
    if solar:
        voltage = snap.home_voltage_l1n_v + snap.home_voltage_l2n_v
        return {
            "last_communication_time": stamp,
            "instant_power": n(meter.power_w),
            "instant_reactive_power": n(meter.reactive_power_var),
            "instant_apparent_power": n(meter.apparent_power_va),
            "frequency": n(meter.frequency_hz),
            "energy_exported": meter.energy_exported_wh,
            "energy_imported": meter.energy_imported_wh,
            "instant_average_voltage": n(voltage),
            "instant_average_current": 0,
            "i_a_current": 0,
            "i_b_current": 0,
            "i_c_current": 0,
            "last_phase_voltage_communication_time": stamp,
            "v_l1n": n(voltage),
            "last_phase_power_communication_time": stamp,
            "real_power_a": n(meter.power_w),
            "reactive_power_a": n(meter.reactive_power_var),
            "last_phase_energy_communication_time": stamp,
            "energy_exported_a": meter.energy_exported_wh,
            "energy_imported_a": meter.energy_imported_wh,
            "serial_number": facts.identity.neurio_serial_number,
            "version": NEURIO_FIRMWARE,
            "timeout": METER_TIMEOUT_NS,
            "instant_total_current": 0,
        }
    v1, v2 = snap.grid_voltage_l1n_v, snap.grid_voltage_l2n_v
    current_a = abs(snap.site_power_a_w) / v1 if v1 else 0.0
    current_b = abs(snap.site_power_b_w) / v2 if v2 else 0.0
    reactive_a = float(round(meter.reactive_power_var * 0.6))
    return {
        "last_communication_time": stamp,
        "instant_power": n(meter.power_w),
        "instant_reactive_power": n(meter.reactive_power_var),
        "instant_apparent_power": n(meter.apparent_power_va),
        "frequency": 0,
        "energy_exported": meter.energy_exported_wh,
        "energy_imported": meter.energy_imported_wh,
        "instant_average_voltage": n((v1 + v2) * SQRT3_HALF),
        "instant_average_current": n(meter.current_a),
        "i_a_current": n(current_a),
        "i_b_current": n(current_b),
        "i_c_current": 0,
        "last_phase_voltage_communication_time": stamp,
        "v_l1n": n(v1),
        "v_l2n": n(v2),
        "last_phase_power_communication_time": stamp,
        "real_power_a": n(snap.site_power_a_w),
        "real_power_b": n(snap.site_power_b_w),
        "reactive_power_a": n(reactive_a),
        "reactive_power_b": n(meter.reactive_power_var - reactive_a),
        "last_phase_energy_communication_time": UNUSED_TIME,
        "serial_number": facts.identity.meter_serial_number,
        "version": sw.firmware.component_hash,
        "timeout": METER_TIMEOUT_NS,
        "instant_total_current": n(meter.current_a),
    }


def meters_site(facts: SiteFacts, snap: Snapshot, sw: Switches) -> list[dict[str, object]]:
    """``/api/meters/site``: the synchrometer's site meter with its phase readings."""
    return [
        {
            "id": 0,
            "location": "site",
            "type": "synchrometerX",
            "cts": [True, True, False, False],
            "inverted": [False, False, False, False],
            "connection": {
                "short_id": facts.identity.gateway_din,
                "device_serial": f"{facts.identity.meter_serial_number}synchrometerX",
                "https_conf": {},
            },
            "Cached_readings": cached_readings(facts, snap, sw, solar=False),
        }
    ]


def meters_solar(facts: SiteFacts, snap: Snapshot, sw: Switches) -> list[dict[str, object]] | None:
    """A Powerwall+ measures its PV inside the inverter: no solar meter, body ``null``."""
    if not facts.options.has_solar or facts.options.has_pvac:
        return None
    identity = facts.identity
    return [
        {
            "id": 0,
            "location": "solar",
            "type": "neurio_tcp",
            "cts": [False, False, False, True],
            "inverted": [False, False, False, False],
            "connection": {
                "ip_address": f"PWRview-{identity.neurio_short_id}",
                "port": 443,
                "short_id": identity.neurio_short_id,
                "device_serial": identity.neurio_serial_number,
                "neurio_connected": True,
                "https_conf": {},
            },
            "Cached_readings": cached_readings(facts, snap, sw, solar=True),
        }
    ]


def meters_readings(facts: SiteFacts, snap: Snapshot, sw: Switches) -> dict[str, object]:
    """Raw synchrometer CTs: zeroed with an error while the site controller owns them."""
    serial = facts.identity.meter_serial_number
    idle = [_ct_reading(0, 0.0, 0.0, 0.0) for _ in range(4)]
    if sw.sitemaster_running:
        error = "run sitemanager flag enabled, sitemanager process is running"
        data: dict[str, object] = {"firmwareVersion": "", "cts": idle}
        return {
            f"{serial}synchrometerX": {"error": error, "data": data},
            f"{serial}synchrometerY": {"error": error, "data": data},
        }
    v1, v2 = snap.grid_voltage_l1n_v, snap.grid_voltage_l2n_v
    q = snap.site.reactive_power_var
    site_cts = [
        _ct_reading(1, v1, snap.site_power_a_w, round(q * 0.6)),
        _ct_reading(2, v2, snap.site_power_b_w, q - round(q * 0.6)),
        _ct_reading(3, 0.0, 0.0, 0.0),
        _ct_reading(0, 0.0, 0.0, 0.0),
    ]
    solar_w = snap.solar.power_w if facts.options.has_solar and not facts.options.has_pvac else 0.0
    solar_cts = [
        _ct_reading(1, v1, 0.0, 0.0),
        _ct_reading(2, v2, 0.0, 0.0),
        _ct_reading(3, v1, solar_w, 0.0),
        _ct_reading(0, 0.0, 0.0, 0.0),
    ]
    version = sw.firmware.component_hash
    return {
        f"{serial}synchrometerX": {
            "error": "",
            "data": {"firmwareVersion": version, "cts": site_cts},
        },
        f"{serial}synchrometerY": {
            "error": "",
            "data": {"firmwareVersion": version, "cts": solar_cts},
        },
    }


# --------------------------------------------------------------------------- installed meters


def meters(facts: SiteFacts) -> list[dict[str, object]]:
    """``/api/meters``: the solar meter (if any), then the synchrometer's Y and X."""
    identity = facts.identity
    found: list[dict[str, object]] = []
    if facts.options.has_solar:
        rgm = facts.options.has_pvac  # a Powerwall+ site gets a revenue-grade meter
        found.append(
            {
                "serial": identity.neurio_serial_number,
                "short_id": identity.neurio_short_id,
                "type": "neurio_w2_tcp" if rgm else "neurio_tcp",
                "connected": True,
                "cts": [
                    _ct("solarRGM", (True, False, False, False), 2)
                    if rgm
                    else _ct("solar", (False, False, False, True), 1)
                ],
                "ip_address": f"PWRview-{identity.neurio_short_id}",
                "mac": identity.neurio_mac,
            }
        )
    serial = identity.meter_serial_number
    found.append(
        {
            "serial": f"{serial}synchrometerY",
            "short_id": identity.gateway_din,
            "type": "synchrometerY",
        }
    )
    site_ct = _ct("site", (True, True, False, False), None)
    found.append(
        {
            "serial": f"{serial}synchrometerX",
            "short_id": identity.gateway_din,
            "type": "synchrometerX",
            "cts": [site_ct],
        }
    )
    return found


def meter_x_cts() -> list[dict[str, object]]:
    """``/api/meters/<serial>synchrometerX/cts``: the two site CTs."""
    return [_ct("site", (True, True, False, False), 1)]


def meter_y_cts(facts: SiteFacts) -> list[dict[str, object]]:
    """``/api/meters/<serial>synchrometerY/cts``: site CTs, plus a solar CT without a Powerwall+."""
    cts = [_ct("site", (True, True, False, False), 1)]
    if facts.options.has_solar and not facts.options.has_pvac:
        cts.append(_ct("solar", (False, False, True, False), 2))
    return cts


def _ct(kind: str, valid: tuple[bool, bool, bool, bool], scale: int | None) -> dict[str, object]:
    """One CT of a meter as ``/api/meters`` and ``/api/meters/<serial>/cts`` list it."""
    body: dict[str, object] = {"type": kind, "valid": list(valid), "inverted": [False] * 4}
    if scale is not None:
        body["real_power_scale_factor"] = scale
    return body


def _ct_reading(ct: int, volts: float, watts: float, vars_: float) -> dict[str, object]:
    """One raw CT of ``/api/meters/readings``."""
    return {
        "ct": ct,
        "v_V": n(volts),
        "p_W": n(watts),
        "q_VAR": n(vars_),
        "eExp_Ws": 0,
        "eImp_Ws": 0,
    }
