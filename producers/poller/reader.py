"""The gateway side of the poller: read on schedule, turn readings into messages.

One thread, one request at a time. What follows a failed read is decided by the client's
error type, in the table of :mod:`~powerwall_bus.producers.poller.error_policy`:

* 429 (``RateLimited``): every endpoint waits for the end of the cool-down; not one request
  is sent meanwhile (the client refuses too, as a second guard).
* 404 (``EndpointNotFound``): the endpoint leaves the schedule until the firmware changes
  (seen on the next /api/status read).
* unreachable / timeout: back off with jitter, doubling up to ``backoff_max``.
* login refused: wait a cool-down; the client will not retry a refused login sooner anyway.
* 502 with no body: the site controller is stopped; keep the schedule, say so in the status.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from powerwall_bus.producers.poller.error_policy import (
    LOUD_ATTEMPTS,
    PAUSE_ON_503,
    Then,
    error_label,
    policy_for,
)
from powerwall_bus.producers.poller.health import Health
from powerwall_bus.producers.poller.outbox import Outbox
from powerwall_bus.producers.poller.schedule import Schedule
from powerwall_bus.shared import contract
from powerwall_bus.shared.errors import GatewayError, RateLimited
from powerwall_bus.shared.gateway.client import STATUS_PATH, VITALS_PATH, GatewayClient
from powerwall_bus.shared.messages import (
    Reading,
    meter_stream_message,
    poller_status_message,
    reading_message,
)
from powerwall_bus.shared.retry import Backoff
from powerwall_bus.shared.settings import PollerSettings

_LOGGER = logging.getLogger(__name__)

METERS_PATH = "/api/meters/aggregates"
SOE_PATH = "/api/system_status/soe"


def intervals_for(settings: PollerSettings) -> dict[str, float]:
    """Endpoint -> interval, in the contract table's order (ties are broken by it: /api/status
    first, the state of energy just before the meters), then the listed slow endpoints."""
    intervals: dict[str, float] = {}
    for endpoint in contract.ENDPOINTS:
        if endpoint.poll is not None and endpoint.poll != contract.LISTED:
            intervals[endpoint.path] = float(getattr(settings, endpoint.poll))
    for path in settings.slow_endpoints:
        intervals.setdefault(path, settings.slow_interval)
    return intervals


def messages_per_hour(settings: PollerSettings) -> float:
    """How many messages the default schedule produces in an hour (sizes the outbox)."""
    per_hour = sum(3600.0 / interval for interval in intervals_for(settings).values())
    if settings.meter_stream:
        per_hour += 3600.0 / settings.meters_interval
    return per_hour + 3600.0 / settings.status_interval * 2  # status: periodic and on change


class GatewayReader:
    """Runs the schedule against the gateway and fills the outbox."""

    def __init__(
        self,
        client: GatewayClient,
        settings: PollerSettings,
        outbox: Outbox,
        health: Health,
        stop: threading.Event,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        name: str = "",
    ) -> None:
        self._client = client
        self._name = name  # gateway.name: sent with every message, for consumers to follow
        self._settings = settings
        self._outbox = outbox
        self._health = health
        self._stop = stop
        self._clock = clock
        self._rng = rng or random.Random()
        self.schedule = Schedule(intervals_for(settings), clock())
        # Unreachable: 2 s, 4 s, ... up to backoff_max, jittered so restarts do not synchronise.
        self._unreachable = Backoff(
            first=2.0, cap=settings.backoff_max, jitter=0.5, rng=self._rng.random
        )
        self._latest_soe: float | None = None
        # The first status goes out after a second, once /api/status told us who we read.
        self._last_status = clock()

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        """Read until the stop event is set."""
        _LOGGER.info(
            "polling %s every %.0f s, %d endpoints in all",
            METERS_PATH,
            self._settings.meters_interval,
            len(self.schedule.endpoints),
        )
        while not self._stop.is_set():
            self._publish_status_if_due()
            upcoming = self.schedule.next()
            if upcoming is None:
                self._stop.wait(1.0)
                continue
            endpoint, due = upcoming
            wait = due - self._clock()
            # Wake at least every second for the status heartbeat.
            if wait > 0 and (self._stop.wait(min(wait, 1.0)) or wait > 1.0):
                continue
            self._read(endpoint)
        _LOGGER.info("gateway reader stopped")

    def _read(self, endpoint: str) -> None:
        started = self._clock()
        try:
            reading = self._fetch(endpoint)
        except GatewayError as exc:
            self._failed(endpoint, started, exc)
            return
        self._unreachable.succeeded()
        self._health.success(endpoint, reading.time)
        self.schedule.done(endpoint, self._clock())
        self._emit(reading)

    def _failed(self, endpoint: str, started: float, exc: GatewayError) -> None:
        """Carry out the error table's row for ``exc``."""
        policy = policy_for(exc)
        self._health.failure(
            endpoint,
            started,
            error_label(exc),
            str(exc),
            policy.endpoint_state,
            gateway_state=policy.gateway_state,
            requested=policy.requested,
        )
        message = str(exc)
        level = policy.log_level
        then = policy.then
        if then is Then.COOL_DOWN:
            assert isinstance(exc, RateLimited)
            self._health.cooldown(exc.cooldown_until)
            self.schedule.postpone_all(exc.cooldown_until)
            until = time.strftime("%H:%M:%S", time.localtime(exc.cooldown_until))
            message = f"rate limited: no gateway requests until {until}"
        elif then is Then.FORGET_ENDPOINT:
            self.schedule.remove(endpoint)
        elif then is Then.BACK_OFF:
            delay = self._unreachable.next_delay()
            self.schedule.done(endpoint, self._clock())
            self.schedule.postpone_all(self._clock() + delay)
            message = f"{exc}; next attempt in {delay:.1f} s"
            if self._unreachable.failures > LOUD_ATTEMPTS:
                level = logging.DEBUG
        elif then is Then.RELOGIN_LATER:
            self.schedule.postpone_all(self._clock() + self._client_cooldown())
        else:  # NEXT_SLOT, NEXT_SLOT_OR_PAUSE
            self.schedule.done(endpoint, self._clock())
            if then is Then.NEXT_SLOT_OR_PAUSE and getattr(exc, "status", None) == 503:
                # the gateway asks for a pause on this endpoint
                self.schedule.postpone(endpoint, self._clock() + PAUSE_ON_503)
        if level is not None:
            _LOGGER.log(level, "%s", message)

    def _client_cooldown(self) -> float:
        return max(self._client.cooldown_remaining, 60.0)

    # ------------------------------------------------------------------ readings

    def _fetch(self, endpoint: str) -> Reading:
        decoded: Any = None
        if endpoint == STATUS_PATH:
            previous = self._client.firmware
            payload: Any = self._client.get_status()
            if previous is not None and self._client.firmware != previous:
                restored = self.schedule.restore_all(self._clock())
                if restored:
                    _LOGGER.info("firmware changed: reading %s again", ", ".join(restored))
            self._health.identity(self._client.din, self._client.firmware)
        elif endpoint == VITALS_PATH:
            payload, decoded = self._client.read_vitals()
        else:
            payload = self._client.get_json(endpoint)
        return Reading(endpoint, self._clock(), self._gateway_id(), payload, decoded)

    def _gateway_id(self) -> str:
        if self._client.din is None:
            try:
                self._client.get_status()
                self._health.identity(self._client.din, self._client.firmware)
            except GatewayError:
                return "unknown"
        return self._client.din or "unknown"

    def _emit(self, reading: Reading) -> None:
        self._outbox.put(reading_message(reading, self._name), reading.time)
        if reading.endpoint == SOE_PATH and isinstance(reading.payload, dict):
            percentage = reading.payload.get("percentage")
            if isinstance(percentage, int | float):
                self._latest_soe = float(percentage)
        if (
            reading.endpoint == METERS_PATH
            and self._settings.meter_stream
            and self._latest_soe is not None
            and isinstance(reading.payload, dict)
        ):
            message = meter_stream_message(
                reading.time, self._latest_soe, reading.payload, reading.gateway, self._name
            )
            self._outbox.put(message, reading.time)

    # ------------------------------------------------------------------ status

    def _publish_status_if_due(self, force: bool = False) -> None:
        now = self._clock()
        since_last = now - self._last_status
        # A change is reported at once, but at most once a second (a flapping link would
        # otherwise flood the bus with status messages).
        changed = since_last >= 1.0 and self._health.changed()
        if not (force or changed or since_last >= self._settings.status_interval):
            return
        self._last_status = now
        buffer = {
            "queued": len(self._outbox),
            "capacity": self._outbox.capacity,
            "dropped": self._outbox.dropped,
        }
        payload = self._health.payload(now, self._client.logins, buffer)
        din = self._client.din or contract.UNKNOWN_GATEWAY
        message = poller_status_message(now, din, payload, self._name)
        self._outbox.put(message, now)

    def publish_final_status(self) -> None:
        """One last status at shutdown."""
        self._health.gateway_state = "stopped"
        self._publish_status_if_due(force=True)
