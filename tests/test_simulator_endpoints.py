"""The simulated gateway's bodies: consistent with one snapshot, shaped like the real ones."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from powerwall_bus.shared.contract import ENDPOINTS
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.gateway.vitals import decode_vitals
from powerwall_bus.simulator.endpoints import PROTOBUF_CONTENT_TYPE, SimulatedGateway
from powerwall_bus.simulator.model import GRID_ISLANDED
from powerwall_bus.simulator.site import SiteOptions

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "gateway"
SUMMER_NOON_UTC = datetime(2024, 6, 21, 19, 0, tzinfo=UTC)  # 12:00 in Los Angeles (PDT)

# The simulated gateway answers every path of the contract's table (the poller reads them,
# the proxy passes them through), vitals included on firmware before 23.44.
ALLOW_LIST = {endpoint.path for endpoint in ENDPOINTS}
LIVE_ENDPOINTS = {
    "/api/meters/aggregates",
    "/api/system_status",
    "/api/system_status/soe",
    "/api/system_status/grid_status",
    "/api/system_status/grid_faults",
}


class FakeClock:
    """Wall time that only moves when a test says so."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_gateway(
    *, clock_is_wall: bool = False, **overrides: Any
) -> tuple[SimulatedGateway, FakeClock]:
    settings: dict[str, Any] = {"speed": 1.0, "start": SUMMER_NOON_UTC}
    settings.update(overrides)
    clock = FakeClock()
    wall = time.monotonic if clock_is_wall else clock
    return SimulatedGateway(SiteOptions(**settings), clock=wall), clock


def body(gateway: SimulatedGateway, path: str) -> Any:
    reply = gateway.get(path)
    assert reply.status == 200, (path, reply)
    assert reply.content_type == "application/json"
    return json.loads(reply.body)


# --------------------------------------------------------------------------- routing


def test_serves_the_allow_list_and_the_live_endpoints_with_200() -> None:
    gateway, _ = make_gateway()
    assert ALLOW_LIST | LIVE_ENDPOINTS | {"/api/devices/vitals", "/api/config"} <= gateway.paths
    for path in gateway.paths:
        assert gateway.get(path).status == 200, path


@pytest.mark.parametrize(
    "path", ["/api/nope", "/api/site_info/grid_code", "/api/system/network", "/api/status/"]
)
def test_unknown_paths_answer_404_with_the_gateway_error_shape(path: str) -> None:
    gateway, _ = make_gateway()
    reply = gateway.get(path)
    assert reply.status == 404
    error = json.loads(reply.body)
    assert set(error) == {"code", "error", "message"} and error["code"] == 404
    assert path not in gateway.paths


def test_recorded_error_endpoints_answer_their_error_and_are_not_listed() -> None:
    gateway, _ = make_gateway()
    reply = gateway.get("/api/powerwalls/phase_usages")
    assert reply.status == 500
    assert json.loads(reply.body)["error"] == "no phase information"
    assert "/api/powerwalls/phase_usages" not in gateway.paths


def test_a_query_string_is_ignored() -> None:
    gateway, _ = make_gateway()
    assert gateway.get("/api/meters/aggregates?x=1") == gateway.get("/api/meters/aggregates")


def test_solar_powerwall_exists_only_with_a_powerwall_plus_and_panels() -> None:
    assert "/api/solar_powerwall" in make_gateway()[0].paths
    for options in ({"powerwall_plus": False}, {"solar_kw": 0.0}):
        gateway, _ = make_gateway(**options)
        assert "/api/solar_powerwall" not in gateway.paths
        assert gateway.get("/api/solar_powerwall").status == 404


# --------------------------------------------------------------------------- reproducibility


def test_same_seed_and_clock_give_identical_bodies() -> None:
    first, first_clock = make_gateway(seed=5, speed=600.0)
    second, second_clock = make_gateway(seed=5, speed=600.0)
    for _ in range(5):
        first_clock.advance(7.3)
        second_clock.advance(7.3)
        for path in sorted(first.paths):
            assert first.get(path) == second.get(path), path
    other, other_clock = make_gateway(seed=6, speed=600.0)
    other_clock.advance(5 * 7.3)
    assert other.get("/api/meters/aggregates") != first.get("/api/meters/aggregates")


