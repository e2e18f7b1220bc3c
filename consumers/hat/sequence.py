"""What the LED matrix shows at a given moment: the screens in turn, decided purely.

Live, the cycle is the weather icon (when there is one), production (by day), the chart and
the battery level; not live, it is the reason (``STALE 25s``, ``BROKER``...), the last chart
dimmed and marked, and the icon. Each screen is drawn from the view of the moment it
starts, so a cycle never shows numbers older than its screen. A change between live and not
live (or to another reason) starts the other cycle at once, not at the end of this one.

The :class:`Sequencer` holds only where it is; time comes in as an argument, so tests step
through a cycle without waiting. :func:`brightness_at` picks the day or night brightness.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from powerwall_bus.consumers.display.state import Freshness, View
from powerwall_bus.consumers.hat.frame import Frame
from powerwall_bus.consumers.hat.render import (
    Step,
    chart_screen,
    icon_screen,
    production_screen,
    reason,
    reason_screen,
    soe_screen,
    stale_chart_screen,
)
from powerwall_bus.shared.settings import HatSettings

__all__ = ["LIVE_SCREENS", "STALE_SCREENS", "Sequencer", "brightness_at", "is_night"]

Screen = Callable[[View, HatSettings, "str | None"], list[Step]]

#: The live cycle, in order.
LIVE_SCREENS: tuple[str, ...] = ("icon", "production", "chart", "soe")
#: The cycle while the data is not live.
STALE_SCREENS: tuple[str, ...] = ("reason", "last", "icon")

_SCREENS: dict[str, Screen] = {
    "icon": lambda view, hat, icon: icon_screen(icon),
    "production": lambda view, hat, icon: production_screen(view, hat),
    "chart": lambda view, hat, icon: chart_screen(view, hat),
    "soe": lambda view, hat, icon: soe_screen(view, hat),
    "reason": lambda view, hat, icon: reason_screen(view, hat),
    "last": lambda view, hat, icon: stale_chart_screen(view, hat),
}

#: A shell that fell this far behind (a slow device, a paused process) starts the next
#: screen now rather than racing through the missed ones.
_CATCH_UP = 1.0


def _mode(view: View) -> tuple[str, ...]:
    """Which cycle a view calls for: live, or not live for this kind of reason."""
    if view.freshness is Freshness.LIVE and not view.problem:
        return ("live",)
    kind, words = reason(view)
    # The age in "STALE 25s" grows by itself; only another kind of reason restarts.
    return ("stale", kind) if kind == "stale" else ("stale", kind, words)


class Sequencer:
    """The frame to show at a moment, given the view and the weather icon of that moment."""

    def __init__(self, hat: HatSettings) -> None:
        self._hat = hat
        self._mode: tuple[str, ...] | None = None
        self._screens: tuple[str, ...] = ()
        self._index = -1
        self._steps: list[Step] = []
        self._start = 0.0  # when the current screen began
        self.screen = ""  # the name of the current screen

    def frame(self, view: View, now: float, icon: str | None = None) -> Frame:
        """The frame for ``now`` (a monotonic clock that never goes back)."""
        mode = _mode(view)
        if mode != self._mode:
            self._mode = mode
            self._screens = LIVE_SCREENS if mode == ("live",) else STALE_SCREENS
            self._index = -1
            self._next_screen(view, icon, now)
        while now >= self._start + self._length():
            end = self._start + self._length()
            self._next_screen(view, icon, now if now - end > _CATCH_UP else end)
        elapsed = now - self._start
        for step in self._steps:
            if elapsed < step.seconds:
                return step.frame
            elapsed -= step.seconds
        return self._steps[-1].frame

    def next_change(self, now: float) -> float:
        """Seconds from ``now`` until the current step ends (when to ask again)."""
        elapsed = now - self._start
        for step in self._steps:
            if elapsed < step.seconds:
                return step.seconds - elapsed
            elapsed -= step.seconds
        return 0.0

    def _length(self) -> float:
        return sum(step.seconds for step in self._steps)

    def _next_screen(self, view: View, icon: str | None, start: float) -> None:
        """Move to the next screen with something to show (a cycle always has one)."""
        for _ in range(len(self._screens) * 2):
            self._index = (self._index + 1) % len(self._screens)
            name = self._screens[self._index]
            steps = _SCREENS[name](view, self._hat, icon)
            if steps:
                self._steps, self._start, self.screen = steps, start, name
                return
        raise AssertionError("a cycle without any screen to show")  # chart/reason always draw


def is_night(hat: HatSettings, local: datetime.time) -> bool:
    """True between ``night_start`` and ``night_end`` (across midnight when start > end);
    never when the two are equal."""
    start = datetime.time.fromisoformat(hat.night_start.zfill(5))
    end = datetime.time.fromisoformat(hat.night_end.zfill(5))
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def brightness_at(hat: HatSettings, local: datetime.time) -> float:
    """The LED brightness for this local time of day."""
    return hat.night_brightness if is_night(hat, local) else hat.brightness
