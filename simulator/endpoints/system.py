"""The status family: system status and grid faults, status, site info, site master, updates.

The paths are ``/api/system_status``, ``/api/system_status/grid_faults``, ``/api/status``,
``/api/site_info``, ``/api/sitemaster`` and ``/api/system/update/status``.

``/api/system_status`` carries the battery blocks, so it is live and agrees with the
aggregates of the same snapshot. Firmware 23.x added a few keys to these bodies
(:attr:`Switches.new_fields`); the key order follows the recordings of each firmware.
"""

from __future__ import annotations

import json
import time

from powerwall_bus.simulator.endpoints.base import (
    SiteFacts,
    Switches,
    go_duration,
    n,
    rfc3339,
    snapshot_ns,
    sub_second_ns,
)
from powerwall_bus.simulator.snapshot import GRID_CONNECTED, Snapshot

# time zone -> (state, utility) for the grid code block of /api/site_info
_STATES = {
    "America/Los_Angeles": ("California", "Pacific Gas and Electric Company"),
    "America/Denver": ("Colorado", "Xcel Energy"),
    "America/Phoenix": ("Arizona", "Arizona Public Service"),
    "America/Chicago": ("Illinois", "Commonwealth Edison"),
    "America/New_York": ("New York", "Consolidated Edison"),
}


def system_status(facts: SiteFacts, snap: Snapshot, sw: Switches) -> dict[str, object]:
    """``/api/system_status``: capacity, limits and the battery blocks of this snapshot."""
    count = len(snap.blocks)
    off_grid = snap.grid_status != GRID_CONNECTED
    version = sw.firmware.component_hash
    blocks: list[dict[str, object]] = [
        {
            "Type": "",
            "PackagePartNumber": pw.package_part_number,
            "PackageSerialNumber": pw.package_serial_number,
            "disabled_reasons": [],
            "pinv_state": "PINV_GridForming" if off_grid else "PINV_GridFollowing",
            "pinv_grid_state": "Grid_Uncompliant" if off_grid else "Grid_Compliant",
            "nominal_energy_remaining": block.nominal_energy_remaining_wh,
            "nominal_full_pack_energy": block.nominal_full_pack_energy_wh,
            "p_out": n(block.power_w),
            "q_out": n(block.reactive_power_var),
            "v_out": n(block.voltage_v),
            "f_out": n(block.frequency_hz),
            "i_out": n(block.current_a),
            "energy_charged": n(block.energy_charged_wh),
            "energy_discharged": n(block.energy_discharged_wh),
            "off_grid": block.off_grid,
            "vf_mode": block.off_grid,
            "wobble_detected": False,
            "charge_power_clamped": False,
            "backup_ready": True,
            "OpSeqState": "Active",
            "version": version,
        }
        for pw, block in zip(facts.identity.powerwalls, snap.blocks, strict=True)
    ]
    charge_now = sum(block.available_charge_power_w for block in snap.blocks)
    discharge_now = sum(block.available_discharge_power_w for block in snap.blocks)
    body: dict[str, object] = {
        "command_source": "Configuration",
        "battery_target_power": n(snap.battery_target_power_w),
        "battery_target_reactive_power": 0,
        "nominal_full_pack_energy": snap.nominal_full_pack_energy_wh,
        "nominal_energy_remaining": snap.nominal_energy_remaining_wh,
        "max_power_energy_remaining": 0,
        "max_power_energy_to_be_charged": 0,
        "max_charge_power": 5000 * count,
        "max_discharge_power": 5000 * count,
        "max_apparent_power": 5000 * count,
        "instantaneous_max_discharge_power": n(min(12000.0 * count, 2.4 * discharge_now)),
        "instantaneous_max_charge_power": n(min(7000.0 * count, 1.4 * charge_now)),
    }
    if sw.new_fields:
        body["instantaneous_max_apparent_power"] = 5760 * count
        body["hardware_capability_charge_power"] = 0
        body["hardware_capability_discharge_power"] = 0
    body["grid_services_power"] = 0
    body["system_island_state"] = snap.grid_status
    body["available_blocks"] = count
    if sw.new_fields:
        body["available_charger_blocks"] = 0
    body["battery_blocks"] = blocks
    body.update(
        {
            "ffr_power_availability_high": 5800 * count,
            "ffr_power_availability_low": n(min(5800.0 * count, discharge_now)),
            "load_charge_constraint": 0,
            "max_sustained_ramp_rate": 1350000 * count,
            "grid_faults": grid_faults(facts, snap, sw),
            "can_reboot": "Yes",
            "smart_inv_delta_p": 0,
            "smart_inv_delta_q": 0,
            "last_toggle_timestamp": rfc3339(facts.boot_ns + 230_517_384_211, snap.utc_offset_s),
            "solar_real_power_limit": (
                -1 if snap.solar_power_limit_w is None else n(snap.solar_power_limit_w)
            ),
            "score": 10000,
            "blocks_controlled": count,
            "primary": True,
            "auxiliary_load": 0,
            "all_enable_lines_high": True,
            "inverter_nominal_usable_power": 5800 * count,
            "expected_energy_remaining": 0,
        }
    )
    return body


