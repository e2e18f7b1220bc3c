"""What the console prints, decided from views alone: pure, so tests need no terminal.

:class:`Printer` remembers only what it printed last (the snapshot, the freshness, the last
reading time), which is what makes the output one line per change rather than a redraw:
readable in a terminal, in ``less`` and in a log file alike.
"""

from __future__ import annotations

import json
import time
from typing import Any

from powerwall_bus.consumers.display.format import (
    freshness_line,
    percent,
    power,
    snapshot_lines,
)
from powerwall_bus.consumers.display.state import Freshness, View
from powerwall_bus.shared.messages import iso_time

__all__ = ["Printer", "battery_line", "json_record"]


def json_record(view: View) -> dict[str, Any]:
    """One reading for scripts: W with the gateway's signs, the app's %, UTC time."""
    return {
        "time": None if view.reading_time is None else iso_time(view.reading_time),
        "gateway": view.gateway or None,
        "solar": view.solar.watts,
        "home": view.home.watts,
        "battery": view.battery.watts,
        "grid": view.grid.watts,
        "soe": view.soe,
        "grid_status": view.grid_status,
        "freshness": view.freshness.value,
    }


def _clock_text(epoch: float | None) -> str:
    return "--:--:--" if epoch is None else time.strftime("%H:%M:%S", time.localtime(epoch))


def battery_line(view: View) -> str:
    """``14:03:58 battery 51.3 % charging 1.20 kW``: the level and what the battery does."""
    flow = view.battery
    doing = f" {flow.direction} {power(flow.size)}" if flow.watts is not None else ""
    return f"{_clock_text(view.reading_time)} battery {percent(view.soe)}{doing}"


class Printer:
    """Turns successive views into the lines to print (text or JSON)."""

    def __init__(self, *, as_json: bool = False) -> None:
        self._json = as_json
        self._snapshot_done = False
        self._freshness: Freshness | None = None
        self._last_reading: float | None = None

    def ready(self, view: View) -> bool:
        """Whether a snapshot can be printed: a meters reading and a battery level."""
        return view.reading_time is not None and view.soe is not None

    def snapshot(self, view: View) -> list[str]:
        """The whole picture once (``--once``, and the start of a run)."""
        self._snapshot_done = True
        self._last_reading = view.reading_time
        self._freshness = view.freshness
        if self._json:
            return [json.dumps(json_record(view))]
        header = f"gateway {view.gateway or '(not named)'}"
        lines = [header, *snapshot_lines(view)]
        status = freshness_line(view)
        return [*lines, status] if status else lines

    def tick(self, view: View) -> list[str]:
        """What to print now: the snapshot first, then per text tick the battery line, per
        JSON tick each new reading; a freshness change is one line in either."""
        if not self._snapshot_done:
            return self.snapshot(view) if self.ready(view) else self._freshness_change(view)
        lines = self._freshness_change(view)
        if self._json:
            if view.reading_time is not None and view.reading_time != self._last_reading:
                self._last_reading = view.reading_time
                lines.append(json.dumps(json_record(view)))
            return lines
        if view.freshness is Freshness.LIVE:
            lines.append(battery_line(view))
        return lines

    def _freshness_change(self, view: View) -> list[str]:
        if view.freshness is self._freshness:
            return []
        before, self._freshness = self._freshness, view.freshness
        if self._json:
            return []  # scripts read the freshness field of each record
        if view.freshness is Freshness.LIVE:
            return ["live again"] if before in (Freshness.STALE, Freshness.TROUBLE) else []
        return [freshness_line(view)]
