"""One log line when the gateway gets into trouble, one when it is out, a reminder between.

The error table decides what to *do* about each failed read; this decides what a person
reading the log is *told*: the gateway's state (``poller.status`` ``gateway_state``) is
watched after every read, and each change is one line: trouble with its cause and the time
of the next attempt, recovery with how long it lasted. While trouble goes on, a reminder
every :data:`REMINDER` seconds says it still does, so a wrong password or a stopped site
controller is never said once and then forgotten, nor said at every attempt.

Pure: the caller passes the time and logs the line returned.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from powerwall_bus.shared.gateway.states import OK, trouble_words

__all__ = ["REMINDER", "TroubleLog"]

#: Seconds between two reminders of the same trouble.
REMINDER = 300.0

#: Trouble that needs a person (the password), not patience.
_NEEDS_A_PERSON = frozenset({"login_refused", "session_refused"})


def _clock_time(moment: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(moment))


@dataclass
class TroubleLog:
    """Turns the gateway's state after each read into log lines (level, text)."""

    reminder: float = REMINDER
    state: str = "starting"
    since: float | None = None  # when the current trouble began
    _next_reminder: float = float("inf")

    def observe(
        self, state: str, now: float, *, cause: str = "", next_attempt: float | None = None
    ) -> tuple[int, str] | None:
        """The line to log for the state after a read, if any."""
        words = trouble_words(state)
        when = f"; next attempt at {_clock_time(next_attempt)}" if next_attempt else ""
        because = f" ({cause})" if cause else ""
        if state == self.state:
            if words is None or now < self._next_reminder:
                return None
            self._next_reminder = now + self.reminder
            lasted = now - (self.since if self.since is not None else now)
            return logging.WARNING, f"still: {words}, for {lasted:.0f} s{because}{when}"
        previous, self.state = self.state, state
        if words is not None:
            if trouble_words(previous) is None:
                self.since = now
            self._next_reminder = now + self.reminder
            level = logging.ERROR if state in _NEEDS_A_PERSON else logging.WARNING
            return level, f"{words}{because}{when}"
        if state == OK and trouble_words(previous) is not None:
            lasted = now - (self.since if self.since is not None else now)
            self.since, self._next_reminder = None, float("inf")
            return logging.INFO, f"the gateway answers again, after {lasted:.0f} s of trouble"
        return None
