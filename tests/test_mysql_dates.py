"""Dates people type for the reports (pure: "today" is given)."""

from __future__ import annotations

from datetime import date

import pytest

from powerwall_bus.consumers.mysql.dates import DEFAULT_RANGES, resolve, span
from powerwall_bus.shared.errors import ConfigError

TODAY = date(2026, 3, 15)


@pytest.mark.parametrize(
    ("typed", "start", "end"),
    [
        ("today", date(2026, 3, 15), date(2026, 3, 16)),
        ("yesterday", date(2026, 3, 14), date(2026, 3, 15)),
        ("7d", date(2026, 3, 9), date(2026, 3, 16)),
        ("1d", date(2026, 3, 15), date(2026, 3, 16)),
        ("this-month", date(2026, 3, 1), date(2026, 4, 1)),
        ("last-month", date(2026, 2, 1), date(2026, 3, 1)),
        ("this-year", date(2026, 1, 1), date(2027, 1, 1)),
        ("Last-Year", date(2025, 1, 1), date(2026, 1, 1)),
        ("2026-02-28", date(2026, 2, 28), date(2026, 3, 1)),
    ],
)
def test_words(typed: str, start: date, end: date) -> None:
    assert span(typed, TODAY, "from")[:2] == (start, end)


def test_last_month_in_january() -> None:
    assert span("last-month", date(2026, 1, 10), "from")[:2] == (
        date(2025, 12, 1),
        date(2026, 1, 1),
    )


def test_from_and_to() -> None:
    assert resolve(None, None, TODAY, DEFAULT_RANGES["monthly"]) == (
        date(2026, 1, 1),
        date(2027, 1, 1),
    )
    assert resolve(None, None, TODAY, DEFAULT_RANGES["daily"]) == (
        date(2026, 3, 9),
        date(2026, 3, 16),
    )
    # a date --to is exclusive (as before); a word --to includes its range
    assert resolve("2026-03-01", "2026-03-04", TODAY) == (date(2026, 3, 1), date(2026, 3, 4))
    assert resolve("last-month", "this-month", TODAY) == (date(2026, 2, 1), date(2026, 4, 1))
    assert resolve("2026-03-10", None, TODAY) == (date(2026, 3, 10), date(2026, 3, 16))
    assert resolve("yesterday", None, TODAY) == (date(2026, 3, 14), date(2026, 3, 15))


@pytest.mark.parametrize("typed", ["tomorrowish", "0d", "2026-13-01", "d7"])
def test_refused(typed: str) -> None:
    with pytest.raises(ConfigError, match="from"):
        span(typed, TODAY, "from")
