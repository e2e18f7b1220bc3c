"""What the poller knows about its own health, rendered as the ``poller.status`` payload."""

from __future__ import annotations

import collections
import statistics
from dataclasses import dataclass, field
from typing import Any

from powerwall_bus.shared.messages import iso_time


@dataclass
class EndpointHealth:
    """Per-endpoint counters and state."""

    interval: float
    state: str = "pending"  # pending | ok | failing | missing | stopped | cooldown | refused
    requests: int = 0
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    consecutive_errors: int = 0
    retry_at: float | None = None  # backing off: not read again before this

    def as_dict(self) -> dict[str, Any]:
        """JSON view."""
        return {
            "interval": self.interval,
            "state": self.state,
            "requests": self.requests,
            "last_success": iso_time(self.last_success) if self.last_success else None,
            "last_error": self.last_error,
            "last_error_at": iso_time(self.last_error_at) if self.last_error_at else None,
            "errors": dict(self.errors),
            "consecutive_errors": self.consecutive_errors,
            "retry_at": iso_time(self.retry_at) if self.retry_at else None,
        }


class Health:
    """Tracks endpoint states; :meth:`changed` tells the poller to publish a status now."""

    def __init__(self, intervals: dict[str, float], started: float) -> None:
        self.started = started
        self.endpoints = {path: EndpointHealth(interval) for path, interval in intervals.items()}
        self.gateway_state = "starting"
        self.firmware: str | None = None
        self.din: str | None = None
        self.cooldown_until: float | None = None
        self.login_blocked_until: float | None = None  # no login before (refused, capped)
        self.logins_last_hour = 0  # login attempts, earlier processes' included
        self.broker_connected = False
        self.resync: dict[str, int] = {}  # the publisher's resync counters (ResyncGate)
        self._changed = True
        self._latencies: collections.deque[float] = collections.deque(maxlen=2000)

    def _set(self, obj: Any, name: str, value: Any) -> None:
        if getattr(obj, name) != value:
            setattr(obj, name, value)
            self._changed = True

    def success(self, endpoint: str, now: float) -> None:
        """A read succeeded."""
        health = self.endpoints[endpoint]
        answered_again = health.state == "stopped"
        health.requests += 1
        health.last_success = now
        health.consecutive_errors = 0
        health.retry_at = None
        if health.state == "pending":
            health.state = "ok"  # the first success is not news; a recovery is
        else:
            self._set(health, "state", "ok")
        # A stopped site controller still serves the static paths: their answers do not
        # mean it runs again; a path it had stopped answering does.
        if self.gateway_state != "site_controller_stopped" or answered_again:
            self._set(self, "gateway_state", "ok")
        self._set(self, "cooldown_until", None)

    def failure(
        self,
        endpoint: str,
        now: float,
        kind: str,
        message: str,
        state: str,
        gateway_state: str | None = None,
        requested: bool = True,
    ) -> None:
        """A read failed; ``state`` is the endpoint's new state."""
        health = self.endpoints[endpoint]
        health.requests += int(requested)
        health.errors[kind] += 1
        health.consecutive_errors += 1
        health.last_error = message
        health.last_error_at = now
        health.retry_at = None
        self._set(health, "state", state)
        if gateway_state is not None:
            self._set(self, "gateway_state", gateway_state)

    def retry_at(self, endpoint: str, when: float) -> None:
        """After a failure: ``endpoint`` is not read again before ``when`` (not news by itself:
        the failure's state change is)."""
        self.endpoints[endpoint].retry_at = when

    def cooldown(self, until: float) -> None:
        """The gateway rate-limited us: nothing is sent until ``until``."""
        self._set(self, "cooldown_until", until)
        self._set(self, "gateway_state", "cooldown")

    def session_refused(self) -> None:
        """Every path that needs the session is refused, even after a fresh login."""
        self._set(self, "gateway_state", "session_refused")

    def identity(self, din: str | None, firmware: str | None) -> None:
        """Record the gateway's DIN and firmware."""
        self._set(self, "din", din)
        self._set(self, "firmware", firmware)

    def broker(self, connected: bool) -> None:
        """Record the broker connection state."""
        self._set(self, "broker_connected", connected)

    def published(self, latency: float) -> None:
        """A message was confirmed ``latency`` seconds after its reading was taken."""
        self._latencies.append(latency)

    def changed(self) -> bool:
        """True once after any state change."""
        changed, self._changed = self._changed, False
        return changed

    def latency_ms(self) -> dict[str, float | int | None]:
        """Publish latency percentiles over the recent messages."""
        samples = sorted(self._latencies)
        if not samples:
            return {"p50": None, "p99": None, "samples": 0}
        p99_index = min(len(samples) - 1, round(0.99 * (len(samples) - 1)))
        return {
            "p50": round(statistics.median(samples) * 1000, 2),
            "p99": round(samples[p99_index] * 1000, 2),
            "samples": len(samples),
        }

    def payload(self, now: float, logins: int, buffer: dict[str, int]) -> dict[str, Any]:
        """The ``poller.status`` payload."""
        return {
            "started": iso_time(self.started),
            "uptime_s": round(now - self.started, 1),
            "gateway_state": self.gateway_state,
            "firmware": self.firmware,
            "din": self.din,
            "cooldown_until": iso_time(self.cooldown_until) if self.cooldown_until else None,
            "logins": logins,
            "logins_last_hour": self.logins_last_hour,
            "login_blocked_until": (
                iso_time(self.login_blocked_until) if self.login_blocked_until else None
            ),
            "broker_connected": self.broker_connected,
            "buffer": buffer,
            "publish_latency_ms": self.latency_ms(),
            "resync": dict(self.resync),
            "endpoints": {path: h.as_dict() for path, h in self.endpoints.items()},
        }
