"""The one way tests wait for something that happens in another thread or process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, *, step: float = 0.05) -> T:
    """Call ``condition`` until it answers something truthy, or ``timeout`` seconds pass.

    Returns that answer, or the last (falsy) one when time ran out, so a test writes
    ``assert wait_until(lambda: ..., 10)`` and gets the value it waited for. Real time is
    the point here (a broker, a process): never a timed assertion about speed.
    """
    deadline = time.monotonic() + timeout
    while True:
        answer = condition()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(step)
