"""The Powerwall family: ``/api/powerwalls``, its status flags and ``/api/solar_powerwall``.

``/api/powerwalls`` reports each Powerwall's commissioning and update diagnostics, whose
checks fail with the gateway's own message while the site controller runs.
``/api/solar_powerwall`` is the Powerwall+ inverter (PVAC) with its PV strings and the string
safety unit (PVS), whose "MCI" alert is raised for every string input left unconnected.
"""

from __future__ import annotations

from powerwall_bus.simulator.endpoints.base import (
    SiteFacts,
    Switches,
    n,
    rfc3339,
    snapshot_ns,
    sub_second_ns,
)
from powerwall_bus.simulator.snapshot import Snapshot

_RUNNING_MESSAGE = (
    "Cannot perform this action with site controller running. "
    'From landing page, either "STOP SYSTEM" or "RUN WIZARD" to proceed.'
)

_PVAC_ALERTS = (
    "PVAC_a001_inv_L1_HW_overcurrent",
    "PVAC_a002_inv_L2_HW_overcurrent",
    "PVAC_a003_inv_HVBus_HW_overvoltage",
    "PVAC_a008_inv_HVBus_undervoltage",
    "PVAC_a009_SwAppBoot",
    "PVAC_a010_inv_AC_overvoltage",
    "PVAC_a011_inv_AC_undervoltage",
    "PVAC_a012_inv_AC_overfrequency",
    "PVAC_a013_inv_AC_underfrequency",
    "PVAC_a014_PVS_disabled_relay",
    "PVAC_a019_ambient_overtemperature",
    "PVAC_a020_dsp_overtemperature",
    "PVAC_a025_PVS_Status_mia",
    "PVAC_a030_fan_faulted",
    "PVAC_a041_excess_PV_clamp_triggered",
)
PVS_MCI_ALERT = {
    "A": "PVS_a017_MciStringA",
    "B": "PVS_a018_MciStringB",
    "C": "PVS_a019_MciStringC",
    "D": "PVS_a020_MciStringD",
}
_PVS_ALERTS = (
    "PVS_a001_WatchdogReset",
    "PVS_a002_SW_App_Boot",
    "PVS_a006_GfOvercurrent300",
    "PVS_a010_PvIsolationTotal",
    "PVS_a015_SelfTestGroundFault",
    "PVS_a016_ESMFault",
    *PVS_MCI_ALERT.values(),
    "PVS_a021_RapidShutdown",
    "PVS_a029_PvArcFault",
    "PVS_a030_VDcOv",
)


def powerwalls(facts: SiteFacts, snap: Snapshot, sw: Switches) -> dict[str, object]:
    """``/api/powerwalls``: each Powerwall with its commissioning and update diagnostics."""
    now_ns = snapshot_ns(snap)
    offset = snap.utc_offset_s
    running = sw.sitemaster_running
    clock = iter(range(now_ns, now_ns + 10**9, 5_117))

    def check(name: str, results: dict[str, object] | None = None) -> dict[str, object]:
        start = rfc3339(next(clock), offset)
        if running:
            return {
                "name": name,
                "status": "fail",
                "start_time": start,
                "end_time": rfc3339(next(clock), offset),
                "message": _RUNNING_MESSAGE,
                "results": {},
                "debug": {},
                "checks": None,
            }
        done = results is not None
        return {
            "name": name,
            "status": "pass" if done else "running",
            "start_time": start,
            "end_time": rfc3339(next(clock), offset) if done else None,
            "results": results or {},
            "debug": {},
            "checks": None,
        }

    def diagnostic(checks: list[dict[str, object]]) -> dict[str, object]:
        return {
            "name": "Commissioning",
            "category": "InternalComms",
            "disruptive": False,
            "inputs": None,
            "checks": checks,
            "alert": False,
        }

    def update(names: tuple[str, ...]) -> dict[str, object]:
        return {
            "name": "Firmware Update",
            "category": "InternalComms",
            "disruptive": True,
            "inputs": None,
            "checks": [
                {
                    "name": name,
                    "status": "not_run",
                    "start_time": None,
                    "end_time": None,
                    "progress": 0,
                    "results": None,
                    "debug": None,
                    "checks": None,
                }
                for name in names
            ],
            "alert": False,
        }

    battery_updates = (
        "Powerwall firmware",
        "Battery firmware",
        "Inverter firmware",
        "Grid code",
    )
    solar_updates = ("Solar Inverter firmware", "Solar Safety firmware", "Grid code")
    powerwalls = []
    for pw in facts.identity.powerwalls:
        solar = pw.kind == "SolarPowerwall"
        powerwalls.append(
            {
                "Type": "",
                "PackagePartNumber": pw.package_part_number,
                "PackageSerialNumber": pw.package_serial_number,
                "type": pw.kind,
                "grid_state": "Grid_Uncompliant" if running else "Grid_Compliant",
                "grid_reconnection_time_seconds": 0,
                "under_phase_detection": False,
                "updating": False,
                "commissioning_diagnostic": diagnostic(
                    [
                        check("CAN connectivity"),
                        check("Enable switch"),
                        check("Internal communications"),
                        check("Firmware up-to-date"),
                    ]
                ),
                "update_diagnostic": update((solar_updates if solar else ()) + battery_updates),
                "bc_type": None,
                "in_config": True,
            }
        )
    firmware = sw.firmware
    sync_results: dict[str, object] = {
        "/etc/commit": firmware.git_hash,
        "SYNC.git_hash": firmware.component_hash,
        "readyForFWUpdate": True,
    }
    body = powerwalls_flags(facts, sw)
    body.update(
        {
            "powerwalls": powerwalls,
            "gateway_din": facts.identity.gateway_din,
            "sync": {
                "updating": False,
                "commissioning_diagnostic": diagnostic(
                    [check("CAN connectivity", {}), check("Firmware up-to-date", sync_results)]
                ),
                "update_diagnostic": update(
                    ("Synchronizer firmware", "Islanding configuration", "Grid code")
                ),
            },
            "msa": None,
            "states": None,
        }
    )
    return body


