"""``pwbus gui``: a thin shell that feeds the display state from the bus and draws it in Tk.

The bus is read on the subscriber's own thread (:class:`~..display.feed.BusSource`); Tk's
thread only asks the state for a view every :data:`TICK` seconds from Tk's ``after`` loop,
so the window never waits on the network: a broker that goes away turns the picture stale,
it never freezes it. Signals only set a flag; the same ``after`` loop sees it and ends the
Tk loop, so SIGTERM, Ctrl-C and the window's close button all end the process with 0.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from types import FrameType, TracebackType

from powerwall_bus.consumers.display.feed import BusSource
from powerwall_bus.consumers.display.state import DisplayState
from powerwall_bus.consumers.gui.command import GuiConfig
from powerwall_bus.consumers.gui.layout import screen
from powerwall_bus.consumers.gui.window import Window
from powerwall_bus.shared.acceptance import Policy
from powerwall_bus.shared.threads import ThreadFailures, report_crash

__all__ = ["TICK", "GuiApp", "run_gui"]

_LOGGER = logging.getLogger(__name__)

#: Seconds between looks at the state (a reading comes every 1-2 s).
TICK = 0.25


class GuiApp:
    """The window and the state it shows, with the loop that ties them together."""

    def __init__(self, window: Window, state: DisplayState, stop: threading.Event) -> None:
        self.window = window
        self.state = state
        self.stop = stop
        self.failed: BaseException | None = None
        self._said: str | None = None
        window.root.report_callback_exception = self._callback_failed

    def tick(self) -> bool:
        """Draw the current view; False once the window should close."""
        if self.stop.is_set() or self.window.closed:
            return False
        view = self.state.view()
        self.window.show(screen(view, self.window.palette))
        trouble = f": {view.trouble}" if view.trouble else ""
        self._say(f"{view.freshness.value}{trouble}")
        return True

    def _say(self, what: str) -> None:
        """One log line when what the window says changes (waiting, live, stale, trouble)."""
        if what != self._said:
            _LOGGER.info("the window shows: %s", what)
            self._said = what

    def _after(self) -> None:
        if self.tick():
            self.window.root.after(round(TICK * 1000), self._after)
        else:
            self.window.close()

    def run(self) -> None:
        """Until the window is closed or :attr:`stop` is set."""
        self.window.root.after(0, self._after)  # every tick in Tk's loop, the first too
        self.window.root.mainloop()

    def _callback_failed(
        self, kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        """A bug in a Tk callback ends the process (status 1) rather than leave a window
        that no longer changes."""
        report_crash("gui", exc, _LOGGER)
        self.failed = exc
        self.stop.set()
        self.window.close()  # the loop that would have seen the flag may be the one that failed


def run_gui(config: GuiConfig) -> int:
    """Show the window until it is closed or a signal comes; 0 then, 1 after a crash."""
    failures = ThreadFailures()
    crashed = _show(config, failures)
    # Tk widgets always form reference cycles (parent and children point at each other), so
    # only the garbage collector frees them, in whichever thread it happens to run, and Tcl
    # aborts the process when its interpreter is deleted from a thread other than its own.
    # The window is unreachable now that _show returned: free it here, in Tk's thread.
    gc.collect()
    return failures.exit_status() or (1 if crashed else 0)


def _show(config: GuiConfig, failures: ThreadFailures) -> bool:
    """The window's life; True when a Tk callback crashed."""
    window = Window(config.gui)  # first: no display means no broker connection either
    stop = threading.Event()
    failures.wake_with(stop.set)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    policy = Policy.for_consumer(config.amqp, config.display, "display")
    state = DisplayState(policy, follow=config.follow, stale_after=config.display.stale_after)
    source = BusSource(state, config.amqp, config.follow, failures, name="gui")
    app = GuiApp(window, state, stop)
    try:
        app.run()
    finally:
        source.stop()
        window.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return app.failed is not None