# --------------------------------------------------------------------------- consistency


@pytest.mark.parametrize("powerwalls", [1, 2, 3, 4])
def test_every_body_agrees_with_the_same_snapshot(powerwalls: int) -> None:
    gateway, clock = make_gateway(seed=powerwalls, powerwalls=powerwalls, speed=360.0)
    for _ in range(6):
        clock.advance(37.0)
        snap = gateway.snapshot()
        aggregates = body(gateway, "/api/meters/aggregates")
        soe = body(gateway, "/api/system_status/soe")
        status = body(gateway, "/api/system_status")
        site_info = body(gateway, "/api/site_info")
        powerwalls_body = body(gateway, "/api/powerwalls")
        site_meter = body(gateway, "/api/meters/site")[0]["Cached_readings"]
        blocks = status["battery_blocks"]
        assert gateway.snapshot() is snap  # the clock did not move while we read

        load = aggregates["load"]["instant_power"]
        parts = sum(aggregates[m]["instant_power"] for m in ("site", "solar", "battery"))
        assert load == pytest.approx(parts, abs=max(1.0, 0.01 * abs(load)))
        assert aggregates["site"]["instant_power"] == snap.site.power_w
        assert soe["percentage"] == pytest.approx(
            100 * status["nominal_energy_remaining"] / status["nominal_full_pack_energy"]
        )
        assert status["nominal_energy_remaining"] == sum(
            b["nominal_energy_remaining"] for b in blocks
        )
        battery = aggregates["battery"]
        assert battery["energy_imported"] == sum(b["energy_charged"] for b in blocks)
        assert battery["energy_exported"] == sum(b["energy_discharged"] for b in blocks)
        assert battery["instant_power"] == sum(b["p_out"] for b in blocks)
        assert battery["num_meters_aggregated"] == len(blocks) == len(powerwalls_body["powerwalls"])
        assert len(blocks) == powerwalls
        assert site_info["nominal_system_energy_kWh"] == pytest.approx(13.5 * powerwalls)
        if battery["instant_power"] < 0:
            assert status["battery_target_power"] < 0
            assert all(b["p_out"] < 0 for b in blocks)
        assert site_meter["instant_power"] == aggregates["site"]["instant_power"]
        assert site_meter["energy_imported"] == aggregates["site"]["energy_imported"]
        assert (
            site_meter["real_power_a"] + site_meter["real_power_b"] == site_meter["instant_power"]
        )
        serials = [b["PackageSerialNumber"] for b in blocks]
        assert serials == [pw["PackageSerialNumber"] for pw in powerwalls_body["powerwalls"]]


def test_solar_powerwall_strings_add_up_to_the_solar_power() -> None:
    gateway, _ = make_gateway()
    solar = body(gateway, "/api/solar_powerwall")
    aggregates = body(gateway, "/api/meters/aggregates")
    strings = solar["pvac_status"]["string_vitals"]
    assert [s["string_id"] for s in strings] == [1, 2, 3, 4]
    produced = aggregates["solar"]["instant_power"]
    assert produced > 1000
    assert sum(s["measured_power"] for s in strings) == pytest.approx(produced, abs=4)
    assert solar["pvac_status"]["p_out"] == produced
    for string in strings:
        if string["measured_power"]:
            assert string["connected"]
            assert string["current"] == pytest.approx(
                string["measured_power"] / string["measured_voltage"], abs=0.01
            )
    # a disconnected input raises its MCI alert, which pyPowerwall turns into an alert name
    for index, string in enumerate(strings):
        assert (
            solar["pvs_alerts"][f"PVS_a0{17 + index}_MciString{'ABCD'[index]}"]
            is not string["connected"]
        )


