"""The simulated site's physics: reproducible, balanced, and within the Powerwalls' limits."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.simulator.model import (
    GRID_CONNECTED,
    GRID_ISLANDED,
    GRID_TRANSITION,
    RECONNECT_SECONDS,
    SiteModel,
    Snapshot,
)
from powerwall_bus.simulator.site import Firmware, SiteIdentity, SiteOptions

# 07:00 UTC on the June solstice is midnight in Los Angeles (PDT, UTC-7).
SUMMER_MIDNIGHT = datetime(2024, 6, 21, 7, 0, tzinfo=UTC)
DAY_AT_1440 = 60.0  # wall seconds per simulated day at speed 1440


class FakeClock:
    """Wall time that only moves when a test says so."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_model(**overrides: object) -> tuple[SiteModel, FakeClock]:
    options = replace(SiteOptions(speed=1440.0, start=SUMMER_MIDNIGHT), **overrides)  # type: ignore[arg-type]
    clock = FakeClock()
    return SiteModel(options, clock=clock), clock


def local_hour(snap: Snapshot) -> float:
    return ((snap.epoch + snap.utc_offset_s) % 86400) / 3600.0


def walk(
    model: SiteModel, clock: FakeClock, wall_seconds: float, every: float
) -> Iterator[Snapshot]:
    """Snapshots every ``every`` wall seconds for ``wall_seconds``."""
    for _ in range(round(wall_seconds / every)):
        clock.advance(every)
        yield model.snapshot()


COUNTERS = (
    ("site", "energy_imported_wh"),
    ("site", "energy_exported_wh"),
    ("battery", "energy_imported_wh"),
    ("battery", "energy_exported_wh"),
    ("load", "energy_imported_wh"),
    ("load", "energy_exported_wh"),
    ("solar", "energy_imported_wh"),
    ("solar", "energy_exported_wh"),
)


def counters(snap: Snapshot) -> list[float]:
    values = [getattr(getattr(snap, meter), name) for meter, name in COUNTERS]
    for block in snap.blocks:
        values += [block.energy_charged_wh, block.energy_discharged_wh]
    return values


def assert_invariants(snap: Snapshot, options: SiteOptions) -> None:
    """The relations a real gateway's bodies keep (reference section 6)."""
    site, battery, load, solar = snap.site, snap.battery, snap.load, snap.solar
    assert load.power_w >= 0
    assert abs(load.power_w - (site.power_w + solar.power_w + battery.power_w)) <= max(
        1.0, 0.01 * abs(load.power_w)
    )
    assert len(snap.blocks) == options.powerwalls
    remaining = sum(b.nominal_energy_remaining_wh for b in snap.blocks)
    full = sum(b.nominal_full_pack_energy_wh for b in snap.blocks)
    assert snap.nominal_energy_remaining_wh == remaining
    assert snap.nominal_full_pack_energy_wh == full
    assert snap.soe_percent == pytest.approx(100.0 * remaining / full)
    assert battery.energy_imported_wh == sum(b.energy_charged_wh for b in snap.blocks)
    assert battery.energy_exported_wh == sum(b.energy_discharged_wh for b in snap.blocks)
    assert battery.power_w == sum(b.power_w for b in snap.blocks)
    if battery.power_w < 0:
        assert snap.battery_target_power_w < 0
        assert all(b.power_w < 0 for b in snap.blocks)
    if battery.power_w > 0:
        assert snap.battery_target_power_w > 0
        assert all(b.power_w > 0 for b in snap.blocks)
    assert 0.0 <= snap.soe_percent <= 100.0
    if snap.grid_status != GRID_CONNECTED:
        assert site.power_w == 0
        assert all(b.off_grid for b in snap.blocks)
    if not options.has_solar:
        assert solar.power_w == 0


# --------------------------------------------------------------------------- options, identity


@pytest.mark.parametrize(
    "overrides",
    [
        {"powerwalls": 0},
        {"powerwalls": 5},
        {"speed": 0.0},
        {"solar_kw": -1.0},
        {"reserve_percent": 101.0},
        {"initial_soe": -3.0},
        {"timezone": "Mars/Olympus_Mons"},
        {"firmware": "latest"},
        {"start": datetime(2024, 1, 1)},  # naive
    ],
)
def test_invalid_options_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        SiteOptions(**overrides)  # type: ignore[arg-type]


