"""``pwbus gui`` without a window: the pure layout (View -> texts, colours, bar), and the
command's failures (a bad setting: one line and status 2; no display: one line and 1).

Views are made by the shared display state fed with the poller's own messages, as on the bus.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from powerwall_bus.consumers.display.state import DisplayState, Freshness, Power, View
from powerwall_bus.consumers.gui.layout import THEMES, Palette, Screen, screen
from powerwall_bus.shared.acceptance import Policy
from powerwall_bus.shared.messages import (
    OutgoingMessage,
    Reading,
    RunSequence,
    meter_stream_message,
    poller_status_message,
    reading_message,
)
from tests.test_display import DIN, NOW, USER, Clock, _aggregates

UTC = dt.UTC
LIGHT = THEMES["light"]
DARK = THEMES["dark"]


def _state(clock: Clock, *, anonymous: bool = False) -> DisplayState:
    policy = Policy(USER, 1_000_000, 300.0, 86400.0, anonymous_meter_stream=anonymous)
    return DisplayState(policy, stale_after=10.0, clock=clock, wall_clock=lambda: NOW)


def _send(state: DisplayState, message: OutgoingMessage, user: str | None = USER) -> None:
    assert state.deliver(message.type, message.body, user_id=user, headers=message.headers)


_SEQ = RunSequence("gui")


def _reading(path: str, payload: object) -> OutgoingMessage:
    return reading_message(Reading(path, NOW, DIN, payload), sequence=_SEQ)


def _fed(
    clock: Clock, site: float, battery: float, solar: float, load: float, raw_soe: float
) -> DisplayState:
    state = _state(clock)
    _send(state, _reading("/api/meters/aggregates", _aggregates(site, battery, solar, load)))
    _send(state, _reading("/api/system_status/soe", {"percentage": raw_soe}))
    _send(state, _reading("/api/system_status/grid_status", {"grid_status": "SystemGridConnected"}))
    _send(state, _reading("/api/operation", {"real_mode": "self_consumption"}))
    return state


def _at(shown: Screen) -> dict[str, tuple[str, str]]:
    return {tile.key: (tile.value, tile.direction) for tile in shown.tiles}


def _screen(view: View, palette: Palette = LIGHT) -> Screen:
    return screen(view, palette, zone=UTC, now=dt.datetime.fromtimestamp(NOW, UTC))


# --------------------------------------------------------------------------- live


def test_a_live_view_shows_every_flow_with_its_word_the_level_and_the_grid() -> None:
    clock = Clock()
    # Grid exporting 21 W, Powerwall charging 2.35 kW, 3.91 kW of sun, home 1.55 kW.
    shown = _screen(_fed(clock, -21.4, -2350, 3906.17, 1546.27, 53.0).view())
    assert _at(shown) == {
        "solar": ("3.91 kW", "producing"),
        "home": ("1.55 kW", "using"),
        "battery": ("2.35 kW", "charging"),
        "grid": ("21 W", "exporting"),
    }
    assert [tile.title for tile in shown.tiles] == ["Solar", "Home", "Powerwall", "Grid"]
    assert shown.soe == "50.5 %"  # the app's scale: (53 - 5) / 0.95
    assert shown.soe_fraction == pytest.approx((53 - 5) / 0.95 / 100)
    assert shown.grid_status == "on-grid"
    assert shown.gateway == f"gateway {DIN}"
    assert shown.reading == f"reading of {dt.datetime.fromtimestamp(NOW, UTC):%H:%M:%S}"
    assert shown.mode == "mode: self-powered"
    assert shown.grid_colour == LIGHT.battery
    assert shown.banner is None and shown.live
    assert {tile.value_colour for tile in shown.tiles} == {LIGHT.text}
    assert shown.soe_colour == LIGHT.battery


@pytest.mark.parametrize(
    ("site", "battery", "solar", "load", "words"),
    [
        (1200, 300, 0, 1500, ("not producing", "using", "discharging", "importing")),
        (0, 0, 500, 500, ("producing", "using", "idle", "idle")),
        (-4000, 999.6, 5000, 1999.6, ("producing", "using", "discharging", "exporting")),
    ],
)
def test_direction_words(
    site: float, battery: float, solar: float, load: float, words: tuple[str, ...]
) -> None:
    shown = _screen(_fed(Clock(), site, battery, solar, load, 50).view())
    assert tuple(tile.direction for tile in shown.tiles) == words


def test_999_6_w_reads_1_00_kw_as_everywhere_else() -> None:
    shown = _screen(_fed(Clock(), -4000, 999.6, 5000, 1999.6, 50).view())
    assert _at(shown)["battery"] == ("1.00 kW", "discharging")


@pytest.mark.parametrize(
    ("raw", "text", "colour"),
    [(100.0, "100.0 %", "battery"), (23.0, "18.9 %", "low"), (12.0, "7.4 %", "very_low")],
)
def test_the_bar_colour_follows_the_level(raw: float, text: str, colour: str) -> None:
    shown = _screen(_fed(Clock(), 0, 0, 0, 0, raw).view())
    assert shown.soe == text
    assert shown.soe_colour == getattr(LIGHT, colour)


def test_a_reading_of_another_day_shows_its_date() -> None:
    view = _fed(Clock(), 0, 0, 0, 0, 50).view()
    later = dt.datetime.fromtimestamp(NOW + 2 * 86400, UTC)
    shown = screen(view, LIGHT, zone=UTC, now=later)
    assert shown.reading == f"reading of {dt.datetime.fromtimestamp(NOW, UTC):%Y-%m-%d %H:%M:%S}"


# --------------------------------------------------------------------------- not live


def test_waiting_before_anything_is_heard() -> None:
    shown = _screen(_state(Clock()).view())
    assert shown.banner is not None
    assert shown.banner.text == "waiting for data from the bus"
    assert (shown.banner.background, shown.banner.foreground) == LIGHT.waiting
    assert {tile.value for tile in shown.tiles} == {"--"}
    assert shown.soe == "--" and shown.soe_fraction == 0.0
    assert shown.grid_status == "grid --" and shown.reading == "" and shown.gateway == ""


@pytest.mark.parametrize("palette", [LIGHT, DARK])
def test_stale_keeps_the_numbers_greyed_with_the_banner(palette: Palette) -> None:
    clock = Clock()
    state = _fed(clock, 100, 200, 300, 600, 60)
    clock.now += 12
    state.bus_connected = False
    shown = _screen(state.view(), palette)
    assert shown.banner is not None
    assert shown.banner.text == "STALE: no reading for 12 s (broker away)"
    assert (shown.banner.background, shown.banner.foreground) == palette.stale
    assert _at(shown)["home"] == ("600 W", "using")  # the last picture stays
    assert {tile.value_colour for tile in shown.tiles} == {palette.muted}
    assert shown.soe_colour == palette.muted and not shown.live


def test_gateway_trouble_is_said_in_red() -> None:
    state = _fed(Clock(), 100, 200, 300, 600, 60)
    status = poller_status_message(NOW, DIN, {"gateway_state": "cooldown"}, sequence=_SEQ)
    _send(state, status)
    shown = _screen(state.view())
    assert shown.banner is not None
    assert shown.banner.text == "gateway trouble: the gateway is rate-limiting us (429); waiting"
    assert (shown.banner.background, shown.banner.foreground) == LIGHT.trouble


def test_off_grid_stands_out() -> None:
    state = _fed(Clock(), 0, 500, 0, 500, 60)
    islanded = {"grid_status": "SystemIslandedActive"}
    _send(state, _reading("/api/system_status/grid_status", islanded))
    shown = _screen(state.view())
    assert shown.grid_status == "off-grid" and shown.grid_colour == LIGHT.low


def test_a_bare_meter_stream_is_enough() -> None:
    state = _state(Clock(), anonymous=True)
    stream = meter_stream_message(NOW, 52.5, _aggregates(-100, -2000, 3000, 900), "")
    assert state.deliver("MeterStream", stream.body, user_id=None, headers=None)
    shown = _screen(state.view())
    assert _at(shown)["solar"] == ("3.00 kW", "producing")
    assert shown.soe == "50.0 %" and shown.live


def test_several_gateways_and_none_chosen_says_so() -> None:
    view = View(
        solar=Power(),
        home=Power(),
        battery=Power(),
        grid=Power(),
        soe=None,
        grid_status=None,
        mode=None,
        reading_time=None,
        gateway="",
        freshness=Freshness.WAITING,
        age=None,
        trouble=None,
        bus_connected=True,
        problem="several gateways on the bus: choose one with PWBUS_GATEWAY",
    )
    shown = _screen(view)
    assert shown.banner is not None and shown.banner.text.startswith("several gateways")


def test_the_themes_differ_and_keep_text_readable() -> None:
    assert LIGHT.background != DARK.background
    for palette in (LIGHT, DARK):
        assert _contrast(palette.text, palette.surface) >= 7.0
        assert _contrast(palette.muted, palette.surface) >= 3.0
        for background, foreground in (palette.stale, palette.trouble, palette.waiting):
            assert _contrast(foreground, background) >= 4.5


def _contrast(one: str, two: str) -> float:
    """WCAG contrast ratio of two ``#rrggbb`` colours."""

    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(one), luminance(two)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# --------------------------------------------------------------------------- the command


def _gui(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "powerwall_bus", "gui", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (("--font-scale", "9"), "gui.font_scale"),
        (("--font-scale", "big"), "gui.font_scale"),
        (("--theme", "blue"), "gui.theme"),
        (("--stale-after", "0"), "display.stale_after"),
    ],
)
def test_a_bad_setting_is_one_line_and_status_2(args: tuple[str, ...], key: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    done = _gui(*args, env=env)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("pwbus gui: ") and key in done.stderr


def test_a_bad_setting_from_the_environment_too() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    done = _gui(env={**env, "PWBUS_GUI_THEME": "purple"})
    assert done.returncode == 2 and "gui.theme" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("display", [None, ":1999"])
def test_no_display_is_one_line_and_status_1(display: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    if display:
        env["DISPLAY"] = display
    # The broker is never touched: the window opens first.
    env["AMQP_URL"] = "amqp://guest:guest@127.0.0.1:1/%2F"
    done = _gui(env=env)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("pwbus gui: cannot open a window: ")
    assert "Traceback" not in done.stderr and "TclError" not in done.stderr
