"""Dates people type for ``pwbus report`` and ``pwbus db``: words and relative spans.

Pure (the caller passes "today"). A value names a range of local days [start, end):

* ``YYYY-MM-DD``: that day;
* ``today``, ``yesterday``;
* ``Nd`` (e.g. ``7d``): the last N days, today included;
* ``this-month``, ``last-month``, ``this-year``, ``last-year``.

``--from X`` starts at X's start; ``--to Y`` ends at Y's end, except that a plain date given
to ``--to`` is the (exclusive) end itself, as it always was. Without ``--to`` the range ends
where X's range ends for a word, or tomorrow (today included) for a date. Without ``--from``
the report's default applies (:data:`DEFAULT_RANGES`).
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from powerwall_bus.shared.errors import ConfigError

WORDS = ("today", "yesterday", "Nd", "this-month", "last-month", "this-year", "last-year")

#: The range each report shows when no --from is given.
DEFAULT_RANGES = {
    "daily": "7d",
    "peaks": "7d",
    "completeness": "7d",
    "hourly": "30d",
    "outages": "30d",
    "monthly": "this-year",
}

_DAYS = re.compile(r"^(\d{1,4})d$")


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=32)).replace(day=1)


def span(text: str, today: date, key: str) -> tuple[date, date, bool]:
    """(start, end, is_word) of one typed value; unknown text is a ConfigError."""
    word = text.strip().lower()
    tomorrow = today + timedelta(days=1)
    if word == "today":
        return today, tomorrow, True
    if word == "yesterday":
        return today - timedelta(days=1), today, True
    if word == "this-month":
        return _month_start(today), _next_month(today), True
    if word == "last-month":
        start = _month_start(_month_start(today) - timedelta(days=1))
        return start, _month_start(today), True
    if word == "this-year":
        return date(today.year, 1, 1), date(today.year + 1, 1, 1), True
    if word == "last-year":
        return date(today.year - 1, 1, 1), date(today.year, 1, 1), True
    match = _DAYS.match(word)
    if match:
        count = int(match.group(1))
        if count < 1:
            raise ConfigError(key, "a number of days must be at least 1d")
        return tomorrow - timedelta(days=count), tomorrow, True
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            key, f"expected YYYY-MM-DD or one of {', '.join(WORDS)}; got {text!r}"
        ) from None
    return day, day + timedelta(days=1), False


def resolve(
    date_from: str | None, date_to: str | None, today: date, default: str = "7d"
) -> tuple[date, date]:
    """The range [start, end) of local days that --from/--to (either may be None) name."""
    start, end, _word = span(date_from or default, today, "from")
    if date_to:
        to_start, to_end, word = span(date_to, today, "to")
        end = to_end if word else to_start
    elif date_from and not span(date_from, today, "from")[2]:
        end = today + timedelta(days=1)
    return start, end
