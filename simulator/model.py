"""The physics of a simulated home: sun, household, Powerwalls and grid, one second at a time.

Simulated time runs at ``options.speed`` simulated seconds per wall second from
``options.start``. The state is advanced lazily, when a snapshot is asked for, on a fixed grid
of ``STEP_SECONDS`` steps counted from the start, and every random draw comes from seeded
streams consumed once per step (or per ``TICK_STEPS`` steps) in a fixed order. So the state
at step *k* depends only on the options and on the control changes (grid, site controller)
made before step *k*, never on when or how often requests arrive.

Powers are whole watts inside the model (battery blocks in 10 W steps, as the gateway
reports them), so ``load = site + solar + battery`` holds exactly and the battery sign is
shared by every block. Energy counters are float Wh integrated from those powers; they only
ever grow.

What the batteries cannot influence (sun, household demand, mains) is
:mod:`~simulator.environment`; what the model hands to the endpoints is a
:class:`~simulator.snapshot.Snapshot` (its types are re-exported here).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from powerwall_bus.shared.max_backup import BackupEvent
from powerwall_bus.simulator.environment import TICK_STEPS, Environment
from powerwall_bus.simulator.site import SiteIdentity, SiteOptions, seeded_rng
from powerwall_bus.simulator.snapshot import (
    GRID_CONNECTED,
    GRID_ISLANDED,
    GRID_TRANSITION,
    BlockState,
    MeterState,
    PvString,
    Snapshot,
)

__all__ = [
    "GRID_CONNECTED",
    "GRID_ISLANDED",
    "GRID_TRANSITION",
    "RECONNECT_SECONDS",
    "STEP_SECONDS",
    "BlockState",
    "MeterState",
    "PvString",
    "SiteModel",
    "Snapshot",
]

STEP_SECONDS = 1  # the integration grid; also the meters' update rate on a real gateway
RECONNECT_SECONDS = 5  # time spent in SystemTransitionToGrid after the grid returns

BLOCK_MAX_POWER_W = 5000.0  # continuous charge and discharge limit of one Powerwall 2
BLOCK_STEP_W = 10.0  # resolution of p_out in /api/system_status
CHARGE_EFFICIENCY = 0.95  # AC energy in -> stored energy
DISCHARGE_EFFICIENCY = 0.95  # stored energy -> AC energy out (about 90 % round trip)
ISLAND_FLOOR_FRACTION = 0.05  # off grid the Powerwall runs down to the app's 0 % (gateway 5 %)
RESERVE_RECOVERY_W = 1000.0  # per Powerwall: grid charging when the charge fell below reserve
DC_BUS_VOLTAGE = 48.6  # i_out in system_status behaves like DC current at ~49 V
_CURTAILMENT_REPORTED_W = 50.0  # below this the surplus is rounding, not curtailment
_TOP_OFF_WH = 0.05  # closer to full than this counts as full, so charging really stops
_TAPER_FRACTION = 0.02  # power tapers over the last 2 % before full / before the floor
_MIN_TAPER = 0.04


def _jitter(step: int, salt: int) -> float:
    """Deterministic noise in [-1, 1) for a step: render-time wobble that needs no state."""
    x = (step * 0x9E3779B1 + salt * 0x85EBCA77 + 0x27D4EB2F) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & 0xFFFFFFFF
    x ^= x >> 12
    x = (x * 0x297A2D39) & 0xFFFFFFFF
    x ^= x >> 15
    return x / 2147483648.0 - 1.0


@dataclass(frozen=True, slots=True)
class _Counters:
    """Lifetime energy when the simulation starts, consistent with the same house's history."""

    site_imported: float
    site_exported: float
    load_imported: float
    solar_exported: float
    solar_imported: float
    charged: tuple[float, ...]
    discharged: tuple[float, ...]

    @classmethod
    def history(cls, options: SiteOptions) -> _Counters:
        """Invent a plausible past: years of use that balance like the real meters do."""
        rng = seeded_rng(options.seed, "history")
        days = rng.uniform(250.0, 1600.0)
        load = days * rng.uniform(16.0, 32.0) * 1000.0
        solar = days * options.solar_kw * rng.uniform(3.8, 4.6) * 1000.0
        solar_drawn = days * 60.0 if options.has_solar else 0.0
        charged = tuple(
            float(int(days * rng.uniform(4.0, 8.0) * 1000.0)) for _ in range(options.powerwalls)
        )
        discharged = tuple(float(int(c * rng.uniform(0.86, 0.9))) for c in charged)
        losses = sum(charged) - sum(discharged)
        net_import = load - solar + solar_drawn + losses  # site_imported - site_exported
        exported = solar * rng.uniform(0.25, 0.45)
        imported = net_import + exported
        if imported < 0.05 * load:
            imported = 0.05 * load
            exported = imported - net_import
        return cls(imported, exported, load, solar, solar_drawn, charged, discharged)


