"""``pwbus console``: a thin shell that feeds the display state and prints what it says.

The main thread wakes every :data:`TICK` seconds, asks the state for a view and prints the
lines :class:`~powerwall_bus.consumers.console.output.Printer` decides on; the bus (or the
gateway) is read on a background thread, so a broker that goes away never freezes the
output, it only turns it stale. SIGTERM and Ctrl-C end it with status 0.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType

from powerwall_bus.consumers.console.command import ConsoleConfig
from powerwall_bus.consumers.console.output import Printer
from powerwall_bus.consumers.console.sources import DirectSource
from powerwall_bus.consumers.display.feed import BusSource, Source
from powerwall_bus.consumers.display.state import DisplayState
from powerwall_bus.shared.acceptance import Policy
from powerwall_bus.shared.threads import ThreadFailures

#: Seconds between battery lines (the issue's "every second").
TICK = 1.0
#: How often the JSON mode looks for a new reading (readings come every 1-2 s).
JSON_TICK = 0.2
#: How long a start waits for the first picture before saying it is waiting.
GRACE = 3.0


def _write(lines: list[str]) -> None:
    """The console's own output: stdout, flushed per batch so a pipe sees it at once."""
    if lines:
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        sys.stdout.flush()


def run_console(config: ConsoleConfig) -> int:
    """Print until stopped (or once); 0 when stopped, 1 when ``--once`` got no data."""
    stop = threading.Event()
    failures = ThreadFailures(wake=stop.set)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    policy = Policy.for_consumer(config.amqp, config.display, "display")
    state = DisplayState(policy, follow=config.follow, stale_after=config.display.stale_after)
    source: Source
    if config.direct:
        source = DirectSource(state, config.gateway, policy.poller_user, failures)
    else:
        source = BusSource(state, config.amqp, config.follow, failures, name="console")
    printer = Printer(as_json=config.json)
    status = 0
    try:
        if config.once:
            status = _once(state, printer, stop, config.display.stale_after)
        else:
            _wait_for_data(state, printer, stop, GRACE)
            tick = JSON_TICK if config.json else TICK
            next_tick = time.monotonic()
            while not stop.is_set():
                _write(printer.tick(state.view()))
                next_tick += tick
                stop.wait(max(0.0, next_tick - time.monotonic()))
    except BrokenPipeError:  # `pwbus console | head`: the reader left; end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        source.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return failures.exit_status() or status


def _wait_for_data(
    state: DisplayState, printer: Printer, stop: threading.Event, wait: float
) -> bool:
    """Up to ``wait`` s for a first snapshot, so a normal start (a resync answers within a
    second) begins with the picture rather than a "waiting" line."""
    deadline = time.monotonic() + wait
    while not stop.is_set() and time.monotonic() < deadline:
        if printer.ready(state.view()):
            return True
        stop.wait(0.1)
    return False


def _once(state: DisplayState, printer: Printer, stop: threading.Event, wait: float) -> int:
    """One snapshot as soon as there is one (a resync answers within a second), else 1."""
    if _wait_for_data(state, printer, stop, wait):
        _write(printer.snapshot(state.view()))
        return 0
    if stop.is_set():
        return 0
    sys.stderr.write(f"pwbus console: no reading from the bus within {wait:.0f} s\n")
    return 1
