"""The one back-off every retry in the project uses: capped exponential delays with jitter.

Whatever retries (a broker reconnect, a database that went away, an unreachable gateway,
a component the stack restarts) waits ``first`` seconds after the first failure, ``factor``
times longer after each further one, never more than ``cap``. Jitter draws each delay from
``[delay * (1 - jitter), delay]``, so processes that failed together (a broker restart)
do not all come back in the same instant.

The delay starts over at ``first`` after a success (:meth:`Backoff.succeeded`), or after a
*healthy run*: with ``healthy_after`` set, a run that lasted at least that long before
failing counts as a success. A supervisor needs the second rule: a child that crashes at
once must be restarted ever more slowly, but one that ran for an hour and then died
deserves a quick restart.

The random source and the clock are parameters, so tests see exact delays.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class Backoff:
    """Delays between attempts; one object per thing that retries (it counts failures)."""

    def __init__(
        self,
        *,
        first: float = 1.0,
        cap: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.5,
        healthy_after: float | None = None,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if first <= 0 or cap <= 0 or factor < 1 or not 0 <= jitter <= 1:
            raise ValueError("need first > 0, cap > 0, factor >= 1 and 0 <= jitter <= 1")
        self.first = first
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self.healthy_after = healthy_after
        self._rng = rng
        self._clock = clock
        self._failures = 0
        self._run_started: float | None = None

    @property
    def failures(self) -> int:
        """Failures since the last success (or healthy run)."""
        return self._failures

    def nominal(self, failures: int) -> float:
        """The delay after ``failures`` failures in a row, before jitter."""
        delay = self.first
        for _ in range(max(0, failures - 1)):  # a loop, not a power: no overflow, stops at cap
            if delay >= self.cap:
                break
            delay *= self.factor
        return min(delay, self.cap)

    def succeeded(self) -> None:
        """An attempt worked: the next failure waits ``first`` again."""
        self._failures = 0
        self._run_started = None

    def running(self) -> None:
        """A run (a connection, a child process) starts now; see ``healthy_after``."""
        self._run_started = self._clock()

    def next_delay(self) -> float:
        """Count one failure; how long to wait before the next attempt.

        If :meth:`running` was called, the run's length decides whether it was healthy.
        """
        ran_for = 0.0
        if self._run_started is not None:
            ran_for = self._clock() - self._run_started
        return self.after_run(ran_for)

    def after_run(self, ran_for: float) -> float:
        """Count one failure that ended a run of ``ran_for`` seconds; the delay to wait."""
        self._run_started = None
        if self.healthy_after is not None and ran_for >= self.healthy_after:
            self._failures = 0
        self._failures += 1
        delay = self.nominal(self._failures)
        return delay * (1.0 - self.jitter * self._rng())
