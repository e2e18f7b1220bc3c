"""What the gateway's numbers mean (shared/gateway/payloads.py), function by function.

The expected values are worked out by hand; where a value must match pyPowerwall's output
to the last digit, the test compares the exact double (or its JSON text) instead of
``approx``.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest

from powerwall_bus.shared.gateway.payloads import (
    VITALS_REMOVED_IN,
    FirmwareVersion,
    Flow,
    app_reserve,
    app_soe,
    app_soe_clamped,
    charging,
    discharging,
    exporting,
    finite_float,
    gateway_reserve,
    gateway_soe,
    importing,
    lenient_float,
    meter_power,
    number,
    parse_firmware,
    pypowerwall_vint,
    soe_percent,
    version_at_least,
    vitals_supported,
)

NAN, INF = float("nan"), float("inf")


class FloatSubclass(float):
    """What e.g. numpy's float64 is: a float by isinstance, not by type()."""


# --------------------------------------------------------------------------- numbers

#: value -> (number(value), finite_float(value), lenient_float(value))
NUMBERS: list[tuple[Any, Any, float | None, float | None]] = [
    (None, None, None, None),
    (True, None, None, 1.0),  # a JSON true is a flag; only Python's float() reads it as 1
    (False, None, None, 0.0),
    (0, 0, 0.0, 0.0),
    (7, 7, 7.0, 7.0),
    (-0.5, -0.5, -0.5, -0.5),
    (-1234.75, -1234.75, -1234.75, -1234.75),
    (1e308, 1e308, 1e308, 1e308),
    (10**400, 10**400, None, None),  # an int is a number at any size; no float holds it
    (NAN, None, None, None),
    (INF, None, None, None),
    (-INF, None, None, None),
    ("12", None, None, 12.0),  # numeric text is not a number; float() reads it
    (" 4.5 ", None, None, 4.5),
    ("nan", None, None, None),
    ("inf", None, None, None),
    ("", None, None, None),
    ("abc", None, None, None),
    ([1], None, None, None),
    ({"value": 1}, None, None, None),
    (Decimal("2.5"), None, None, 2.5),  # not a JSON number type
    (FloatSubclass(3.25), 3.25, 3.25, 3.25),
]


@pytest.mark.parametrize(("value", "as_number", "as_float", "lenient"), NUMBERS)
def test_number_coercions(value: Any, as_number: Any, as_float: Any, lenient: Any) -> None:
    assert number(value) == as_number
    assert finite_float(value) == as_float
    assert lenient_float(value) == lenient
    if as_float is not None:
        assert type(finite_float(value)) is float
    if lenient is not None:
        assert type(lenient_float(value)) is float


@pytest.mark.parametrize("value", [0, 7, 10**400, -3])
def test_number_keeps_ints_as_ints(value: int) -> None:
    # The proxy prints exactly what the gateway sent: 0 stays "0", not "0.0".
    assert type(number(value)) is int


def test_number_never_lets_a_bool_through() -> None:
    assert [number(v) for v in (True, False)] == [None, None]
    assert [finite_float(v) for v in (True, False)] == [None, None]


# --------------------------------------------------------------------------- state of energy


@pytest.mark.parametrize(
    ("raw", "app"),
    [
        (5, 0.0),  # the gateway's 5 % is the app's 0 %
        (5.0, 0.0),
        (100, 100.0),
        (52.5, 50.0),
        (24, 20.0),
        (43, 40.0),
        (2.15, -3.0),  # not clamped: the raw value stays recoverable
        (0, -5 / 0.95),
        (-10, -15 / 0.95),
        (105, 105 / 0.95 - 5 / 0.95),  # beyond 100 % stays beyond
    ],
)
def test_app_soe(raw: float, app: float) -> None:
    assert app_soe(raw) == pytest.approx(app)


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        # pyPowerwall's own digits (its arithmetic is p / 0.95 - 5 / 0.95, which is not always
        # the double that (p - 5) / 0.95 gives): the proxy has to print these.
        (61.75, "59.73684210526316"),
        (64.5, "62.63157894736842"),  # (64.5 - 5) / 0.95 would be ...425
        (4.5, "-0.5263157894736841"),
        (43, "40.0"),
    ],
)
def test_app_soe_is_pypowerwalls_double(raw: float, text: str) -> None:
    assert json.dumps(app_soe(raw)) == text


@pytest.mark.parametrize(
    ("raw", "level"),
    [(5, 0.0), (4.99, 0.0), (0, 0.0), (-3, 0.0), (100, 100.0), (120, 100.0), (52.5, 50.0)],
)
def test_app_soe_clamped(raw: float, level: float) -> None:
    assert app_soe_clamped(raw) == pytest.approx(level)
    assert 0.0 <= app_soe_clamped(raw) <= 100.0


