"""``pwbus hat`` as a real process on a real broker: its PNG frames against the simulator's
numbers (read by an in-process poller) and against a bare Tesla-API MeterStream publisher,
the stale screen after the poller stops or the broker goes away, SIGTERM and Ctrl-C with
the LEDs cleared, one-line errors, and the emulator's window under a real X server (Xvfb).
"""

from __future__ import annotations

import datetime
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pika
import pytest

from powerwall_bus.consumers.hat.font import text_columns
from powerwall_bus.consumers.hat.frame import Frame, hue_colour, production_colour, soe_colour
from powerwall_bus.consumers.hat.icons import icon_frames
from powerwall_bus.consumers.hat.render import bar_chart, scrolling_text, soe_text, text_frame
from powerwall_bus.producers.poller.main import Poller
from powerwall_bus.shared.bus import BusSubscriber
from powerwall_bus.shared.gateway.payloads import Flow, app_soe_clamped
from powerwall_bus.shared.messages import parse_envelope
from powerwall_bus.shared.settings import AmqpSettings, HatSettings
from tests.support.simulated_poller import simulated_poller
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until
from tests.support.xvfb import Xvfb
from tests.test_hat_weather import FakeOpenMeteo
from tests.test_stack import _env

if TYPE_CHECKING:
    from tests.conftest import TestBus

PASSWORD = "hat-Test-7"
#: Short screens, so a whole cycle passes in a few seconds.
HAT = HatSettings(hold=1.0, scroll_delay=0.01)
AMBER, RED = (255, 140, 0), (255, 0, 0)


def _first_frame(text: str, colour: tuple[int, int, int]) -> Frame:
    return scrolling_text(text, colour, HAT.scroll_delay, HAT.hold)[0].frame


def _last_frame(text: str, colour: tuple[int, int, int]) -> Frame:
    """The text scrolled to its end: the frame that shows its last characters."""
    columns = text_columns(text)
    return text_frame(columns, max(0, len(columns) - 16), colour)


def soe_tail(raw: float) -> Frame:
    """The end of the battery text for a raw gateway SoE, as the app shows it."""
    shown = app_soe_clamped(raw)
    return _last_frame(soe_text(shown), soe_colour(shown))


def chart_of(aggregates: dict[str, Any]) -> Frame:
    flow = Flow.from_aggregates(aggregates)
    return bar_chart(flow.load or 0.0, flow.site or 0.0, flow.solar_production or 0.0, HAT)