def powerwalls_flags(facts: SiteFacts, sw: Switches) -> dict[str, object]:
    """``/api/powerwalls/status``: the flags ``/api/powerwalls`` also starts with."""
    return {
        "enumerating": False,
        "updating": False,
        "checking_if_offgrid": False,
        "running_phase_detection": False,
        "phase_detection_last_error": "no phase information",
        "bubble_shedding": False,
        "on_grid_check_error": (
            "on grid check not run"
            if sw.sitemaster_running
            else "run sitemanager flag enabled, sitemanager process is running"
        ),
        "grid_qualifying": False,
        "grid_code_validating": False,
        "phase_detection_not_available": True,
    }


def solar_powerwall(facts: SiteFacts, snap: Snapshot, _sw: Switches) -> dict[str, object]:
    """``/api/solar_powerwall``: the Powerwall+ inverter (PVAC) and string safety (PVS)."""
    solar = snap.solar
    now_us = snapshot_ns(snap) // 1000 - sub_second_ns(snap.step, 6) // 1000
    stamp = rfc3339(now_us * 1000, snap.utc_offset_s)
    strings = snap.pv_strings
    pvac_alerts: dict[str, object] = {
        "LastRxTime": stamp,
        "ReceivedMuxBitmask": 1,
        "PVAC_alertMatrixIndex": 0,
    }
    pvac_alerts.update(dict.fromkeys(_PVAC_ALERTS, False))
    pvs_alerts: dict[str, object] = {"LastRxTime": stamp, "ReceivedMuxBitmask": 0}
    pvs_alerts.update(dict.fromkeys(_PVS_ALERTS, False))
    for string in strings:
        if not string.connected:
            pvs_alerts[PVS_MCI_ALERT[string.name]] = True
    limit = snap.solar_power_limit_w
    return {
        "pvac_status": {
            "state": "PVAC_Active",
            "disabled": False,
            "disabled_reasons": [],
            "grid_state": "Grid_Compliant",
            "inv_state": "INV_Grid_Connected",
            "v_out": n(solar.voltage_v),
            "f_out": n(solar.frequency_hz),
            "p_out": n(solar.power_w),
            "q_out": n(solar.reactive_power_var),
            "i_out": n(round(solar.current_a, 2)),
            "string_vitals": [
                {
                    "string_id": index + 1,
                    "connected": string.connected,
                    "measured_voltage": n(string.voltage_v),
                    "current": n(string.current_a),
                    "measured_power": n(string.power_w),
                }
                for index, string in enumerate(strings)
            ],
        },
        "pvs_status": {
            "state": "PVS_Active",
            "disabled": False,
            "enable_output": True,
            "v_ll": n(round(snap.home_voltage_l1n_v + snap.home_voltage_l2n_v, 1)),
            "self_test_state": "PVS_SelfTestOff",
        },
        "pv_power_limit": n(facts.identity.pv_nameplate_w * 1.05 if limit is None else limit),
        "power_status_setpoint": "on",
        "pvac_alerts": pvac_alerts,
        "pvs_alerts": pvs_alerts,
    }
