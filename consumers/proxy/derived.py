"""The values pyPowerwall computes from gateway payloads, as small pure functions.

Every function takes plain payloads (what the gateway answered, or the decoded vitals dict
in protobuf device order) and returns plain data; none of them touches its inputs. The
meanings follow the newest pyPowerwall library and proxy (library v0.16.2, proxy t97) as
described in ``docs/proxy-compatibility.md``; the deliberate differences are named
where they are made:

* pyPowerwall raises (and the proxy then answers ``null``) on some malformed inputs, e.g. a
  TETHC whose serial has no battery block, a version string with an empty part, more than
  nine PVAC inverters. These functions give the obvious answer instead.
* pyPowerwall collects alerts in a set, so its order changes from run to run; ours is sorted.

What the gateway's numbers mean (what counts as a number, the Tesla-app scale of the state
of energy and the reserve, firmware versions) is not decided here but in
:mod:`powerwall_bus.shared.gateway.payloads`, which every consumer shares; ``number`` and
``parse_version`` are that module's functions under the names the renderer uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from powerwall_bus.shared.gateway.payloads import (
    app_reserve,
    app_soe,
    lenient_float,
    meter_power,
    number,
    pypowerwall_vint,
    soe_percent,
)

Payload = Any
Vitals = Mapping[str, Mapping[str, Any]]

#: grid_status strings -> pyPowerwall's numeric form (1 up, 0 down, -1 syncing).
GRID_STATUS_NUMERIC: dict[str, int] = {
    "SystemGridConnected": 1,
    "SystemIslandedActive": 0,
    "SystemMicroGridFaulted": 0,
    "SystemWaitForUser": 0,
    "SystemTransitionToGrid": -1,
    "SystemTransitionToIsland": -1,
    "SystemIslandedReady": -1,
}

_STRING_FIELDS = (
    ("Current", "Current"),
    ("Power", "Power"),
    ("Voltage", "Voltage"),
    ("State", "State"),
)
_STRING_KEYS = (
    "PVAC_PVCurrent",
    "PVAC_PVMeasuredPower",
    "PVAC_PVMeasuredVoltage",
    "PVAC_PvState",
    "PVS_String",
)
_POD_FLAGS = (
    "ActiveHeating",
    "ChargeComplete",
    "ChargeRequest",
    "DischargeComplete",
    "PermanentlyFaulted",
    "PersistentlyFaulted",
    "enable_line",
)
_POD_VALUES = (
    "available_charge_power",
    "available_dischg_power",
    "nom_energy_remaining",
    "nom_energy_to_be_charged",
    "nom_full_pack_energy",
)
_BLOCK_FLAGS = ("off_grid", "vf_mode", "wobble_detected", "charge_power_clamped", "backup_ready")


# --------------------------------------------------------------------------- small helpers


def section(payload: Payload, key: str) -> dict[str, Any] | None:
    """``payload[key]`` when both are objects, else None."""
    if not isinstance(payload, dict):
        return None
    value = payload.get(key)
    return value if isinstance(value, dict) else None


def blocks_of(system_status: Payload) -> list[dict[str, Any]]:
    """The ``battery_blocks`` of /api/system_status (objects only)."""
    blocks = system_status.get("battery_blocks") if isinstance(system_status, dict) else None
    if not isinstance(blocks, list):
        return []
    return [block for block in blocks if isinstance(block, dict)]


def _as_flag(value: Any) -> int:
    """pyPowerwall's ``int(value or 0)`` for the 0/1 fields of /pod."""
    if not value:
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


def _suffix(index: int) -> str:
    """The inverter suffix of string names: "" for the first, then "1", "2", ..."""
    return "" if index == 0 else str(index)


# --------------------------------------------------------------------------- battery and grid


def level(soe: Payload, *, scale: bool = False) -> float | None:
    """/api/system_status/soe percentage; ``scale`` gives the Tesla-app value (not clamped)."""
    value = soe_percent(soe)
    if value is None:
        return None
    return app_soe(value) if scale else value


