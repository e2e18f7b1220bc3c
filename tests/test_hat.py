"""The LED display's pure parts, pixel by pixel: colours at the ends of their scales, the
chart's proportions, order and fill direction (and its rescale), text and its scrolling,
rotation, the stale screen's words, the sequencer, night brightness, the devices."""

from __future__ import annotations

import datetime
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from powerwall_bus.consumers.display.state import DisplayState, Freshness, Power, View
from powerwall_bus.consumers.hat.devices import FakeDevice, PngDevice, UnicornDevice
from powerwall_bus.consumers.hat.font import GLYPHS, HEIGHT, text_columns, text_width
from powerwall_bus.consumers.hat.frame import (
    Frame,
    hue_colour,
    production_colour,
    soe_colour,
)
from powerwall_bus.consumers.hat.icons import FRAME_SECONDS, ICONS, icon_frames
from powerwall_bus.consumers.hat.main import play
from powerwall_bus.consumers.hat.render import (
    GREEN,
    LIGHT_GREEN,
    LOAD_RED,
    SITE_BLUE,
    STALE_MARK,
    TROUBLE_WORDS,
    bar_chart,
    bar_ranges,
    production_screen,
    reason,
    scroll_offsets,
    scrolling_text,
    soe_screen,
    soe_text,
    stale_chart_screen,
    text_frame,
)
from powerwall_bus.consumers.hat.sequence import Sequencer, brightness_at, is_night
from powerwall_bus.shared.acceptance import Policy
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.gateway.states import TROUBLE
from powerwall_bus.shared.messages import meter_stream_message
from powerwall_bus.shared.settings import HatSettings, Sources, load
from tests.support.waiting import wait_until

RED = (255, 0, 0)
#: 1 W per chart pixel: a 256 W array rated 200 W.
SMALL = HatSettings(panels=1, panel_max_watts=256.0, panel_watts=200.0)
PALETTE = {"B": SITE_BLUE, "R": LOAD_RED, "G": GREEN, "L": LIGHT_GREEN, "#": RED}


def drawn(*rows: str) -> Frame:
    """A frame drawn by hand: 16 rows of 16 characters from PALETTE (``.`` dark)."""
    return Frame.from_rows(rows, PALETTE)


def view(**changes: Any) -> View:
    fields: dict[str, Any] = {
        "solar": Power(100.0, 100.0),
        "home": Power(40.0, 40.0),
        "battery": Power(0.0, 0.0, "idle"),
        "grid": Power(20.0, 20.0, "importing"),
        "soe": 50.0,
        "grid_status": "on-grid",
        "mode": None,
        "reading_time": 1_795_269_838.0,
        "gateway": "g",
        "freshness": Freshness.LIVE,
        "age": 1.0,
        "trouble": None,
        "bus_connected": True,
    }
    fields.update(changes)
    return View(**fields)


# --------------------------------------------------------------------------- colours


def test_colours_at_the_ends_of_their_scales() -> None:
    assert production_colour(0, 8064) == (255, 0, 0)  # 0 W: red
    assert production_colour(8064, 8064) == (255, 0, 128)  # full: hue 330
    assert production_colour(20000, 8064) == (255, 0, 128)  # beyond it: still the top
    assert production_colour(4032, 8064) == hue_colour(165)
    assert soe_colour(0) == (255, 0, 0)
    assert soe_colour(50) == (255, 255, 0)
    assert soe_colour(100) == (0, 255, 0)
    assert soe_colour(-3) == (255, 0, 0) and soe_colour(140) == (0, 255, 0)


# --------------------------------------------------------------------------- the chart


def test_chart_proportions_order_and_fill_direction() -> None:
    """1 W a pixel: import 20 (blue, smallest, first), load 40 (red, from 20), production
    100 (green, from 40); column by column from the left, each from the top."""
    assert bar_ranges(40, 20, 100, SMALL) == [(20, SITE_BLUE), (40, LOAD_RED), (100, GREEN)]
    assert bar_chart(40, 20, 100, SMALL) == drawn(
        *["BBRGGGG........."] * 4,
        *["BRRGGG.........."] * 4,
        *["BRGGGG.........."] * 8,
    )


