"""Octopus rates as the Powerwall sees a day: 48 wall-clock half-hours in Europe/London.

Octopus prices are dated instants (UTC); Tesla's tariff periods are the site's local wall
clock, one repeating week with no dates. So a tariff is built from ONE local day (the
*window*), read slot by slot at wall-clock times, and repeated for every day of the week.

DST days have 46 or 50 real half-hours but still 48 wall-clock slots. On the spring day the
wall-clock 01:00-02:00 never happens: those two slots take the prices of the half-hours that
follow the change (zoneinfo reads a missing wall time with the offset before the change, so
01:00 is 01:00Z, which is 02:00 BST). On the autumn day 01:00-02:00 happens twice: the slots
take the first (BST) half-hours. Both are said in the build's notes.

Pure: no I/O, no clock (the caller gives the day).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "LONDON",
    "SLOTS",
    "DayProfile",
    "OctopusTariff",
    "Rate",
    "Window",
    "covered_days",
    "day_profile",
    "half_hours_in",
    "parse_instant",
    "window_for",
]

LONDON = ZoneInfo("Europe/London")
SLOTS = 48  # wall-clock half-hours in a Tesla day
KINDS = ("standard", "day-night", "three-rate", "half-hourly")


def parse_instant(text: str) -> datetime:
    """An Octopus timestamp (``...Z`` or ``+01:00``) as an aware UTC datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        # Octopus reads a datetime without a zone as London time (the REST docs say so).
        moment = moment.replace(tzinfo=LONDON)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class Rate:
    """One price (pence/kWh, VAT included) from ``start`` (inclusive) to ``end`` (exclusive;
    None: open-ended)."""

    start: datetime
    end: datetime | None
    price: float

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or moment < self.end)


@dataclass(frozen=True)
class OctopusTariff:
    """One agreement's tariff, whatever its Octopus type, as dated rates.

    ``kind`` is one of :data:`KINDS`; day-night and three-rate tariffs arrive here already
    laid out in time (Octopus does not say when their night is: the user does).
    """

    code: str
    name: str
    kind: str
    is_export: bool
    rates: tuple[Rate, ...]
    standing_charge: float = 0.0  # pence/day
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class DayProfile:
    """The 48 wall-clock half-hour prices (pence) of one local day, and what was odd about it."""

    day: date
    prices: tuple[float, ...]
    real_half_hours: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Window:
    """Which local day a tariff was built from, and why the user should know."""

    day: date
    notes: tuple[str, ...]


def half_hours_in(day: date, tz: ZoneInfo = LONDON) -> int:
    """Real half-hours in a local day: 48, or 46/50 on DST days."""
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return int((end - start) / timedelta(minutes=30))


def _slot_instant(day: date, slot: int, tz: ZoneInfo) -> datetime:
    wall = datetime.combine(day, time(slot // 2, 30 * (slot % 2)), tzinfo=tz)
    return wall.astimezone(UTC)  # fold=0: first occurrence; a missing time reads as before


def _price_at(rates: Sequence[Rate], moment: datetime) -> float | None:
    # The latest-starting rate wins where two overlap (a newer price replacing an open one).
    found = [rate for rate in rates if rate.covers(moment)]
    if not found:
        return None
    return max(found, key=lambda rate: rate.start).price


def day_profile(rates: Sequence[Rate], day: date, tz: ZoneInfo = LONDON) -> DayProfile | None:
    """The day's 48 wall-clock prices; None when the rates leave any half-hour of it uncovered."""
    real = half_hours_in(day, tz)
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    for index in range(real):  # every real instant of the day must have a price
        if _price_at(rates, start + index * timedelta(minutes=30)) is None:
            return None
    prices = []
    for slot in range(SLOTS):
        price = _price_at(rates, _slot_instant(day, slot, tz))
        if price is None:
            return None
        prices.append(price)
    notes: tuple[str, ...] = ()
    if real == 46:
        notes = (
            f"{day} has 46 half-hours (clocks go forward): wall-clock 01:00-02:00 does not "
            "happen; its two slots carry the prices of 02:00-03:00",
        )
    elif real == 50:
        notes = (
            f"{day} has 50 half-hours (clocks go back): wall-clock 01:00-02:00 happens twice; "
            "its two slots carry the first (BST) prices",
        )
    return DayProfile(day, tuple(prices), real, notes)


def covered_days(
    rates: Sequence[Rate], around: date, reach: int = 7, tz: ZoneInfo = LONDON
) -> list[DayProfile]:
    """The fully covered days within ``reach`` days of ``around``, in date order."""
    found = []
    for offset in range(-reach, reach + 1):
        profile = day_profile(rates, around + timedelta(days=offset), tz)
        if profile is not None:
            found.append(profile)
    return found


def _pence(value: float) -> str:
    return f"{value:.2f}p"


def _days_near_the_rates(rates: Sequence[Rate], tz: ZoneInfo) -> list[DayProfile]:
    """The covered days around where the rates end (rates for another time than today)."""
    last = max((rate.end or rate.start) for rate in rates)
    return covered_days(rates, last.astimezone(tz).date(), tz=tz)


def window_for(
    rates: Sequence[Rate], today: date, wanted: date | None = None, tz: ZoneInfo = LONDON
) -> tuple[DayProfile, Window]:
    """The day to build from: ``wanted``, else today, else the latest fully covered day.

    Raises ValueError (one line) when that day is not fully covered. The window's notes say
    when other days in reach have different prices (a tariff change, Agile's next day).
    """
    days = covered_days(rates, wanted or today, tz=tz)
    by_day = {profile.day: profile for profile in days}
    notes: list[str] = []
    if wanted is not None:
        chosen = by_day.get(wanted)
        if chosen is None:
            raise ValueError(f"the rates do not cover all of {wanted} (Europe/London)")
    elif today in by_day:
        chosen = by_day[today]
    elif rates and (days := _days_near_the_rates(rates, tz)):
        chosen = days[-1]
        notes.append(f"the rates do not cover today ({today}); used {chosen.day}, the latest day")
    else:
        raise ValueError(f"the rates do not cover any whole day near {today} (Europe/London)")
    days = covered_days(rates, chosen.day, tz=tz)
    by_day = {profile.day: profile for profile in days}
    differing = [p.day for p in days if p.prices != chosen.prices]
    if differing:
        listed = ", ".join(str(d) for d in differing[:4]) + (" ..." if len(differing) > 4 else "")
        notes.append(
            f"prices differ on other days ({listed}); this tariff uses those of {chosen.day} "
            "(00:00-24:00 Europe/London) for every day of the week"
        )
        after = chosen.day + timedelta(days=1)
        if after in by_day and by_day[after].prices != chosen.prices:
            a, b = chosen.prices, by_day[after].prices
            slot = next(i for i in range(SLOTS) if a[i] != b[i])
            notes.append(
                f"the rates change on {after} at {slot // 2:02d}:{30 * (slot % 2):02d} "
                f"({_pence(a[slot])} -> {_pence(b[slot])}): build again after the change"
            )
    else:
        notes.append(f"built from {chosen.day} (00:00-24:00 Europe/London), repeated every day")
    notes.extend(chosen.notes)
    return chosen, Window(chosen.day, tuple(notes))
