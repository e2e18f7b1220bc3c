"""The poller's view of the gateway (``poller.status`` ``gateway_state``), in words.

The poller publishes a state word; the poller's own log, the displays and the proxy's
/health all say what it means. The words live here, once.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["OK", "TROUBLE", "trouble_words"]

OK = "ok"

#: States in which no fresh reading is coming, and what each means for a person.
TROUBLE: Mapping[str, str] = {
    "unreachable": "the gateway is unreachable",
    "cooldown": "the gateway is rate-limiting us (429); waiting",
    "site_controller_stopped": "the gateway's site controller is stopped",
    "login_refused": "the gateway refuses the login (wrong password?)",
    "session_refused": "the gateway refuses our session",
    "login_capped": "the hourly login cap is reached; waiting",
    "stopped": "the poller has stopped",
}


def trouble_words(state: object) -> str | None:
    """What ``state`` means when it is trouble, else None (``ok``, ``starting``, unknown)."""
    return TROUBLE.get(state) if isinstance(state, str) else None
