"""``pwbus gui`` under a real X server (Xvfb) on a real broker.

In process: the window's own widgets are read while a poller reads the simulator and the
real proxy listens to the same bus; every number shown equals the proxy's /aggregates and
/soe at that moment; a screenshot is the window, not a blank; the banner says the data is
not live once the poller stops; a bare Tesla-API MeterStream publisher is enough, and goes
stale when it stops. As a process: the window's close button (``WM_DELETE_WINDOW``, what a
window manager sends), SIGTERM and Ctrl-C each end it with status 0.
"""

from __future__ import annotations

import dataclasses
import gc
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from PIL import Image

from powerwall_bus.consumers.display.feed import BusSource
from powerwall_bus.consumers.display.format import percent, power
from powerwall_bus.consumers.display.state import DisplayState
from powerwall_bus.consumers.gui.layout import THEMES, TITLE
from powerwall_bus.consumers.gui.main import GuiApp
from powerwall_bus.consumers.gui.window import Window
from powerwall_bus.consumers.proxy.main import ProxyConfig
from powerwall_bus.producers.poller.main import Poller
from powerwall_bus.shared.acceptance import Policy
from powerwall_bus.shared.gateway.payloads import (
    app_soe_clamped,
    charging,
    discharging,
    exporting,
    importing,
    meter_power,
)
from powerwall_bus.shared.messages import meter_stream_message
from powerwall_bus.shared.settings import (
    AmqpSettings,
    DisplaySettings,
    GuiSettings,
    ProxySettings,
)
from powerwall_bus.shared.threads import ThreadFailures
from powerwall_bus.shared.topology import METER_STREAM
from tests.support.mysql_writer import Publisher
from tests.support.running_proxy import RunningProxy
from tests.support.simulated_poller import simulated_poller
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until
from tests.support.xvfb import Xvfb, close_window, find_window, wait_for_exit
from tests.test_stack import _env

if TYPE_CHECKING:
    from tests.conftest import TestBus

PASSWORD = "gui-Test-42"


@pytest.fixture(autouse=True)
def _tk_freed_in_this_thread() -> Iterator[None]:
    """No garbage collection while a test runs, one in this thread after it: Tk widgets
    form reference cycles, and Tcl aborts the process when a collection in another thread
    (the bus's, the poller's) frees them."""
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.enable()


@pytest.fixture(scope="module")
def xvfb() -> Iterator[Xvfb]:
    with Xvfb() as server:
        yield server


@pytest.fixture
def pipeline(bus: TestBus, tmp_path: Path) -> Iterator[tuple[Poller, RunningProxy]]:
    """Simulator -> poller -> broker -> proxy: the numbers to compare the window with."""
    with (
        simulated_poller(bus.settings, tmp_path, password=PASSWORD, seed=7) as (_, poller),
        RunningProxy(
            ProxyConfig(ProxySettings(port=0, bind_address="127.0.0.1"), bus.settings)
        ) as proxy,
    ):
        yield poller, proxy


class Shown:
    """The window in this process, fed from the bus: pumped by the test, read back."""

    def __init__(self, xvfb: Xvfb, amqp: AmqpSettings, stale_after: float, theme: str) -> None:
        policy = Policy.for_consumer(amqp, DisplaySettings(), "display")
        self.state = DisplayState(policy, stale_after=stale_after)
        self.failures = ThreadFailures()
        self.source = BusSource(self.state, amqp, "", self.failures, name="gui-test")
        self.window = Window(GuiSettings(theme=theme), screen_name=xvfb.display)
        self.app = GuiApp(self.window, self.state, threading.Event())
        self.xvfb = xvfb

    def pump(self) -> dict[str, str]:
        """One tick of the window's loop, then its widgets' texts."""
        assert self.app.tick()
        self.window.root.update()
        return self.window.texts()

    def until(self, condition: Callable[[dict[str, str]], Any], timeout: float) -> Any:
        return wait_until(lambda: condition(self.pump()), timeout, step=0.1)

    def screenshot(self) -> Image.Image:
        root = self.window.root
        left, top = root.winfo_rootx(), root.winfo_rooty()
        return self.xvfb.grab((left, top, left + root.winfo_width(), top + root.winfo_height()))

    def close(self) -> None:
        self.source.stop()
        self.window.close()
        assert self.failures.error is None


