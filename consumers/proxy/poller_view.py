"""What the poller says about itself (``poller.status``), as typed numbers.

The proxy never talks to the gateway; the poller does, and reports how that goes in its
status message (``schema/messages/poller-status.json``). ``/metrics`` and the
pyPowerwall-compatible parts of ``/stats`` and ``/health`` (``connection_health``,
``endpoint_statistics``) all read it through :func:`poller_view`, so they agree with each
other. The payload comes from the bus: every field is checked for its type here, and
anything odd reads as "unknown" (None), never as an exception in a scrape.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

#: The most endpoints and error kinds per endpoint taken from one message: a status message
#: is bounded by the poller's configuration, but label sets must stay bounded whatever comes.
MAX_ENDPOINTS = 64
MAX_ERROR_KINDS = 32
#: The longest text kept from the message (endpoint paths, error kinds, states).
MAX_TEXT = 120


@dataclass(frozen=True)
class EndpointView:
    """One polled gateway path: how often it was read and how that went."""

    path: str
    state: str | None
    requests: int
    errors: dict[str, int]  # error kind (exception name or HTTPnnn) -> count
    consecutive_errors: int
    last_success: float | None  # epoch seconds
    last_error_at: float | None  # epoch seconds

    @property
    def failed(self) -> int:
        """Failed requests (each error counts once)."""
        return sum(self.errors.values())


@dataclass(frozen=True)
class PollerView:
    """The latest ``poller.status``, checked."""

    gateway_state: str | None = None
    firmware: str | None = None
    din: str | None = None
    uptime: float | None = None  # seconds
    cooldown_until: float | None = None  # epoch seconds; None: no cool-down
    logins: int | None = None
    broker_connected: bool | None = None
    queued: int | None = None  # the outbox
    capacity: int | None = None
    dropped: int | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    endpoints: list[EndpointView] = field(default_factory=list)

    def cooling_down(self, now: float) -> bool:
        """Whether the poller holds off the gateway right now (a 429's cool-down)."""
        return self.cooldown_until is not None and self.cooldown_until > now

    @property
    def requests(self) -> int:
        """Requests to the gateway, all endpoints."""
        return sum(endpoint.requests for endpoint in self.endpoints)

    @property
    def failed(self) -> int:
        """Failed requests to the gateway, all endpoints."""
        return sum(endpoint.failed for endpoint in self.endpoints)

    @property
    def consecutive_errors(self) -> int:
        """The longest current run of failures of any endpoint."""
        return max((endpoint.consecutive_errors for endpoint in self.endpoints), default=0)

    @property
    def last_success(self) -> float | None:
        """The latest successful read of any endpoint, epoch seconds."""
        times = [e.last_success for e in self.endpoints if e.last_success is not None]
        return max(times, default=None)


def poller_view(payload: Any) -> PollerView:
    """The view of a ``poller.status`` payload; an empty view for None or junk."""
    if not isinstance(payload, dict):
        return PollerView()
    buffer = _object(payload.get("buffer"))
    latency = _object(payload.get("publish_latency_ms"))
    endpoints = _object(payload.get("endpoints"))
    return PollerView(
        gateway_state=text(payload.get("gateway_state")),
        firmware=text(payload.get("firmware")),
        din=text(payload.get("din")),
        uptime=_number(payload.get("uptime_s")),
        cooldown_until=epoch(payload.get("cooldown_until")),
        logins=_count(payload.get("logins")),
        broker_connected=_flag(payload.get("broker_connected")),
        queued=_count(buffer.get("queued")),
        capacity=_count(buffer.get("capacity")),
        dropped=_count(buffer.get("dropped")),
        latency_p50_ms=_number(latency.get("p50")),
        latency_p99_ms=_number(latency.get("p99")),
        endpoints=[
            _endpoint(path, value)
            for path, value in list(endpoints.items())[:MAX_ENDPOINTS]
            if isinstance(path, str) and isinstance(value, dict)
        ],
    )


def _endpoint(path: str, value: dict[str, Any]) -> EndpointView:
    errors = _object(value.get("errors"))
    return EndpointView(
        path=path[:MAX_TEXT],
        state=text(value.get("state")),
        requests=_count(value.get("requests")) or 0,
        errors={
            kind[:MAX_TEXT]: count
            for kind, raw in list(errors.items())[:MAX_ERROR_KINDS]
            if isinstance(kind, str) and (count := _count(raw)) is not None
        },
        consecutive_errors=_count(value.get("consecutive_errors")) or 0,
        last_success=epoch(value.get("last_success")),
        last_error_at=epoch(value.get("last_error_at")),
    )


def _object(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def text(value: Any) -> str | None:
    """A string field, cut to :data:`MAX_TEXT`; None for anything else."""
    return value[:MAX_TEXT] if isinstance(value, str) else None


def epoch(value: Any) -> float | None:
    """An ISO 8601 time of the contract ("...Z") as epoch seconds; None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None
