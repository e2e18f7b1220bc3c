"""An Octopus import (and export) tariff as Tesla's ``time_of_use_settings`` request body.

The layout is the one the facts found working in the app (research note §3): prices in £,
one season ``Summer`` covering the year and an empty ``Winter``, ``demand_charges`` set,
every period written with all six fields for days 0-6 (Monday-Sunday; one repeating day,
so the Sunday=0 confusion cannot arise), a period crossing midnight written as one
(``23:30 -> 05:30``), a flat price as ``energy_charges.ALL``. ``optimization_strategy``
is always sent: without ``economics`` Time-Based Control can stay "balanced" and never
export (research note §3.1).

Sell prices: the real export rate by default. ``sell="cheapest-buy"`` (opt-in) sets every
sell price to the day's cheapest buy price, as Tesla-API does by default: the Powerwall then
sees no gain in exporting battery energy it bought (less cycling), and buy >= sell holds at
every instant (Tesla otherwise raises the buy price to the sell price there). Without an
export agreement the sell price is 0: that is what exporting earns.

Pure: the caller gives the tariffs and today's date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from powerwall_bus.consumers.tariff.bands import Banding, band_prices, flat, tesla_price
from powerwall_bus.consumers.tariff.rates import (
    SLOTS,
    OctopusTariff,
    Window,
    day_profile,
    window_for,
)

__all__ = ["SELL_CHOICES", "STRATEGIES", "Built", "build", "periods"]

SELL_CHOICES = ("export", "cheapest-buy")
STRATEGIES = ("economics", "balanced")
UTILITY = "Octopus Energy"
EVERY_DAY = (0, 6)  # Monday .. Sunday


@dataclass(frozen=True)
class Side:
    """The buy or the sell half of the tariff, as built."""

    code: str
    name: str
    banding: Banding
    standing_charge: float  # pence/day
    source: str  # what the prices came from, for the report


@dataclass(frozen=True)
class Built:
    """The request body and everything the user should be told about it."""

    request: dict[str, Any]
    buy: Side
    sell: Side
    window: Window
    notes: tuple[str, ...]


def _clock(slot: int) -> tuple[int, int]:
    slot %= SLOTS
    return slot // 2, 30 * (slot % 2)


def periods(slots: tuple[str, ...]) -> dict[str, list[dict[str, int]]]:
    """Runs of equal names as Tesla periods for every day; a run crossing midnight is one
    period ending the next morning."""
    runs: list[list[Any]] = []  # [name, first slot, end slot (exclusive)]
    for index, name in enumerate(slots):
        if runs and runs[-1][0] == name:
            runs[-1][2] = index + 1
        else:
            runs.append([name, index, index + 1])
    if len(runs) > 1 and runs[0][0] == runs[-1][0]:
        last = runs.pop()
        runs[0][1] = last[1]  # starts the evening before, ends in the morning
    if len(runs) == 1:
        runs[0][1:] = [0, 0]  # all day: 00:00 -> 00:00
    found: dict[str, list[dict[str, int]]] = {}
    for name, first, end in sorted(runs, key=lambda run: run[1] % SLOTS):
        from_hour, from_minute = _clock(first)
        to_hour, to_minute = _clock(end)
        found.setdefault(name, []).append(
            {
                "fromDayOfWeek": EVERY_DAY[0],
                "toDayOfWeek": EVERY_DAY[1],
                "fromHour": from_hour,
                "fromMinute": from_minute,
                "toHour": to_hour,
                "toMinute": to_minute,
            }
        )
    return found


def _season(tou_periods: dict[str, Any]) -> dict[str, Any]:
    return {"fromMonth": 1, "fromDay": 1, "toMonth": 12, "toDay": 31, "tou_periods": tou_periods}


def _charges(banding: Banding, names: tuple[str, ...] | None = None) -> tuple[Any, Any]:
    """``(energy_charges, seasons)`` for one side; ``names``: the periods to price a flat
    sell price under (the buy side's), so both halves share one schedule."""
    if banding.is_flat and not names:
        flat_rates = {"ALL": {"rates": {"ALL": banding.bands[0].price}}}
        return flat_rates, {"Summer": _season({})}
    rates: dict[str, float]
    if banding.is_flat and names:
        price = banding.bands[0].price
        rates = {name: price for name in names}
        tou = None
    else:
        rates = {band.name: band.price for band in banding.bands}
        tou = {name: {"periods": found} for name, found in periods(banding.slots).items()}
    energy = {"ALL": {"rates": {"ALL": 0}}, "Summer": {"rates": rates}, "Winter": {}}
    return energy, {"Summer": _season(tou or {}), "Winter": {}}


def _content(buy: Side, sell: Side) -> dict[str, Any]:
    buy_energy, buy_seasons = _charges(buy.banding)
    shared = None if buy.banding.is_flat else tuple(b.name for b in buy.banding.bands)
    sell_energy, sell_seasons = _charges(sell.banding, shared)
    if sell.banding.is_flat and shared:
        sell_seasons = buy_seasons  # the same schedule, one flat price under every name
    demand = {"ALL": {"rates": {"ALL": 0}}, "Summer": {}, "Winter": {}}
    return {
        "version": 1,
        "code": buy.code,
        "name": buy.name,
        "utility": UTILITY,
        "currency": "GBP",
        "daily_charges": [
            {"name": "Standing Charge", "amount": round(buy.standing_charge / 100.0, 5)}
        ],
        "demand_charges": demand,
        "energy_charges": buy_energy,
        "seasons": buy_seasons,
        "sell_tariff": {
            "code": sell.code,
            "name": sell.name,
            "utility": UTILITY,
            "currency": "GBP",
            "daily_charges": [{"name": "Charge", "amount": 0}],
            "demand_charges": demand,
            "energy_charges": sell_energy,
            "seasons": sell_seasons,
        },
    }


def build(
    buy: OctopusTariff,
    sell: OctopusTariff | None,
    *,
    today: date,
    day: date | None = None,
    sell_from: str = "export",
    strategy: str = "economics",
    max_bands: int = 4,
) -> Built:
    """The request body for ``time_of_use_settings``; ValueError (one line) when the rates
    cannot make one (not covering the day, an export tariff without prices for it)."""
    if buy.is_export:
        raise ValueError(f"{buy.code} is an export tariff; the buy side needs an import one")
    if sell_from not in SELL_CHOICES:
        raise ValueError(f"sell prices come from one of {', '.join(SELL_CHOICES)}")
    if strategy not in STRATEGIES:
        raise ValueError(f"optimization_strategy is one of {', '.join(STRATEGIES)}")
    profile, window = window_for(buy.rates, today, day)
    notes = list(window.notes) + list(buy.notes)
    buy_banding = band_prices(profile.prices, max_bands)
    if len(set(profile.prices)) > max_bands:
        notes.append(
            f"{len(set(profile.prices))} distinct buy prices in {max_bands} bands: worst-case "
            f"error {buy_banding.worst_error:.2f} p/kWh"
        )
    negative = min(profile.prices)
    if negative < 0:
        notes.append(f"negative prices (down to {negative:.2f}p) are sent as 0: Tesla refuses them")
    buy_side = Side(buy.code, buy.name, buy_banding, buy.standing_charge, buy.kind)
    if sell_from == "cheapest-buy":
        cheapest = min(profile.prices)
        sell_side = Side(
            sell.code if sell else "",
            "cheapest buy price",
            flat(cheapest),
            0.0,
            "cheapest-buy",
        )
        notes.append(
            f"sell price = the cheapest buy price ({cheapest:.2f}p), not the export rate "
            "(--sell cheapest-buy)"
        )
    elif sell is None:
        sell_side = Side("", "no export tariff", flat(0.0), 0.0, "none")
        notes.append("no export agreement: every sell price is 0")
    else:
        if not sell.is_export:
            raise ValueError(f"{sell.code} is an import tariff; the sell side needs an export one")
        sell_profile = day_profile(sell.rates, window.day)
        if sell_profile is None:
            raise ValueError(f"the export rates of {sell.code} do not cover all of {window.day}")
        notes.extend(sell.notes)
        sell_banding = band_prices(sell_profile.prices, max_bands)
        if len(set(sell_profile.prices)) > max_bands:
            notes.append(
                f"{len(set(sell_profile.prices))} distinct sell prices in {max_bands} bands: "
                f"worst-case error {sell_banding.worst_error:.2f} p/kWh"
            )
        sell_side = Side(sell.code, sell.name, sell_banding, 0.0, sell.kind)
        above = [
            slot
            for slot in range(SLOTS)
            if tesla_price(sell_profile.prices[slot]) > tesla_price(profile.prices[slot])
        ]
        if above:
            hour, minute = _clock(above[0])
            notes.append(
                f"the export rate is above the buy price in {len(above)} half-hours (first "
                f"{hour:02d}:{minute:02d}): the Powerwall may buy to sell; --sell "
                "cheapest-buy avoids that"
            )
    content = _content(buy_side, sell_side)
    request = {"tou_settings": {"optimization_strategy": strategy, "tariff_content_v2": content}}
    return Built(request, buy_side, sell_side, window, tuple(notes))