def test_export_is_not_drawn_and_production_above_the_rating_is_light_green() -> None:
    assert bar_ranges(40, -500, 230, SMALL) == [(40, LOAD_RED), (200, GREEN), (230, LIGHT_GREEN)]
    chart = bar_chart(40, -500, 230, SMALL)
    assert chart.pixel(12, 7) == GREEN  # pixel 199
    assert chart.pixel(12, 8) == LIGHT_GREEN  # pixel 200
    assert chart.pixel(14, 5) == LIGHT_GREEN and chart.pixel(14, 6) == (0, 0, 0)  # 229 | 230


def test_production_above_the_panels_rescales_instead_of_failing() -> None:
    """512 W on a 256 W array: the scale becomes 512 W (2 W a pixel)."""
    assert bar_ranges(64, 0, 512, SMALL) == [(32, LOAD_RED), (100, GREEN), (256, LIGHT_GREEN)]
    chart = bar_chart(64, 0, 512, SMALL)
    assert chart.pixel(15, 15) == LIGHT_GREEN  # full
    assert chart.pixel(1, 15) == LOAD_RED and chart.pixel(2, 0) == GREEN
    # A home load above everything fills the chart red.
    assert bar_chart(1024, 0, 0, SMALL) == Frame.blank(LOAD_RED)


# --------------------------------------------------------------------------- text


def test_font_glyphs_are_seven_rows_and_unknown_characters_are_a_question_mark() -> None:
    assert all(len(rows) == HEIGHT for rows in GLYPHS.values())
    assert set("0123456789%.kWs ") <= set(GLYPHS) | set("W")
    assert text_columns("@") == text_columns("?")
    assert text_columns("a") == text_columns("A")  # capitals stand in
    # "1" is 3 wide, "." 1: 3 + gap + 1 = 5 columns, doubled.
    assert text_width("1.") == 10 and len(text_columns("1.")[0]) == 14


def test_text_that_fits_is_centred_pixel_by_pixel() -> None:
    (step,) = scrolling_text("1", RED, delay=0.04, hold=5.0)
    assert step.seconds == 5.0
    assert step.frame == drawn(
        "................",
        ".......##.......",
        ".......##.......",
        ".....####.......",
        ".....####.......",
        *[".......##......."] * 8,
        ".....######.....",
        ".....######.....",
        "................",
    )


def test_text_scrolls_left_then_right_then_left_again() -> None:
    assert scroll_offsets(20, delay=1.0, hold=5.0) == [0, 1, 2, 3, 4, 3, 2, 1, 0]
    assert scroll_offsets(20, delay=1.0, hold=12.0) == [0, 1, 2, 3, 4, 3, 2, 1] * 2 + [0]
    steps = scrolling_text("100%", RED, delay=0.04, hold=1.0)
    columns = text_columns("100%")
    offsets = scroll_offsets(len(columns), 0.04, 1.0)
    assert [s.frame for s in steps] == [text_frame(columns, o, RED) for o in offsets]
    assert sum(s.seconds for s in steps) >= 1.0
    assert max(offsets) == len(columns) - 16
    # Offset 2: the frame's column x is the text's column x + 2.
    frame = text_frame(columns, 2, RED)
    for x in range(16):
        for y in range(1, 15):
            assert (frame.pixel(x, y) == RED) == columns[x + 2][y - 1]


@pytest.mark.parametrize(
    ("percent", "text"),
    [(25.0, "25%"), (25.37, "25.37%"), (25.3, "25.3%"), (-1.0, "0%"), (99.999, "100%")],
)
def test_soe_text_as_the_app(percent: float, text: str) -> None:
    assert soe_text(percent) == text