def _expected(proxy: RunningProxy) -> dict[str, str] | None:
    """The window's texts for the proxy's current /aggregates and /soe, by the project's
    rules (W below 1 kW, kW above; sizes with direction words; the app's SoE)."""
    aggregates = requests.get(proxy.url + "/aggregates", timeout=5).json()
    soe = requests.get(proxy.url + "/soe", timeout=5).json()
    if not aggregates or not soe:
        return None
    site, battery, solar, load = (
        meter_power(aggregates, meter) for meter in ("site", "battery", "solar", "load")
    )
    assert site is not None and battery is not None and solar is not None and load is not None
    grid_word = "importing" if importing(site) else "exporting" if exporting(site) else "idle"
    battery_word = (
        "discharging" if discharging(battery) else "charging" if charging(battery) else "idle"
    )
    return {
        "solar.value": power(max(0.0, solar)),
        "home.value": power(load),
        "home.direction": "using",
        "battery.value": power(abs(battery)),
        "battery.direction": battery_word,
        "grid.value": power(abs(site)),
        "grid.direction": grid_word,
        "soe": percent(app_soe_clamped(float(soe["percentage"]))),
    }


def _distinct_colours(image: Image.Image) -> set[Any]:
    """Every (r, g, b) the image holds."""
    return {colour for _, colour in image.convert("RGB").getcolors(1 << 20) or []}


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def test_the_window_shows_the_proxys_numbers_then_says_when_they_stop(
    xvfb: Xvfb, bus: TestBus, pipeline: tuple[Poller, RunningProxy], tmp_path: Path
) -> None:
    poller, proxy = pipeline
    shown = Shown(xvfb, bus.settings, stale_after=3.0, theme="light")
    try:
        started = time.monotonic()
        assert shown.until(lambda texts: texts["soe"] != "--" and texts["reading"], 15)
        assert time.monotonic() - started < 10, "the resync should bring data at once"
        matched: set[str] = set()

        def agrees(texts: dict[str, str]) -> bool:
            expected = _expected(proxy)
            texts = shown.pump()  # the window as it is now, right after the proxy answered
            if expected is None or any(texts[k] != v for k, v in expected.items()):
                return False
            matched.add(texts["reading"])
            return len(matched) >= 3

        assert shown.until(agrees, 20), f"window and proxy never agreed 3 times: {matched}"
        texts = shown.pump()
        assert texts["grid_status"] == "on-grid"
        assert texts["gateway"] == f"gateway {poller.client.din}"
        assert texts["banner"] == "" and texts["mode"]
        assert [texts[f"{k}.title"] for k in ("solar", "home", "battery", "grid")] == [
            "Solar",
            "Home",
            "Powerwall",
            "Grid",
        ]
        soe = float(texts["soe"].removesuffix(" %"))
        assert shown.window.bar_fill() == pytest.approx(soe / 100, abs=0.01)

        image = shown.screenshot()
        image.save(tmp_path / "gui.png")
        root = shown.window.root
        assert image.size == (root.winfo_width(), root.winfo_height()) == (760, 560)
        colours = _distinct_colours(image)
        palette = THEMES["light"]
        assert len(colours) > 50  # text, antialiasing, tiles: not a blank
        assert {_rgb(palette.surface), _rgb(palette.solar), _rgb(palette.battery)} <= colours

        # It resizes: the tiles, the bar and the fonts grow with the window.
        bar_before = shown.window.bar.winfo_width()
        root.geometry("1100x800")
        shown.until(lambda _: root.winfo_width() == 1100, 5)
        assert shown.window.bar.winfo_width() > bar_before + 200
        assert shown.window.fonts["value"].cget("size") == round(30 * 800 / 560)
        assert shown.window.bar_fill() == pytest.approx(soe / 100, abs=0.01)

        poller.stop()
        assert shown.until(
            lambda t: t["banner"].startswith(("STALE", "gateway trouble: the poller")), 15
        )
        texts = shown.pump()
        assert texts["soe"] != "--" and texts["home.value"] != "--"  # the last picture stays
        banner = _distinct_colours(shown.screenshot())
        assert _rgb(palette.trouble[0]) in banner or _rgb(palette.stale[0]) in banner
    finally:
        shown.close()


def test_a_bare_meter_stream_publisher_is_enough_and_goes_stale(xvfb: Xvfb, bus: TestBus) -> None:
    """Tesla-API's own poller: routing key MeterStream, no properties, no user."""
    amqp = dataclasses.replace(bus.settings, anonymous_meter_stream=True)
    shown = Shown(xvfb, amqp, stale_after=2.0, theme="dark")
    publisher = Publisher(bus.settings)
    aggregates = {
        meter: {"instant_power": watts}
        for meter, watts in (("site", 1234.5), ("battery", -640), ("solar", 0), ("load", 594.5))
    }
    try:
        assert wait_until(lambda: shown.state.bus_connected, 10)
        for _ in range(3):
            body = meter_stream_message(time.time(), 71.0, aggregates, "").body
            publisher.channel.basic_publish(bus.settings.exchange, METER_STREAM, body)
            if shown.until(lambda t: t["grid.value"] != "--", 2):
                break
        texts = shown.pump()
        assert (texts["grid.value"], texts["grid.direction"]) == ("1.23 kW", "importing")
        assert (texts["battery.value"], texts["battery.direction"]) == ("640 W", "charging")
        assert (texts["solar.value"], texts["solar.direction"]) == ("0 W", "not producing")
        assert texts["home.value"] == "594 W" or texts["home.value"] == "595 W"
        assert texts["soe"] == percent(app_soe_clamped(71.0))
        assert texts["banner"] == ""
        assert shown.until(lambda t: t["banner"].startswith("STALE: no reading for"), 10)
    finally:
        publisher.close()
        shown.close()


