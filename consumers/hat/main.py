"""``pwbus hat``: a thin shell that feeds the display state and plays the sequencer's frames.

The bus is read on a background thread (:class:`~powerwall_bus.consumers.display.feed.
BusSource`) and the weather on another, so neither a broker that goes away nor a slow
weather service ever freezes the LEDs: the data only turns stale and the stale screen
names why. The main thread asks the :class:`~powerwall_bus.consumers.hat.sequence.
Sequencer` for the frame of the moment, turns it for the mounting, and sends it when it
differs from what the LEDs show. SIGTERM and Ctrl-C (and closing the emulator's window)
end it with status 0, the LEDs off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import signal
import threading
import time
from types import FrameType

from powerwall_bus.consumers.display.feed import BusSource
from powerwall_bus.consumers.display.state import DisplayState, Freshness, View
from powerwall_bus.consumers.hat.command import HatConfig
from powerwall_bus.consumers.hat.devices import Device, open_device
from powerwall_bus.consumers.hat.frame import Frame
from powerwall_bus.consumers.hat.render import reason
from powerwall_bus.consumers.hat.sequence import Sequencer, brightness_at
from powerwall_bus.consumers.hat.weather import Weather
from powerwall_bus.shared.acceptance import Policy
from powerwall_bus.shared.errors import PwbusError
from powerwall_bus.shared.settings import HatSettings
from powerwall_bus.shared.threads import FatalHandler, ThreadFailures, guarded

_LOGGER = logging.getLogger(__name__)

#: The longest the main loop sleeps, so a change of freshness shows within this.
MAX_WAIT = 0.25
#: How often the weather thread looks whether the cached answer is due.
WEATHER_TICK = 5.0
#: At start, the seconds the first connection may take before "BROKER" is said instead
#: of "WAITING" (a normal start connects and has its resync answer within a second).
GRACE = 3.0


def _what(view: View) -> str:
    """What the display shows, in words, for the one log line per change."""
    if view.freshness is Freshness.LIVE and not view.problem:
        return "live data"
    kind, words = reason(view)
    return "stale data" if kind == "stale" else f"the {kind} screen ({words})"


class _WeatherThread:
    """The weather, refreshed off the display thread."""

    def __init__(self, weather: Weather, on_fatal: FatalHandler) -> None:
        self.weather = weather
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=guarded(self._run, "hat-weather", on_fatal), daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.weather.refresh()
            self._stop.wait(WEATHER_TICK)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10.0)
        self.weather.close()


def run_hat(config: HatConfig) -> int:
    """Show until stopped; 0 when stopped by a signal or the emulator window closing."""
    if config.backend == "sim":  # pygame: no banner on stdout, no sound device wanted
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    device = open_device(config.backend, config.output)  # a missing library fails first
    stop = threading.Event()
    failures = ThreadFailures(wake=stop.set)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    policy = Policy.for_consumer(config.amqp, config.display, "display")
    state = DisplayState(policy, follow=config.follow, stale_after=config.display.stale_after)
    source = BusSource(state, config.amqp, config.follow, failures, name="hat")
    weather = _WeatherThread(Weather(config.hat), failures) if config.hat.weather else None
    _LOGGER.info("LED display on %s, following %s", config.backend, config.follow or "the bus")
    try:
        play(config.hat, state, device, stop, weather)
    except SystemExit:  # the emulator's window was closed: pygame ends it this way
        _LOGGER.info("the emulator window was closed")
    finally:
        with contextlib.suppress(PwbusError, OSError):
            device.off()  # first: the LEDs go dark even if a thread is slow to stop
        source.stop()
        if weather is not None:
            weather.stop()
        for signum, handler in previous.items():
            if handler is not None:  # None: a C handler (SDL's) Python cannot put back
                signal.signal(signum, handler)
    return failures.exit_status()


def play(
    hat: HatSettings,
    state: DisplayState,
    device: Device,
    stop: threading.Event,
    weather: _WeatherThread | None = None,
    grace: float = GRACE,
) -> None:
    """Until ``stop``: the sequencer's frame of the moment, turned for the mounting, sent
    with the brightness of the hour whenever either differs from what the LEDs show."""
    sequencer = Sequencer(hat)
    shown: tuple[Frame, float] | None = None
    showing = ""
    started = time.monotonic()
    while not stop.is_set():
        view = state.view()
        if view.freshness is Freshness.WAITING and time.monotonic() - started < grace:
            view = dataclasses.replace(view, bus_connected=True)  # still connecting
        what = _what(view)
        if what != showing:
            _LOGGER.info("showing %s", what)
            showing = what
        icon = weather.weather.icon if weather is not None else None
        frame = sequencer.frame(view, time.monotonic(), icon).rotated(hat.rotation)
        picture = (frame, brightness_at(hat, datetime.datetime.now().time()))
        if picture != shown:
            device.show(*picture)
            shown = picture
        stop.wait(min(MAX_WAIT, sequencer.next_change(time.monotonic())))
