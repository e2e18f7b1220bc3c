"""Repeated log lines, said once per interval: the one rate limiter every component uses.

A client that sends a thousand malformed requests a second, or a server out of file
descriptors, must not turn the log into hundreds of megabytes. :class:`Throttle` lets the first
line of a kind through, swallows the repeats for ``interval`` seconds and counts them, so the
next line that gets through can say how many were left out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

__all__ = ["REMINDER_INTERVAL", "Reminder", "Throttle"]


class Throttle:
    """Lets one event per key through every ``interval`` seconds and counts the rest.

    Thread-safe (the proxy's event loop and a bus thread may share one); the clock is
    injected for tests.
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._next: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def allow(self, key: Hashable = None) -> int | None:
        """None when this event is to be swallowed; otherwise how many were swallowed since
        the last one let through (0 for the first)."""
        now = self._clock()
        with self._lock:
            if now < self._next.get(key, float("-inf")):
                self._held[key] = self._held.get(key, 0) + 1
                return None
            self._next[key] = now + self._interval
            return self._held.pop(key, 0)

    @staticmethod
    def suffix(swallowed: int) -> str:
        """`` (and 41 more like it)`` for a log line, or nothing."""
        return f" (and {swallowed} more like it)" if swallowed else ""


#: Seconds between two "still unavailable" lines of one outage.
REMINDER_INTERVAL = 300.0


class Reminder:
    """When an outage that goes on deserves another log line: every ``interval`` seconds.

    An outage is logged when it starts and when it ends; in between, silence would leave a
    reader wondering whether the process is still trying, and a line per attempt would bury
    everything else. :meth:`start` at the first line, :meth:`due` at every failed attempt.
    """

    def __init__(
        self, interval: float = REMINDER_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._next = float("inf")

    def start(self) -> None:
        self._next = self._clock() + self._interval

    def due(self) -> bool:
        now = self._clock()
        if now < self._next:
            return False
        self._next = now + self._interval
        return True