def reserve(operation: Payload) -> float | None:
    """``get_reserve()``: /api/operation backup_reserve_percent on the app scale, >= 0."""
    if not isinstance(operation, dict) or "backup_reserve_percent" not in operation:
        return None
    percent = lenient_float(operation["backup_reserve_percent"])  # pyPowerwall: float(...)
    return None if percent is None else app_reserve(percent)


def mode(operation: Payload) -> Any:
    """``get_mode()``: /api/operation real_mode, or None."""
    if isinstance(operation, dict) and operation.get("real_mode"):
        return operation["real_mode"]
    return None


def grid_status_text(grid_status: Payload) -> str | None:
    """The gateway's grid_status string, e.g. "SystemGridConnected"."""
    value = grid_status.get("grid_status") if isinstance(grid_status, dict) else None
    return value if isinstance(value, str) else None


def grid_status_numeric(grid_status: Payload) -> int | None:
    """1 (up), 0 (down), -1 (syncing) or None (no data / unknown state)."""
    text = grid_status_text(grid_status)
    return None if text is None else GRID_STATUS_NUMERIC.get(text)


def grid_up(grid_status: Payload) -> bool:
    """``grid_status() == "UP"``."""
    return grid_status_text(grid_status) == "SystemGridConnected"


def time_remaining(system_status: Payload, aggregates: Payload) -> float | None:
    """Hours of backup: nominal_energy_remaining / load W, None unless load > 0."""
    status = system_status if isinstance(system_status, dict) else {}
    remaining = number(status.get("nominal_energy_remaining"))
    if remaining is None:
        return None
    load = meter_power(aggregates, "load") or 0
    return remaining / load if load > 0 else None


def power(aggregates: Payload) -> dict[str, Any]:
    """``power()``: instant_power of site, solar, battery, load; 0.0 from the first gap on."""
    result: dict[str, Any] = dict.fromkeys(("site", "solar", "battery", "load"), 0.0)
    for name in result:
        part = section(aggregates, name)
        if part is None or "instant_power" not in part:
            break
        result[name] = part["instant_power"]
    return result


def power_values(
    aggregates: Payload, *, neg_solar: bool, site_zero_threshold: float
) -> tuple[Any, Any, Any, Any]:
    """(grid, home, solar, battery) as /csv and /json report them: gaps are 0, then
    PW_NEG_SOLAR=no moves negative solar into home, then small grid values become 0."""

    def watts(name: str) -> Any:
        return meter_power(aggregates, name) or 0

    grid, home, solar, battery = watts("site"), watts("load"), watts("solar"), watts("battery")
    if not neg_solar and solar < 0:
        home -= solar
        solar = 0
    if site_zero_threshold > 0 and abs(grid) <= site_zero_threshold:
        grid = 0
    return grid, home, solar, battery


# --------------------------------------------------------------------------- version

#: ``/version``'s ``vint`` (pyPowerwall's integer form of the firmware version).
parse_version = pypowerwall_vint


# --------------------------------------------------------------------------- vitals views


def temps(vitals: Vitals | None) -> dict[str, Any]:
    """``temps()``: THC_AmbientTemp of every TETHC device, in device order."""
    return {
        din: device.get("THC_AmbientTemp")
        for din, device in (vitals or {}).items()
        if din.startswith("TETHC")
    }


def _pvac_entries(vitals: Vitals) -> Iterable[tuple[str, dict[str, Any]]]:
    """Each PVAC device with its PVS twin's *String* keys added (pyPowerwall's merge)."""
    for din, device in vitals.items():
        if din.split("--")[0] != "PVAC":
            continue
        merged = dict(device)
        twin = vitals.get("PVS" + din[4:])
        if twin is not None:
            merged.update((key, value) for key, value in twin.items() if "String" in key)
        yield din, merged


def _string_field(key: str) -> str:
    for marker, field in _STRING_FIELDS:
        if marker in key:
            return field
    return "Connected" if "Connected" in key else "Unknown"


