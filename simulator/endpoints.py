"""The JSON (and protobuf) bodies a Tesla Energy Gateway serves, rendered from the site model.

:class:`SimulatedGateway` is the pure core behind the simulator's HTTPS shell: it answers
``get(path)`` with a :class:`Reply` and knows nothing about TLS, sessions or faults. Every
live body is rendered from one :class:`~simulator.model.Snapshot`, so aggregates, state of
energy, battery blocks, vitals and meter details always agree with each other, and bodies
are cached per snapshot step because pollers ask for the same ones every second.

Shapes, key order and value formats follow the newest real recordings (firmware 23.28.2
where recorded, else 21.44): compact JSON as Go writes it, whole numbers without ".0",
RFC 3339 times with nanoseconds and the site's UTC offset, ``up_time_seconds`` as a Go
duration, ``start_time`` with its literal "+0800".
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from powerwall_bus.shared.gateway.vitals import VitalsDevice, encode_vitals
from powerwall_bus.simulator.model import GRID_CONNECTED, SiteModel, Snapshot
from powerwall_bus.simulator.site import Firmware, SiteIdentity, SiteOptions, seeded_rng

__all__ = ["JSON_CONTENT_TYPE", "PROTOBUF_CONTENT_TYPE", "Reply", "SimulatedGateway"]

JSON_CONTENT_TYPE = "application/json"
PROTOBUF_CONTENT_TYPE = "application/octet-stream"

VITALS_REMOVED_IN = (23, 44)  # /api/devices/vitals answers 404 from this firmware on
_NEW_FIELDS_FROM = (23, 0)  # /api/status, /api/system_status, /api/site_info gained fields in 23.x

_SQRT3_HALF = math.sqrt(3.0) / 2.0  # the synchrometer averages split-phase legs this way
_UNUSED_TIME = "0001-01-01T00:00:00Z"
_METER_TIMEOUT_NS = 1500000000
_PVAC_TIMEOUT_NS = 1000000000
_NEURIO_FIRMWARE = "1.7.1-Tesla"
_RUNNING_MESSAGE = (
    "Cannot perform this action with site controller running. "
    'From landing page, either "STOP SYSTEM" or "RUN WIZARD" to proceed.'
)


@dataclass(frozen=True)
class Reply:
    """One HTTP answer. An empty ``content_type`` means: send no Content-Type header."""

    status: int
    body: bytes
    content_type: str = JSON_CONTENT_TYPE


@dataclass(frozen=True)
class _Switches:
    """The runtime switches, replaced as a whole so a request sees one consistent set."""

    firmware: Firmware
    sitemaster_running: bool

    @property
    def new_fields(self) -> bool:
        return self.firmware.at_least(*_NEW_FIELDS_FROM)

    @property
    def has_vitals(self) -> bool:
        return not self.firmware.at_least(*VITALS_REMOVED_IN)


Renderer = Callable[[Snapshot, _Switches], Reply]


def _always(_: _Switches) -> bool:
    return True


@dataclass(frozen=True)
class _Route:
    render: Renderer
    live: bool  # depends on the snapshot (else only on the switches)
    stops_with_controller: bool = False  # 502 + empty body while the site controller is stopped
    ok: bool = True  # answers 200 (error routes answer their recorded error instead)
    available: Callable[[_Switches], bool] = field(default=_always)


# --------------------------------------------------------------------------- formatting


def _encode(document: object) -> bytes:
    """Compact JSON like Go's encoder, including its HTML-safe escaping of < > &."""
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    if "<" in text or ">" in text or "&" in text:
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode()


def _json(document: object, status: int = 200) -> Reply:
    return Reply(status, _encode(document))


def _error(status: int, error: str, message: str) -> Reply:
    """The gateway's error body: ``{"code", "error", "message"}``."""
    return _json({"code": status, "error": error, "message": message}, status)


_NOT_FOUND = _error(404, "endpoint not found", "Not Found")
_SITE_CONTROLLER_STOPPED = Reply(502, b"", "")


def _n(value: float) -> int | float:
    """A float as Go prints it: whole values have no fraction (72.0 -> 72)."""
    whole = int(value)
    return whole if whole == value else value


def _rfc3339(epoch_ns: int, offset_s: int) -> str:
    """RFC 3339 with trailing-zero-trimmed nanoseconds, as Go's time.RFC3339Nano."""
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    t = time.gmtime(seconds + offset_s)
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    if offset_s:
        sign = "-" if offset_s < 0 else "+"
        hours, minutes = divmod(abs(offset_s) // 60, 60)
        zone = f"{sign}{hours:02d}:{minutes:02d}"
    else:
        zone = "Z"
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}{fraction}{zone}"
    )


def _go_duration(total_ns: int) -> str:
    """A Go time.Duration string, e.g. "230h55m59.932079901s"."""
    hours, rest = divmod(total_ns, 3600 * 1_000_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000_000)
    seconds, nanos = divmod(rest, 1_000_000_000)
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    if hours:
        return f"{hours}h{minutes}m{seconds}{fraction}s"
    if minutes:
        return f"{minutes}m{seconds}{fraction}s"
    return f"{seconds}{fraction}s"


def _sub_second_ns(step: int, salt: int) -> int:
    """A stable pseudo-random lag (50-950 ms) so meter timestamps differ like real ones."""
    x = (step * 2654435761 + salt * 40503 + 12345) & 0xFFFFFFFF
    x = ((x ^ (x >> 13)) * 0x5BD1E995) & 0xFFFFFFFF
    return 50_000_000 + (x ^ (x >> 15)) % 900_000_000


def _snapshot_ns(snap: Snapshot) -> int:
    return round(snap.epoch * 1_000_000) * 1000


# --------------------------------------------------------------------------- the gateway