def test_meters_solar_is_null_for_a_powerwall_plus_and_a_meter_otherwise() -> None:
    plus, _ = make_gateway()
    assert body(plus, "/api/meters/solar") is None
    third_party, _ = make_gateway(powerwall_plus=False)
    meter = body(third_party, "/api/meters/solar")[0]
    readings = meter["Cached_readings"]
    aggregates = body(third_party, "/api/meters/aggregates")
    assert meter["location"] == "solar"
    assert readings["instant_power"] == aggregates["solar"]["instant_power"] > 0
    assert readings["energy_exported"] == aggregates["solar"]["energy_exported"]


def test_islanded_bodies_agree_on_the_outage() -> None:
    gateway, clock = make_gateway(speed=60.0)
    gateway.set_grid_connected(False)
    clock.advance(1.0)
    assert body(gateway, "/api/system_status/grid_status")["grid_status"] == GRID_ISLANDED
    status = body(gateway, "/api/system_status")
    assert status["system_island_state"] == GRID_ISLANDED
    assert all(
        b["off_grid"] and b["pinv_state"] == "PINV_GridForming" for b in status["battery_blocks"]
    )
    aggregates = body(gateway, "/api/meters/aggregates")
    assert aggregates["site"]["instant_power"] == 0
    assert aggregates["site"]["instant_average_voltage"] == 0
    faults = body(gateway, "/api/system_status/grid_faults")
    assert len(faults) == 1 and faults == status["grid_faults"]
    assert faults[0]["ecu_type"] == "TEPINV" and isinstance(
        json.loads(faults[0]["decoded_alert"]), list
    )
    assert not gateway.grid_connected
    gateway.set_grid_connected(True)
    assert (
        body(gateway, "/api/system_status/grid_status")["grid_status"] == "SystemTransitionToGrid"
    )


# --------------------------------------------------------------------------- switches


def test_stopped_site_controller_gives_502_on_live_endpoints_only() -> None:
    gateway, _ = make_gateway()
    gateway.set_sitemaster_running(False)
    assert not gateway.sitemaster_running
    for path in gateway.paths:
        reply = gateway.get(path)
        if path in LIVE_ENDPOINTS:
            assert (reply.status, reply.body) == (502, b""), path
        else:
            assert reply.status == 200, path
    sitemaster = body(gateway, "/api/sitemaster")
    assert (sitemaster["running"], sitemaster["status"]) == (False, "StatusDown")
    assert body(gateway, "/api/auth/toggle/supported") == {"toggle_auth_supported": False}
    readings = body(gateway, "/api/meters/readings")
    assert all(meter["error"] == "" for meter in readings.values())
    gateway.set_sitemaster_running(True)
    assert gateway.get("/api/meters/aggregates").status == 200
    assert body(gateway, "/api/sitemaster")["status"] == "StatusUp"


def test_vitals_follow_the_firmware() -> None:
    gateway, _ = make_gateway(firmware="23.12.10 8f14e45f")
    reply = gateway.get("/api/devices/vitals")
    assert (reply.status, reply.content_type) == (200, PROTOBUF_CONTENT_TYPE)
    for version in ("23.44.0 9064fc6a", "24.36.2 aa11bb22"):
        gateway.set_firmware(version)
        assert gateway.firmware == version
        assert body(gateway, "/api/status")["version"] == version
        assert gateway.get("/api/devices/vitals").status == 404
        assert "/api/devices/vitals" not in gateway.paths
    gateway.set_firmware("23.28.2 27626f98")
    assert gateway.get("/api/devices/vitals").status == 200
    status = body(gateway, "/api/status")
    assert status["git_hash"].startswith("27626f98") and len(status["git_hash"]) == 40
    blocks = body(gateway, "/api/system_status")["battery_blocks"]
    assert {b["version"] for b in blocks} == {status["git_hash"][:14]}


