"""Prices to at most four named price bands, with the worst error said out loud.

The Tesla app shows four period names only (``SUPER_OFF_PEAK``, ``OFF_PEAK``,
``PARTIAL_PEAK``, ``ON_PEAK``), so a day with more distinct prices (Agile's half-hours) is
quantised: the sorted distinct prices are split into at most four contiguous groups so that
the largest distance from any price to its band's price is as small as it can be (a minimax
split, by dynamic programming), and each band is priced at the middle of its group. One to
four distinct prices keep their exact values (up to Tesla's rounding, 0.001 p).

Tesla rejects negative prices (facts §3.3): a band below zero is priced 0 and the error says
by how much that misstates it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["NAMES", "Band", "Banding", "band_prices", "flat"]

#: Period names by the number of bands, cheapest first.
NAMES: dict[int, tuple[str, ...]] = {
    2: ("OFF_PEAK", "ON_PEAK"),
    3: ("OFF_PEAK", "PARTIAL_PEAK", "ON_PEAK"),
    4: ("SUPER_OFF_PEAK", "OFF_PEAK", "PARTIAL_PEAK", "ON_PEAK"),
}
FLAT = "ALL"
MAX_BANDS = 4


def tesla_price(pence: float) -> float:
    """Pence/kWh to the £/kWh Tesla is sent: never negative, rounded to 0.001 p."""
    return round(max(pence, 0.0) / 100.0, 5)


@dataclass(frozen=True)
class Band:
    """One period name, the price Tesla is told (£/kWh) and the Octopus prices it stands for."""

    name: str
    price: float
    members: tuple[float, ...]

    @property
    def error(self) -> float:
        """The largest |Octopus price - band price|, pence."""
        return max(abs(member - self.price * 100.0) for member in self.members)


@dataclass(frozen=True)
class Banding:
    """A day's 48 slots named by band."""

    bands: tuple[Band, ...]
    slots: tuple[str, ...]

    @property
    def is_flat(self) -> bool:
        return len(self.bands) == 1

    @property
    def worst_error(self) -> float:
        """The worst-case price error over the day, pence/kWh."""
        return max(band.error for band in self.bands)

    def price_of(self, name: str) -> float:
        return next(band.price for band in self.bands if band.name == name)


def flat(price: float, slots: int = 48) -> Banding:
    """One price all day (a flat tariff, or a sell price that never changes)."""
    return Banding((Band(FLAT, tesla_price(price), (price,)),), (FLAT,) * slots)


def _split(values: Sequence[float], groups: int) -> list[tuple[int, int]]:
    """Contiguous groups of sorted ``values`` minimising the largest half-range (inclusive
    index pairs, cheapest first)."""
    n = len(values)
    inf = float("inf")
    # best[g][j]: the minimax half-range of values[0..j] split in g groups; cut: where the
    # last group starts.
    best = [[inf] * n for _ in range(groups + 1)]
    cut = [[0] * n for _ in range(groups + 1)]
    for j in range(n):
        best[1][j] = (values[j] - values[0]) / 2
    for g in range(2, groups + 1):
        for j in range(g - 1, n):
            for i in range(g - 1, j + 1):
                cost = max(best[g - 1][i - 1], (values[j] - values[i]) / 2)
                if cost < best[g][j]:
                    best[g][j], cut[g][j] = cost, i
    pairs, j = [], n - 1
    for g in range(groups, 0, -1):
        i = cut[g][j] if g > 1 else 0
        pairs.append((i, j))
        j = i - 1
    return pairs[::-1]


def band_prices(prices: Sequence[float], max_bands: int = MAX_BANDS) -> Banding:
    """Name every slot's price by band (see the module's docstring)."""
    if not prices:
        raise ValueError("no prices to band")
    if not 1 <= max_bands <= MAX_BANDS:
        raise ValueError(f"1 to {MAX_BANDS} bands")
    distinct = sorted(set(prices))
    if len(distinct) == 1:
        return flat(distinct[0], len(prices))
    groups = min(len(distinct), max_bands)
    if groups == 1:
        middle = (distinct[0] + distinct[-1]) / 2
        band = Band(FLAT, tesla_price(middle), tuple(distinct))
        return Banding((band,), (FLAT,) * len(prices))
    bands, name_of = [], {}
    for name, (i, j) in zip(NAMES[groups], _split(distinct, groups), strict=True):
        members = tuple(distinct[i : j + 1])
        bands.append(Band(name, tesla_price((members[0] + members[-1]) / 2), members))
        for member in members:
            name_of[member] = name
    return Banding(tuple(bands), tuple(name_of[price] for price in prices))
