"""``/health`` of the facade: the proxy's rules, for a process that serves the same data.

503 when any of these holds, each named in ``problems``: not connected to the bus, no meter
data yet, meter data older than ``facade.health_max_age``, the poller reporting the gateway
in trouble (unreachable, rate-limited, refusing the login, site controller stopped...: the
states of :data:`~powerwall_bus.shared.gateway.states.TROUBLE`, said at once rather than
once the data has grown old), or a second gateway on the bus while none was chosen. The
body keeps the proxy's key names where they mean the same (``status``, ``problems``,
``bus_connected``, ``gateway_state``, ``gateway``, ``meters_age_seconds``,
``max_age_seconds``, ``refused_messages``), so one monitor check fits both. The rules are
written again here rather than imported: a component imports only shared/ and its own
package, and the proxy's function works on the proxy's state.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from powerwall_bus import __version__
from powerwall_bus.consumers.facade.sessions import Sessions
from powerwall_bus.consumers.facade.state import AGGREGATES, FacadeState
from powerwall_bus.shared.health import Freshness, health_problems

VERSION = f"powerwall-bus {__version__}"


def health_document(
    state: FacadeState, sessions: Sessions, max_age: float
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of /health: 503 when data is stale or the gateway is down."""
    meters_age = state.age(AGGREGATES)
    gateways = state.gateways()
    facts = Freshness(
        bus_connected=state.bus_connected,
        meters_age=meters_age,
        max_age=max_age,
        poller_status=state.poller,
        several_gateways=gateways.problem(),
    )
    problems = health_problems(facts)
    gateway_state = facts.gateway_state
    body = {
        "version": VERSION,
        "status": "ok" if not problems else "unhealthy",
        "problems": problems,
        "bus_connected": state.bus_connected,
        "gateway_state": gateway_state,
        "gateway": gateways.document(),
        "meters_age_seconds": None if meters_age is None else round(meters_age, 3),
        "max_age_seconds": max_age,
        "refused_messages": state.refused.total(),
        "paths_served": len(state.paths()),
        "sessions": len(sessions),
        "logins": sessions.logins,
        "refused_logins": sessions.refused,
        "current_time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return (200 if not problems else 503), body