def test_identity_is_stable_for_a_seed_and_differs_between_seeds() -> None:
    one = SiteIdentity.for_options(SiteOptions(seed=7, powerwalls=3))
    again = SiteIdentity.for_options(SiteOptions(seed=7, powerwalls=3))
    other = SiteIdentity.for_options(SiteOptions(seed=8, powerwalls=3))
    assert one == again
    assert one.gateway_din != other.gateway_din
    assert re.fullmatch(r"1232100-00-E--TG12\d{6}[0-9A-Z]{4}", one.gateway_din)
    assert len(one.powerwalls) == 3
    assert len({pw.package_serial_number for pw in one.powerwalls}) == 3
    for pw in one.powerwalls:
        assert re.fullmatch(r"\d{7}-\d{2}-[A-Z]", pw.package_part_number)
        assert re.fullmatch(r"\d{7}-\d{2}-[A-Z]", pw.pod_part_number)
        assert 12000 < pw.full_pack_energy_wh < 14500
        assert pw.thc_din == f"TETHC--{pw.package_part_number}--{pw.package_serial_number}"
        assert pw.pod_din.removeprefix("TEPOD--") == pw.pinv_din.removeprefix("TEPINV--")
    assert one.powerwalls[0].kind == "SolarPowerwall"  # powerwall_plus: the first one is a PW+
    assert {pw.kind for pw in one.powerwalls[1:]} == {"ACPW"}


def test_firmware_parses_compares_and_invents_a_consistent_hash() -> None:
    firmware = Firmware.parse("23.44.0 9064fc6a")
    assert firmware.version == "23.44.0 9064fc6a"
    assert firmware.git_hash.startswith("9064fc6a") and len(firmware.git_hash) == 40
    assert firmware.at_least(23, 44) and not firmware.at_least(23, 44, 1)
    assert not Firmware.parse("23.12.10 8f14e45f").at_least(23, 44)
    bare = Firmware.parse("24.4")
    assert re.fullmatch(r"24\.4 [0-9a-f]{8}", bare.version)
    assert bare.git_hash.startswith(bare.short_hash)


# --------------------------------------------------------------------------- reproducibility


def test_same_seed_gives_identical_snapshots_whenever_they_are_asked_for() -> None:
    eager, eager_clock = make_model(seed=42)
    lazy, lazy_clock = make_model(seed=42)
    eager_seen = [snap for snap in walk(eager, eager_clock, 3.0, 0.01)]
    lazy_clock.advance(3.0)
    # the lazy model jumped 3 wall seconds (4320 steps) at once and must land on the same state
    assert lazy.snapshot() == eager_seen[-1]
    again, again_clock = make_model(seed=42)
    assert [snap for snap in walk(again, again_clock, 3.0, 0.01)] == eager_seen


def test_different_seeds_give_different_houses() -> None:
    first, first_clock = make_model(seed=1)
    second, second_clock = make_model(seed=2)
    first_clock.advance(20.0)
    second_clock.advance(20.0)
    assert first.snapshot().load.power_w != second.snapshot().load.power_w


def test_simulated_time_runs_at_the_configured_speed() -> None:
    model, clock = make_model(speed=60.0)
    clock.advance(2.5)  # 150 simulated seconds
    snap = model.snapshot()
    assert snap.time == datetime(2024, 6, 21, 7, 2, 30, tzinfo=UTC)
    assert snap.step == 150


# --------------------------------------------------------------------------- a day in the life


@pytest.mark.parametrize("powerwalls", [1, 2, 3, 4])
def test_invariants_hold_and_counters_never_go_backwards_over_a_day_with_an_outage(
    powerwalls: int,
) -> None:
    model, clock = make_model(seed=powerwalls, powerwalls=powerwalls)
    options = model.options
    previous = counters(model.snapshot())
    statuses = set()
    for snap in walk(model, clock, DAY_AT_1440, 0.1):  # every 2.4 simulated minutes
        hour = local_hour(snap)
        if 18.0 <= hour < 18.1 and model.grid_connected:
            model.set_grid_connected(False)  # evening outage
            snap = model.snapshot()
            assert snap.grid_status == GRID_ISLANDED
        if 22.0 <= hour < 22.1 and not model.grid_connected:
            model.set_grid_connected(True)
            snap = model.snapshot()
            assert snap.grid_status == GRID_TRANSITION
        statuses.add(snap.grid_status)
        assert_invariants(snap, options)
        now = counters(snap)
        assert all(b >= a for a, b in zip(previous, now, strict=True)), (previous, now)
        previous = now
    assert {GRID_CONNECTED, GRID_ISLANDED, GRID_TRANSITION} <= statuses