def test_app_soe_clamped_is_app_soe_inside_the_range() -> None:
    for tenth in range(50, 1001):
        raw = tenth / 10
        assert app_soe_clamped(raw) == app_soe(raw)


@pytest.mark.parametrize(
    ("app", "raw"), [(0, 5.0), (20, 24.0), (50, 52.5), (100, 100.0), (-5 / 0.95, 0.0)]
)
def test_gateway_soe_is_the_inverse(app: float, raw: float) -> None:
    assert gateway_soe(app) == pytest.approx(raw)
    assert app_soe(gateway_soe(app)) == pytest.approx(app)
    assert gateway_soe(app_soe(raw)) == pytest.approx(raw)


@pytest.mark.parametrize(
    ("raw", "app"),
    [(24, 20.0), (43, 40.0), (5, 0.0), (4.0, 0.0), (0, 0.0), (100, 100.0), (24.9, 20.947)],
)
def test_app_reserve_is_never_below_zero(raw: float, app: float) -> None:
    assert app_reserve(raw) == pytest.approx(app, abs=1e-3)
    assert app_reserve(raw) >= 0.0


def test_reserve_below_the_app_zero_is_a_float_zero() -> None:
    assert json.dumps(app_reserve(4.0)) == "0.0"  # pyPowerwall's max(0.0, ...)


@pytest.mark.parametrize(("app", "raw"), [(20, 24.0), (0, 5.0), (100, 100.0), (50, 52.5)])
def test_gateway_reserve(app: float, raw: float) -> None:
    assert gateway_reserve(app) == pytest.approx(raw)
    assert app_reserve(gateway_reserve(app)) == pytest.approx(app)


@pytest.mark.parametrize(
    ("payload", "percent"),
    [
        ({"percentage": 61.75}, 61.75),
        ({"percentage": 50}, 50),
        ({"percentage": True}, None),
        ({"percentage": "50"}, None),
        ({"percentage": NAN}, None),
        ({"percentage": None}, None),
        ({}, None),
        (None, None),
        ([50], None),
        ("50", None),
    ],
)
def test_soe_percent(payload: Any, percent: Any) -> None:
    assert soe_percent(payload) == percent


# --------------------------------------------------------------------------- meter signs


@pytest.mark.parametrize(
    ("watts", "imports", "exports"),
    [(1500, True, False), (-800.5, False, True), (0, False, False), (0.0, False, False)],
)
def test_site_signs(watts: float, imports: bool, exports: bool) -> None:
    assert (importing(watts), exporting(watts)) == (imports, exports)


@pytest.mark.parametrize(
    ("watts", "discharges", "charges"),
    [(2000, True, False), (-1999.5, False, True), (0, False, False)],
)
def test_battery_signs(watts: float, discharges: bool, charges: bool) -> None:
    assert (discharging(watts), charging(watts)) == (discharges, charges)


@pytest.mark.parametrize(
    ("watts", "idle", "expected"),
    [
        (9.0, 10.0, (False, False, False, False)),
        (-9.0, 10.0, (False, False, False, False)),
        (10.5, 10.0, (True, False, True, False)),
        (-10.5, 10.0, (False, True, False, True)),
    ],
)
def test_idle_band(watts: float, idle: float, expected: tuple[bool, ...]) -> None:
    found = (
        importing(watts, idle),
        exporting(watts, idle),
        discharging(watts, idle),
        charging(watts, idle),
    )
    assert found == expected


def _meter(watts: Any) -> dict[str, Any]:
    return {"instant_power": watts, "energy_imported": 1.0}


def test_flow_from_aggregates_with_the_gateway_signs() -> None:
    aggregates = {
        "site": _meter(-1534.75),
        "battery": _meter(765),
        "load": _meter(2021),
        "solar": _meter(2790.5),
        "busway": _meter(1),
    }
    flow = Flow.from_aggregates(aggregates)
    assert flow == Flow(site=-1534.75, battery=765, solar=2790.5, load=2021)
    assert (flow.grid_import, flow.grid_export) == (0, 1534.75)
    assert (flow.battery_discharge, flow.battery_charge) == (765, 0)
    assert flow.solar_production == 2790.5
    assert type(flow.battery) is int  # kept as sent


def test_flow_the_other_way_round() -> None:
    flow = Flow.from_aggregates(
        {"site": _meter(2500), "battery": _meter(-500.25), "solar": _meter(-17.0)}
    )
    assert (flow.grid_import, flow.grid_export) == (2500, 0)
    assert (flow.battery_discharge, flow.battery_charge) == (0, 500.25)
    assert flow.solar_production == 0  # the inverter's own draw at night
    assert flow.load is None