@pytest.mark.parametrize("powerwalls", [1, 3])
def test_vitals_list_a_tethc_tepod_and_tepinv_per_powerwall(powerwalls: int) -> None:
    gateway, _ = make_gateway(powerwalls=powerwalls)
    devices = {device.din: device for device in gateway.vitals_devices()}
    blocks = body(gateway, "/api/system_status")["battery_blocks"]
    thcs = [d for d in devices.values() if d.din.startswith("TETHC--")]
    assert [d.serial_number for d in thcs] == [b["PackageSerialNumber"] for b in blocks]
    assert [d.part_number for d in thcs] == [b["PackagePartNumber"] for b in blocks]
    for thc, block in zip(thcs, blocks, strict=True):
        children = [d for d in devices.values() if d.component_parent_din == thc.din]
        kinds = sorted(child.din.split("--")[0] for child in children)
        assert kinds[:2] == ["TEPINV", "TEPOD"] or kinds == ["PVAC", "TEPINV", "TEPOD"]
        pod = next(c for c in children if c.din.startswith("TEPOD--"))
        assert dict(pod.vitals)["POD_nom_energy_remaining"] == block["nominal_energy_remaining"]
        assert pod.ecu_type == 226
        for child in children:
            for _name, value in child.vitals:
                assert not isinstance(value, int) or isinstance(value, bool)  # numbers are doubles
    assert {d.ecu_type for d in devices.values()} >= {207, 224, 226, 253, 259, 296, 297}
    decoded = decode_vitals(gateway.get("/api/devices/vitals").body)
    assert set(decoded) == set(devices)


def test_vitals_have_no_solar_inverter_without_a_powerwall_plus() -> None:
    gateway, _ = make_gateway(powerwall_plus=False)
    kinds = {device.din.split("--")[0] for device in gateway.vitals_devices()}
    assert "PVAC" not in kinds and "PVS" not in kinds
    assert {"STSTSM", "TETHC", "TEPOD", "TEPINV", "TESYNC", "NEURIO"} <= kinds


# --------------------------------------------------------------------------- formats


