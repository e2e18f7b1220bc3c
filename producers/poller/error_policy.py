"""What the poller does after each kind of gateway error: one table, read top to bottom.

The reader asks :func:`policy_for` about the error a read ended with and carries out the
answer; the table, not a chain of ``except`` clauses, is where the behaviour is decided.
The most specific row wins (``GatewayTimeout`` is found under ``GatewayUnreachable``, a
new ``GatewayError`` subclass falls back to the last row).

Each row says how the failure is shown (the endpoint's state, the gateway's state in the
status message, whether a request really went out), what happens to the schedule, and at
which level it is logged (``None``: only counted in the status).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from powerwall_bus.shared.errors import (
    EndpointNotFound,
    GatewayAuthError,
    GatewayError,
    GatewayHTTPError,
    GatewayUnreachable,
    RateLimited,
    SessionRejected,
    SiteControllerStopped,
)


class Then(enum.Enum):
    """What happens to the schedule after the failure."""

    #: 429: every endpoint waits for the end of the cool-down; not one request meanwhile.
    COOL_DOWN = "cool down"
    #: 404 on this firmware: the endpoint leaves the schedule until the firmware changes.
    FORGET_ENDPOINT = "forget endpoint"
    #: No answer: every endpoint waits a back-off, doubling while the gateway stays away.
    BACK_OFF = "back off"
    #: Login refused: wait the client's login cool-down, then log in again.
    RELOGIN_LATER = "re-login later"
    #: Keep the grid: the endpoint is read again at its next slot.
    NEXT_SLOT = "next slot"
    #: Keep the grid, except that an endpoint answering 503 pauses for a while.
    NEXT_SLOT_OR_PAUSE = "next slot, pause on 503"


#: How long an endpoint that answered 503 ("service unavailable") is left alone, seconds.
PAUSE_ON_503 = 300.0
#: An unreachable gateway is logged at the row's level this many times in a row, then DEBUG.
LOUD_ATTEMPTS = 3


@dataclass(frozen=True)
class Policy:
    """One row of the table."""

    endpoint_state: str  # failing | missing | stopped | cooldown (the status message's)
    then: Then
    gateway_state: str | None = None  # the gateway's state in the status, if it changes
    log_level: int | None = None
    requested: bool = True  # False: refused before sending (inside a cool-down)


POLICIES: dict[type[GatewayError], Policy] = {
    RateLimited: Policy("cooldown", Then.COOL_DOWN, "cooldown", logging.WARNING, requested=False),
    EndpointNotFound: Policy("missing", Then.FORGET_ENDPOINT),
    GatewayUnreachable: Policy("failing", Then.BACK_OFF, "unreachable", logging.WARNING),
    SiteControllerStopped: Policy("stopped", Then.NEXT_SLOT, "site_controller_stopped"),
    SessionRejected: Policy("failing", Then.NEXT_SLOT, log_level=logging.ERROR),
    GatewayAuthError: Policy("failing", Then.RELOGIN_LATER, "login_refused", logging.ERROR),
    GatewayHTTPError: Policy("failing", Then.NEXT_SLOT_OR_PAUSE),
    GatewayError: Policy("failing", Then.NEXT_SLOT, log_level=logging.WARNING),  # the rest
}


def policy_for(error: GatewayError) -> Policy:
    """The row of the most specific class ``error`` is an instance of."""
    for cls in type(error).__mro__:
        policy = POLICIES.get(cls)
        if policy is not None:
            return policy
    return POLICIES[GatewayError]


def error_label(error: GatewayError) -> str:
    """How the error is counted in the status message: ``HTTP503``, ``GatewayTimeout``."""
    if isinstance(error, GatewayHTTPError):
        return f"HTTP{error.status}"
    return type(error).__name__