def grid_faults(facts: SiteFacts, snap: Snapshot, sw: Switches) -> list[dict[str, object]]:
    """One under-frequency warning per grid loss, newest last (as the gateway keeps them)."""
    first = facts.identity.powerwalls[0]
    faults = []
    for timestamp_ms in snap.grid_fault_times_ms:
        hertz = round(57.5 + (timestamp_ms % 1400) / 1000.0, 2)
        decoded = [
            {"name": "PINV_alertID", "value": "PINV_a006_vfCheckUnderFrequency"},
            {"name": "PINV_alertType", "value": "Warning"},
            {"name": "PINV_a006_frequency", "value": hertz, "units": "Hz"},
        ]
        faults.append(
            {
                "timestamp": timestamp_ms,
                "alert_name": "PINV_a006_vfCheckUnderFrequency",
                "alert_is_fault": False,
                "decoded_alert": json.dumps(decoded, separators=(",", ":")),
                "alert_raw": (6 << 56) | (round(hertz * 100) << 24) | (timestamp_ms & 0xFFFFFF),
                "git_hash": sw.firmware.component_hash,
                "site_uid": facts.identity.gateway_din,
                "ecu_type": "TEPINV",
                "ecu_package_part_number": first.pod_part_number,
                "ecu_package_serial_number": first.pod_serial_number,
            }
        )
    return faults


def status(facts: SiteFacts, snap: Snapshot, sw: Switches) -> dict[str, object]:
    """``/api/status``: identity, firmware and uptime of the gateway."""
    now_ns = snapshot_ns(snap) + sub_second_ns(snap.step, 4)
    boot = time.gmtime(facts.boot_ns // 1_000_000_000)
    body: dict[str, object] = {
        "din": facts.identity.gateway_din,
        # every recorded gateway prints its boot time in UTC with a literal +0800
        "start_time": time.strftime("%Y-%m-%d %H:%M:%S +0800", boot),
        "up_time_seconds": go_duration(now_ns - facts.boot_ns),
        "is_new": False,
        "version": sw.firmware.version,
        "git_hash": sw.firmware.git_hash,
        "commission_count": facts.identity.commission_count,
        "device_type": "teg",
    }
    if sw.new_fields:
        body["teg_type"] = "unknown"
        body["sync_type"] = "v2.1"
        body["cellular_disabled"] = False
        body["can_reboot"] = True
    else:
        body["sync_type"] = "v2.1"
        body["leader"] = ""
        body["followers"] = None
        body["cellular_disabled"] = False
    return body


def site_info(facts: SiteFacts, snap: Snapshot, sw: Switches) -> dict[str, object]:
    """``/api/site_info``: the site's size, name, time zone and grid code."""
    count = len(snap.blocks)
    body: dict[str, object] = {}
    if not sw.sitemaster_running:
        body["measured_frequency"] = n(snap.grid_frequency_hz)
    power_kw = n(round(5.4 * count, 1))
    body.update(
        {
            "max_system_energy_kWh": n(13.5 * count),
            "max_system_power_kW": power_kw,
            "site_name": facts.options.site_name,
            "timezone": facts.options.timezone,
            "max_site_meter_power_kW": 1000000000,
            "min_site_meter_power_kW": -1000000000,
            "nominal_system_energy_kWh": n(13.5 * count),
            "nominal_system_power_kW": power_kw,
        }
    )
    state, utility = _STATES.get(
        facts.options.timezone, ("California", "Pacific Gas and Electric Company")
    )
    grid_code: dict[str, object] = {
        "grid_code": (
            "60Hz_240V_s_UL1741SA:2019_California"
            if state == "California"
            else "60Hz_240V_s_IEEE1547_2003"
        ),
        "grid_voltage_setting": 240,
        "grid_freq_setting": 60,
        "grid_phase_setting": "Split",
        "country": "United States",
        "state": state,
    }
    if sw.new_fields:
        body["panel_max_current"] = 200 if count > 2 else 100
        grid_code["utility"] = utility
    else:
        grid_code.update(
            {"distributor": "*", "utility": utility, "retailer": "*", "region": "UL1741SA"}
        )
    body["grid_code"] = grid_code
    return body


def sitemaster(facts: SiteFacts, sw: Switches) -> dict[str, object]:
    """``/api/sitemaster``: whether the site controller runs."""
    running = sw.sitemaster_running
    return {
        "status": "StatusUp" if running else "StatusDown",
        "running": running,
        "connected_to_tesla": True,
        "power_supply_mode": False,
        "can_reboot": "Yes" if running else "",
    }


def update_status(facts: SiteFacts, snap: Snapshot, sw: Switches) -> dict[str, object]:
    """``/api/system/update/status``: the last firmware update, long finished."""
    return {
        "state": "/update_succeeded",
        "info": {"status": ["nonactionable"]},
        "current_time": snapshot_ns(snap) // 1_000_000 + sub_second_ns(snap.step, 5) // 10**7,
        "last_status_time": facts.last_update_ms,
        "version": sw.firmware.version,
        "offline_updating": False,
        "offline_update_error": "",
        "estimated_bytes_per_second": None,
    }
