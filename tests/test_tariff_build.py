"""The pure tariff builder and its checks (consumers/tariff: rates, bands, build, check).

Table-driven over each tariff shape (flat, two to four rates, Agile half-hours), DST days
(2026-03-29: 46 half-hours, 2026-10-25: 50), a price change at midnight, the sell choices;
every built tariff passes :func:`validate`, and broken ones are refused with a line naming
the fault. Conformance: every ``time_of_use_settings.*.request.json`` sample (ours in
tests/data/tariff, and the team's when ../shared/fixtures exists) is accepted or refused as
its name says.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerwall_bus.consumers.tariff.bands import band_prices, tesla_price
from powerwall_bus.consumers.tariff.build import build, periods
from powerwall_bus.consumers.tariff.check import validate, validate_request
from powerwall_bus.consumers.tariff.rates import (
    LONDON,
    OctopusTariff,
    Rate,
    day_profile,
    half_hours_in,
)
from tests.conftest import SHARED_FIXTURES

OWN = Path(__file__).resolve().parent / "data" / "tariff"
SHARED = SHARED_FIXTURES / "tesla-cloud"
DAY = date(2026, 1, 15)
SPRING, AUTUMN = date(2026, 3, 29), date(2026, 10, 25)


def _half_hourly(
    first: date, days: int, price: Callable[[datetime], float], *, export: bool = False
) -> OctopusTariff:
    """Half-hourly rates over whole local days, priced by their local start time."""
    start = datetime.combine(first, time(0), tzinfo=LONDON).astimezone(UTC)
    end = datetime.combine(first + timedelta(days=days), time(0), tzinfo=LONDON).astimezone(UTC)
    rates, moment = [], start
    while moment < end:
        rates.append(Rate(moment, moment + timedelta(minutes=30), price(moment.astimezone(LONDON))))
        moment += timedelta(minutes=30)
    kind = "half-hourly"
    return OctopusTariff("E-1R-TEST-C", "Test", kind, export, tuple(rates), standing_charge=50.0)


def _iog(local: datetime) -> float:
    minutes = local.hour * 60 + local.minute
    return 7.0 if minutes >= 23 * 60 + 30 or minutes < 5 * 60 + 30 else 29.2


def _standard(
    price: float, *, export: bool = False, since: date = date(2025, 1, 1)
) -> OctopusTariff:
    start = datetime.combine(since, time(0), tzinfo=LONDON).astimezone(UTC)
    code = "E-1R-OUTGOING-C" if export else "E-1R-VAR-C"
    return OctopusTariff(code, "Flat", "standard", export, (Rate(start, None, price),), 45.0)


EXPORT = _standard(15.0, export=True)


def _content(built: Any) -> dict[str, Any]:
    content = built.request["tou_settings"]["tariff_content_v2"]
    assert isinstance(content, dict)
    return content


def _summer(tariff: dict[str, Any]) -> dict[str, Any]:
    return tariff["seasons"]["Summer"]["tou_periods"]


def _period(fh: int, fm: int, th: int, tm: int) -> dict[str, int]:
    return {
        "fromDayOfWeek": 0,
        "toDayOfWeek": 6,
        "fromHour": fh,
        "fromMinute": fm,
        "toHour": th,
        "toMinute": tm,
    }


IOG_PERIODS = {
    "OFF_PEAK": {"periods": [_period(23, 30, 5, 30)]},
    "ON_PEAK": {"periods": [_period(5, 30, 23, 30)]},
}

# ---------------------------------------------------------------- the tariff shapes


def test_flat_import_is_one_price_for_all_periods() -> None:
    built = build(_standard(24.5), EXPORT, today=DAY)
    content = _content(built)
    assert content["energy_charges"]["ALL"]["rates"]["ALL"] == 0.245
    assert _summer(content) == {}
    assert content["sell_tariff"]["energy_charges"]["ALL"]["rates"]["ALL"] == 0.15
    assert content["daily_charges"] == [{"name": "Standing Charge", "amount": 0.45}]
    assert built.request["tou_settings"]["optimization_strategy"] == "economics"
    assert validate_request(built.request) == []


def test_intelligent_go_two_rates_cross_midnight_as_one_period() -> None:
    built = build(_half_hourly(DAY - timedelta(days=1), 3, _iog), EXPORT, today=DAY)
    content = _content(built)
    assert _summer(content) == IOG_PERIODS
    assert content["energy_charges"]["Summer"]["rates"] == {"OFF_PEAK": 0.07, "ON_PEAK": 0.292}
    sell = content["sell_tariff"]
    # A flat export rate priced under the buy side's names, on the same schedule.
    assert sell["energy_charges"]["Summer"]["rates"] == {"OFF_PEAK": 0.15, "ON_PEAK": 0.15}
    assert _summer(sell) == IOG_PERIODS
    assert built.buy.banding.worst_error < 1e-9
    assert any("above the buy price in 12 half-hours" in note for note in built.notes)
    assert validate_request(built.request) == []


@pytest.mark.parametrize(
    ("prices", "names"),
    [
        ({0: 7.5, 7: 30.0}, {"OFF_PEAK": [(0, 0, 7, 0)], "ON_PEAK": [(7, 0, 0, 0)]}),
        (
            {0: 12.0, 7: 25.0, 16: 38.0, 19: 25.0},
            {
                "OFF_PEAK": [(0, 0, 7, 0)],
                "PARTIAL_PEAK": [(7, 0, 16, 0), (19, 0, 0, 0)],
                "ON_PEAK": [(16, 0, 19, 0)],
            },
        ),
        (
            {0: 5.0, 4: 12.0, 7: 25.0, 16: 38.0, 19: 25.0, 22: 12.0},
            {
                "SUPER_OFF_PEAK": [(0, 0, 4, 0)],
                "OFF_PEAK": [(4, 0, 7, 0), (22, 0, 0, 0)],
                "PARTIAL_PEAK": [(7, 0, 16, 0), (19, 0, 22, 0)],
                "ON_PEAK": [(16, 0, 19, 0)],
            },
        ),
    ],
    ids=["two", "three", "four"],
)
def test_two_to_four_rates_keep_their_exact_prices(
    prices: dict[int, float], names: dict[str, list[tuple[int, int, int, int]]]
) -> None:
    def price(local: datetime) -> float:
        return prices[max(hour for hour in prices if hour <= local.hour)]

    built = build(_half_hourly(DAY, 1, price), EXPORT, today=DAY)
    content = _content(built)
    expected = {name: {"periods": [_period(*p) for p in spans]} for name, spans in names.items()}
    assert _summer(content) == expected
    assert sorted(content["energy_charges"]["Summer"]["rates"].values()) == sorted(
        tesla_price(p) for p in set(prices.values())
    )
    assert validate_request(built.request) == []


def _agile(local: datetime, seed: int = 3) -> float:
    rng = random.Random(local.hour * 2 + local.minute // 30 + seed)
    base = 30.0 if 16 <= local.hour < 19 else 12.0 if 7 <= local.hour < 16 else 6.0
    return round(base + rng.uniform(-4.0, 4.0), 2)


def test_agile_half_hours_in_four_bands_with_the_least_worst_error() -> None:
    built = build(
        _half_hourly(DAY, 1, _agile), _half_hourly(DAY, 1, _agile, export=True), today=DAY
    )
    banding = built.buy.banding
    profile = day_profile(_half_hourly(DAY, 1, _agile).rates, DAY)
    assert profile is not None
    assert len(set(profile.prices)) > 4
    assert [band.name for band in banding.bands] == [
        "SUPER_OFF_PEAK",
        "OFF_PEAK",
        "PARTIAL_PEAK",
        "ON_PEAK",
    ]
    # The reported bound holds for every half-hour ...
    for slot, price in enumerate(profile.prices):
        assert (
            abs(banding.price_of(banding.slots[slot]) * 100 - price) <= banding.worst_error + 1e-9
        )
    # ... and no other split into four contiguous price groups does better (brute force).
    values = sorted(set(profile.prices))
    best = min(
        max((values[j - 1] - values[i]) / 2 for i, j in itertools.pairwise((0, *cuts, len(values))))
        for cuts in itertools.combinations(range(1, len(values)), 3)
    )
    assert banding.worst_error == pytest.approx(best, abs=0.001)
    assert any(f"worst-case error {banding.worst_error:.2f}" in note for note in built.notes)
    # Export Agile prices are banded on their own schedule.
    sell = _content(built)["sell_tariff"]
    assert len(sell["energy_charges"]["Summer"]["rates"]) == 4
    assert validate_request(built.request) == []


def test_negative_agile_prices_are_sent_as_zero_and_said() -> None:
    built = build(_half_hourly(DAY, 1, lambda t: _agile(t) - 9.0), None, today=DAY)
    rates = _content(built)["energy_charges"]["Summer"]["rates"]
    assert min(rates.values()) == 0
    assert any("negative prices" in note for note in built.notes)
    assert validate_request(built.request) == []


# ---------------------------------------------------------------- DST and windows


@pytest.mark.parametrize(("day", "real"), [(SPRING, 46), (AUTUMN, 50), (DAY, 48)])
def test_dst_days_keep_the_wall_clock_window(day: date, real: int) -> None:
    assert half_hours_in(day) == real
    built = build(_half_hourly(day - timedelta(days=1), 3, _iog), EXPORT, today=day)
    assert _summer(_content(built)) == IOG_PERIODS
    if real != 48:
        assert any(f"{real} half-hours" in note for note in built.notes)
    assert validate_request(built.request) == []


def test_dst_day_agile_prices_land_on_their_wall_clock_slots() -> None:
    tariff = _half_hourly(AUTUMN, 1, lambda t: t.hour * 2 + t.minute / 30 + (0.5 if t.fold else 0))
    profile = day_profile(tariff.rates, AUTUMN)
    assert profile is not None and profile.real_half_hours == 50
    # 48 wall slots, slot n priced n: the repeated 01:00-02:00 took its first (BST) prices.
    assert profile.prices == tuple(float(n) for n in range(48))
    spring = day_profile(
        _half_hourly(SPRING, 1, lambda t: t.hour * 2 + t.minute / 30).rates, SPRING
    )
    assert spring is not None and spring.real_half_hours == 46
    assert spring.prices[2:4] == (4.0, 5.0)  # 01:00 and 01:30 never happen: 02:00's prices


def test_a_price_change_at_midnight_names_the_window_it_used() -> None:
    change = datetime(2026, 4, 1, tzinfo=LONDON).astimezone(UTC)
    since = datetime(2026, 1, 1, tzinfo=LONDON).astimezone(UTC)
    tariff = OctopusTariff(
        "E-1R-VAR-C",
        "Flexible",
        "standard",
        False,
        (Rate(since, change, 24.5), Rate(change, None, 26.1)),
    )
    before = build(tariff, EXPORT, today=date(2026, 3, 31))
    assert _content(before)["energy_charges"]["ALL"]["rates"]["ALL"] == 0.245
    assert any(
        "the rates change on 2026-04-01 at 00:00 (24.50p -> 26.10p)" in note
        for note in before.notes
    )
    assert before.window.day == date(2026, 3, 31)
    after = build(tariff, EXPORT, today=date(2026, 3, 31), day=date(2026, 4, 1))
    assert _content(after)["energy_charges"]["ALL"]["rates"]["ALL"] == 0.261


def test_rates_for_other_days_use_the_latest_whole_day_and_say_so() -> None:
    built = build(_half_hourly(DAY, 2, lambda t: _agile(t) + t.day), None, today=date(2026, 12, 1))
    assert built.window.day == DAY + timedelta(days=1)
    assert any("do not cover today (2026-12-01)" in note for note in built.notes)
    assert any("prices differ on other days (2026-01-15)" in note for note in built.notes)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: build(_half_hourly(DAY, 1, _iog), None, today=DAY, day=DAY + timedelta(days=2)),
            "do not cover all of 2026-01-17",
        ),
        (lambda: build(EXPORT, None, today=DAY), "is an export tariff"),
        (lambda: build(_standard(20.0), _standard(5.0), today=DAY), "is an import tariff"),
        (lambda: build(_standard(20.0), None, today=DAY, sell_from="max"), "sell prices come from"),
        (lambda: build(_standard(20.0), None, today=DAY, strategy="x"), "optimization_strategy"),
        (
            lambda: build(
                _standard(20.0),
                _half_hourly(DAY, 1, _iog, export=True),
                today=DAY,
                day=DAY + timedelta(days=3),
            ),
            "export rates of E-1R-TEST-C do not cover",
        ),
    ],
)
def test_bad_input_is_one_line(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        call()
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------- sell choices


def test_cheapest_buy_sell_is_flat_under_the_buy_names() -> None:
    built = build(_half_hourly(DAY, 1, _iog), EXPORT, today=DAY, sell_from="cheapest-buy")
    sell = _content(built)["sell_tariff"]
    assert sell["energy_charges"]["Summer"]["rates"] == {"OFF_PEAK": 0.07, "ON_PEAK": 0.07}
    assert _summer(sell) == IOG_PERIODS
    assert any("cheapest buy price (7.00p)" in note for note in built.notes)


def test_no_export_agreement_sells_at_zero() -> None:
    built = build(_standard(24.5), None, today=DAY, strategy="balanced")
    assert _content(built)["sell_tariff"]["energy_charges"]["ALL"]["rates"]["ALL"] == 0
    assert built.request["tou_settings"]["optimization_strategy"] == "balanced"


def test_periods_of_one_name_all_day_is_midnight_to_midnight() -> None:
    assert periods(("X",) * 48) == {"X": [_period(0, 0, 0, 0)]}
    assert band_prices([3.0] * 48).is_flat


# ---------------------------------------------------------------- the checks


def _broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = copy.deepcopy(build(_half_hourly(DAY, 1, _iog), EXPORT, today=DAY).request)
    change(body["tou_settings"]["tariff_content_v2"])
    return body


def _on_peak(content: dict[str, Any]) -> dict[str, int]:
    return content["seasons"]["Summer"]["tou_periods"]["ON_PEAK"]["periods"][0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: _on_peak(c).update(toHour=23, toMinute=0),
            "buy: season Summer has no period for Mon 23:00-Mon 23:30",
        ),
        (
            lambda c: _on_peak(c).update(toHour=23, toMinute=45),
            "overlapping periods: Mon 23:30-Mon 23:45",
        ),
        (lambda c: _on_peak(c).pop("toMinute"), "lacks toMinute"),
        (lambda c: _on_peak(c).update(fromDayOfWeek=7), "fromDayOfWeek 7 is not 0-6"),
        (lambda c: c["energy_charges"]["Summer"]["rates"].update(ON_PEAK=-0.1), "negative price"),
        (lambda c: c["energy_charges"]["Summer"]["rates"].update(ON_PEAK=29.2), "pence instead"),
        (lambda c: c["energy_charges"]["Summer"]["rates"].update(ON_PEAK="0.29"), "not a number"),
        (lambda c: c["energy_charges"]["Summer"]["rates"].pop("ON_PEAK"), "the sets must match"),
        (lambda c: c["seasons"]["Summer"].update(toMonth=6, toDay=30), "cover 01 July 0 times"),
        (lambda c: c.pop("demand_charges"), "buy: missing demand_charges"),
        (lambda c: c.update(currency="pence"), "currency 'pence'"),
        (
            lambda c: c["sell_tariff"]["seasons"]["Summer"]["tou_periods"].pop("ON_PEAK"),
            "sell: season Summer has no period",
        ),
        (lambda c: c["seasons"].update(Summer={}), "no season with periods"),
    ],
)
def test_validate_names_each_fault(change: Callable[[dict[str, Any]], None], message: str) -> None:
    problems = validate_request(_broken(change))
    assert any(message in problem for problem in problems), problems
    assert all("\n" not in problem for problem in problems)


def test_validate_request_needs_v2_and_a_known_strategy() -> None:
    body = build(_standard(20.0), None, today=DAY).request
    assert validate(body["tou_settings"]["tariff_content_v2"]) == []
    body["tou_settings"]["optimization_strategy"] = "cheapest"
    assert validate_request(body) == [
        "optimization_strategy 'cheapest' is not economics or balanced"
    ]
    assert validate_request({"tou_settings": {"tariff_content": {}}})[0].startswith(
        "tou_settings has no tariff_content_v2"
    )
    assert validate_request([]) == ["the body has no tou_settings object"]


# ---------------------------------------------------------------- conformance


def _samples() -> list[Path]:
    own = sorted(OWN.glob("time_of_use_settings.*.request.json"))
    shared = sorted(SHARED.glob("time_of_use_settings.*.request.json")) if SHARED.is_dir() else []
    return own + shared


SAMPLES = _samples()


@pytest.mark.conformance
@pytest.mark.parametrize(
    "path",
    SAMPLES,
    ids=[f"{'own' if p.is_relative_to(OWN) else 'shared'}/{p.name}" for p in SAMPLES],
)
def test_request_samples_are_accepted_or_refused_as_named(path: Path) -> None:
    body = json.loads(path.read_text(encoding="utf-8"))
    problems = validate_request(body)
    if "invalid" in path.name or "legacy_v1" in path.name:
        assert problems, f"{path.name} should be refused"
    else:
        assert problems == [], problems
    if "invalid_gap" in path.name:  # the team's: a missing toMinute leaves 23:00-23:30 open
        assert any("has no period for Mon 23:00" in problem for problem in problems)


def test_flat_import_with_half_hourly_export_gives_the_sell_side_its_own_schedule() -> None:
    built = build(_standard(24.5), _half_hourly(DAY, 1, _agile, export=True), today=DAY)
    content = _content(built)
    assert content["energy_charges"]["ALL"]["rates"]["ALL"] == 0.245
    sell = content["sell_tariff"]
    assert len(_summer(sell)) == 4
    assert set(sell["energy_charges"]["Summer"]["rates"]) == set(_summer(sell))
    assert validate_request(built.request) == []


@given(
    buy=st.lists(
        st.sampled_from([-3.0, 0.0, 4.5, 7.0, 12.25, 19.9, 24.5, 31.0, 55.5]),
        min_size=48,
        max_size=48,
    ),
    sell=st.lists(st.sampled_from([0.0, 4.1, 15.0, 22.0]), min_size=48, max_size=48),
)
@settings(max_examples=60, deadline=None)
def test_any_day_of_prices_builds_a_valid_tariff_within_its_error(
    buy: list[float], sell: list[float]
) -> None:
    def priced(prices: list[float]) -> Callable[[datetime], float]:
        return lambda local: prices[local.hour * 2 + local.minute // 30]

    built = build(
        _half_hourly(DAY, 1, priced(buy)),
        _half_hourly(DAY, 1, priced(sell), export=True),
        today=DAY,
    )
    assert validate_request(built.request) == []
    banding = built.buy.banding
    assert len(banding.bands) <= 4
    for slot, price in enumerate(buy):
        told = banding.price_of(banding.slots[slot]) * 100
        assert abs(told - price) <= banding.worst_error + 1e-6
        assert told >= 0