def _strings_from_vitals(vitals: Vitals) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for index, (_din, device) in enumerate(_pvac_entries(vitals)):
        for key, value in device.items():
            if not any(marker in key for marker in _STRING_KEYS):
                continue
            field = _string_field(key)
            letter = key[10] if field == "Connected" and len(key) > 10 else key[-1]
            result.setdefault(letter + _suffix(index), {})[field] = value
    return result


def _strings_from_solar_powerwall(solar_powerwall: Payload) -> dict[str, dict[str, Any]]:
    pvac = section(solar_powerwall, "pvac_status") or {}
    strings = pvac.get("string_vitals")
    if not isinstance(strings, list):
        return {}
    result: dict[str, dict[str, Any]] = {}
    for index, string in enumerate(s for s in strings if isinstance(s, dict)):
        name = "ABCD"[index % 4] + _suffix(index // 4)
        result[name] = {
            "Connected": string.get("connected"),
            "Voltage": string.get("measured_voltage"),
            "Current": string.get("current"),
            "Power": string.get("measured_power"),
        }
    return result


def strings(vitals: Vitals | None, solar_powerwall: Payload) -> dict[str, dict[str, Any]]:
    """``strings()``: per PV string Current/Power/Voltage/State/Connected.

    From the PVAC/PVS vitals (A..D for the first inverter, A1..D1 for the second, ...); when
    there are no vitals at all, from /api/solar_powerwall ``string_vitals`` (no State).
    """
    if vitals:
        return _strings_from_vitals(vitals)
    return _strings_from_solar_powerwall(solar_powerwall)


def strings_verbose(vitals: Vitals | None, solar_powerwall: Payload) -> dict[str, Any]:
    """``strings(verbose=True)`` (/pw/strings): the string keys per PVAC device."""
    if not vitals:
        return _strings_from_solar_powerwall(solar_powerwall)
    result: dict[str, Any] = {}
    for din, device in _pvac_entries(vitals):
        entry: dict[str, Any] = {"PVAC_Pout": device.get("PVAC_Pout")}
        entry.update(
            (key, value)
            for key, value in device.items()
            if any(marker in key for marker in _STRING_KEYS)
        )
        result[din] = entry
    return result


def alerts(vitals: Vitals | None, solar_powerwall: Payload, grid_status: Payload) -> list[str]:
    """``alerts()``: de-duplicated, sorted.

    Every vitals device's alerts; without vitals, the /api/solar_powerwall pvac_alerts and
    pvs_alerts whose value is ``true``. Then GridServicesActive if the grid status says so,
    else the grid_status string, and SystemGridConnected is named SystemConnectedToGrid.
    """
    found: set[str] = set()
    if vitals:
        for device in vitals.values():
            found.update(str(alert) for alert in device.get("alerts") or ())
    else:
        for name in ("pvac_alerts", "pvs_alerts"):
            table = section(solar_powerwall, name) or {}
            found.update(key for key, value in table.items() if value is True)
    if isinstance(grid_status, dict):
        text = grid_status_text(grid_status)
        if grid_status.get("grid_services_active"):
            found.add("GridServicesActive")
        elif text is not None:
            found.add(text)
    return sorted({"SystemConnectedToGrid" if a == "SystemGridConnected" else a for a in found})


def battery_blocks(system_status: Payload, vitals: Vitals | None) -> dict[str, Any] | None:
    """``battery_blocks()``: system_status blocks keyed by serial, plus THC_State and
    temperature from the TETHC device named after that serial."""
    if not isinstance(system_status, dict):
        return None
    result: dict[str, Any] = {}
    for block in blocks_of(system_status):
        serial = block.get("PackageSerialNumber")
        result[str(serial)] = {k: v for k, v in block.items() if k != "PackageSerialNumber"}
    for din, device in (vitals or {}).items():
        parts = din.split("--")
        if din.startswith("TETHC--") and len(parts) > 2 and parts[2] in result:
            result[parts[2]]["THC_State"] = device.get("THC_State")
            result[parts[2]]["temperature"] = device.get("THC_AmbientTemp")
    return result


# --------------------------------------------------------------------------- /freq and /pod


def freq(system_status: Payload, vitals: Vitals | None, grid_status: Payload) -> dict[str, Any]:
    """/freq: per-Powerwall f/V/I from system_status, overwritten position by position by
    the TEPINV vitals; TESYNC/TEMSA ISLAND*/METER* values; numeric grid_status."""
    out: dict[str, Any] = {}
    for n, block in enumerate(blocks_of(system_status), 1):
        out[f"PW{n}_name"] = None
        out[f"PW{n}_PINV_Fout"] = block.get("f_out")
        out[f"PW{n}_PINV_VSplit1"] = None
        out[f"PW{n}_PINV_VSplit2"] = None
        out[f"PW{n}_PackagePartNumber"] = block.get("PackagePartNumber")
        out[f"PW{n}_PackageSerialNumber"] = block.get("PackageSerialNumber")
        for key in ("p_out", "q_out", "v_out", "f_out", "i_out"):
            out[f"PW{n}_{key}"] = block.get(key)
    n = 1
    for din, device in (vitals or {}).items():
        if din.startswith("TEPINV"):
            out[f"PW{n}_name"] = din
            for key in ("PINV_Fout", "PINV_VSplit1", "PINV_VSplit2"):
                out[f"PW{n}_{key}"] = device.get(key)
            n += 1
        if din.startswith(("TESYNC", "TEMSA")):
            out.update((k, v) for k, v in device.items() if k.startswith(("ISLAND", "METER")))
    out["grid_status"] = grid_status_numeric(grid_status)
    return out


def _pod_block(n: int, block: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {f"PW{n}_name": None}
    out.update((f"PW{n}_POD_{flag}", None) for flag in _POD_FLAGS)
    out.update((f"PW{n}_POD_{name}", None) for name in _POD_VALUES)
    out[f"PW{n}_POD_nom_energy_remaining"] = block.get("nominal_energy_remaining")
    out[f"PW{n}_POD_nom_full_pack_energy"] = block.get("nominal_full_pack_energy")
    for key in ("PackagePartNumber", "PackageSerialNumber", "pinv_state", "pinv_grid_state"):
        out[f"PW{n}_{key}"] = block.get(key)
    for key in ("p_out", "q_out", "v_out", "f_out", "i_out"):
        out[f"PW{n}_{key}"] = block.get(key)
    for key in ("energy_charged", "energy_discharged"):
        out[f"PW{n}_{key}"] = block.get(key)
    out.update((f"PW{n}_{flag}", _as_flag(block.get(flag))) for flag in _BLOCK_FLAGS)
    out[f"PW{n}_OpSeqState"] = block.get("OpSeqState")
    out[f"PW{n}_version"] = block.get("version")
    return out


def pod(
    system_status: Payload,
    vitals: Vitals | None,
    *,
    time_remaining_hours: float | None,
    backup_reserve_percent: float | None,
) -> dict[str, Any]:
    """/pod: per-Powerwall battery data from system_status, overwritten position by position
    by the TEPOD vitals (flags as 0/1), then the site-wide energy, time left and reserve."""
    out: dict[str, Any] = {}
    for n, block in enumerate(blocks_of(system_status), 1):
        out.update(_pod_block(n, block))
    n = 1
    for din, device in (vitals or {}).items():
        if not din.startswith("TEPOD"):
            continue
        out[f"PW{n}_name"] = din
        out.update((f"PW{n}_POD_{f}", _as_flag(device.get(f"POD_{f}"))) for f in _POD_FLAGS)
        out.update((f"PW{n}_POD_{v}", device.get(f"POD_{v}")) for v in _POD_VALUES)
        n += 1
    status = system_status if isinstance(system_status, dict) else {}
    out["nominal_full_pack_energy"] = status.get("nominal_full_pack_energy")
    out["nominal_energy_remaining"] = status.get("nominal_energy_remaining")
    out["time_remaining_hours"] = time_remaining_hours
    out["backup_reserve_percent"] = backup_reserve_percent
    return out