def test_production_and_soe_screens_are_coloured_by_value() -> None:
    hat = HatSettings()
    production = production_screen(view(solar=Power(8064.0, 8064.0)), hat)
    lit = {p for s in production for p in s.frame.pixels if p != (0, 0, 0)}
    assert lit == {(255, 0, 128)}
    assert production_screen(view(solar=Power(0.4, 0.4)), hat) == []  # night: no screen
    full = soe_screen(view(soe=100.0), hat)
    assert {p for s in full for p in s.frame.pixels if p != (0, 0, 0)} == {(0, 255, 0)}
    assert full[0].frame == text_frame(text_columns("100%"), 0, (0, 255, 0))
    assert soe_screen(view(soe=None), hat) == []


# --------------------------------------------------------------------------- rotation


@pytest.mark.parametrize(("degrees", "where"), [(0, (1, 0)), (90, (15, 1)), (180, (14, 15))])
def test_rotation_turns_clockwise(degrees: int, where: tuple[int, int]) -> None:
    frame = Frame.blank().with_pixels([(1, 0, RED)])
    turned = frame.rotated(degrees)
    assert [(x, y) for y in range(16) for x in range(16) if turned.pixel(x, y) == RED] == [where]
    assert frame.rotated(270).pixel(0, 14) == RED
    assert frame.rotated(90).rotated(270) == frame


# --------------------------------------------------------------------------- not live


@pytest.mark.parametrize(
    ("state", "words"),
    [
        ("unreachable", "NO GATEWAY"),
        ("cooldown", "429 WAIT"),
        ("site_controller_stopped", "GW STOPPED"),
        ("login_refused", "LOGIN REFUSED"),
        ("session_refused", "SESSION REFUSED"),
        ("login_capped", "LOGIN CAP"),
        ("stopped", "POLLER STOPPED"),
    ],
)
def test_every_gateway_trouble_has_its_own_words(state: str, words: str) -> None:
    trouble = view(freshness=Freshness.TROUBLE, trouble=TROUBLE[state])
    assert reason(trouble) == ("trouble", words)


def test_every_trouble_state_of_the_poller_has_short_words() -> None:
    assert set(TROUBLE_WORDS) == set(TROUBLE)
    unknown = view(freshness=Freshness.TROUBLE, trouble="something new")
    assert reason(unknown) == ("trouble", "GATEWAY")


def test_stale_waiting_and_broker_reasons() -> None:
    assert reason(view(freshness=Freshness.STALE, age=25.4)) == ("stale", "STALE 25s")
    assert reason(view(freshness=Freshness.STALE, bus_connected=False)) == ("broker", "BROKER")
    assert reason(view(freshness=Freshness.WAITING, reading_time=None)) == ("waiting", "WAITING")
    assert reason(view(freshness=Freshness.WAITING, problem="several")) == (
        "problem",
        "SET GATEWAY",
    )


def test_the_last_chart_is_dimmed_and_marked() -> None:
    stale = view(freshness=Freshness.STALE)
    (step,) = stale_chart_screen(stale, SMALL)
    chart = bar_chart(40, 20, 100, SMALL)
    assert step.frame.pixel(0, 0) == (0, 0, 64)  # blue at a quarter
    assert step.frame.pixel(3, 0) == (0, 64, 0)
    assert step.frame.pixel(15, 0) == STALE_MARK and step.frame.pixel(14, 1) == STALE_MARK
    assert step.frame.pixel(2, 8) == tuple(round(c * 0.25) for c in chart.pixel(2, 8))
    assert stale_chart_screen(view(reading_time=None, freshness=Freshness.WAITING), SMALL) == []


# --------------------------------------------------------------------------- sequencer

FAST = HatSettings(hold=1.0, scroll_delay=0.05)


def _screens(sequencer: Sequencer, shown: View, start: float, end: float, icon: str | None):
    """The screen names in order as time passes in 10 ms steps."""
    names: list[str] = []
    now = start
    while now < end:
        sequencer.frame(shown, now, icon)
        if not names or names[-1] != sequencer.screen:
            names.append(sequencer.screen)
        now += 0.01
    return names