def test_solar_is_a_few_negative_watts_at_night_and_strong_at_noon() -> None:
    model, clock = make_model(seed=3)
    night, noon = [], []
    for snap in walk(model, clock, DAY_AT_1440, 0.05):
        hour = local_hour(snap)
        if hour < 4.0 or hour > 22.0:
            night.append(snap.solar.power_w)
        if 12.0 <= hour <= 14.0:
            noon.append(snap.solar.power_w)
    assert night and all(-10.0 <= watts < 0 for watts in night)
    assert noon and min(noon) > 0
    assert max(noon) > 0.5 * model.options.solar_kw * 1000.0
    assert max(noon) <= model.options.solar_kw * 1000.0


def test_winter_days_are_shorter_and_weaker_than_summer_days() -> None:
    def daylight(start: datetime) -> tuple[int, float]:
        model, clock = make_model(seed=5, start=start)
        lit = [snap.solar.power_w for snap in walk(model, clock, DAY_AT_1440, 0.05)]
        return sum(1 for watts in lit if watts > 0), max(lit)

    summer_samples, summer_peak = daylight(SUMMER_MIDNIGHT)
    winter_samples, winter_peak = daylight(datetime(2024, 12, 21, 8, 0, tzinfo=UTC))
    assert winter_samples < 0.8 * summer_samples
    assert winter_peak < summer_peak


def test_a_site_without_solar_reports_zero_solar() -> None:
    model, clock = make_model(solar_kw=0.0, powerwall_plus=False)
    for snap in walk(model, clock, DAY_AT_1440, 0.5):
        assert snap.solar.power_w == 0
        assert snap.solar.energy_exported_wh == model.snapshot().solar.energy_exported_wh
        assert snap.pv_strings == ()
        assert_invariants(snap, model.options)


def test_household_load_has_morning_and_evening_peaks() -> None:
    model, clock = make_model(seed=11)
    by_hour: dict[int, list[float]] = {}
    for snap in walk(model, clock, DAY_AT_1440, 0.02):
        by_hour.setdefault(int(local_hour(snap)), []).append(snap.load.power_w)
    mean = {hour: sum(values) / len(values) for hour, values in by_hour.items()}
    assert mean[19] > 1.5 * mean[3]
    assert mean[7] > mean[3]
    assert min(min(values) for values in by_hour.values()) > 0


# --------------------------------------------------------------------------- battery limits


def test_battery_never_discharges_below_the_reserve_while_on_grid() -> None:
    model, clock = make_model(seed=4, reserve_percent=30.0, initial_soe=36.0)
    reserve = model.options.gateway_reserve_percent  # 33.5 on the gateway's scale
    seen_idle_at_reserve = False
    for snap in walk(model, clock, DAY_AT_1440 / 2, 0.02):  # a night until noon
        assert snap.soe_percent >= reserve - 0.05
        if snap.soe_percent < reserve + 0.1 and snap.battery.power_w == 0:
            seen_idle_at_reserve = True
            assert snap.site.power_w > 0  # the grid carries the house instead
    assert seen_idle_at_reserve


def test_below_the_reserve_the_batteries_recharge_from_the_grid() -> None:
    model, clock = make_model(seed=4, reserve_percent=50.0, initial_soe=20.0)
    clock.advance(0.5)  # twelve simulated minutes of darkness
    snap = model.snapshot()
    assert snap.battery.power_w < 0
    assert snap.site.power_w > snap.load.power_w


def test_charging_stops_at_full_and_power_stays_within_the_limits() -> None:
    model, clock = make_model(seed=6, powerwalls=1, initial_soe=80.0, solar_kw=12.0)
    reached_full = False
    for snap in walk(model, clock, DAY_AT_1440, 0.02):
        assert snap.soe_percent <= 100.0
        assert all(abs(b.power_w) <= 5000.0 for b in snap.blocks)
        if snap.soe_percent == 100.0:
            reached_full = True
            assert snap.battery.power_w >= 0
    assert reached_full