def _gui_process(xvfb: Xvfb, bus: TestBus) -> subprocess.Popen[str]:
    env = _env(AMQP_URL=bus.settings.url, AMQP_EXCHANGE=bus.settings.exchange)
    env["DISPLAY"] = xvfb.display
    return subprocess.Popen(
        [sys.executable, "-m", "powerwall_bus", "gui", "--theme", "dark"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("how", ["close button", "SIGTERM", "Ctrl-C"])
def test_closing_the_window_or_a_signal_ends_the_process_with_0(
    xvfb: Xvfb, bus: TestBus, how: str
) -> None:
    child = _gui_process(xvfb, bus)
    try:
        window = find_window(xvfb.display, TITLE)
        assert window, "the window never appeared"
        time.sleep(0.5)  # running its loop
        assert child.poll() is None
        if how == "close button":
            close_window(xvfb.display, window)
        else:
            child.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGINT)
        assert wait_for_exit(child, 15) == 0
        _, stderr = child.communicate(timeout=5)
        assert "Traceback" not in stderr
        assert "the window shows: waiting" in stderr  # no poller on this bus
        assert not find_window(xvfb.display, TITLE, timeout=0.5)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.slow
def test_broker_away_the_window_keeps_the_picture_stale_and_comes_back(
    xvfb: Xvfb, bus: TestBus, pipeline: tuple[Poller, RunningProxy]
) -> None:
    broker = bus.settings
    relay = TcpProxy(broker.host, broker.port)
    amqp = AmqpSettings(
        url=broker.url,
        host="127.0.0.1",
        port=relay.port,
        exchange=broker.exchange,
        heartbeat=2,
    )
    shown = Shown(xvfb, amqp, stale_after=2.0, theme="light")
    try:
        assert shown.until(lambda t: t["reading"] and t["banner"] == "", 15)
        relay.cut()
        assert shown.until(lambda t: "broker away" in t["banner"], 20)
        texts = shown.pump()  # still drawing: the Tk thread never waits on the broker
        assert texts["banner"].startswith("STALE: no reading for")
        assert texts["home.value"] != "--" and texts["soe"] != "--"
        last = texts["reading"]
        relay.restore()
        assert shown.until(lambda t: t["banner"] == "" and t["reading"] != last, 30)
    finally:
        shown.close()
        relay.close()


@pytest.mark.parametrize(
    ("settings", "size", "value_points"),
    [
        (GuiSettings(font_scale=1.5), (1140, 840), 45),
        (GuiSettings(font_scale=0.5), (380, 280), 15),
        # The fonts follow the screen: 900 / 560 of their size.
        (GuiSettings(fullscreen=True), (1280, 900), 48),
    ],
)
def test_font_scale_and_fullscreen(
    xvfb: Xvfb, settings: GuiSettings, size: tuple[int, int], value_points: int
) -> None:
    window = Window(settings, screen_name=xvfb.display)
    try:

        def mapped() -> bool:
            window.root.update()
            return window.root.winfo_width() > 1

        assert wait_until(mapped, 5)
        assert (window.root.winfo_width(), window.root.winfo_height()) == size
        assert window.fonts["value"].cget("size") == value_points
        assert bool(int(window.root.attributes("-fullscreen"))) == settings.fullscreen
    finally:
        window.close()


class _Broken(DisplayState):
    def view(self) -> Any:
        raise RuntimeError("a bug in the state")


@pytest.mark.timeout(30)
def test_a_bug_in_the_window_loop_ends_it_instead_of_freezing(
    xvfb: Xvfb, caplog: pytest.LogCaptureFixture
) -> None:
    policy = Policy("poller", 1_000_000, 300.0, 86400.0)
    window = Window(GuiSettings(), screen_name=xvfb.display)
    app = GuiApp(window, _Broken(policy), threading.Event())
    app.run()  # returns: the failed tick closed the window (else the timeout fails it)
    assert isinstance(app.failed, RuntimeError) and app.stop.is_set() and window.closed
    assert "a bug in the state" in caplog.text
