"""What the batteries cannot influence: the sun, the household's demand and the grid's wobble.

:class:`Environment` is advanced by the model (:mod:`~simulator.model`) every
``TICK_STEPS`` steps. Its random streams (weather, household, mains) depend only on the
seed, so the same seed gives the same clouds and the same kettle at 07:12 whatever the
batteries or the grid do, and the model's own state never feeds back into it.
"""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

from powerwall_bus.simulator.site import SiteOptions, seeded_rng

__all__ = ["TICK_STEPS", "Environment"]

TICK_STEPS = 10  # slow processes (sun position, appliances, clouds) change every 10 s

_LATITUDE_BY_ZONE_PREFIX = (
    ("Australia/", -33.9),
    ("Pacific/Auckland", -36.8),
    ("America/Argentina", -34.6),
    ("America/Sao_Paulo", -23.5),
    ("Africa/Johannesburg", -26.2),
    ("Europe/", 51.0),
    ("Asia/Tokyo", 35.7),
    ("America/Anchorage", 61.2),
    ("America/", 37.5),
)

# (watts, seconds, expected starts per day, typical hour, spread in hours)
_APPLIANCES = (
    (1800.0, 150, 2.0, 7.3, 1.2),  # kettle
    (1150.0, 200, 2.5, 12.5, 4.5),  # microwave
    (2400.0, 2700, 0.6, 18.0, 1.0),  # oven
    (2600.0, 3000, 0.4, 14.0, 3.5),  # tumble dryer
    (1300.0, 3600, 0.7, 21.5, 1.5),  # dishwasher
    (600.0, 3000, 0.5, 10.5, 2.5),  # washing machine
    (3200.0, 900, 0.5, 15.5, 2.0),  # air conditioner burst
)


def _bump(hours: float, centre: float, spread: float) -> float:
    """A Gaussian bump on the 24-hour circle (so 23:30 is close to 00:30)."""
    distance = abs(hours - centre)
    distance = min(distance, 24.0 - distance)
    return math.exp(-0.5 * (distance / spread) ** 2)