def test_charge_losses_make_imported_exceed_exported_and_match_the_stored_energy() -> None:
    model, clock = make_model(seed=9, powerwalls=2)
    start = model.snapshot()
    clock.advance(3 * DAY_AT_1440)
    end = model.snapshot()
    charged = end.battery.energy_imported_wh - start.battery.energy_imported_wh
    discharged = end.battery.energy_exported_wh - start.battery.energy_exported_wh
    assert charged > discharged > 0
    stored = end.nominal_energy_remaining_wh - start.nominal_energy_remaining_wh
    assert stored == pytest.approx(0.95 * charged - discharged / 0.95, abs=10.0)


def test_stopped_site_controller_leaves_the_batteries_idle() -> None:
    model, clock = make_model()
    model.set_site_controller_running(False)
    for snap in walk(model, clock, DAY_AT_1440 / 4, 0.05):
        assert snap.battery.power_w == 0
        assert snap.site.power_w == snap.load.power_w - snap.solar.power_w
        assert not snap.site_controller_running


# --------------------------------------------------------------------------- grid outages


def test_an_empty_battery_off_grid_sheds_the_house() -> None:
    model, clock = make_model(seed=2, powerwalls=1, initial_soe=9.0)
    model.set_grid_connected(False)
    shed = []
    for snap in walk(model, clock, DAY_AT_1440 / 4, 0.02):  # midnight to 06:00, no sun
        assert snap.site.power_w == 0
        assert snap.soe_percent >= 5.0 - 0.01  # the app's 0 %
        if snap.load.power_w == 0:
            shed.append(snap)
    assert shed, "the battery never ran out"
    dark = shed[0]  # in the night: no sun to form a grid for
    assert dark.solar.power_w == 0 and dark.battery.power_w == 0
    assert dark.home_voltage_l1n_v == 0 and dark.home_frequency_hz == 0


def test_a_full_battery_off_grid_curtails_the_surplus_solar() -> None:
    model, clock = make_model(
        seed=3, initial_soe=99.0, start=datetime(2024, 6, 21, 18, 0, tzinfo=UTC)
    )
    model.set_grid_connected(False)  # 11:00 local, strong sun
    curtailed = []
    for snap in walk(model, clock, DAY_AT_1440 / 8, 0.02):
        assert_invariants(snap, model.options)
        if snap.solar_power_limit_w is not None:
            curtailed.append(snap)
    assert curtailed
    for snap in curtailed:
        assert snap.solar.power_w == pytest.approx(snap.load.power_w - snap.battery.power_w)
        assert snap.home_frequency_hz > 60.2  # frequency shift tells the PV to back off


def test_reconnecting_passes_through_transition_to_grid() -> None:
    model, clock = make_model(speed=1.0)
    model.set_grid_connected(False)
    assert model.snapshot().grid_status == GRID_ISLANDED
    assert model.snapshot().grid_voltage_l1n_v == 0
    assert len(model.snapshot().grid_fault_times_ms) == 1
    clock.advance(30.0)
    model.set_grid_connected(True)
    assert model.snapshot().grid_status == GRID_TRANSITION
    assert model.snapshot().site.power_w == 0
    clock.advance(RECONNECT_SECONDS - 1)
    assert model.snapshot().grid_status == GRID_TRANSITION
    clock.advance(1.0)
    assert model.snapshot().grid_status == GRID_CONNECTED
    assert model.snapshot().grid_voltage_l1n_v > 100


def test_voltages_and_frequency_look_like_us_split_phase() -> None:
    model, clock = make_model()
    for snap in walk(model, clock, DAY_AT_1440 / 4, 0.25):
        assert 115.0 < snap.grid_voltage_l1n_v < 126.0
        assert 115.0 < snap.grid_voltage_l2n_v < 126.0
        assert 59.9 < snap.grid_frequency_hz < 60.1
        assert snap.site.apparent_power_va >= abs(snap.site.power_w)
        for block in snap.blocks:
            assert 230.0 < block.voltage_v < 252.0


# --------------------------------------------------------------------------- speed


def test_one_simulated_hour_integrates_quickly() -> None:
    model, clock = make_model(powerwalls=4)
    clock.advance(2.5)  # 3600 steps at speed 1440
    started = time.perf_counter()
    model.snapshot()
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"{elapsed / 3600 * 1e6:.1f} us per step"
