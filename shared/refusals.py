"""Counting and logging refused deliveries without letting a flood flood the log.

Whoever can publish to the broker can send a consumer any number of bad messages; logging
each would turn a forger (or a misconfigured poller) into a disk-filling machine. A
:class:`RefusalLog` counts every refusal per reason (for ``/stats`` and tests) and logs the
first of each reason at once, then at most once per ``interval`` per reason, with how many
came since. Thread-safe: the proxy counts on its bus thread and reads on its event loop.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["RefusalLog"]


class RefusalLog:
    """Refusals by reason, logged at most once per ``interval`` per reason."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._logged_at: dict[str, float] = {}
        self._unlogged: collections.Counter[str] = collections.Counter()

    def refused(self, reason: str, detail: str, source: str) -> None:
        """Count one refusal (``source``: the routing key) and log it unless one of the same
        reason was logged less than ``interval`` ago."""
        now = self._clock()
        with self._lock:
            self._counts[reason] += 1
            last = self._logged_at.get(reason)
            if last is not None and now - last < self._interval:
                self._unlogged[reason] += 1
                return
            self._logged_at[reason] = now
            since = self._unlogged.pop(reason, 0)
            total = self._counts[reason]
        more = f"; {since} more refused for this reason since the last report" if since else ""
        self._logger.warning(
            "refused a message on %s (%s, %d so far): %s%s", source, reason, total, detail, more
        )

    def counts(self) -> dict[str, int]:
        """Refusals so far, by reason."""
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        """Every refusal so far."""
        with self._lock:
            return sum(self._counts.values())