def test_the_live_cycle_and_its_frames_in_time() -> None:
    live = view(solar=Power(3910.0, 3910.0), soe=76.0)
    sequencer = Sequencer(FAST)
    production = production_screen(live, FAST)
    assert sequencer.frame(live, 100.0) == production[0].frame
    assert sequencer.frame(live, 100.0 + 0.05 * 3 + 0.01) == production[3].frame
    length = sum(step.seconds for step in production)
    chart = bar_chart(40, 20, 3910, FAST)
    assert sequencer.frame(live, 100.0 + length + 0.01) == chart
    assert sequencer.screen == "chart"
    names = _screens(Sequencer(FAST), live, 0.0, 20.0, None)
    assert names[:5] == ["production", "chart", "soe", "production", "chart"]
    # With a weather icon, the cycle starts with it; at night there is no production.
    night = view(solar=Power(0.0, 0.0))
    assert _screens(Sequencer(FAST), night, 0.0, 12.0, "rain")[:4] == [
        "icon",
        "chart",
        "soe",
        "icon",
    ]


def test_going_stale_switches_at_once_and_back_to_live_too() -> None:
    sequencer = Sequencer(FAST)
    live = view()
    sequencer.frame(live, 0.0)
    stale = view(freshness=Freshness.STALE, age=12.0)
    first = sequencer.frame(stale, 0.5)
    assert sequencer.screen == "reason"
    assert first == scrolling_text("STALE 12s", (255, 140, 0), 0.05, 1.0)[0].frame
    # The age grows without restarting the screen; the broker going away does restart it.
    sequencer.frame(view(freshness=Freshness.STALE, age=13.0), 0.6)
    assert sequencer.screen == "reason"
    assert _screens(sequencer, stale, 0.6, 30.0, None)[:3] == ["reason", "last", "reason"]
    away = sequencer.frame(view(freshness=Freshness.STALE, bus_connected=False), 30.0)
    assert away == scrolling_text("BROKER", (255, 0, 0), 0.05, 1.0)[0].frame
    sequencer.frame(live, 31.0)
    assert sequencer.screen == "production"
    assert sequencer.next_change(31.0) == pytest.approx(0.05)


def test_a_paused_shell_does_not_race_through_missed_screens() -> None:
    sequencer = Sequencer(FAST)
    live = view()
    sequencer.frame(live, 0.0)
    sequencer.frame(live, 500.0)  # much later: the next screen starts now
    assert sequencer.next_change(500.0) > 0


# --------------------------------------------------------------------------- brightness


@pytest.mark.parametrize(
    ("start", "end", "at", "night"),
    [
        ("22:00", "07:00", "23:00", True),
        ("22:00", "07:00", "06:59", True),
        ("22:00", "07:00", "07:00", False),
        ("22:00", "07:00", "12:00", False),
        ("22:00", "07:00", "22:00", True),
        ("1:00", "05:30", "03:00", True),
        ("01:00", "05:30", "05:30", False),
        ("06:00", "06:00", "06:00", False),
    ],
)
def test_night_brightness_between_two_local_times(
    start: str, end: str, at: str, night: bool
) -> None:
    hat = HatSettings(night_start=start, night_end=end, brightness=0.6, night_brightness=0.05)
    local = datetime.time.fromisoformat(at)
    assert is_night(hat, local) is night
    assert brightness_at(hat, local) == (0.05 if night else 0.6)


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"PWBUS_HAT_ROTATION": "45"}, "hat.rotation"),
        ({"PWBUS_HAT_NIGHT_START": "25:00"}, "hat.night_start"),
        ({"PWBUS_HAT_NIGHT_END": "7"}, "hat.night_end"),
        ({"PWBUS_HAT_BRIGHTNESS": "1.5"}, "hat.brightness"),
        ({"PWBUS_HAT_WEATHER": "yes"}, "hat.weather"),  # no location
        ({"PWBUS_HAT_WEATHER_URL": "ftp://x"}, "hat.weather_url"),
        ({"PWBUS_HAT_LOCATION": "91,0"}, "hat.location"),
        ({"PWBUS_HAT_LOCATION": "51.5"}, "hat.location"),
        ({"PWBUS_HAT_LOCATION": "north,west"}, "hat.location"),
        ({"PWBUS_HAT_LOCATION": "0,-181"}, "hat.location"),
    ],
)
def test_bad_hat_settings_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(HatSettings, "hat", Sources.gather(env=env))
    assert caught.value.key == key


