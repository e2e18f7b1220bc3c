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
    GatewayServerError,
    GatewayUnreachable,
    LoginCapReached,
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
    #: 5xx: this endpoint alone waits the gateway's Retry-After, or else a short back-off
    #: (SERVER_ERROR_FIRST doubling to SERVER_ERROR_CAP); a success starts it over.
    RETRY_LATER = "retry later"
    #: 401/403 even after a fresh login: this path alone is refused and backs off
    #: (REFUSED_FIRST doubling to REFUSED_CAP); the others go on, with no new login.
    REFUSE_PATH = "refuse path"
    #: The hourly login cap is reached: this endpoint waits for the cap's end (no request).
    WAIT_FOR_LOGIN = "wait for login"


#: 5xx back-off per endpoint without Retry-After: 5 s, 10, 20, 40, then every 60 s (an
#: endpoint with a longer interval keeps its own pace: delays end on its time grid).
SERVER_ERROR_FIRST = 5.0
SERVER_ERROR_CAP = 60.0
#: A refused path is asked again after 1 min, 2, 4, ... then hourly.
REFUSED_FIRST = 60.0
REFUSED_CAP = 3600.0
#: An unreachable gateway is logged at the row's level this many times in a row, then DEBUG.
LOUD_ATTEMPTS = 3


@dataclass(frozen=True)
class Policy:
    """One row of the table."""

    endpoint_state: str  # failing | missing | stopped | cooldown | refused (status message's)
    then: Then
    gateway_state: str | None = None  # the gateway's state in the status, if it changes
    log_level: int | None = None
    requested: bool = True  # False: refused before sending (inside a cool-down)


POLICIES: dict[type[GatewayError], Policy] = {
    RateLimited: Policy("cooldown", Then.COOL_DOWN, "cooldown", logging.WARNING, requested=False),
    EndpointNotFound: Policy("missing", Then.FORGET_ENDPOINT),
    GatewayUnreachable: Policy("failing", Then.BACK_OFF, "unreachable", logging.WARNING),
    SiteControllerStopped: Policy("stopped", Then.NEXT_SLOT, "site_controller_stopped"),
    SessionRejected: Policy("refused", Then.REFUSE_PATH, log_level=logging.WARNING),
    LoginCapReached: Policy("cooldown", Then.WAIT_FOR_LOGIN, "login_capped", requested=False),
    GatewayAuthError: Policy("failing", Then.RELOGIN_LATER, "login_refused", logging.ERROR),
    GatewayServerError: Policy("failing", Then.RETRY_LATER),
    GatewayHTTPError: Policy("failing", Then.NEXT_SLOT),
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