class SimulatedGateway:
    """Answers every GET the real gateway answers, from one simulated site.

    The switches (firmware, grid, site controller) may be flipped from any thread while
    requests are being answered; each request sees one consistent set of them.
    """

    def __init__(self, options: SiteOptions, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self._model = SiteModel(options, clock)
        self.identity: SiteIdentity = self._model.identity
        self._switches = _Switches(Firmware.parse(options.firmware), sitemaster_running=True)
        self._switch_lock = threading.Lock()
        self._cache: dict[str, tuple[object, _Switches, Reply]] = {}
        start_ns = _snapshot_ns(self._model.snapshot())
        boot_rng = seeded_rng(options.seed, "boot")
        self._boot_ns = (
            start_ns - int(self.identity.uptime_at_start_s * 1e9) - boot_rng.randrange(10**9)
        )
        self._last_update_ms = self._boot_ns // 1_000_000 + boot_rng.randrange(120_000, 900_000)
        self._strings_hash = (
            seeded_rng(options.seed, "pvs-firmware").getrandbits(56).to_bytes(7).hex()
        )
        self._routes = self._build_routes()

    # ------------------------------------------------------------------ public interface

    @property
    def paths(self) -> frozenset[str]:
        """Every GET path that answers 200 with the current firmware (502 while stopped)."""
        switches = self._switches
        return frozenset(
            path for path, route in self._routes.items() if route.ok and route.available(switches)
        )

    def get(self, path: str) -> Reply:
        """Answer ``GET path``; a query string is ignored (pyPowerwall strips it too)."""
        path = path.partition("?")[0]
        switches = self._switches
        route = self._routes.get(path)
        if route is None or not route.available(switches):
            return _NOT_FOUND
        if route.stops_with_controller and not switches.sitemaster_running:
            return _SITE_CONTROLLER_STOPPED
        snap = self._model.snapshot() if route.live else None
        cached = self._cache.get(path)
        if cached is not None and cached[0] is snap and cached[1] is switches:
            return cached[2]
        reply = route.render(snap or self._model.snapshot(), switches)
        self._cache[path] = (snap, switches, reply)
        return reply

    def snapshot(self) -> Snapshot:
        """The model's current state (the one the next live body will be rendered from)."""
        return self._model.snapshot()

    def set_firmware(self, version: str) -> None:
        """Report another firmware, e.g. "23.44.0 9064fc6a" (vitals then answer 404)."""
        firmware = Firmware.parse(version)
        with self._switch_lock:
            self._switches = _Switches(firmware, self._switches.sitemaster_running)

    def set_grid_connected(self, connected: bool) -> None:
        """Lose or restore the utility grid (reconnecting passes SystemTransitionToGrid)."""
        self._model.set_grid_connected(connected)

    def set_sitemaster_running(self, running: bool) -> None:
        """Stop or start the site controller: stopped, live endpoints answer 502."""
        with self._switch_lock:
            self._model.set_site_controller_running(running)
            self._switches = _Switches(self._switches.firmware, running)

    @property
    def firmware(self) -> str:
        """The ``/api/status`` version string, e.g. "23.12.10 8f14e45f"."""
        return self._switches.firmware.version

    @property
    def din(self) -> str:
        """The gateway DIN."""
        return self.identity.gateway_din

    @property
    def grid_connected(self) -> bool:
        """False while the grid is down."""
        return self._model.grid_connected

    @property
    def sitemaster_running(self) -> bool:
        """Whether the site controller runs."""
        return self._switches.sitemaster_running

    def vitals_devices(self) -> list[VitalsDevice]:
        """The devices ``/api/devices/vitals`` encodes, for the current snapshot."""
        return self._vitals_devices(self._model.snapshot(), self._switches)

    # ------------------------------------------------------------------ routing

    def _build_routes(self) -> dict[str, _Route]:
        def live(render: Callable[[Snapshot, _Switches], object], **kw: Any) -> _Route:
            return _Route(lambda snap, sw: _json(render(snap, sw)), live=True, **kw)

        def static(render: Callable[[_Switches], object], **kw: Any) -> _Route:
            return _Route(lambda _snap, sw: _json(render(sw)), live=False, **kw)

        def fixed(document: object) -> _Route:
            reply = _json(document)
            return _Route(lambda _snap, _sw: reply, live=False)

        def failing(reply: Reply) -> _Route:
            return _Route(lambda _snap, _sw: reply, live=False, ok=False)

        identity = self.identity
        meter_x = f"{identity.meter_serial_number}synchrometerX"
        meter_y = f"{identity.meter_serial_number}synchrometerY"
        routes: dict[str, _Route] = {
            "/api/meters/aggregates": live(self._aggregates, stops_with_controller=True),
            "/api/system_status/soe": live(
                lambda snap, _sw: {"percentage": snap.soe_percent}, stops_with_controller=True
            ),
            "/api/system_status/grid_status": live(
                lambda snap, _sw: {"grid_status": snap.grid_status, "grid_services_active": False},
                stops_with_controller=True,
            ),
            "/api/system_status": live(self._system_status, stops_with_controller=True),
            "/api/system_status/grid_faults": live(
                lambda snap, sw: self._grid_faults(snap, sw), stops_with_controller=True
            ),
            "/api/status": live(self._status),
            "/api/site_info": live(self._site_info),
            "/api/site_info/site_name": fixed(
                {"site_name": self.options.site_name, "timezone": self.options.timezone}
            ),
            "/api/sitemaster": static(self._sitemaster),
            "/api/powerwalls": live(self._powerwalls),
            "/api/powerwalls/status": static(lambda sw: self._powerwalls_flags(sw)),
            "/api/customer": fixed({"registered": True}),
            "/api/customer/registration": fixed(
                {
                    "privacy_notice": None,
                    "limited_warranty": None,
                    "grid_services": None,
                    "marketing": None,
                    "registered": True,
                    "timed_out_registration": False,
                }
            ),
            "/api/system/update/status": live(self._update_status),
            "/api/operation": fixed(
                {
                    "real_mode": "self_consumption",
                    "backup_reserve_percent": _n(self.options.gateway_reserve_percent),
                    "freq_shift_load_shed_soe": 65,
                    "freq_shift_load_shed_delta_f": -0.32,
                }
            ),
            "/api/solars": fixed(self._solars()),
            "/api/solars/brands": fixed(list(_SOLAR_BRANDS)),
            "/api/installer": static(self._installer),
            "/api/networks": fixed(_networks()),
            # Both are gone (404) on some recent firmware; the pyPowerwall proxy still passes
            # them through, so the simulator serves the shapes recorded on 21.x.
            "/api/system/networks": fixed(_saved_networks()),
            "/api/site_info/grid_codes": fixed(_grid_codes()),
            "/api/networks/client_protocols": fixed(
                {
                    "dnp3": False,
                    "m2m": False,
                    "mtls": False,
                    "modbus": False,
                    "allow_public_ip": False,
                }
            ),
            "/api/meters": fixed(self._meters()),
            "/api/meters/site": live(self._meters_site),
            "/api/meters/solar": live(self._meters_solar),
            "/api/meters/readings": live(self._meters_readings),
            "/api/meters/status": fixed({"status": "", "errors": None}),
            f"/api/meters/{meter_x}/cts": fixed([_ct("site", (True, True, False, False), 1)]),
            f"/api/meters/{meter_y}/cts": fixed(self._meter_y_cts()),
            "/api/synchrometer/ct_voltage_references": fixed(
                {"ct1": "Phase1", "ct2": "Phase2", "ct3": "Phase1"}
            ),
            "/api/troubleshooting/problems": fixed({"problems": []}),
            "/api/auth/toggle/supported": static(
                lambda sw: {"toggle_auth_supported": sw.sitemaster_running}
            ),
            "/api/config": fixed({"vin": identity.gateway_din}),
            "/api/generators": fixed({"disconnect_type": "None", "generators": []}),
            "/api/generators/disconnect_types": fixed(["DownstreamATS"]),
            "/api/autoconfig/status": fixed(
                {
                    "status": "not_applicable",
                    "running": False,
                    "retry_possible": False,
                    "have_registered": False,
                    "have_timezone": False,
                    "have_gridcode": False,
                    "grid_availability": "",
                }
            ),
            "/api/system/testing": fixed(
                {
                    "running": False,
                    "status": "TestNotRun",
                    "charge_tests": None,
                    "meter_results": None,
                    "inverter_results": None,
                    "hysteresis": 0,
                    "error": "",
                    "errors": None,
                    "tests": None,
                }
            ),
            "/api/devices/vitals": _Route(
                self._vitals, live=True, available=lambda sw: sw.has_vitals
            ),
            "/api/powerwalls/phase_usages": failing(
                _error(500, "no phase information", "Failed getting phase detection information")
            ),
            f"/api/meters/{meter_x}/ct_config": failing(
                _error(
                    500,
                    "meter type must be Neurio (synchrometerX)",
                    "Unable to get Amp configuration",
                )
            ),
            f"/api/meters/{meter_y}/ct_config": failing(
                _error(
                    500,
                    "meter type must be Neurio (synchrometerY)",
                    "Unable to get Amp configuration",
                )
            ),
        }
        if self.options.has_pvac:
            routes["/api/solar_powerwall"] = live(self._solar_powerwall)
        return routes

    # ------------------------------------------------------------------ live bodies

    def _aggregates(self, snap: Snapshot, _sw: _Switches) -> dict[str, object]:
        """``/api/meters/aggregates``: the hot path, so plain dict literals and no helpers."""
        now_ns = _snapshot_ns(snap)
        offset = snap.utc_offset_s
        step = snap.step
        sync_time = _rfc3339(now_ns - _sub_second_ns(step, 1), offset)
        battery_time = _rfc3339(now_ns - _sub_second_ns(step, 2), offset)
        solar_time = _rfc3339(now_ns - _sub_second_ns(step, 3), offset)
        site, battery, load, solar = snap.site, snap.battery, snap.load, snap.solar
        site_v = site.voltage_v * _SQRT3_HALF
        load_v = load.voltage_v * _SQRT3_HALF
        load_current = load.power_w / load_v if load_v else 0.0
        solar_current = solar.current_a
        options = self.options
        solar_exported: int | float
        solar_imported: int | float
        if options.has_pvac:
            # the PVAC counts whole Wh, and never counts energy drawn
            solar_exported, solar_imported = int(solar.energy_exported_wh), 0
            solar_frequency, solar_timeout = _n(solar.frequency_hz), _PVAC_TIMEOUT_NS
        else:
            solar_exported, solar_imported = solar.energy_exported_wh, solar.energy_imported_wh
            solar_frequency = _n(solar.frequency_hz) if options.has_solar else 0
            solar_timeout = _METER_TIMEOUT_NS
        return {
            "site": {
                "last_communication_time": sync_time,
                "instant_power": _n(site.power_w),
                "instant_reactive_power": _n(site.reactive_power_var),
                "instant_apparent_power": _n(site.apparent_power_va),
                "frequency": 0,
                "energy_exported": site.energy_exported_wh,
                "energy_imported": site.energy_imported_wh,
                "instant_average_voltage": _n(site_v),
                "instant_average_current": _n(site.current_a),
                "i_a_current": 0,
                "i_b_current": 0,
                "i_c_current": 0,
                "last_phase_voltage_communication_time": _UNUSED_TIME,
                "last_phase_power_communication_time": _UNUSED_TIME,
                "last_phase_energy_communication_time": _UNUSED_TIME,
                "timeout": _METER_TIMEOUT_NS,
                "num_meters_aggregated": 1,
                "instant_total_current": _n(site.current_a),
            },
            "battery": {
                "last_communication_time": battery_time,
                "instant_power": _n(battery.power_w),
                "instant_reactive_power": _n(battery.reactive_power_var),
                "instant_apparent_power": _n(battery.apparent_power_va),
                "frequency": _n(battery.frequency_hz),
                "energy_exported": _n(battery.energy_exported_wh),
                "energy_imported": _n(battery.energy_imported_wh),
                "instant_average_voltage": _n(battery.voltage_v),
                "instant_average_current": _n(battery.current_a),
                "i_a_current": 0,
                "i_b_current": 0,
                "i_c_current": 0,
                "last_phase_voltage_communication_time": _UNUSED_TIME,
                "last_phase_power_communication_time": _UNUSED_TIME,
                "last_phase_energy_communication_time": _UNUSED_TIME,
                "timeout": _METER_TIMEOUT_NS,
                "num_meters_aggregated": len(snap.blocks),
                "instant_total_current": _n(battery.current_a),
            },
            "load": {
                "last_communication_time": sync_time,
                "instant_power": _n(load.power_w),
                "instant_reactive_power": _n(load.reactive_power_var),
                "instant_apparent_power": _n(load.apparent_power_va),
                "frequency": 0,
                "energy_exported": 0,
                "energy_imported": load.energy_imported_wh,
                "instant_average_voltage": _n(load_v),
                "instant_average_current": _n(load_current),
                "i_a_current": 0,
                "i_b_current": 0,
                "i_c_current": 0,
                "last_phase_voltage_communication_time": _UNUSED_TIME,
                "last_phase_power_communication_time": _UNUSED_TIME,
                "last_phase_energy_communication_time": _UNUSED_TIME,
                "timeout": _METER_TIMEOUT_NS,
                "instant_total_current": _n(load_current),
            },
            "solar": {
                "last_communication_time": solar_time,
                "instant_power": _n(solar.power_w),
                "instant_reactive_power": _n(solar.reactive_power_var),
                "instant_apparent_power": _n(solar.apparent_power_va),
                "frequency": solar_frequency,
                "energy_exported": solar_exported,
                "energy_imported": solar_imported,
                "instant_average_voltage": _n(solar.voltage_v),
                "instant_average_current": _n(solar_current),
                "i_a_current": 0,
                "i_b_current": 0,
                "i_c_current": 0,
                "last_phase_voltage_communication_time": _UNUSED_TIME,
                "last_phase_power_communication_time": _UNUSED_TIME,
                "last_phase_energy_communication_time": _UNUSED_TIME,
                "timeout": solar_timeout,
                "num_meters_aggregated": 1 if options.has_solar else 0,
                "instant_total_current": _n(solar_current),
            },
        }

    def _system_status(self, snap: Snapshot, sw: _Switches) -> dict[str, object]:
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
                "p_out": _n(block.power_w),
                "q_out": _n(block.reactive_power_var),
                "v_out": _n(block.voltage_v),
                "f_out": _n(block.frequency_hz),
                "i_out": _n(block.current_a),
                "energy_charged": _n(block.energy_charged_wh),
                "energy_discharged": _n(block.energy_discharged_wh),
                "off_grid": block.off_grid,
                "vf_mode": block.off_grid,
                "wobble_detected": False,
                "charge_power_clamped": False,
                "backup_ready": True,
                "OpSeqState": "Active",
                "version": version,
            }
            for pw, block in zip(self.identity.powerwalls, snap.blocks, strict=True)
        ]
        charge_now = sum(block.available_charge_power_w for block in snap.blocks)
        discharge_now = sum(block.available_discharge_power_w for block in snap.blocks)
        body: dict[str, object] = {
            "command_source": "Configuration",
            "battery_target_power": _n(snap.battery_target_power_w),
            "battery_target_reactive_power": 0,
            "nominal_full_pack_energy": snap.nominal_full_pack_energy_wh,
            "nominal_energy_remaining": snap.nominal_energy_remaining_wh,
            "max_power_energy_remaining": 0,
            "max_power_energy_to_be_charged": 0,
            "max_charge_power": 5000 * count,
            "max_discharge_power": 5000 * count,
            "max_apparent_power": 5000 * count,
            "instantaneous_max_discharge_power": _n(min(12000.0 * count, 2.4 * discharge_now)),
            "instantaneous_max_charge_power": _n(min(7000.0 * count, 1.4 * charge_now)),
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
                "ffr_power_availability_low": _n(min(5800.0 * count, discharge_now)),
                "load_charge_constraint": 0,
                "max_sustained_ramp_rate": 1350000 * count,
                "grid_faults": self._grid_faults(snap, sw),
                "can_reboot": "Yes",
                "smart_inv_delta_p": 0,
                "smart_inv_delta_q": 0,
                "last_toggle_timestamp": _rfc3339(
                    self._boot_ns + 230_517_384_211, snap.utc_offset_s
                ),
                "solar_real_power_limit": (
                    -1 if snap.solar_power_limit_w is None else _n(snap.solar_power_limit_w)
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

    def _grid_faults(self, snap: Snapshot, sw: _Switches) -> list[dict[str, object]]:
        """One under-frequency warning per grid loss, newest last (as the gateway keeps them)."""
        first = self.identity.powerwalls[0]
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
                    "site_uid": self.identity.gateway_din,
                    "ecu_type": "TEPINV",
                    "ecu_package_part_number": first.pod_part_number,
                    "ecu_package_serial_number": first.pod_serial_number,
                }
            )
        return faults

    def _status(self, snap: Snapshot, sw: _Switches) -> dict[str, object]:
        now_ns = _snapshot_ns(snap) + _sub_second_ns(snap.step, 4)
        boot = time.gmtime(self._boot_ns // 1_000_000_000)
        body: dict[str, object] = {
            "din": self.identity.gateway_din,
            # every recorded gateway prints its boot time in UTC with a literal +0800
            "start_time": time.strftime("%Y-%m-%d %H:%M:%S +0800", boot),
            "up_time_seconds": _go_duration(now_ns - self._boot_ns),
            "is_new": False,
            "version": sw.firmware.version,
            "git_hash": sw.firmware.git_hash,
            "commission_count": self.identity.commission_count,
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

    def _site_info(self, snap: Snapshot, sw: _Switches) -> dict[str, object]:
        count = len(snap.blocks)
        body: dict[str, object] = {}
        if not sw.sitemaster_running:
            body["measured_frequency"] = _n(snap.grid_frequency_hz)
        power_kw = _n(round(5.4 * count, 1))
        body.update(
            {
                "max_system_energy_kWh": _n(13.5 * count),
                "max_system_power_kW": power_kw,
                "site_name": self.options.site_name,
                "timezone": self.options.timezone,
                "max_site_meter_power_kW": 1000000000,
                "min_site_meter_power_kW": -1000000000,
                "nominal_system_energy_kWh": _n(13.5 * count),
                "nominal_system_power_kW": power_kw,
            }
        )
        state, utility = _STATES.get(
            self.options.timezone, ("California", "Pacific Gas and Electric Company")
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

    def _powerwalls(self, snap: Snapshot, sw: _Switches) -> dict[str, object]:
        now_ns = _snapshot_ns(snap)
        offset = snap.utc_offset_s
        running = sw.sitemaster_running
        clock = iter(range(now_ns, now_ns + 10**9, 5_117))

        def check(name: str, results: dict[str, object] | None = None) -> dict[str, object]:
            start = _rfc3339(next(clock), offset)
            if running:
                return {
                    "name": name,
                    "status": "fail",
                    "start_time": start,
                    "end_time": _rfc3339(next(clock), offset),
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
                "end_time": _rfc3339(next(clock), offset) if done else None,
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
        for pw in self.identity.powerwalls:
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
        body = self._powerwalls_flags(sw)
        body.update(
            {
                "powerwalls": powerwalls,
                "gateway_din": self.identity.gateway_din,
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

    def _powerwalls_flags(self, sw: _Switches) -> dict[str, object]:
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

    def _update_status(self, snap: Snapshot, sw: _Switches) -> dict[str, object]:
        return {
            "state": "/update_succeeded",
            "info": {"status": ["nonactionable"]},
            "current_time": _snapshot_ns(snap) // 1_000_000 + _sub_second_ns(snap.step, 5) // 10**7,
            "last_status_time": self._last_update_ms,
            "version": sw.firmware.version,
            "offline_updating": False,
            "offline_update_error": "",
            "estimated_bytes_per_second": None,
        }

    def _cached_readings(self, snap: Snapshot, sw: _Switches, *, solar: bool) -> dict[str, object]:
        """``Cached_readings`` of the meter behind the site (synchrometer X) or solar (Neurio)."""
        now_ns = _snapshot_ns(snap)
        offset = snap.utc_offset_s
        meter = snap.solar if solar else snap.site
        stamp = _rfc3339(now_ns - _sub_second_ns(snap.step, 3 if solar else 1), offset)
        if solar:
            voltage = snap.home_voltage_l1n_v + snap.home_voltage_l2n_v
            return {
                "last_communication_time": stamp,
                "instant_power": _n(meter.power_w),
                "instant_reactive_power": _n(meter.reactive_power_var),
                "instant_apparent_power": _n(meter.apparent_power_va),
                "frequency": _n(meter.frequency_hz),
                "energy_exported": meter.energy_exported_wh,
                "energy_imported": meter.energy_imported_wh,
                "instant_average_voltage": _n(voltage),
                "instant_average_current": 0,
                "i_a_current": 0,
                "i_b_current": 0,
                "i_c_current": 0,
                "last_phase_voltage_communication_time": stamp,
                "v_l1n": _n(voltage),
                "last_phase_power_communication_time": stamp,
                "real_power_a": _n(meter.power_w),
                "reactive_power_a": _n(meter.reactive_power_var),
                "last_phase_energy_communication_time": stamp,
                "energy_exported_a": meter.energy_exported_wh,
                "energy_imported_a": meter.energy_imported_wh,
                "serial_number": self.identity.neurio_serial_number,
                "version": _NEURIO_FIRMWARE,
                "timeout": _METER_TIMEOUT_NS,
                "instant_total_current": 0,
            }
        v1, v2 = snap.grid_voltage_l1n_v, snap.grid_voltage_l2n_v
        current_a = abs(snap.site_power_a_w) / v1 if v1 else 0.0
        current_b = abs(snap.site_power_b_w) / v2 if v2 else 0.0
        reactive_a = float(round(meter.reactive_power_var * 0.6))
        return {
            "last_communication_time": stamp,
            "instant_power": _n(meter.power_w),
            "instant_reactive_power": _n(meter.reactive_power_var),
            "instant_apparent_power": _n(meter.apparent_power_va),
            "frequency": 0,
            "energy_exported": meter.energy_exported_wh,
            "energy_imported": meter.energy_imported_wh,
            "instant_average_voltage": _n((v1 + v2) * _SQRT3_HALF),
            "instant_average_current": _n(meter.current_a),
            "i_a_current": _n(current_a),
            "i_b_current": _n(current_b),
            "i_c_current": 0,
            "last_phase_voltage_communication_time": stamp,
            "v_l1n": _n(v1),
            "v_l2n": _n(v2),
            "last_phase_power_communication_time": stamp,
            "real_power_a": _n(snap.site_power_a_w),
            "real_power_b": _n(snap.site_power_b_w),
            "reactive_power_a": _n(reactive_a),
            "reactive_power_b": _n(meter.reactive_power_var - reactive_a),
            "last_phase_energy_communication_time": _UNUSED_TIME,
            "serial_number": self.identity.meter_serial_number,
            "version": sw.firmware.component_hash,
            "timeout": _METER_TIMEOUT_NS,
            "instant_total_current": _n(meter.current_a),
        }

    def _meters_site(self, snap: Snapshot, sw: _Switches) -> list[dict[str, object]]:
        return [
            {
                "id": 0,
                "location": "site",
                "type": "synchrometerX",
                "cts": [True, True, False, False],
                "inverted": [False, False, False, False],
                "connection": {
                    "short_id": self.identity.gateway_din,
                    "device_serial": f"{self.identity.meter_serial_number}synchrometerX",
                    "https_conf": {},
                },
                "Cached_readings": self._cached_readings(snap, sw, solar=False),
            }
        ]

    def _meters_solar(self, snap: Snapshot, sw: _Switches) -> list[dict[str, object]] | None:
        """A Powerwall+ measures its PV inside the inverter: no solar meter, body ``null``."""
        if not self.options.has_solar or self.options.has_pvac:
            return None
        identity = self.identity
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
                "Cached_readings": self._cached_readings(snap, sw, solar=True),
            }
        ]

    def _meters_readings(self, snap: Snapshot, sw: _Switches) -> dict[str, object]:
        """Raw synchrometer CTs: zeroed with an error while the site controller owns them."""
        serial = self.identity.meter_serial_number
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
        solar_w = (
            snap.solar.power_w if self.options.has_solar and not self.options.has_pvac else 0.0
        )
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

    def _solar_powerwall(self, snap: Snapshot, _sw: _Switches) -> dict[str, object]:
        """``/api/solar_powerwall``: the Powerwall+ inverter (PVAC) and string safety (PVS)."""
        solar = snap.solar
        now_us = _snapshot_ns(snap) // 1000 - _sub_second_ns(snap.step, 6) // 1000
        stamp = _rfc3339(now_us * 1000, snap.utc_offset_s)
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
                pvs_alerts[_PVS_MCI_ALERT[string.name]] = True
        limit = snap.solar_power_limit_w
        return {
            "pvac_status": {
                "state": "PVAC_Active",
                "disabled": False,
                "disabled_reasons": [],
                "grid_state": "Grid_Compliant",
                "inv_state": "INV_Grid_Connected",
                "v_out": _n(solar.voltage_v),
                "f_out": _n(solar.frequency_hz),
                "p_out": _n(solar.power_w),
                "q_out": _n(solar.reactive_power_var),
                "i_out": _n(round(solar.current_a, 2)),
                "string_vitals": [
                    {
                        "string_id": index + 1,
                        "connected": string.connected,
                        "measured_voltage": _n(string.voltage_v),
                        "current": _n(string.current_a),
                        "measured_power": _n(string.power_w),
                    }
                    for index, string in enumerate(strings)
                ],
            },
            "pvs_status": {
                "state": "PVS_Active",
                "disabled": False,
                "enable_output": True,
                "v_ll": _n(round(snap.home_voltage_l1n_v + snap.home_voltage_l2n_v, 1)),
                "self_test_state": "PVS_SelfTestOff",
            },
            "pv_power_limit": _n(self.identity.pv_nameplate_w * 1.05 if limit is None else limit),
            "power_status_setpoint": "on",
            "pvac_alerts": pvac_alerts,
            "pvs_alerts": pvs_alerts,
        }

    def _vitals(self, snap: Snapshot, sw: _Switches) -> Reply:
        return Reply(200, encode_vitals(self._vitals_devices(snap, sw)), PROTOBUF_CONTENT_TYPE)

    def _vitals_devices(self, snap: Snapshot, sw: _Switches) -> list[VitalsDevice]:
        return _vitals_devices(self.options, self.identity, snap, sw.firmware, self._strings_hash)

    # ------------------------------------------------------------------ static bodies

    def _sitemaster(self, sw: _Switches) -> dict[str, object]:
        running = sw.sitemaster_running
        return {
            "status": "StatusUp" if running else "StatusDown",
            "running": running,
            "connected_to_tesla": True,
            "power_supply_mode": False,
            "can_reboot": "Yes" if running else "",
        }

    def _installer(self, sw: _Switches) -> dict[str, object]:
        body: dict[str, object] = {
            "company": "Tesla",
            "customer_id": "",
            "phone": "",
            "email": "",
            "location": "",
            "mounting": "",
            "wiring": "",
            "backup_configuration": "Whole Home",
            "solar_installation": "New" if self.options.has_pvac else "Existing",
            "solar_installation_type": "PV Panel",
        }
        if sw.sitemaster_running:
            body["run_sitemaster"] = True  # the key disappears while stopped (21.44 dumps)
        body["verified_config"] = True
        body["installation_types"] = ["Residential"]
        return body

    def _solars(self) -> list[dict[str, object]]:
        if not self.options.has_solar:
            return []
        nameplate = self.identity.pv_nameplate_w
        if self.options.has_pvac:
            return [
                {
                    "brand": "Tesla",
                    "model": f"Solar Inverter {nameplate / 1000:g}",
                    "power_rating_watts": nameplate,
                }
            ]
        return [
            {
                "brand": "Enphase Energy",
                "model": "IQ7PLUS-72-x-US (240V)",
                "power_rating_watts": nameplate,
            }
        ]

    def _meters(self) -> list[dict[str, object]]:
        identity = self.identity
        meters: list[dict[str, object]] = []
        if self.options.has_solar:
            rgm = self.options.has_pvac  # a Powerwall+ site gets a revenue-grade meter
            meters.append(
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
        meters.append(
            {
                "serial": f"{serial}synchrometerY",
                "short_id": identity.gateway_din,
                "type": "synchrometerY",
            }
        )
        site_ct = _ct("site", (True, True, False, False), None)
        meters.append(
            {
                "serial": f"{serial}synchrometerX",
                "short_id": identity.gateway_din,
                "type": "synchrometerX",
                "cts": [site_ct],
            }
        )
        return meters

    def _meter_y_cts(self) -> list[dict[str, object]]:
        cts = [_ct("site", (True, True, False, False), 1)]
        if self.options.has_solar and not self.options.has_pvac:
            cts.append(_ct("solar", (False, False, True, False), 2))
        return cts


def _vitals_devices(
    options: SiteOptions, identity: SiteIdentity, snap: Snapshot, firmware: Firmware, pvs_hash: str
) -> list[VitalsDevice]:
    """Every device ``/api/devices/vitals`` lists, with vitals taken from ``snap``.

    Numbers are floats (the gateway sends every numeric vital as a double), PINV power in kW
    as recorded, energies in Wh. Each Powerwall contributes a TETHC (named after its package,
    so its serial is the ``battery_blocks`` PackageSerialNumber) with a TEPOD and a TEPINV
    under it.
    """
    seen = int(snap.epoch)
    component = firmware.component_hash
    gateway = identity.ststsm_din
    on_grid = snap.grid_status == GRID_CONNECTED
    grid_state = "Grid_Compliant" if on_grid else "Grid_Uncompliant"
    year = firmware.numbers[0]
    week = firmware.numbers[1] if len(firmware.numbers) > 1 else 1
    # the gateway OS reports a build date plus a git hash, e.g. "2022-01-31-g9853d3db5"
    build = (
        f"20{year:02d}-{min(12, week // 4 + 1):02d}-{week % 28 + 1:02d}-g{firmware.git_hash[:9]}"
    )
    devices = [
        VitalsDevice(
            din=gateway,
            part_number=identity.gateway_part_number,
            serial_number=identity.gateway_serial_number,
            firmware_version=build,
            last_communication_time=seen,
            ecu_type=207,
            vitals=(("STSTSM-Location", "Gateway"),),
            alerts=("FWUpdateSucceeded", "GridCodesWrite")
            if on_grid
            else ("SystemIslandedActive",),
        )
    ]
    for pw, block in zip(identity.powerwalls, snap.blocks, strict=True):
        full = float(block.nominal_full_pack_energy_wh)
        remaining = float(block.nominal_energy_remaining_wh)
        charge_complete = remaining >= full
        devices.append(
            VitalsDevice(
                din=pw.thc_din,
                part_number=pw.package_part_number,
                serial_number=pw.package_serial_number,
                component_parent_din=gateway,
                firmware_version=component,
                last_communication_time=seen,
                ecu_type=224,
                vitals=(
                    ("THC_AmbientTemp", block.temperature_c),
                    ("THC_State", "THC_STATE_AUTONOMOUSCONTROL"),
                ),
            )
        )
        devices.append(
            VitalsDevice(
                din=pw.pod_din,
                part_number=pw.pod_part_number,
                serial_number=pw.pod_serial_number,
                component_parent_din=pw.thc_din,
                firmware_version=component,
                last_communication_time=seen,
                ecu_type=226,
                vitals=(
                    ("POD_ActiveHeating", False),
                    ("POD_CCVhold", False),
                    ("POD_ChargeComplete", charge_complete),
                    ("POD_ChargeRequest", False),
                    ("POD_DischargeComplete", block.available_discharge_power_w == 0),
                    ("POD_PermanentlyFaulted", False),
                    ("POD_PersistentlyFaulted", False),
                    ("POD_available_charge_power", block.available_charge_power_w),
                    ("POD_available_dischg_power", block.available_discharge_power_w),
                    ("POD_enable_line", True),
                    ("POD_nom_energy_remaining", remaining),
                    ("POD_nom_energy_to_be_charged", full - remaining),
                    ("POD_nom_full_pack_energy", full),
                    ("POD_state", "POD_ACTIVE"),
                ),
                alerts=("POD_w110_SW_EOC",) if charge_complete else (),
            )
        )
        devices.append(
            VitalsDevice(
                din=pw.pinv_din,
                part_number=pw.pod_part_number,
                serial_number=pw.pod_serial_number,
                component_parent_din=pw.thc_din,
                firmware_version=component,
                last_communication_time=seen,
                ecu_type=253,
                vitals=(
                    ("PINV_EnergyCharged", float(int(block.energy_charged_wh) // 10 * 10)),
                    ("PINV_EnergyDischarged", float(int(block.energy_discharged_wh) // 10 * 10)),
                    ("PINV_Fout", block.frequency_hz),
                    ("PINV_GridState", grid_state),
                    ("PINV_HardwareEnableLine", True),
                    ("PINV_PllFrequency", round(block.frequency_hz - 0.006, 3)),
                    ("PINV_PllLocked", True),
                    ("PINV_Pout", block.power_w / 1000.0),
                    ("PINV_PowerLimiter", "PWRLIM_POD_Power_Limit"),
                    ("PINV_Qout", block.reactive_power_var / 1000.0),
                    ("PINV_ReadyForGridForming", True),
                    ("PINV_State", "PINV_GridFollowing" if on_grid else "PINV_GridForming"),
                    ("PINV_VSplit1", round(block.voltage_v / 2 + 0.1, 1)),
                    ("PINV_VSplit2", round(block.voltage_v / 2 - 0.1, 1)),
                    ("PINV_Vout", block.voltage_v),
                ),
            )
        )
    if options.has_pvac:
        devices.extend(_pvac_devices(identity, snap, component, pvs_hash, seen))
    if options.has_solar:
        devices.append(
            VitalsDevice(
                din=f"NEURIO--{identity.neurio_serial_number}",
                serial_number=identity.neurio_serial_number,
                manufacturer="NEURIO",
                component_parent_din=gateway,
                firmware_version=_NEURIO_FIRMWARE,
                last_communication_time=seen,
                meter_location=(5,),
                ip_address=f"PWRview-{identity.neurio_short_id}",
                vitals=(
                    ("NEURIO_CT0_InstRealPower", snap.solar.power_w),
                    ("NEURIO_CT0_Location", "solarRGM" if options.has_pvac else "solar"),
                ),
            )
        )
    devices.append(
        VitalsDevice(
            din=f"TESLA--{identity.meter_serial_number}",
            serial_number=identity.meter_serial_number,
            component_parent_din=gateway,
            last_communication_time=seen,
            meter_location=(1,),
        )
    )
    devices.append(_tesync_device(identity, snap, component, seen))
    return devices


def _pvac_devices(
    identity: SiteIdentity, snap: Snapshot, component: str, pvs_hash: str, seen: int
) -> list[VitalsDevice]:
    solar = snap.solar
    strings = snap.pv_strings
    parallel = (
        strings[-1].name if len(strings) == 4 and all(s.connected for s in strings[-2:]) else ""
    )
    pvac_vitals: list[tuple[str, float | str | bool]] = [
        ("PVAC_Fout", solar.frequency_hz),
        ("PVAC_GridState", "Grid_Compliant"),
        ("PVAC_InvState", "INV_Grid_Connected"),
        ("PVAC_Iout", round(solar.current_a, 2)),
        ("PVAC_LifetimeEnergyPV_Total", float(int(solar.energy_exported_wh) // 10 * 10)),
    ]
    pvac_vitals += [(f"PVAC_PVCurrent_{s.name}", s.current_a) for s in strings]
    pvac_vitals += [(f"PVAC_PVMeasuredPower_{s.name}", s.power_w) for s in strings]
    pvac_vitals += [(f"PVAC_PVMeasuredVoltage_{s.name}", s.voltage_v) for s in strings]
    pvac_vitals.append(("PVAC_Pout", solar.power_w))
    pvac_vitals += [
        (f"PVAC_PvState_{s.name}", "PV_Active_Parallel" if s.name == parallel else "PV_Active")
        for s in strings
    ]
    home_l1, home_l2 = snap.home_voltage_l1n_v, snap.home_voltage_l2n_v
    pvac_vitals += [
        ("PVAC_Qout", solar.reactive_power_var),
        ("PVAC_State", "PVAC_Active"),
        ("PVAC_VHvMinusChassisDC", -210.0),
        ("PVAC_VL1Ground", home_l1),
        ("PVAC_VL2Ground", home_l2),
        ("PVAC_Vout", solar.voltage_v),
        ("PVI-PowerStatusSetpoint", "on"),
    ]
    pvs_vitals: list[tuple[str, float | str | bool]] = [
        ("PVS_EnableOutput", True),
        ("PVS_SelfTestState", "PVS_SelfTestOff"),
        ("PVS_State", "PVS_Active"),
    ]
    pvs_vitals += [(f"PVS_String{s.name}_Connected", s.connected) for s in strings]
    pvs_vitals.append(("PVS_vLL", round(home_l1 + home_l2, 1)))
    thc_parent = identity.powerwalls[0].thc_din
    return [
        VitalsDevice(
            din=identity.pvac_din,
            part_number=identity.pvac_part_number,
            serial_number=identity.pvac_serial_number,
            component_parent_din=thc_parent,
            firmware_version=component,
            last_communication_time=seen,
            ecu_type=296,
            vitals=tuple(pvac_vitals),
        ),
        VitalsDevice(
            din=identity.pvs_din,
            part_number=identity.pvac_part_number,
            serial_number=identity.pvac_serial_number,
            component_parent_din=identity.pvac_din,
            firmware_version=pvs_hash,
            last_communication_time=seen,
            ecu_type=297,
            vitals=tuple(pvs_vitals),
            alerts=tuple(_PVS_MCI_ALERT[s.name] for s in strings if not s.connected),
        ),
        VitalsDevice(
            din=f"TESLA--{identity.pvac_part_number}--{identity.pvac_serial_number}",
            serial_number=f"{identity.pvac_part_number}--{identity.pvac_serial_number}",
            component_parent_din=identity.ststsm_din,
            firmware_version=component,
            last_communication_time=seen,
            pv_nameplate_w=identity.pv_nameplate_w,
        ),
    ]


def _tesync_device(
    identity: SiteIdentity, snap: Snapshot, component: str, seen: int
) -> VitalsDevice:
    """The backup switch: islanding state plus the synchrometer's meter X (site) and Y."""
    grid_up = snap.grid_voltage_l1n_v > 0
    site = snap.site
    v1, v2 = snap.grid_voltage_l1n_v, snap.grid_voltage_l2n_v
    reactive_a = float(round(site.reactive_power_var * 0.6))
    vitals: tuple[tuple[str, float | str | bool], ...] = (
        ("ISLAND_FreqL1_Load", snap.home_frequency_hz),
        ("ISLAND_FreqL1_Main", snap.grid_frequency_hz),
        ("ISLAND_FreqL2_Load", snap.home_frequency_hz),
        ("ISLAND_FreqL2_Main", snap.grid_frequency_hz),
        ("ISLAND_FreqL3_Load", 0.0),
        ("ISLAND_FreqL3_Main", 0.0),
        ("ISLAND_GridConnected", snap.grid_status == GRID_CONNECTED),
        (
            "ISLAND_GridState",
            "ISLAND_GridState_Grid_Compliant" if grid_up else "ISLAND_GridState_Grid_Uncompliant",
        ),
        ("ISLAND_L1L2PhaseDelta", -256.0),
        ("ISLAND_L1L3PhaseDelta", -256.0),
        ("ISLAND_L1MicrogridOk", True),
        ("ISLAND_L2L3PhaseDelta", -256.0),
        ("ISLAND_L2MicrogridOk", True),
        ("ISLAND_L3MicrogridOk", False),
        ("ISLAND_PhaseL1_Main_Load", 0.0),
        ("ISLAND_PhaseL2_Main_Load", 0.0),
        ("ISLAND_PhaseL3_Main_Load", -256.0),
        ("ISLAND_ReadyForSynchronization", grid_up),
        ("ISLAND_VL1N_Load", snap.home_voltage_l1n_v),
        ("ISLAND_VL1N_Main", v1),
        ("ISLAND_VL2N_Load", snap.home_voltage_l2n_v),
        ("ISLAND_VL2N_Main", v2),
        ("ISLAND_VL3N_Load", 0.0),
        ("ISLAND_VL3N_Main", 0.0),
        ("METER_X_CTA_I", round(abs(snap.site_power_a_w) / v1, 4) if v1 else 0.0),
        ("METER_X_CTA_InstReactivePower", reactive_a),
        ("METER_X_CTA_InstRealPower", snap.site_power_a_w),
        ("METER_X_CTB_I", round(abs(snap.site_power_b_w) / v2, 4) if v2 else 0.0),
        ("METER_X_CTB_InstReactivePower", site.reactive_power_var - reactive_a),
        ("METER_X_CTB_InstRealPower", snap.site_power_b_w),
        ("METER_X_CTC_I", 0.0),
        ("METER_X_CTC_InstReactivePower", 0.0),
        ("METER_X_CTC_InstRealPower", 0.0),
        ("METER_X_LifetimeEnergyExport", float(int(site.energy_exported_wh))),
        ("METER_X_LifetimeEnergyImport", float(int(site.energy_imported_wh))),
        ("METER_X_VL1N", v1),
        ("METER_X_VL2N", v2),
        ("METER_X_VL3N", 0.0),
        ("METER_Y_CTA_I", 0.0),
        ("METER_Y_CTA_InstReactivePower", 0.0),
        ("METER_Y_CTA_InstRealPower", 0.0),
        ("METER_Y_CTB_I", 0.0),
        ("METER_Y_CTB_InstReactivePower", 0.0),
        ("METER_Y_CTB_InstRealPower", 0.0),
        ("METER_Y_CTC_I", 0.0),
        ("METER_Y_CTC_InstReactivePower", 0.0),
        ("METER_Y_CTC_InstRealPower", 0.0),
        ("METER_Y_LifetimeEnergyExport", 0.0),
        ("METER_Y_LifetimeEnergyImport", 2.0),
        ("METER_Y_VL1N", v1),
        ("METER_Y_VL2N", v2),
        ("METER_Y_VL3N", 0.0),
        ("SYNC_ExternallyPowered", False),
        ("SYNC_SiteSwitchEnabled", False),
    )
    return VitalsDevice(
        din=identity.tesync_din,
        part_number=identity.sync_part_number,
        serial_number=identity.meter_serial_number,
        component_parent_din=identity.ststsm_din,
        firmware_version=component,
        last_communication_time=seen,
        ecu_type=259,
        vitals=vitals,
        alerts=("SYNC_a001_SW_App_Boot",),
    )


def _ct(kind: str, valid: tuple[bool, bool, bool, bool], scale: int | None) -> dict[str, object]:
    ct: dict[str, object] = {"type": kind, "valid": list(valid), "inverted": [False] * 4}
    if scale is not None:
        ct["real_power_scale_factor"] = scale
    return ct


def _ct_reading(ct: int, volts: float, watts: float, vars_: float) -> dict[str, object]:
    return {
        "ct": ct,
        "v_V": _n(volts),
        "p_W": _n(watts),
        "q_VAR": _n(vars_),
        "eExp_Ws": 0,
        "eImp_Ws": 0,
    }


def _saved_networks() -> list[dict[str, object]]:
    """The saved-network list of /api/system/networks."""
    return [
        {
            "network_name": "default_gsm",
            "interface": "GsmType",
            "security_type": "NONE",
            "dhcp": None,
        },
        {
            "network_name": "default_eth",
            "interface": "EthType",
            "security_type": "NONE",
            "dhcp": True,
        },
        {
            "network_name": "HomeWiFi",
            "interface": "WifiType",
            "security_type": "WPA2_Personal",
            "dhcp": True,
            "enabled": True,
        },
    ]


def _grid_codes() -> dict[str, object]:
    """A few entries of the setup wizard's grid-code tree: country, state, standard, codes."""

    def code(name: str, volts: int, hertz: int, phase: str) -> dict[str, object]:
        return {
            "grid_code": name,
            "grid_voltage_setting": volts,
            "grid_freq_setting": hertz,
            "grid_phase_setting": phase,
        }

    return {
        "United States": {
            "California": {
                "UL1741SA": [code("60Hz_240V_s_UL1741SA:2019_California", 240, 60, "Split")],
            },
            "*": {"IEEE1547": [code("60Hz_240V_s_IEEE1547:2003", 240, 60, "Split")]},
        },
        "United Kingdom": {"*": {"G99": [code("50Hz_230V_1_G99:2018_UK", 230, 50, "Single")]}},
        "Australia": {"*": {"AS4777.2": [code("50Hz_230V_1_AS4777.2:2020_AU", 230, 50, "Single")]}},
    }


def _networks() -> list[dict[str, object]]:
    def network(name: str, interface: str, *, primary: bool, signal: int) -> dict[str, object]:
        return {
            "network_name": name,
            "interface": interface,
            "enabled": True,
            "dhcp": True if interface == "EthType" else None,
            "active": True,
            "primary": primary,
            "lastTeslaConnected": primary,
            "lastInternetConnected": primary,
            "iface_network_info": {
                "network_name": name,
                "ip_networks": [{"IP": "", "Mask": "////AA=="}],
                "gateway": "",
                "interface": interface,
                "state": "DeviceStateReady",
                "state_reason": "DeviceStateReasonNone",
                "signal_strength": signal,
                "hw_address": "",
            },
        }

    wired = network("ethernet_tesla_internal_default", "EthType", primary=True, signal=0)
    wired = {**wired, "extra_ips": [{"ip": "192.168.90.2", "netmask": 24}]}
    order = ("network_name", "interface", "enabled", "dhcp", "extra_ips", "active", "primary")
    wired = {key: wired[key] for key in order} | {k: v for k, v in wired.items() if k not in order}
    return [wired, network("gsm_tesla_internal_default", "GsmType", primary=False, signal=71)]


_SOLAR_BRANDS = (
    "ABB",
    "Delta Energy Systems",
    "Enphase Energy",
    "Fronius",
    "Generac",
    "Huawei Technologies",
    "SMA",
    "SolarEdge Technologies",
    "Sungrow Power Supply",
    "SunPower",
    "Tesla",
)

# time zone -> (state, utility) for the grid code block of /api/site_info
_STATES = {
    "America/Los_Angeles": ("California", "Pacific Gas and Electric Company"),
    "America/Denver": ("Colorado", "Xcel Energy"),
    "America/Phoenix": ("Arizona", "Arizona Public Service"),
    "America/Chicago": ("Illinois", "Commonwealth Edison"),
    "America/New_York": ("New York", "Consolidated Edison"),
}

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
_PVS_MCI_ALERT = {
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
    *_PVS_MCI_ALERT.values(),
    "PVS_a021_RapidShutdown",
    "PVS_a029_PvArcFault",
    "PVS_a030_VDcOv",
)