def test_bodies_use_the_gateways_formats() -> None:
    gateway, _ = make_gateway()
    raw = gateway.get("/api/meters/aggregates").body
    assert b": " not in raw and b", " not in raw  # compact, as Go writes it
    aggregates = json.loads(raw)
    stamp = aggregates["site"]["last_communication_time"]
    assert re.fullmatch(r"2024-06-21T11:59:5\d\.\d{1,9}-07:00", stamp)
    assert aggregates["site"]["timeout"] == 1500000000
    assert aggregates["solar"]["timeout"] == 1000000000
    assert isinstance(aggregates["battery"]["energy_imported"], int)
    assert isinstance(aggregates["site"]["energy_imported"], float)
    assert "num_meters_aggregated" not in aggregates["load"]
    status = body(gateway, "/api/status")
    assert re.fullmatch(r"\d+h\d+m\d+(\.\d+)?s", status["up_time_seconds"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0800", status["start_time"])
    assert status["din"] == gateway.din == body(gateway, "/api/config")["vin"]
    operation = body(gateway, "/api/operation")
    assert operation["backup_reserve_percent"] == 24  # the app's 20 % on the gateway's scale


def test_uptime_grows_with_simulated_time() -> None:
    gateway, clock = make_gateway(speed=10.0)

    def uptime_seconds() -> float:
        hours, minutes, seconds = re.fullmatch(
            r"(\d+)h(\d+)m([\d.]+)s", body(gateway, "/api/status")["up_time_seconds"]
        ).groups()  # type: ignore[union-attr]
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)

    before = uptime_seconds()
    clock.advance(6.0)
    assert uptime_seconds() - before == pytest.approx(60.0, abs=1.0)


def test_rendering_the_polled_bodies_is_cheap() -> None:
    gateway, clock = make_gateway(speed=1.0, powerwalls=4)
    rounds = 300
    started = time.perf_counter()
    for _ in range(rounds):
        clock.advance(1.0)  # a new simulated second: nothing can come from the cache
        gateway.get("/api/meters/aggregates")
        gateway.get("/api/system_status/soe")
    per_poll = (time.perf_counter() - started) / rounds
    assert per_poll < 0.001, f"{per_poll * 1e6:.0f} us per aggregates + soe"


# --------------------------------------------------------------------------- conformance


def _kind(value: object) -> str:
    """JSON type, with int and float as one: Go prints whole float64 values without a fraction."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    return type(value).__name__


def _differences(ours: object, theirs: object, where: str) -> list[str]:
    if _kind(ours) != _kind(theirs):
        return [f"{where}: {_kind(ours)} here, {_kind(theirs)} recorded"]
    if isinstance(ours, dict) and isinstance(theirs, dict):
        problems = []
        if set(ours) != set(theirs):
            missing, extra = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
            problems.append(f"{where}: missing {missing}, extra {extra}")
        for key in sorted(set(ours) & set(theirs)):
            problems += _differences(ours[key], theirs[key], f"{where}.{key}")
        return problems
    if isinstance(ours, list) and isinstance(theirs, list) and ours and theirs:
        return _differences(ours[0], theirs[0], f"{where}[0]")
    return []


def _recording(path: str, variants: tuple[str, ...]) -> Path | None:
    """The newest real recording of ``path``: the first variant that exists as JSON."""
    name = path.strip("/").replace("/", "_")
    name = re.sub(r"meters_[A-Z0-9]+(synchrometer[XY])", r"meters_METER_SERIAL\1", name)
    for variant in variants:
        for folder in ("pypowerwall", "powerwall2"):
            candidate = FIXTURES / folder / f"{name}__{variant}.json"
            if candidate.exists():
                return candidate
    return None


def _ours(gateway: SimulatedGateway, path: str) -> Any:
    """Our body, with meter serials used as keys replaced the way the recordings anonymised them."""
    document = body(gateway, path)
    if path == "/api/meters/readings":
        serial = gateway.identity.meter_serial_number
        document = {
            key.replace(serial, "<<METER_SERIAL>>"): value for key, value in document.items()
        }
    return document


NEWEST = ("23.28.2-bogus", "21.44-running")
# Deliberate differences, all left out of the comparison:
# - int vs float: one "number" kind (see _kind).
# - /api/solar_powerwall has no recording; its shape follows the reference (string_vitals etc.).
# - /api/devices/vitals is protobuf; its decoded vital names are compared separately below.
# - /api/meters/readings: the 23.28.2 "recording" is the proxy's "TIMEOUT!" text, so 21.44 it is.


@pytest.mark.conformance
@pytest.mark.skipif(
    not FIXTURES.is_dir(), reason="shared fixtures are not checked out beside the project"
)
def test_bodies_have_the_keys_and_types_of_the_newest_recordings() -> None:
    gateway, _ = make_gateway()
    compared, problems = [], []
    for path in sorted(gateway.paths - {"/api/devices/vitals"}):
        recording = _recording(path, NEWEST)
        if recording is None:
            continue
        compared.append(path)
        problems += _differences(_ours(gateway, path), json.loads(recording.read_text()), path)
    assert not problems, "\n".join(problems)
    assert len(compared) >= 30, compared


@pytest.mark.conformance
@pytest.mark.skipif(
    not FIXTURES.is_dir(), reason="shared fixtures are not checked out beside the project"
)
@pytest.mark.parametrize("state", ["running", "stopped"])
def test_firmware_21_44_bodies_match_the_21_44_recordings(state: str) -> None:
    gateway, _ = make_gateway(firmware="21.44 223a56cd", powerwalls=1, powerwall_plus=False)
    gateway.set_sitemaster_running(state == "running")
    paths = [
        "/api/status",
        "/api/site_info",
        "/api/sitemaster",
        "/api/meters/readings",
        "/api/powerwalls",
    ]
    if state == "running":
        paths.append("/api/system_status")
    problems = []
    for path in paths:
        recording = _recording(path, (f"21.44-{state}",))
        assert recording is not None, path
        problems += _differences(_ours(gateway, path), json.loads(recording.read_text()), path)
    assert not problems, "\n".join(problems)


@pytest.mark.conformance
@pytest.mark.skipif(
    not FIXTURES.is_dir(), reason="shared fixtures are not checked out beside the project"
)
def test_a_solar_meter_matches_the_recorded_neurio_meter() -> None:
    gateway, _ = make_gateway(powerwall_plus=False)
    recording = json.loads((FIXTURES / "powerwall2" / "api_meters_solar__2023.json").read_text())
    problems = _differences(body(gateway, "/api/meters/solar"), recording, "/api/meters/solar")
    assert not problems, "\n".join(problems)


@pytest.mark.conformance
@pytest.mark.skipif(
    not FIXTURES.is_dir(), reason="shared fixtures are not checked out beside the project"
)
def test_vitals_carry_the_recorded_vital_names_and_types_per_device_kind() -> None:
    gateway, _ = make_gateway()
    recorded = json.loads(
        (FIXTURES / "pypowerwall" / "api_devices_vitals__decoded-latest.json").read_text()
    )
    ours = decode_vitals(gateway.get("/api/devices/vitals").body)

    def vitals_by_kind(devices: dict[str, Any]) -> dict[str, dict[str, str]]:
        kinds: dict[str, dict[str, str]] = {}
        for din, device in devices.items():
            names = {k: _kind(v) for k, v in device.items() if k[0].isupper() and k != "VITALS"}
            kinds.setdefault(din.split("--")[0], {}).update(names)
        return kinds

    mine, theirs = vitals_by_kind(ours), vitals_by_kind(recorded)
    assert set(theirs) <= set(mine)
    for kind, names in theirs.items():
        assert mine[kind] == names, kind


@pytest.mark.conformance
@pytest.mark.skipif(
    not FIXTURES.is_dir(), reason="shared fixtures are not checked out beside the project"
)
def test_a_grid_fault_matches_the_recorded_fault_entries() -> None:
    gateway, _ = make_gateway()
    gateway.set_grid_connected(False)
    faults = body(gateway, "/api/system_status/grid_faults")
    in_status = body(gateway, "/api/system_status")["grid_faults"]
    problems = []
    for name in ("powerwall2/api_system_status_grid_faults__2019.json",):
        problems += _differences(faults, json.loads((FIXTURES / name).read_text()), name)
    readme = json.loads(
        (FIXTURES / "pypowerwall" / "api_system_status__readme-2022-02.json").read_text()
    )
    problems += _differences(in_status, readme["grid_faults"], "system_status.grid_faults")
    assert faults, "an outage must leave a fault entry"
    assert not problems, "\n".join(problems)


def test_switches_can_be_flipped_while_other_threads_render() -> None:
    gateway, _ = make_gateway(speed=3600.0, clock_is_wall=True)
    failures: list[BaseException] = []
    statuses: set[int] = set()
    stop = threading.Event()

    def poll() -> None:
        try:
            while not stop.is_set():
                for path in ("/api/meters/aggregates", "/api/system_status", "/api/devices/vitals"):
                    statuses.add(gateway.get(path).status)
        except BaseException as error:  # the test reports whatever broke
            failures.append(error)
            raise

    pollers = [threading.Thread(target=poll) for _ in range(3)]
    for poller in pollers:
        poller.start()
    for flip in range(40):
        gateway.set_grid_connected(flip % 2 == 0)
        gateway.set_sitemaster_running(flip % 3 != 0)
        gateway.set_firmware("23.44.0 9064fc6a" if flip % 4 == 0 else "23.12.10 8f14e45f")
        time.sleep(0.002)
    stop.set()
    for poller in pollers:
        poller.join()
    assert not failures
    assert statuses == {200, 404, 502}


def test_din_option_gives_two_simulated_gateways_different_identities() -> None:
    chosen = "1232100-00-E--TG1234567890AB"
    first, _ = make_gateway(din=chosen)
    second, _ = make_gateway()  # same seed, no DIN: the seeded one
    assert body(first, "/api/status")["din"] == chosen
    assert body(second, "/api/status")["din"] != chosen
    # Everything but the identity stays what the seed makes it.
    assert body(first, "/api/meters/aggregates") == body(second, "/api/meters/aggregates")
    devices = decode_vitals(first.get("/api/devices/vitals").body)
    assert f"STSTSM--{chosen}" in devices
    with pytest.raises(ConfigError, match="din"):
        SiteOptions(din="not a din")
