"""When to read what: a drift-free schedule, one read at a time.

Each endpoint has a fixed grid of due times ``start + k * interval``. A read that runs late
(slow gateway) makes the next read of that endpoint happen as soon as possible but never
makes up for missed grid points: the schedule skips them instead of piling requests up.
When several endpoints are due at once, they run in the order they were registered, so the
state of energy is read just before the meters it is published with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Job:
    """One endpoint on the schedule."""

    endpoint: str
    interval: float
    order: int
    due: float
    active: bool = True


class Schedule:
    """The due times of every endpoint. Pure: the caller supplies the clock readings."""

    def __init__(self, intervals: dict[str, float], start: float) -> None:
        self._jobs = {
            endpoint: Job(endpoint, interval, order, start)
            for order, (endpoint, interval) in enumerate(intervals.items())
        }

    @property
    def endpoints(self) -> list[str]:
        """Endpoints currently on the schedule."""
        return [job.endpoint for job in self._jobs.values() if job.active]

    def interval(self, endpoint: str) -> float:
        """The configured interval of an endpoint."""
        return self._jobs[endpoint].interval

    def due(self, endpoint: str) -> float:
        """When ``endpoint`` is read next."""
        return self._jobs[endpoint].due

    def next(self) -> tuple[str, float] | None:
        """The endpoint to read next and when; None when nothing is scheduled."""
        active = [job for job in self._jobs.values() if job.active]
        if not active:
            return None
        job = min(active, key=lambda j: (j.due, j.order))
        return job.endpoint, job.due

    def done(self, endpoint: str, now: float) -> None:
        """Record that ``endpoint`` was read (or tried) at ``now``; move it to its next slot."""
        job = self._jobs[endpoint]
        job.due = _next_slot(job.due, job.interval, now)

    def postpone(self, endpoint: str, until: float) -> None:
        """Do not read ``endpoint`` before ``until`` (its next grid point at or after it)."""
        job = self._jobs[endpoint]
        if job.due < until:
            job.due = _slot_at_or_after(job.due, job.interval, until)

    def postpone_all(self, until: float) -> None:
        """Do not read anything before ``until`` (rate-limit cool-down, unreachable back-off)."""
        for endpoint in self._jobs:
            self.postpone(endpoint, until)

    def remove(self, endpoint: str) -> None:
        """Take an endpoint off the schedule (it answered 404 on this firmware)."""
        self._jobs[endpoint].active = False

    def restore_all(self, now: float) -> list[str]:
        """Put removed endpoints back (the firmware changed); returns them."""
        restored = []
        for job in self._jobs.values():
            if not job.active:
                job.active = True
                job.due = _slot_at_or_after(job.due, job.interval, now)
                restored.append(job.endpoint)
        return restored


def _slot_at_or_after(due: float, interval: float, moment: float) -> float:
    if due >= moment:
        return due
    return due + math.ceil((moment - due) / interval - 1e-9) * interval


def _next_slot(due: float, interval: float, now: float) -> float:
    """The grid point after ``due``; if that already passed, the first one not before now."""
    following = due + interval
    return following if following >= now else _slot_at_or_after(following, interval, now)