def test_hat_settings_defaults_as_tesla_api() -> None:
    hat = load(HatSettings, "hat", Sources.gather(env={"PWBUS_HAT_ROTATION": "270"}))
    assert (hat.capacity, hat.rated, hat.rotation) == (21 * 384.0, 21 * 380.0, 270)
    assert (hat.scroll_delay, hat.weather, hat.weather_url) == (
        0.04,
        False,
        "https://api.open-meteo.com",
    )


# --------------------------------------------------------------------------- icons, devices


def test_every_icon_is_drawn_and_animated_where_it_moves() -> None:
    names = {
        "clear-day",
        "clear-night",
        "partly-cloudy-day",
        "partly-cloudy-night",
        "cloudy",
        "fog",
        "rain",
        "snow",
        "wind",
        "error",
    }
    assert set(ICONS) == names
    for name in names - {"cloudy"}:
        frames = icon_frames(name)
        assert len(set(frames)) == len(frames) > 1, name
    assert icon_frames("tornado") == icon_frames("error")
    assert FRAME_SECONDS == 0.1
    # Rain falls: a drop under the cloud moves down one LED a frame.
    first, second = icon_frames("rain")[:2]
    assert first.pixel(2, 10) == second.pixel(2, 11) == (0, 90, 255)


class FakeModule:
    """The calls of the Pimoroni library and the emulator."""

    def __init__(self) -> None:
        self.pixels: dict[tuple[int, int], tuple[int, int, int]] = {}
        self.calls: list[Any] = []

    def rotation(self, degrees: int) -> None:
        self.calls.append(("rotation", degrees))

    def brightness(self, value: float) -> None:
        self.calls.append(("brightness", value))

    def set_pixel(self, x: int, y: int, r: int, g: int, b: int) -> None:
        self.pixels[(x, y)] = (r, g, b)

    def show(self) -> None:
        self.calls.append("show")

    def off(self) -> None:
        self.calls.append("off")


def test_unicorn_device_mirrors_x_and_dims_in_hardware_or_in_colours() -> None:
    frame = Frame.blank().with_pixels([(0, 3, (200, 100, 50))])
    hardware = FakeModule()
    device = UnicornDevice(hardware, dim_colours=False)
    device.show(frame, 0.5)
    device.show(frame, 0.5)
    assert hardware.pixels[(15, 3)] == (200, 100, 50)
    assert hardware.calls == [("rotation", 0), ("brightness", 0.5), "show", "show"]
    emulator = FakeModule()
    UnicornDevice(emulator, dim_colours=True).show(frame, 0.5)
    assert emulator.pixels[(15, 3)] == (100, 50, 25)
    assert ("brightness", 0.5) not in emulator.calls


def test_a_start_says_waiting_while_connecting_then_names_the_broker() -> None:
    hat = HatSettings(hold=1.0, scroll_delay=0.01)
    state = DisplayState(Policy("poller", 1_000_000, 300.0, 86400.0), stale_after=10.0)
    device = FakeDevice()
    stop = threading.Event()
    worker = threading.Thread(target=play, args=(hat, state, device, stop), kwargs={"grace": 0.3})
    worker.start()
    broker = scrolling_text("BROKER", (255, 0, 0), 0.01, 1.0)[0].frame
    try:
        assert wait_until(lambda: any(frame == broker for frame, _ in device.shown), 10)
    finally:
        stop.set()
        worker.join(10)
    assert device.shown[0][0] == scrolling_text("WAITING", (0, 90, 255), 0.01, 1.0)[0].frame