class Shown:
    """What ``--backend png`` wrote: the frames, in the order they were shown."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._frames: dict[str, Frame] = {}

    def names(self) -> list[str]:
        log = self.directory / "shown.log"
        if not log.exists():
            return []
        lines = log.read_text().splitlines()
        return [line.split()[1] for line in lines if line.count(" ") == 2]

    def frame(self, name: str) -> Frame:
        if name not in self._frames:
            from PIL import Image

            with Image.open(self.directory / f"{name}.png") as image:
                data = image.convert("RGB").tobytes()
            pixels = tuple(tuple(data[i : i + 3]) for i in range(0, len(data), 3))
            self._frames[name] = Frame(pixels)  # type: ignore[arg-type]
        return self._frames[name]

    def frames(self, since: int = 0) -> list[Frame]:
        return [self.frame(name) for name in self.names()[since:]]

    def any_of(self, wanted: set[Frame], since: int = 0) -> bool:
        return any(frame in wanted for frame in self.frames(since))


def _hat_env(bus: TestBus, **extra: str) -> dict[str, str]:
    """The display's environment; no night (its default 22:00-07:00 would dim every colour
    the tests look for, whatever the hour the suite runs) unless a test sets one."""
    settings = {
        "AMQP_URL": bus.settings.url,
        "AMQP_EXCHANGE": bus.settings.exchange,
        "PWBUS_HAT_HOLD": str(HAT.hold),
        "PWBUS_HAT_SCROLL_DELAY": str(HAT.scroll_delay),
        "PWBUS_DISPLAY_STALE_AFTER": "3",
        "PWBUS_HAT_NIGHT_START": "00:00",
        "PWBUS_HAT_NIGHT_END": "00:00",
    }
    return _env(**{**settings, **extra})


def _hat(*args: str) -> list[str]:
    return [sys.executable, "-m", "powerwall_bus", "hat", *args]


def _start(bus: TestBus, output: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _hat("--backend", "png", "--output", str(output)),
        env=_hat_env(bus, **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(child: subprocess.Popen[str], signum: int = signal.SIGTERM) -> str:
    child.send_signal(signum)
    _, stderr = child.communicate(timeout=15)
    assert child.returncode == 0, stderr
    return stderr


class Recorder:
    """What the poller published: the meters and raw SoE values to expect on the LEDs."""

    def __init__(self) -> None:
        self.meters: list[dict[str, Any]] = []
        self.soe: list[float] = []

    def on_message(self, routing_key: str, properties: pika.BasicProperties, body: bytes) -> None:
        if properties.type == "meters":
            self.meters.append(parse_envelope(body).payload)
        elif properties.type == "soe":
            self.soe.append(float(parse_envelope(body).payload["percentage"]))


@pytest.fixture
def poller(bus: TestBus, tmp_path: Path) -> Iterator[Poller]:
    with simulated_poller(bus.settings, tmp_path, password=PASSWORD, seed=5, powerwalls=1) as (
        _,
        running,
    ):
        yield running


def test_frames_show_the_simulators_numbers_then_the_stale_screen(
    bus: TestBus, poller: Poller, tmp_path: Path
) -> None:
    recorder = Recorder()
    subscriber = BusSubscriber(
        bus.settings, ["powerwall.#"], recorder.on_message, name="test", resync=False
    ).start()
    shown = Shown(tmp_path / "frames")
    try:
        assert subscriber.connected.wait(10)
        child = _start(bus, shown.directory)
        try:
            # The chart and the battery text of readings the poller published.
            assert wait_until(
                lambda: shown.any_of({chart_of(m) for m in list(recorder.meters)}), 20
            ), "no chart frame matched the simulator's meters"
            assert wait_until(lambda: shown.any_of({soe_tail(s) for s in recorder.soe}), 20)
            assert recorder.soe and all(0 <= app_soe_clamped(s) <= 100 for s in recorder.soe)
            stopped_at = len(shown.names())
            poller.stop()
            stale = {
                _first_frame("STALE", AMBER),
                _first_frame("POLLER STOPPED", RED),
                _first_frame("NO GATEWAY", RED),
            }
            assert wait_until(lambda: shown.any_of(stale, stopped_at), 20), "never went stale"
        finally:
            if child.poll() is None:
                _stop(child)
    finally:
        subscriber.stop()
    assert set(shown.frames()[-1].pixels) == {(0, 0, 0)}  # the LEDs cleared at the end


class MeterStreamPublisher:
    """Tesla-API's own poller, as it publishes: exchange Tesla-style topic, key MeterStream,
    a bare JSON body and no properties at all."""

    def __init__(self, bus: TestBus, body: dict[str, Any]) -> None:
        self._bus = bus
        self._body = body
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        connection = self._bus.connect()
        channel = connection.channel()
        exchange = self._bus.settings.exchange
        channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
        while not self._stop.is_set():
            body = {**self._body, "timestamp": time.time()}
            channel.basic_publish(exchange, "MeterStream", json.dumps(body).encode())
            self.sent += 1
            self._stop.wait(0.3)
        connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_a_bare_tesla_api_meter_stream_is_enough(bus: TestBus, tmp_path: Path) -> None:
    readings = {
        "site": {"instant_power": 620.0},
        "battery": {"instant_power": -1744.0},
        "load": {"instant_power": 1546.27},
        "solar": {"instant_power": 3906.17},
    }
    publisher = MeterStreamPublisher(bus, {"state_of_energy": 42.4, "readings": readings})
    shown = Shown(tmp_path / "frames")
    child = _start(bus, shown.directory, PWBUS_ANONYMOUS_METER_STREAM="yes")
    try:
        assert wait_until(lambda: shown.any_of({chart_of(readings)}), 20)
        # 42.4 raw is the app's 39.37 %: its text's tail, in its colour.
        assert soe_text(app_soe_clamped(42.4)) == "39.37%"
        assert wait_until(lambda: shown.any_of({soe_tail(42.4)}), 20)
        # Production as text coloured by output: 3906 W of 8064 W is hue 160.
        colour = production_colour(3906.17, HAT.capacity)
        assert colour == hue_colour(3906.17 / HAT.capacity * 330)
        assert wait_until(lambda: shown.any_of({_first_frame("3.91 kW", colour)}), 20)
    finally:
        publisher.stop()
        _stop(child, signal.SIGINT)  # Ctrl-C: status 0 as well
    assert publisher.sent > 0


def test_rotation_night_brightness_and_the_weather_icon_reach_the_leds(
    bus: TestBus, tmp_path: Path
) -> None:
    """Turned 180 degrees, at night (the hour around now), with rain from a local fake
    Open-Meteo: the chart arrives upside down, every frame at the night brightness, and
    the rain icon's frames play."""
    readings = {
        "site": {"instant_power": 1200.0},
        "battery": {"instant_power": 0.0},
        "load": {"instant_power": 1500.0},
        "solar": {"instant_power": 300.0},
    }
    now = datetime.datetime.now()
    night_start = (now - datetime.timedelta(hours=1)).strftime("%H:%M")
    night_end = (now + datetime.timedelta(hours=1)).strftime("%H:%M")
    open_meteo = FakeOpenMeteo()  # answers code 61: rain
    publisher = MeterStreamPublisher(bus, {"state_of_energy": 80.0, "readings": readings})
    shown = Shown(tmp_path / "frames")
    child = _start(
        bus,
        shown.directory,
        PWBUS_ANONYMOUS_METER_STREAM="yes",
        PWBUS_HAT_ROTATION="180",
        PWBUS_HAT_NIGHT_START=night_start,
        PWBUS_HAT_NIGHT_END=night_end,
        PWBUS_HAT_NIGHT_BRIGHTNESS="0.2",
        PWBUS_HAT_WEATHER="yes",
        PWBUS_HAT_LOCATION="51.5,-0.12",
        PWBUS_HAT_WEATHER_URL=open_meteo.url,
    )
    try:
        assert wait_until(lambda: shown.any_of({chart_of(readings).rotated(180)}), 20)
        rain = {frame.rotated(180) for frame in icon_frames("rain")}
        assert wait_until(lambda: len(rain & set(shown.frames())) == len(rain), 20)
        assert open_meteo.queries  # asked once at the start, then cached
        lines = (shown.directory / "shown.log").read_text().splitlines()
        assert {line.split()[2] for line in lines} == {"0.20"}
    finally:
        publisher.stop()
        _stop(child)
        open_meteo.close()
    assert len(open_meteo.queries) == 1