class SiteModel:
    """A home with solar and 1-4 Powerwalls in self-consumption mode, behind one gateway.

    Thread-safe: every public method takes the model's lock. ``clock`` returns wall time in
    seconds; tests inject a fake one to run days in milliseconds.
    """

    def __init__(self, options: SiteOptions, clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.identity = SiteIdentity.for_options(options)
        self._clock = clock
        self._lock = threading.Lock()
        self._wall_start = clock()
        start = options.start or datetime.fromtimestamp(self._wall_start, UTC)
        self._start_epoch = start.timestamp()
        self._env = Environment(options)
        self._noise = seeded_rng(options.seed, "noise").random
        history = _Counters.history(options)
        self._site_imported = history.site_imported
        self._site_exported = history.site_exported
        self._load_imported = history.load_imported
        self._solar_exported = history.solar_exported
        self._solar_imported = history.solar_imported
        self._charged = list(history.charged)
        self._discharged = list(history.discharged)
        self._full = [float(pw.full_pack_energy_wh) for pw in self.identity.powerwalls]
        self._total_full = sum(self._full)
        # the smallest block decides the dead band that keeps every block's |p_out| >= 10 W
        self._dead_band_w = BLOCK_STEP_W * self._total_full / min(self._full) + 1.0
        self._shares = [full / self._total_full for full in self._full]
        self._string_layout = _string_layout(options) if options.has_pvac else ()
        self._reserve_fraction = options.gateway_reserve_percent / 100.0
        # One stored-energy pool: power is shared pro rata to pack size, so every block always
        # sits at the same fraction and block i holds fraction * full_i.
        self._stored_wh = self._total_full * self._initial_fraction(options)
        self._max_total_w = BLOCK_MAX_POWER_W / max(self._shares)
        self._block_power = [0.0] * len(self._full)
        self._site_w = 0.0
        self._load_w = 0.0
        self._solar_w = 0.0
        self._battery_w = 0.0
        self._target_w = 0.0
        self._solar_limit_w: float | None = None
        self._grid_up = True
        self._grid_status = GRID_CONNECTED
        self._transition_until = 0
        self._controller_running = True
        self._manual_backup: BackupEvent | None = None  # Max Backup, set by signed TEDAPI
        self._holding = False  # Max Backup covers the current step: no discharge
        self._shedding = False
        self._fault_times_ms: tuple[int, ...] = ()
        self._step = 0
        self._cached: Snapshot | None = None
        self._inputs = (0.0, 0.0, 0.0)  # (demand, solar available, control lag) of this step
        self._integrate_first_step()

    def _integrate_first_step(self) -> None:
        """Enter step 0 without banking anything: draw its inputs and evaluate it."""
        self._step = -1
        self._site_w = self._load_w = self._solar_w = self._battery_w = 0.0
        self._integrate(1)

    # ------------------------------------------------------------------ public interface

    def snapshot(self) -> Snapshot:
        """The state at the latest whole step of simulated time (cached per step)."""
        with self._lock:
            self._catch_up()
            cached = self._cached
            if cached is None or cached.step != self._step:
                cached = self._cached = self._capture()
            return cached

    def set_grid_connected(self, connected: bool) -> None:
        """Lose or restore the utility grid from the current simulated instant."""
        with self._lock:
            self._catch_up()
            if connected == self._grid_up:
                return
            self._grid_up = connected
            if connected:
                self._grid_status = GRID_TRANSITION
                self._transition_until = self._step + RECONNECT_SECONDS // STEP_SECONDS
            else:
                self._grid_status = GRID_ISLANDED
                fault_ms = int(self._epoch_of(self._step) * 1000)
                self._fault_times_ms = (*self._fault_times_ms, fault_ms)[-10:]
            self._evaluate()
            self._cached = None

    def set_site_controller_running(self, running: bool) -> None:
        """Stop or start the site controller: stopped, the Powerwalls idle while on grid."""
        with self._lock:
            self._catch_up()
            if running == self._controller_running:
                return
            self._controller_running = running
            self._evaluate()
            self._cached = None

    def set_manual_backup(self, event: BackupEvent | None) -> None:
        """Set or clear the manual backup event ("Max Backup"), in simulated time.

        While a step lies inside ``[start, end)`` the Powerwalls hold their charge on grid:
        they do not discharge (solar surplus may still charge them). Steps already simulated
        keep what happened in them.
        """
        with self._lock:
            self._catch_up()
            self._manual_backup = event
            self._holding = self._backup_covers(self._step)
            self._evaluate()
            self._cached = None

    @property
    def manual_backup(self) -> BackupEvent | None:
        """The manual backup event set, if any (also once it has ended)."""
        return self._manual_backup

    @property
    def grid_connected(self) -> bool:
        """True unless the grid is down (also True while re-synchronising after an outage)."""
        return self._grid_up

    @property
    def site_controller_running(self) -> bool:
        """Whether the site controller dispatches the batteries."""
        return self._controller_running

    # ------------------------------------------------------------------ time

    def _epoch_of(self, step: int) -> float:
        return self._start_epoch + step * STEP_SECONDS

    def _backup_covers(self, step: int) -> bool:
        event = self._manual_backup
        if event is None:
            return False
        return event.start.timestamp() <= self._epoch_of(step) < event.end.timestamp()

    def _catch_up(self) -> None:
        elapsed = (self._clock() - self._wall_start) * self.options.speed
        target = int(elapsed // STEP_SECONDS)
        if target > self._step:
            self._integrate(target - self._step)

    def _initial_fraction(self, options: SiteOptions) -> float:
        if options.initial_soe is not None:
            return options.initial_soe / 100.0
        low = max(self._reserve_fraction + 0.1, 0.3)
        return min(0.95, seeded_rng(options.seed, "initial-soe").uniform(low, max(low, 0.9)))

    # ------------------------------------------------------------------ physics

    def _block_limits(self, floor_fraction: float) -> tuple[float, float]:
        """Largest total charge and discharge power (W) for this step.

        Power tapers over the last 2 % before full and before the floor, and never moves more
        energy in one step than the room (or the stock above the floor) allows.
        """
        per_step_h = STEP_SECONDS / 3600.0
        fraction = self._stored_wh / self._total_full
        if fraction < 1.0:
            taper = max(_MIN_TAPER, min(1.0, (1.0 - fraction) / _TAPER_FRACTION))
            room_w = (self._total_full - self._stored_wh) / CHARGE_EFFICIENCY / per_step_h
            charge = min(self._max_total_w * taper, room_w)
        else:
            charge = 0.0
        above_floor = self._stored_wh - floor_fraction * self._total_full
        if above_floor > 0:
            taper = max(_MIN_TAPER, min(1.0, (fraction - floor_fraction) / _TAPER_FRACTION))
            discharge = min(
                self._max_total_w * taper, above_floor * DISCHARGE_EFFICIENCY / per_step_h
            )
        else:
            discharge = 0.0
        return charge, discharge

    def _integrate(self, steps: int) -> None:
        """Advance ``steps`` steps: bank the energy of the step being left, then enter the next."""
        env = self._env
        noise = self._noise
        per_step_h = STEP_SECONDS / 3600.0
        for step in range(self._step + 1, self._step + steps + 1):
            # 1. the energy that flowed during the step we leave
            battery_w = self._battery_w
            if battery_w > 0:
                self._stored_wh -= battery_w * per_step_h / DISCHARGE_EFFICIENCY
                discharged = self._discharged
                for index, power in enumerate(self._block_power):
                    discharged[index] += power * per_step_h
            elif battery_w < 0:
                self._stored_wh -= battery_w * per_step_h * CHARGE_EFFICIENCY
                if self._stored_wh > self._total_full - _TOP_OFF_WH:
                    self._stored_wh = self._total_full  # the last trickle: call it full
                charged = self._charged
                for index, power in enumerate(self._block_power):
                    charged[index] -= power * per_step_h
            site = self._site_w
            if site > 0:
                self._site_imported += site * per_step_h
            else:
                self._site_exported -= site * per_step_h
            self._load_imported += self._load_w * per_step_h
            solar = self._solar_w
            if solar > 0:
                self._solar_exported += solar * per_step_h
            else:
                self._solar_imported -= solar * per_step_h
            # 2. the environment of the new step: whole watts, the same whatever the batteries do
            if step % TICK_STEPS == 0:
                env.tick(self._epoch_of(step))
            env.attenuation += (env.cloud_target - env.attenuation) * 0.1
            if env.clear_sky_w > 0:
                sunshine = env.clear_sky_w * env.attenuation * (0.995 + 0.01 * noise())
                solar_available = float(round(min(sunshine, env.peak_solar_w)))
            else:
                noise()  # keep the draw count per step constant, day or night
                solar_available = -env.night_draw_w
            demand = float(round(max(40.0, env.demand_w + (noise() - 0.5) * 2.0 * env.noise_w)))
            self._inputs = (demand, solar_available, (noise() - 0.5) * 40.0)
            # 3. what the gateway does about it
            if self._grid_status == GRID_TRANSITION and step >= self._transition_until:
                self._grid_status = GRID_CONNECTED
            self._holding = self._backup_covers(step)
            self._evaluate()
        self._step += steps

    def _evaluate(self) -> None:
        """Set this step's powers from its inputs and the current controls (no energy moves).

        Called once per step, and again when a control changes mid-step, so a switch shows
        at once and the counters never have to be rewritten.
        """
        demand, solar_available, control_lag_w = self._inputs
        if self._grid_status == GRID_CONNECTED:
            self._step_on_grid(demand, solar_available, control_lag_w)
        else:
            self._step_off_grid(demand, solar_available)

    def _dispatch(self, wanted_w: float, limits: tuple[float, float]) -> float:
        """Command the blocks toward ``wanted_w`` (> 0 discharge); returns the total delivered.

        ``limits`` are the (charge, discharge) totals from :meth:`_block_limits`.
        """
        charge_max, discharge_max = limits
        total = min(max(wanted_w, -charge_max), discharge_max)
        self._target_w = total
        if abs(total) < self._dead_band_w:
            total = 0.0
        powers = self._block_power
        delivered = 0.0
        for index, share in enumerate(self._shares):
            # truncate toward zero in 10 W steps: never above a block's limit, never a sign flip
            power = float(int(total * share / BLOCK_STEP_W)) * BLOCK_STEP_W
            powers[index] = power
            delivered += power
        self._battery_w = delivered
        return delivered

    def _step_on_grid(self, demand: float, solar: float, control_lag_w: float) -> None:
        wanted = demand - solar - control_lag_w
        if not self._controller_running:
            wanted = 0.0
        elif self._fraction() < self._reserve_fraction - 0.005:
            wanted = min(wanted, -RESERVE_RECOVERY_W * len(self._full))
        if self._holding:
            wanted = min(wanted, 0.0)  # Max Backup: the grid serves the house
        battery = self._dispatch(wanted, self._block_limits(self._reserve_fraction))
        self._shedding = False
        self._solar_limit_w = None
        self._solar_w = solar
        self._load_w = demand
        self._site_w = demand - solar - battery

    def _step_off_grid(self, demand: float, solar_available: float) -> None:
        """Islanded: the site meter reads 0 and the Powerwalls balance the house alone."""
        solar_available = max(solar_available, 0.0)  # no grid: the PV standby draw is moot
        limits = self._block_limits(ISLAND_FLOOR_FRACTION)
        if self._shedding and self._fraction() >= ISLAND_FLOOR_FRACTION + 0.02:
            self._shedding = False
        if not self._shedding and demand > solar_available and limits[1] < self._dead_band_w:
            self._shedding = True  # battery empty: the Powerwalls drop the house, wait for sun
        house = 0.0 if self._shedding else demand
        deficit = house - solar_available
        battery = self._dispatch(deficit, limits)
        if battery > deficit:
            # more sun than house + battery can take: frequency shift curtails the PV
            solar = house - battery
            curtailed = solar_available - solar
            self._solar_limit_w = solar if curtailed > _CURTAILMENT_REPORTED_W else None
        else:
            # deficit not fully covered (inverter limit, dead band): the house gets what there is
            solar = solar_available
            self._solar_limit_w = None
        self._solar_w = solar
        self._load_w = solar + battery
        self._site_w = 0.0

    def _fraction(self) -> float:
        return self._stored_wh / self._total_full

    # ------------------------------------------------------------------ snapshot

    def _capture(self) -> Snapshot:
        env = self._env
        step = self._step
        salt = self.options.seed * 7919
        grid_up = self._grid_up
        on_grid = self._grid_status == GRID_CONNECTED
        sag = self._site_w * 0.00025
        mains_v1 = env.mains_base_v + env.mains_walk_v + 0.15 * _jitter(step, salt + 1) - sag
        mains_v2 = mains_v1 + env.mains_leg_offset_v + 0.1 * _jitter(step, salt + 2)
        mains_f = 60.0 + env.frequency_walk_hz + 0.004 * _jitter(step, salt + 3)
        if on_grid:
            home_v1, home_v2, home_f = mains_v1, mains_v2, mains_f
        elif self._shedding and self._solar_w <= 0:
            home_v1 = home_v2 = home_f = 0.0  # the Powerwalls have dropped the house: dark
        else:
            shift = 0.0  # Powerwalls raise the frequency to make grid-following PV back off
            if self._solar_limit_w is not None:
                curtailed = self._inputs[1] - self._solar_limit_w
                shift = min(1.5, 0.3 + 1.2 * curtailed / env.peak_solar_w)
            home_v1 = 120.0 + 0.2 * _jitter(step, salt + 4)
            home_v2 = 120.0 + 0.2 * _jitter(step, salt + 5)
            home_f = 60.0 + shift + 0.01 * _jitter(step, salt + 6)
        grid_v1 = round(mains_v1, 2) if grid_up else 0.0
        grid_v2 = round(mains_v2, 2) if grid_up else 0.0
        grid_f = round(mains_f, 3) if grid_up else 0.0
        home_v1, home_v2, home_f = round(home_v1, 2), round(home_v2, 2), round(home_f, 3)

        local_hours = (
            (step * STEP_SECONDS + self._start_epoch + env.utc_offset_s) % 86400
        ) / 3600.0
        ambient = env.indoor_c + 4.0 * math.sin(2.0 * math.pi * (local_hours - 9.0) / 24.0)
        blocks = self._capture_blocks(
            step, salt, home_v1 + home_v2, home_f, ambient, off_grid=not on_grid
        )
        remaining = sum(b.nominal_energy_remaining_wh for b in blocks)
        full = sum(b.nominal_full_pack_energy_wh for b in blocks)

        line_v = home_v1 + home_v2
        site_q = env.site_reactive_var + 25.0 * _jitter(step, salt + 7) if on_grid else 0.0
        site_q = float(round(site_q))
        battery_q = float(sum(b.reactive_power_var for b in blocks))
        solar_q = (
            0.0
            if self.options.has_pvac or not self.options.has_solar
            else -float(round(8 + 6 * _jitter(step, salt + 8)))
        )
        imbalance = self._load_w * env.leg_imbalance if on_grid else 0.0
        leg_a = self._site_w / 2.0 + imbalance
        leg_b = self._site_w - leg_a
        site_current = (abs(leg_a) / mains_v1 + abs(leg_b) / mains_v2) if on_grid else 0.0
        charged = float(sum(b.energy_charged_wh for b in blocks))
        discharged = float(sum(b.energy_discharged_wh for b in blocks))
        battery_v = sum(b.voltage_v for b in blocks) / len(blocks)
        battery_f = sum(b.frequency_hz for b in blocks) / len(blocks)
        solar_v = (
            round(line_v + 0.3 * _jitter(step, salt + 9), 1)
            if self.options.has_solar and line_v
            else 0.0
        )
        return Snapshot(
            step=step,
            time=datetime.fromtimestamp(self._epoch_of(step), UTC),
            utc_offset_s=env.utc_offset_s,
            site=MeterState(
                power_w=self._site_w,
                reactive_power_var=site_q,
                voltage_v=grid_v1 + grid_v2,
                frequency_hz=grid_f,
                current_a=site_current,
                energy_imported_wh=self._site_imported,
                energy_exported_wh=self._site_exported,
            ),
            battery=MeterState(
                power_w=self._battery_w,
                reactive_power_var=battery_q,
                voltage_v=round(battery_v, 2),
                frequency_hz=round(battery_f, 3),
                current_a=round(-self._battery_w / DC_BUS_VOLTAGE, 1),
                energy_imported_wh=charged,
                energy_exported_wh=discharged,
            ),
            load=MeterState(
                power_w=self._load_w,
                reactive_power_var=site_q + battery_q + solar_q,
                voltage_v=line_v,
                frequency_hz=home_f,
                current_a=self._load_w / line_v if line_v else 0.0,
                energy_imported_wh=self._load_imported,
                energy_exported_wh=0.0,
            ),
            solar=MeterState(
                power_w=self._solar_w,
                reactive_power_var=solar_q,
                voltage_v=solar_v,
                frequency_hz=round(home_f + 0.002 * _jitter(step, salt + 10), 3)
                if self.options.has_solar
                else 0.0,
                current_a=abs(self._solar_w) / solar_v if solar_v else 0.0,
                energy_imported_wh=self._solar_imported,
                energy_exported_wh=self._solar_exported,
            ),
            blocks=blocks,
            soe_percent=100.0 * remaining / full,
            nominal_energy_remaining_wh=remaining,
            nominal_full_pack_energy_wh=full,
            battery_target_power_w=self._target_w if self._battery_w else 0.0,
            grid_status=self._grid_status,
            site_controller_running=self._controller_running,
            grid_voltage_l1n_v=grid_v1,
            grid_voltage_l2n_v=grid_v2,
            grid_frequency_hz=grid_f,
            home_voltage_l1n_v=home_v1,
            home_voltage_l2n_v=home_v2,
            home_frequency_hz=home_f,
            site_power_a_w=float(round(leg_a)),
            site_power_b_w=self._site_w - float(round(leg_a)),
            solar_power_limit_w=self._solar_limit_w,
            pv_strings=self._capture_strings(step, salt),
            ambient_temperature_c=round(ambient, 1),
            grid_fault_times_ms=self._fault_times_ms,
        )

    def _capture_blocks(
        self,
        step: int,
        salt: int,
        line_v: float,
        frequency: float,
        ambient: float,
        *,
        off_grid: bool,
    ) -> tuple[BlockState, ...]:
        charge_max, discharge_max = self._block_limits(
            ISLAND_FLOOR_FRACTION if off_grid else self._reserve_fraction
        )
        fraction = self._fraction()
        blocks = []
        for index, share in enumerate(self._shares):
            power = self._block_power[index]
            noise = _jitter(step, salt + 20 + index)
            blocks.append(
                BlockState(
                    power_w=power,
                    reactive_power_var=float(round(noise * 2.0)) * 10.0,
                    voltage_v=round(line_v + 0.4 + 0.2 * noise, 1) if line_v else 0.0,
                    frequency_hz=round(frequency + 0.001 * round(noise * 2), 3)
                    if frequency
                    else 0.0,
                    current_a=round(abs(power) / DC_BUS_VOLTAGE, 1),
                    # floored: 100 % is shown only once the pack is really full
                    nominal_energy_remaining_wh=int(fraction * self._full[index]),
                    nominal_full_pack_energy_wh=round(self._full[index]),
                    energy_charged_wh=float(int(self._charged[index])),
                    energy_discharged_wh=float(int(self._discharged[index])),
                    available_charge_power_w=float(round(charge_max * share, -1)),
                    available_discharge_power_w=float(round(discharge_max * share, -1)),
                    temperature_c=round(ambient + 1.5 + abs(power) / 1000.0 * 1.2, 1),
                    off_grid=off_grid,
                )
            )
        return tuple(blocks)

    def _capture_strings(self, step: int, salt: int) -> tuple[PvString, ...]:
        if not self.options.has_pvac:
            return ()
        layout = self._string_layout
        solar = max(self._solar_w, 0.0)
        lit = solar > 0
        strings = []
        for index, (name, connected, weight, nominal_v) in enumerate(layout):
            power = float(round(solar * weight)) if connected and lit else 0.0
            if power > 0:
                voltage = round(
                    nominal_v * (0.9 + 0.1 * min(1.0, solar / self._env.peak_solar_w)), 1
                )
                current = round(power / voltage, 2)
            else:
                voltage = round(-2.0 - 0.5 * abs(_jitter(step, salt + 40 + index)), 1)
                current = 0.0
            strings.append(PvString(name, connected, voltage, current, power))
        return tuple(strings)


def _string_layout(options: SiteOptions) -> tuple[tuple[str, bool, float, float], ...]:
    """Which of the inputs A-D carry a string, each string's share of the power and its voltage."""
    rng = seeded_rng(options.seed, "strings")
    used = max(1, min(4, math.ceil(options.solar_kw / 2.4)))
    connected = set(rng.sample(range(4), used))
    weights = {index: rng.uniform(0.8, 1.2) for index in connected}
    total = sum(weights.values())
    return tuple(
        (name, index in connected, weights.get(index, 0.0) / total, rng.uniform(230.0, 330.0))
        for index, name in enumerate("ABCD")
    )
