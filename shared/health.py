"""When a consumer that serves the bus's data calls itself unhealthy: the rules, once.

The proxy's and the Home Assistant facade's ``/health`` answer 503 with a list of problems
that a person (or a container's health check) can act on. Both judge the same facts, so the
rules live here as one pure function; each service adds its own counters to the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from powerwall_bus.shared.gateway.states import TROUBLE

__all__ = ["Freshness", "health_problems"]


@dataclass(frozen=True)
class Freshness:
    """What a serving consumer knows about the data it serves."""

    bus_connected: bool
    meters_age: float | None  # seconds since the newest meters reading; None: none yet
    max_age: float  # older than this is stale
    poller_status: Any  # the poller's status payload, if any (a dict), else None
    several_gateways: str | None  # the gateway follower's problem, if any

    @property
    def gateway_state(self) -> str | None:
        """The poller's word for the gateway (``gateway_state``), when it published one."""
        if not isinstance(self.poller_status, dict):
            return None
        state = self.poller_status.get("gateway_state")
        return state if isinstance(state, str) else None


def health_problems(facts: Freshness) -> list[str]:
    """What is wrong, in words; empty when healthy.

    Unhealthy: no broker connection; no meter reading yet, or the newest older than
    ``max_age``; the poller reporting the gateway in trouble (said at once, before the data
    has had time to grow old); readings from several gateways when one is expected.
    """
    problems = []
    if not facts.bus_connected:
        problems.append("not connected to the message bus")
    if facts.meters_age is None:
        problems.append("no meter data received yet")
    elif facts.meters_age > facts.max_age:
        problems.append(f"meter data is {facts.meters_age:.0f} s old")
    if facts.gateway_state in TROUBLE:
        problems.append(f"the poller reports the gateway as {facts.gateway_state}")
    if facts.several_gateways is not None:
        problems.append(facts.several_gateways)
    return problems