def test_png_device_writes_each_distinct_frame_once(tmp_path: Path) -> None:
    from PIL import Image

    device = PngDevice(tmp_path)
    red, blue = Frame.blank(RED), Frame.blank((0, 0, 255))
    for frame in (red, blue, red, blue):
        device.show(frame, 0.5)
    device.off()
    assert sorted(p.name for p in tmp_path.glob("frame-*.png")) == [
        "frame-00001-x16.png",
        "frame-00001.png",
        "frame-00002-x16.png",
        "frame-00002.png",
        "frame-00003-x16.png",
        "frame-00003.png",
    ]
    with Image.open(tmp_path / "frame-00002.png") as image:
        assert image.size == (16, 16) and image.getpixel((5, 9)) == (0, 0, 255)
    with Image.open(tmp_path / "frame-00001-x16.png") as big:
        assert big.size == (256, 256) and big.getpixel((8, 8)) == RED
        assert big.getpixel((0, 0)) == (0, 0, 0)  # between the LEDs
    names = [line.split()[1] for line in (tmp_path / "shown.log").read_text().splitlines()]
    assert names == ["frame-00001", "frame-00002", "frame-00001", "frame-00002", "frame-00003"]
    with Image.open(tmp_path / "frame-00003.png") as off:
        assert set(off.tobytes()) == {0}  # off: the LEDs cleared


def test_the_shell_sends_each_change_once_turned_and_at_the_hours_brightness() -> None:
    """The main loop on a FakeDevice, fed a bare Tesla-API MeterStream: the chart arrives
    turned 90 degrees, a frame goes out only when it differs from the one shown, and the
    brightness is the day's or the night's by the local clock."""
    hat = HatSettings(hold=0.2, scroll_delay=0.01, rotation=90, brightness=0.7)
    policy = Policy("poller", 1_000_000, 300.0, 86400.0, anonymous_meter_stream=True)
    state = DisplayState(policy, stale_after=10.0)
    aggregates = {
        "site": {"instant_power": 30.0},
        "load": {"instant_power": 60.0},
        "solar": {"instant_power": 120.0},
        "battery": {"instant_power": 0.0},
    }
    stream = meter_stream_message(time.time(), 55.0, aggregates, "")
    assert state.deliver("MeterStream", stream.body, user_id=None, headers=None)
    state.bus_connected = True
    device = FakeDevice()
    stop = threading.Event()
    worker = threading.Thread(target=play, args=(hat, state, device, stop))
    worker.start()
    try:
        chart = bar_chart(60, 30, 120, hat).rotated(90)
        assert wait_until(lambda: any(frame == chart for frame, _ in device.shown), 10)
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()
    pairs = list(zip(device.shown, device.shown[1:], strict=False))
    assert all(before != after for before, after in pairs)
    expected = brightness_at(hat, datetime.datetime.now().time())
    assert {brightness for _, brightness in device.shown} == {expected}
    assert device.offs == 0  # off is the caller's, in its finally


def test_the_montage_has_every_kind_of_frame(tmp_path: Path) -> None:
    from PIL import Image

    from powerwall_bus.consumers.hat.montage import example_frames, main

    captions = [caption for caption, _ in example_frames()]
    assert any("STALE" in c for c in captions) and any("rescaled" in c for c in captions)
    assert main([str(tmp_path / "m.png")]) == 0
    with Image.open(tmp_path / "m.png") as image:
        assert image.size[0] > 600
        colours = {colour for _, colour in image.convert("RGB").getcolors(1 << 20) or []}
    # The whole production text is drawn in its colour, the stale corner in red.
    assert production_colour(3910.0, HatSettings().capacity) in colours
    assert STALE_MARK in colours and soe_colour(39.37) in colours


def test_the_weather_location_is_latitude_then_longitude() -> None:
    hat = load(HatSettings, "hat", Sources.gather(env={"PWBUS_HAT_LOCATION": "-33.87,151.21"}))
    assert hat.coordinates == (-33.87, 151.21)
    assert HatSettings().coordinates is None
