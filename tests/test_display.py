"""The display state and its text: pure, table-driven, with an injected clock.

Messages are made by the poller's own functions (``shared.messages``), so the display is
tested against exactly what goes on the bus, including a bare Tesla-API ``MeterStream``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from powerwall_bus.consumers.console.output import Printer, battery_line, json_record
from powerwall_bus.consumers.display.format import freshness_line, power, power_line
from powerwall_bus.consumers.display.state import DisplayState, Freshness, Power, View
from powerwall_bus.shared.acceptance import Policy
from powerwall_bus.shared.gateway.payloads import app_soe
from powerwall_bus.shared.messages import (
    OutgoingMessage,
    Reading,
    RunSequence,
    meter_stream_message,
    poller_status_message,
    reading_message,
)

DIN = "1232100-00-E--TG121832953V3E"
OTHER = "1232100-00-E--TG000000OTHER"
USER = "poller"
NOW = 1_795_269_838.0


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _aggregates(site: float, battery: float, solar: float, load: float) -> dict[str, Any]:
    return {
        meter: {"instant_power": watts, "energy_exported": 0, "energy_imported": 0}
        for meter, watts in (("site", site), ("battery", battery), ("solar", solar), ("load", load))
    }


def _state(clock: Clock, follow: str = "", anonymous: bool = False) -> DisplayState:
    policy = Policy(USER, 1_000_000, 300.0, 86400.0, anonymous_meter_stream=anonymous)
    return DisplayState(
        policy, follow=follow, stale_after=10.0, clock=clock, wall_clock=lambda: NOW
    )


def _send(state: DisplayState, message: OutgoingMessage, user: str | None = USER) -> bool:
    return state.deliver(message.type, message.body, user_id=user, headers=message.headers)


def _reading(
    path: str, payload: Any, din: str = DIN, seq: RunSequence | None = None
) -> OutgoingMessage:
    return reading_message(Reading(path, NOW, din, payload), sequence=seq or RunSequence("r1"))


def _meters(site: float = 23, battery: float = 740, solar: float = 2, load: float = 765, **kw: Any):
    return _reading("/api/meters/aggregates", _aggregates(site, battery, solar, load), **kw)


def _soe(raw: float, **kw: Any) -> OutgoingMessage:
    return _reading("/api/system_status/soe", {"percentage": raw}, **kw)


# --------------------------------------------------------------------------- format


@pytest.mark.parametrize(
    ("watts", "text"),
    [
        (None, "--"),
        (0, "0 W"),
        (2, "2 W"),
        (740.4, "740 W"),
        (999, "999 W"),
        (999.4, "999 W"),
        (999.6, "1.00 kW"),  # rounds to 1000 W: never "1000 W"
        (1000, "1.00 kW"),
        (1234, "1.23 kW"),
        (1235.1, "1.24 kW"),
        (12_500, "12.50 kW"),
        (-35, "-35 W"),
        (-1500, "-1.50 kW"),
    ],
)
def test_power_w_below_1_kw_and_kw_with_two_decimals_above(watts: float | None, text: str) -> None:
    assert power(watts) == text


@pytest.mark.parametrize(
    ("flow", "line"),
    [
        (Power(1500, 1500, "importing"), "grid       1.50 kW importing"),
        (Power(-23, 23, "exporting"), "grid          23 W exporting"),
        (Power(), "grid            --"),
    ],
)
def test_power_line_has_the_size_and_the_direction(flow: Power, line: str) -> None:
    assert power_line("grid", flow) == line


# --------------------------------------------------------------------------- the view


@pytest.mark.parametrize(
    ("site", "battery", "grid_word", "battery_word", "grid_size", "battery_size"),
    [
        (23, 740, "importing", "discharging", 23, 740),
        (-2500, -1200, "exporting", "charging", 2500, 1200),
        (0, 0, "", "idle", 0, 0),
    ],
)
def test_flows_carry_their_direction(
    site: float,
    battery: float,
    grid_word: str,
    battery_word: str,
    grid_size: float,
    battery_size: float,
) -> None:
    state = _state(Clock())
    assert _send(state, _meters(site=site, battery=battery))
    view = state.view()
    assert (view.grid.watts, view.grid.size, view.grid.direction) == (site, grid_size, grid_word)
    assert (view.battery.size, view.battery.direction) == (battery_size, battery_word)
    assert view.home.watts == 765
    assert view.solar.watts == 2


@pytest.mark.parametrize(
    ("raw", "shown"),
    [(5.0, 0.0), (52.5, 50.0), (100.0, 100.0), (3.0, 0.0), (51.3918265139912, None)],
)
def test_state_of_energy_is_the_apps(raw: float, shown: float | None) -> None:
    state = _state(Clock())
    _send(state, _soe(raw))
    expected = app_soe(raw) if shown is None else shown
    assert state.view().soe == pytest.approx(expected)


def test_stale_after_n_seconds_by_the_injected_clock() -> None:
    clock = Clock()
    state = _state(clock)
    assert state.view().freshness is Freshness.WAITING
    _send(state, _meters())
    state.bus_connected = True
    assert state.view().freshness is Freshness.LIVE
    clock.now += 10.0
    assert state.view().freshness is Freshness.LIVE
    clock.now += 0.5
    view = state.view()
    assert view.freshness is Freshness.STALE
    assert freshness_line(view) == "STALE: no reading for 10 s"
    state.bus_connected = False
    assert freshness_line(state.view()) == "STALE: no reading for 10 s (broker away)"
    seq = RunSequence("r2")
    _send(state, _meters(seq=seq))
    assert state.view().freshness is Freshness.LIVE


@pytest.mark.parametrize(
    ("gateway_state", "words"),
    [
        ("unreachable", "the gateway is unreachable"),
        ("cooldown", "the gateway is rate-limiting us (429); waiting"),
        ("login_refused", "the gateway refuses the login (wrong password?)"),
        ("stopped", "the poller has stopped"),
        ("ok", None),
        ("starting", None),
        ("something_new", None),
    ],
)
def test_gateway_trouble_is_said_instead_of_stale(gateway_state: str, words: str | None) -> None:
    state = _state(Clock())
    seq = RunSequence("r1")
    _send(state, _meters(seq=seq))
    _send(state, poller_status_message(NOW, DIN, {"gateway_state": gateway_state}, sequence=seq))
    view = state.view()
    if words is None:
        assert view.freshness is Freshness.LIVE
    else:
        assert view.freshness is Freshness.TROUBLE
        assert freshness_line(view) == f"gateway trouble: {words}"


def test_a_meter_stream_alone_is_enough() -> None:
    """A bare Tesla-API publisher: no properties at all, taken when allowed."""
    stream = meter_stream_message(NOW, 52.5, _aggregates(-100, -2000, 3000, 900), "")
    state = _state(Clock(), anonymous=True)
    assert state.deliver("MeterStream", stream.body, user_id=None, headers=None)
    view = state.view()
    assert (view.soe, view.grid.direction, view.battery.direction) == (
        50.0,
        "exporting",
        "charging",
    )
    assert view.solar.watts == 3000
    assert view.reading_time == NOW
    refusing = _state(Clock(), anonymous=False)
    assert not refusing.deliver("MeterStream", stream.body, user_id=None, headers=None)


@pytest.mark.parametrize(
    ("follow", "shown_site"),
    [("", 23), (DIN, 23), (OTHER, 999)],
)
def test_follows_the_chosen_gateway(follow: str, shown_site: float) -> None:
    state = _state(Clock(), follow=follow)
    _send(state, _meters(site=23))
    _send(state, _meters(site=999, din=OTHER, seq=RunSequence("r9")))
    assert state.view().grid.watts == shown_site


def test_refused_and_older_messages_change_nothing() -> None:
    state = _state(Clock())
    seq = RunSequence("r1")
    older = _meters(site=1, seq=seq)
    newer = _meters(site=2, seq=seq)
    assert _send(state, newer)
    assert not _send(state, older)  # a resync copy of an older reading
    assert not _send(state, _meters(site=3), user="intruder")  # forged
    assert state.view().grid.watts == 2


# --------------------------------------------------------------------------- console output


def _view(state: DisplayState) -> View:
    return state.view()


def test_console_prints_the_snapshot_once_then_battery_lines_then_stale() -> None:
    clock = Clock()
    state = _state(clock)
    seq = RunSequence("r1")
    printer = Printer()
    assert printer.tick(state.view()) == ["waiting for data from the bus"]
    _send(state, _meters(battery=-1200, seq=seq))
    assert printer.tick(state.view()) == []  # no battery level yet: no snapshot
    _send(state, _soe(52.5, seq=seq))
    _send(state, _reading("/api/operation", {"real_mode": "self_consumption"}, seq=seq))
    snapshot = printer.tick(state.view())
    assert snapshot[1:] == [
        "solar          2 W",
        "home         765 W",
        "battery    1.20 kW charging",
        "grid          23 W importing",
        "level       50.0 %",
        "grid is  --",
        "mode     self_consumption",
    ]
    assert snapshot[0] == f"gateway {DIN}"
    line = printer.tick(state.view())
    assert len(line) == 1
    assert line[0].endswith("battery 50.0 % charging 1.20 kW")
    clock.now += 11
    assert printer.tick(state.view()) == ["STALE: no reading for 11 s (broker away)"]
    assert printer.tick(state.view()) == []  # said once
    _send(state, _meters(seq=seq))
    assert printer.tick(state.view())[0] == "live again"


def test_console_json_is_one_record_per_reading() -> None:
    state = _state(Clock())
    seq = RunSequence("r1")
    printer = Printer(as_json=True)
    _send(state, _meters(site=-300, seq=seq))
    _send(state, _soe(100.0, seq=seq))
    _send(
        state,
        _reading("/api/system_status/grid_status", {"grid_status": "SystemGridConnected"}, seq=seq),
    )
    first = printer.tick(state.view())
    assert len(first) == 1
    record = json.loads(first[0])
    assert record == {
        "time": "2026-11-21T14:03:58.000Z",
        "gateway": DIN,
        "solar": 2,
        "home": 765,
        "battery": 740,
        "grid": -300,
        "soe": 100.0,
        "grid_status": "on-grid",
        "freshness": "live",
    }
    assert record == json_record(state.view())
    assert printer.tick(state.view()) == []  # the same reading is not printed again
    assert battery_line(state.view()).endswith("battery 100.0 % discharging 740 W")