@pytest.mark.parametrize(
    "aggregates",
    [
        None,
        [],
        "site",
        {},
        {"site": None, "battery": 5, "load": [], "solar": "x"},
        {
            "site": _meter(True),
            "battery": _meter(NAN),
            "load": _meter("5"),
            "solar": _meter(None),
        },
        {m: {} for m in ("site", "battery", "load", "solar")},
    ],
)
def test_flow_without_numbers(aggregates: Any) -> None:
    flow = Flow.from_aggregates(aggregates)
    assert flow == Flow()
    assert (flow.grid_import, flow.grid_export, flow.battery_charge) == (None, None, None)


def test_flow_directions_are_never_negative_zero() -> None:
    flow = Flow(site=0.0, battery=-0.0)
    assert not math.copysign(1.0, flow.grid_export or 0.0) < 0
    assert not math.copysign(1.0, flow.battery_discharge or 0.0) < 0


@pytest.mark.parametrize(
    ("aggregates", "meter", "watts"),
    [
        ({"site": _meter(12)}, "site", 12),
        ({"site": _meter(12)}, "load", None),
        ({"site": {"instant_power": INF}}, "site", None),
        ({"site": 12}, "site", None),
        (None, "site", None),
    ],
)
def test_meter_power(aggregates: Any, meter: str, watts: Any) -> None:
    assert meter_power(aggregates, meter) == watts


# --------------------------------------------------------------------------- firmware


@pytest.mark.parametrize(
    ("text", "release", "numbers", "git_hash"),
    [
        ("23.44.0 eb113390", "23.44.0", (23, 44, 0), "eb113390"),
        ("23.12.10 8f14e45f", "23.12.10", (23, 12, 10), "8f14e45f"),
        ("1.50.1", "1.50.1", (1, 50, 1), None),
        ("  24.4\teb113390  ", "24.4", (24, 4), "eb113390"),
        ("21.44", "21.44", (21, 44), None),
        ("v23.44.0-beta2 x", "v23.44.0-beta2", (23, 44, 0, 2), "x"),
        ("garbage", "garbage", (), None),
        ("", "", (), None),
        ("   ", "   ", (), None),  # blank: kept as it came
    ],
)
def test_parse_firmware(
    text: str, release: str, numbers: tuple[int, ...], git_hash: str | None
) -> None:
    assert parse_firmware(text) == FirmwareVersion(text, release, numbers, git_hash)


@pytest.mark.parametrize(
    ("numbers", "minimum", "at_least"),
    [
        ((23, 44, 0), (23, 44), True),  # 23.44 == 23.44.0
        ((23, 44), (23, 44, 0), True),
        ((23, 44), (23, 44, 1), False),
        ((23, 12, 10), (23, 44), False),
        ((24, 4), (23, 44), True),
        ((23,), (23, 44), False),
        ((), (23, 44), False),
        ((1, 50, 1), (1, 50, 1), True),
    ],
)
def test_version_at_least(
    numbers: tuple[int, ...], minimum: tuple[int, ...], at_least: bool
) -> None:
    assert version_at_least(numbers, minimum) is at_least
    assert FirmwareVersion("", "", numbers, None).at_least(*minimum) is at_least


@pytest.mark.parametrize(
    ("text", "supported"),
    [
        ("23.12.10 8f14e45f", True),
        ("23.43.99 8f14e45f", True),
        ("23.44.0 eb113390", False),
        ("23.44", False),
        ("24.4.0 1a2b3c4d", False),
        ("1.50.1", True),
        ("22", True),
        ("garbage", True),  # unknown: asking once costs a 404, which is then remembered
        ("", True),
    ],
)
def test_vitals_supported(text: str, supported: bool) -> None:
    assert VITALS_REMOVED_IN == (23, 44)
    assert vitals_supported(text) is supported


@pytest.mark.parametrize(
    ("text", "vint"),
    [
        ("23.44.0 eb113390", 234400),
        ("23.12.10 8f14e45f", 231210),
        ("1.50.1", 15001),
        ("21.44", 214400),
        ("24", 240000),
        ("1.2.3.4", 1020304),  # a fourth part weighs 10**6
        ("23..1", 230001),  # an empty part is 0 (pyPowerwall raises)
        ("v23.44-beta", 234400),  # letters are dropped before splitting
        ("garbage", 0),
        ("", 0),
        (" 23.44.0", 0),  # pyPowerwall splits at the first space, even a leading one
        ("23.4\u00b2", 230400),  # a superscript is no digit to int() (pyPowerwall raises)
        (None, None),
        (234400, None),
    ],
)
def test_pypowerwall_vint(text: Any, vint: int | None) -> None:
    assert pypowerwall_vint(text) == vint