@pytest.mark.slow
def test_broker_away_keeps_the_last_picture_marked_stale_and_comes_back(
    bus: TestBus, poller: Poller, tmp_path: Path
) -> None:
    broker = AmqpSettings(url=bus.settings.url)
    relay = TcpProxy(broker.host, broker.port)
    shown = Shown(tmp_path / "frames")
    child = _start(
        bus, shown.directory, AMQP_HOST="127.0.0.1", AMQP_PORT=str(relay.port), AMQP_HEARTBEAT="2"
    )
    try:
        assert wait_until(lambda: len(shown.names()) > 50, 20)
        relay.cut()
        cut_at = len(shown.names())
        assert wait_until(lambda: shown.any_of({_first_frame("BROKER", RED)}, cut_at), 20)

        def marked() -> bool:  # the last chart, dimmed, its corner red
            corner = {(14, 0), (15, 0), (14, 1), (15, 1)}
            return any(
                all(f.pixel(x, y) == RED for x, y in corner)
                and max(max(p) for p in f.pixels[:14]) <= 64
                for f in shown.frames(cut_at)
            )

        assert wait_until(marked, 20)
        assert child.poll() is None  # not frozen, not ended: waiting for the broker
        relay.restore()
        back_at = len(shown.names())
        lit_colours = {(255, 0, 0), (0, 0, 255), (0, 255, 0)}
        assert wait_until(
            lambda: any(set(f.pixels) & lit_colours for f in shown.frames(back_at)), 30
        ), "no live chart after the broker came back"
        _stop(child)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        relay.close()


def test_bad_settings_and_missing_backends_are_one_line(bus: TestBus, tmp_path: Path) -> None:
    cases = [
        (("--backend", "png", "--output", str(tmp_path), "--rotate", "45"), 2, "hat.rotation"),
        (("--backend", "png"), 2, "--output"),
        (
            (
                "--backend",
                "unicornhathd",
            ),
            1,
            "powerwall-bus[hat]",
        ),
    ]
    for args, status, fragment in cases:
        done = subprocess.run(
            _hat(*args), env=_hat_env(bus), capture_output=True, text=True, timeout=30
        )
        assert done.returncode == status, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert fragment in done.stderr and "Traceback" not in done.stderr


def test_the_emulator_window_draws_under_xvfb(bus: TestBus) -> None:
    with Xvfb(size=(640, 480)) as x:
        env = _hat_env(
            bus,
            DISPLAY=x.display,
            SDL_VIDEODRIVER="x11",
            SDL_VIDEO_WINDOW_POS="0,0",  # where the grab looks (no window manager places it)
            PWBUS_HAT_BRIGHTNESS="1",
        )
        child = subprocess.Popen(
            _hat("--backend", "sim"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # No data on this bus: the blue WAITING text, drawn as LED dots in the window.
            waiting_blue = (0, 90, 255)

            def drawn() -> bool:
                try:
                    picture = x.grab((0, 0, 240, 240)).convert("RGB")
                except OSError:  # the X server may refuse a connection while busy: again
                    return False
                return any(colour == waiting_blue for _, colour in picture.getcolors(65536) or [])

            assert wait_until(drawn, 20), "the emulator window shows no frame"
            assert child.poll() is None and x.alive
        finally:
            stderr = _stop(child) if child.poll() is None else child.communicate()[1]
        assert "Traceback" not in stderr
