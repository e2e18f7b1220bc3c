"""The checks a tariff passes before it is shown as ready or sent: :func:`validate`.

Tesla's endpoint answers 200 to a schedule with a gap and the app then says "time of use
schedule should cover exactly 24 hours" (research note §3.3), so the checks are ours:

* every season's periods cover each minute of the week exactly once (gaps and overlaps are
  named with their day and time), or the season has no periods and ``energy_charges.ALL``
  carries a flat price;
* every period writes all six fields explicitly, in range (days 0-6, Monday first);
* the period names with periods and the names with prices are the same set;
* prices are numbers, not negative, and plausible in £/kWh (not pence);
* the seasons cover the year exactly once; the fields the app needs are present;
* the same for ``sell_tariff``.

Pure: no I/O. A request body (``{"tou_settings": {...}}``) is checked with
:func:`validate_request`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

__all__ = ["PERIOD_FIELDS", "validate", "validate_request"]

PERIOD_FIELDS = ("fromDayOfWeek", "toDayOfWeek", "fromHour", "fromMinute", "toHour", "toMinute")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WEEK = 7 * 24 * 60
MAX_PRICE = 5.0  # £/kWh: above this it is almost surely pence
CURRENCIES = ("GBP", "EUR", "USD", "")
STRATEGIES = ("economics", "balanced")
_YEAR = 2024  # a leap year, so 29 February is a day some season must cover


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _price_problem(where: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"{where}: price {value!r} is not a number"
    if value < 0:
        return f"{where}: negative price {value} (Tesla refuses them)"
    if value > MAX_PRICE:
        return f"{where}: price {value} £/kWh is implausible (pence instead of pounds?)"
    return None


def _at(minute: int) -> str:
    day, rest = divmod(minute % WEEK, 24 * 60)
    return f"{DAYS[day]} {rest // 60:02d}:{rest % 60:02d}"


def _ranges(minutes: list[int]) -> str:
    """``Mon 23:00-Tue 00:00, ...`` for sorted minute indexes (at most three ranges)."""
    spans: list[list[int]] = []
    for minute in minutes:
        if spans and spans[-1][1] == minute:
            spans[-1][1] = minute + 1
        else:
            spans.append([minute, minute + 1])
    text = ", ".join(f"{_at(a)}-{_at(b)}" for a, b in spans[:3])
    return text + (f" and {len(spans) - 3} more" if len(spans) > 3 else "")


def _period_minutes(period: Mapping[str, Any]) -> list[int]:
    """The minutes of the week one (well-formed) period covers."""
    first_day, last_day = period["fromDayOfWeek"], period["toDayOfWeek"]
    start = period["fromHour"] * 60 + period["fromMinute"]
    end = period["toHour"] * 60 + period["toMinute"]
    days = [(first_day + i) % 7 for i in range((last_day - first_day) % 7 + 1)]
    minutes: list[int] = []
    for day in days:
        base = day * 24 * 60
        length = end - start if end > start else 24 * 60 - start + end  # end <= start: overnight
        minutes.extend((base + start + i) % WEEK for i in range(length))
    return minutes


def _period_problem(where: str, period: Any) -> str | None:
    if not isinstance(period, Mapping):
        return f"{where}: a period is not an object"
    missing = [name for name in PERIOD_FIELDS if name not in period]
    if missing:
        return f"{where}: period {dict(period)} lacks {', '.join(missing)} (write all six fields)"
    if not all(_int(period[name]) for name in PERIOD_FIELDS):
        return f"{where}: period {dict(period)} has a field that is not an integer"
    for name in ("fromDayOfWeek", "toDayOfWeek"):
        if not 0 <= period[name] <= 6:
            return f"{where}: {name} {period[name]} is not 0-6 (Monday-Sunday)"
    for name in ("fromHour", "toHour"):
        if not 0 <= period[name] <= 24:
            return f"{where}: {name} {period[name]} is not 0-24"
    for name in ("fromMinute", "toMinute"):
        if not 0 <= period[name] <= 59:
            return f"{where}: {name} {period[name]} is not 0-59"
    if period["fromHour"] == 24 or (period["toHour"] == 24 and period["toMinute"] != 0):
        return f"{where}: hour 24 is only an end, at minute 0"
    return None


def _season_days(where: str, season: Mapping[str, Any], problems: list[str]) -> list[date]:
    try:
        first = date(_YEAR, season["fromMonth"], season["fromDay"])
        last = date(_YEAR, season["toMonth"], season["toDay"])
    except (KeyError, TypeError, ValueError):
        problems.append(f"{where}: fromMonth/fromDay/toMonth/toDay missing or not a date")
        return []
    days, day = [], first
    while True:  # inclusive, may wrap the year
        days.append(day)
        if day == last:
            return days
        day = day + timedelta(days=1)
        if day.year != _YEAR:
            day = date(_YEAR, 1, 1)


def _check_season(
    where: str, name: str, season: Mapping[str, Any], energy: Mapping[str, Any], problems: list[str]
) -> None:
    tou = season.get("tou_periods")
    if not isinstance(tou, Mapping):
        problems.append(f"{where}: season {name} has no tou_periods object")
        return
    charges = energy.get(name) if isinstance(energy.get(name), Mapping) else {}
    rates = charges.get("rates", {}) if isinstance(charges, Mapping) else {}
    if not isinstance(rates, Mapping):
        problems.append(f"{where}: energy_charges.{name}.rates is not an object")
        return
    if not tou:
        flat = energy.get("ALL", {})
        flat_rates = flat.get("rates", {}) if isinstance(flat, Mapping) else {}
        if not isinstance(flat_rates, Mapping) or "ALL" not in flat_rates:
            problems.append(f"{where}: season {name} has no periods and no flat price (ALL)")
        elif rates:
            problems.append(f"{where}: season {name} prices {sorted(rates)} but has no periods")
        return
    owners: list[list[str]] = [[] for _ in range(WEEK)]
    malformed = False
    for period_name, entry in tou.items():
        found = entry.get("periods") if isinstance(entry, Mapping) else None
        if not isinstance(found, list) or not found:
            problems.append(f"{where}: {name}.{period_name} has no periods list")
            continue
        for period in found:
            problem = _period_problem(f"{where}: {name}.{period_name}", period)
            if problem:
                problems.append(problem)
                # Read as Tesla reads it back (an omitted field is 0) to name the gap too.
                filled = (
                    {**dict.fromkeys(PERIOD_FIELDS, 0), **period}
                    if isinstance(period, Mapping)
                    else None
                )
                if filled is None or _period_problem("", filled) is not None:
                    malformed = True
                    continue
                period = filled
            for minute in _period_minutes(period):
                owners[minute].append(period_name)
    if malformed:
        return  # the coverage of unreadable periods would only repeat the fault
    gaps = [m for m in range(WEEK) if not owners[m]]
    overlaps = [m for m in range(WEEK) if len(owners[m]) > 1]
    if gaps:
        problems.append(f"{where}: season {name} has no period for {_ranges(gaps)}")
    if overlaps:
        problems.append(f"{where}: season {name} has overlapping periods: {_ranges(overlaps)}")
    with_periods, with_prices = set(tou), set(rates)
    if with_periods != with_prices:
        problems.append(
            f"{where}: season {name}: periods {sorted(with_periods)} but prices for "
            f"{sorted(with_prices)} (the sets must match)"
        )


def _check_tariff(where: str, tariff: Any, problems: list[str], *, buy: bool) -> None:
    if not isinstance(tariff, Mapping):
        problems.append(f"{where}: not an object")
        return
    needed = ("name", "energy_charges", "seasons", "demand_charges") + (
        ("currency", "utility") if buy else ()
    )
    missing = [key for key in needed if key not in tariff]
    if missing:
        problems.append(f"{where}: missing {', '.join(missing)}")
    currency = tariff.get("currency", "")
    if currency not in CURRENCIES:
        problems.append(f"{where}: currency {currency!r} is not one of GBP, EUR, USD")
    for charge in tariff.get("daily_charges") or []:
        amount = charge.get("amount") if isinstance(charge, Mapping) else None
        problem = _price_problem(f"{where}: daily_charges", amount)
        if problem:
            problems.append(problem)
    energy = tariff.get("energy_charges")
    if not isinstance(energy, Mapping):
        if "energy_charges" in tariff:
            problems.append(f"{where}: energy_charges is not an object")
        return
    for season_name, charges in energy.items():
        rates = charges.get("rates", {}) if isinstance(charges, Mapping) else None
        if not isinstance(rates, Mapping):
            problems.append(f"{where}: energy_charges.{season_name} has no rates object")
            continue
        for period_name, value in rates.items():
            problem = _price_problem(f"{where}: {season_name}.{period_name}", value)
            if problem:
                problems.append(problem)
    seasons = tariff.get("seasons")
    if not isinstance(seasons, Mapping):
        if "seasons" in tariff:
            problems.append(f"{where}: seasons is not an object")
        return
    covered: dict[date, int] = {}
    used = [(name, season) for name, season in seasons.items() if season]
    if not used:
        problems.append(f"{where}: no season with periods or a flat price")
    for name, season in used:
        if not isinstance(season, Mapping):
            problems.append(f"{where}: season {name} is not an object")
            continue
        for day in _season_days(f"{where}: season {name}", season, problems):
            covered[day] = covered.get(day, 0) + 1
        _check_season(where, name, season, energy, problems)
    year = [date(_YEAR, 1, 1) + timedelta(days=i) for i in range(366)]
    if used and (lost := [d for d in year if covered.get(d, 0) != 1]):
        problems.append(
            f"{where}: the seasons cover {lost[0]:%d %B} {covered.get(lost[0], 0)} times "
            f"(each day of the year must be in exactly one season)"
        )


def validate(tariff: Any) -> list[str]:
    """Every problem of a ``tariff_content_v2`` (one line each); empty: it is valid."""
    problems: list[str] = []
    _check_tariff("buy", tariff, problems, buy=True)
    if isinstance(tariff, Mapping) and "sell_tariff" in tariff:
        _check_tariff("sell", tariff["sell_tariff"], problems, buy=False)
    return problems


def validate_request(body: Any) -> list[str]:
    """Every problem of a ``time_of_use_settings`` request body."""
    settings = body.get("tou_settings") if isinstance(body, Mapping) else None
    if not isinstance(settings, Mapping):
        return ["the body has no tou_settings object"]
    if "tariff_content_v2" not in settings:
        return ["tou_settings has no tariff_content_v2 (the legacy tariff_content is not sent)"]
    problems = validate(settings["tariff_content_v2"])
    strategy = settings.get("optimization_strategy")
    if strategy is not None and strategy not in STRATEGIES:
        problems.append(f"optimization_strategy {strategy!r} is not economics or balanced")
    return problems
