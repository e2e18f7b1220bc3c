"""What the simulated site looks like at one instant: the snapshot the endpoints render.

The model (:mod:`~simulator.model`) produces a :class:`Snapshot` per simulated step; the
endpoint families (:mod:`~simulator.endpoints`) only read it. Keeping these frozen value
types apart from the physics lets the renderers depend on what a site shows, not on how it
is computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "GRID_CONNECTED",
    "GRID_ISLANDED",
    "GRID_TRANSITION",
    "BlockState",
    "MeterState",
    "PvString",
    "Snapshot",
]

GRID_CONNECTED = "SystemGridConnected"
GRID_ISLANDED = "SystemIslandedActive"
GRID_TRANSITION = "SystemTransitionToGrid"


@dataclass(frozen=True, slots=True)
class MeterState:
    """One aggregate meter (site, battery, load or solar) at one instant.

    ``power_w`` follows the gateway's signs: site > 0 imports, battery > 0 discharges, solar
    > 0 produces. ``voltage_v`` is the line-to-line voltage the meter sees (0 when there is
    none) and ``frequency_hz`` the frequency it could measure; the gateway's reporting quirks
    (0 Hz for synchrometer meters, odd voltage averages) are applied by the renderer.
    """

    power_w: float
    reactive_power_var: float
    voltage_v: float
    frequency_hz: float
    current_a: float
    energy_imported_wh: float
    energy_exported_wh: float

    @property
    def apparent_power_va(self) -> float:
        """|S| from P and Q."""
        return math.hypot(self.power_w, self.reactive_power_var)


@dataclass(frozen=True, slots=True)
class BlockState:
    """One Powerwall's battery block as ``/api/system_status`` ``battery_blocks`` shows it."""

    power_w: float  # p_out: > 0 discharging, < 0 charging, a multiple of 10 W
    reactive_power_var: float
    voltage_v: float
    frequency_hz: float
    current_a: float
    nominal_energy_remaining_wh: int
    nominal_full_pack_energy_wh: int
    energy_charged_wh: float  # whole Wh, AC side, lifetime
    energy_discharged_wh: float
    available_charge_power_w: float
    available_discharge_power_w: float
    temperature_c: float
    off_grid: bool

    @property
    def soe_percent(self) -> float:
        """This block's state of energy on the gateway scale."""
        return 100.0 * self.nominal_energy_remaining_wh / self.nominal_full_pack_energy_wh


@dataclass(frozen=True, slots=True)
class PvString:
    """One PV string on the Powerwall+ inverter (inputs A-D)."""

    name: str
    connected: bool
    voltage_v: float
    current_a: float
    power_w: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the endpoints render, taken at one step of simulated time."""

    step: int
    time: datetime  # simulated UTC time of this step
    utc_offset_s: int  # the site time zone's offset at this instant
    site: MeterState
    battery: MeterState
    load: MeterState
    solar: MeterState
    blocks: tuple[BlockState, ...]
    soe_percent: float  # 100 * Σ remaining / Σ full, from the integer block values
    nominal_energy_remaining_wh: int
    nominal_full_pack_energy_wh: int
    battery_target_power_w: float
    grid_status: str
    site_controller_running: bool
    grid_voltage_l1n_v: float  # 0 while the grid is down
    grid_voltage_l2n_v: float
    grid_frequency_hz: float
    home_voltage_l1n_v: float  # what the house sees: the grid's, or the Powerwalls' off grid
    home_voltage_l2n_v: float
    home_frequency_hz: float
    site_power_a_w: float  # the site power split over the two legs of the split phase
    site_power_b_w: float
    solar_power_limit_w: float | None  # set while surplus solar is being curtailed off grid
    pv_strings: tuple[PvString, ...]
    ambient_temperature_c: float
    grid_fault_times_ms: tuple[int, ...]  # epoch ms of recent grid losses, newest last

    @property
    def epoch(self) -> float:
        """Simulated time as epoch seconds."""
        return self.time.timestamp()

    @property
    def grid_connected(self) -> bool:
        """True only in SystemGridConnected (not while islanded or re-synchronising)."""
        return self.grid_status == GRID_CONNECTED
