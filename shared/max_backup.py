"""A manual backup ("Max Backup") event on the gateway, as the project reasons about it.

The gateway describes one by its start and a duration in seconds (TEDAPI
``ControlEventSchedulingInfo``); everything here uses the ``[start, end)`` interval in aware
UTC, so the dispatcher's decisions, the simulator and the readback agree on one shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["MIN_DURATION", "BackupEvent"]

#: The gateway refuses manual backup events shorter than this.
MIN_DURATION = timedelta(seconds=60)


@dataclass(frozen=True)
class BackupEvent:
    """Max Backup from ``start`` to ``end`` (aware UTC)."""

    start: datetime
    end: datetime

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def active(self, now: datetime) -> bool:
        return self.start <= now < self.end