class Environment:
    """What the battery cannot influence: available sun, household demand, grid wobble.

    Its random streams depend only on the seed, so the same seed gives the same weather and
    the same kettle at 07:12 whatever the batteries or the grid do.
    """

    def __init__(self, options: SiteOptions) -> None:
        seed = options.seed
        self._zone = ZoneInfo(options.timezone)
        self._weather = seeded_rng(seed, "weather")
        self._house = seeded_rng(seed, "household")
        self._mains = seeded_rng(seed, "mains")
        shape = seeded_rng(seed, "site-shape")
        self.peak_solar_w = options.solar_kw * 1000.0
        self.latitude = math.radians(
            next(
                (
                    lat
                    for prefix, lat in _LATITUDE_BY_ZONE_PREFIX
                    if options.timezone.startswith(prefix)
                ),
                37.5,
            )
        )
        self._solar_noon_h = 12.0 + shape.uniform(-0.4, 0.4)  # where the house sits in its zone
        self.night_draw_w = float(shape.randrange(2, 9)) if options.has_solar else 0.0
        self._base_w = shape.uniform(180.0, 420.0)
        self._morning_w = shape.uniform(300.0, 900.0)
        self._evening_w = shape.uniform(700.0, 1800.0)
        self._daytime_w = shape.uniform(100.0, 600.0)
        self.noise_w = shape.uniform(8.0, 25.0)
        self._fridge_phase = shape.randrange(2400)
        self.mains_base_v = shape.uniform(119.8, 122.4)
        self.mains_leg_offset_v = shape.uniform(-0.8, 0.8)
        self.site_reactive_var = -shape.uniform(120.0, 330.0)
        self.leg_imbalance = shape.uniform(-0.25, 0.25)
        self.indoor_c = shape.uniform(17.0, 23.0)
        # state, refreshed on ticks
        self.utc_offset_s = 0
        self.local_hours = 0.0
        self.clear_sky_w = 0.0
        self.cloud_target = 1.0
        self.attenuation = 1.0
        self._cloud_until = 0.0
        self._cloudiness = 0.0
        self._cloud_day = -1
        self.demand_w = self._base_w
        self._running: dict[int, float] = {}  # appliance index -> end epoch
        self.mains_walk_v = 0.0
        self.frequency_walk_hz = 0.0

    def tick(self, epoch: float) -> None:
        """Recompute the slow processes for the 10 s starting at ``epoch``."""
        local = datetime.fromtimestamp(epoch, self._zone)
        offset = local.utcoffset()
        self.utc_offset_s = int(offset.total_seconds()) if offset is not None else 0
        hours = local.hour + local.minute / 60.0 + local.second / 3600.0
        self.local_hours = hours
        dst = local.dst()
        standard_hours = hours - (dst.total_seconds() / 3600.0 if dst else 0.0)
        day_of_year = local.timetuple().tm_yday
        self._tick_sun(epoch, standard_hours, day_of_year)
        self._tick_house(epoch, hours, weekend=local.weekday() >= 5)
        self._tick_mains()

    def _tick_sun(self, epoch: float, standard_hours: float, day_of_year: int) -> None:
        if self.peak_solar_w <= 0:
            return
        declination = math.radians(23.44) * math.sin(2.0 * math.pi * (284 + day_of_year) / 365.0)
        hour_angle = math.radians(15.0 * (standard_hours - self._solar_noon_h))
        sin_elevation = math.sin(self.latitude) * math.sin(declination) + math.cos(
            self.latitude
        ) * math.cos(declination) * math.cos(hour_angle)
        # Tilted panels flatten the curve; 0.88 covers soiling, heat and inverter losses.
        self.clear_sky_w = (
            0.88 * self.peak_solar_w * sin_elevation**0.8 if sin_elevation > 0 else 0.0
        )
        day = int((epoch + self.utc_offset_s) // 86400)
        if day != self._cloud_day:
            self._cloud_day = day
            self._cloudiness = self._weather.random() ** 2  # most days are mostly clear
        rnd = self._weather.random
        if epoch >= self._cloud_until:
            self.cloud_target = 1.0
            if rnd() < 0.05 * self._cloudiness:
                self._cloud_until = epoch + 60.0 + 840.0 * rnd()
                self.cloud_target = 1.0 - (0.25 + 0.6 * rnd()) * (0.5 + 0.5 * self._cloudiness)

    def _tick_house(self, epoch: float, hours: float, *, weekend: bool) -> None:
        daytime = self._daytime_w * (1.6 if weekend else 0.6)
        profile = (
            self._base_w
            + self._morning_w * _bump(hours, 7.2, 1.1)
            + self._evening_w * _bump(hours, 19.2, 1.8)
            + daytime * _bump(hours, 13.5, 3.0)
        )
        fridge = 110.0 if (epoch + self._fridge_phase) % 2400.0 < 840.0 else 0.0
        rnd = self._house.random
        running = self._running
        appliances_w = 0.0
        for index, (watts, seconds, per_day, centre, spread) in enumerate(_APPLIANCES):
            end = running.get(index)
            if end is not None and end <= epoch:
                del running[index]
                end = None
            # chance to start in this tick: per-day rate shaped by a bump whose area is 1 day
            chance = (
                per_day * _bump(hours, centre, spread) / (spread * 2.5066) * TICK_STEPS / 3600.0
            )
            if rnd() < chance and end is None:
                running[index] = epoch + seconds
                end = epoch + seconds
            if end is not None:
                appliances_w += watts
        self.demand_w = profile + fridge + appliances_w

    def _tick_mains(self) -> None:
        rnd = self._mains.random
        self.mains_walk_v = 0.97 * self.mains_walk_v + (rnd() - 0.5) * 0.5
        self.frequency_walk_hz = 0.95 * self.frequency_walk_hz + (rnd() - 0.5) * 0.006
