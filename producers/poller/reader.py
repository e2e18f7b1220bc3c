"""The gateway side of the poller: read on schedule, turn readings into messages.

One thread, one request at a time. What follows a failed read is decided by the client's
error type, in the table of :mod:`~powerwall_bus.producers.poller.error_policy`:

* 429 (``RateLimited``): every endpoint waits for the end of the cool-down; not one request
  is sent meanwhile (the client refuses too, as a second guard).
* 404 (``EndpointNotFound``): the endpoint leaves the schedule until the firmware changes
  (seen on the next /api/status read).
* unreachable / timeout: back off with jitter, doubling up to ``backoff_max``.
* login refused: wait a cool-down; the client will not retry a refused login sooner anyway.
* 401/403 on one path even after a fresh login (``SessionRejected``): that path is refused
  and backs off alone (1 min doubling to 1 h), with no new login; the others go on. Only
  when every path that needs the session is refused is the gateway ``session_refused``.
* hourly login cap reached: the endpoint waits for the cap's end; no request meanwhile.
* 5xx: that endpoint waits the gateway's ``Retry-After``, else 5 s doubling to 60 s.
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
    REFUSED_CAP,
    REFUSED_FIRST,
    SERVER_ERROR_CAP,
    SERVER_ERROR_FIRST,
    Then,
    error_label,
    policy_for,
)
from powerwall_bus.producers.poller.health import Health
from powerwall_bus.producers.poller.outbox import Outbox
from powerwall_bus.producers.poller.relay import READ_ONLY, Answer, Inbox, Pending, execute
from powerwall_bus.producers.poller.schedule import Schedule
from powerwall_bus.producers.poller.trouble import TroubleLog
from powerwall_bus.shared import contract
from powerwall_bus.shared.errors import (
    GatewayError,
    GatewayHTTPError,
    LoginCapReached,
    RateLimited,
)
from powerwall_bus.shared.gateway.client import (
    OPEN_PATHS,
    STATUS_PATH,
    VITALS_PATH,
    GatewayClient,
)
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
        inbox: Inbox | None = None,
    ) -> None:
        self._client = client
        self._inbox = inbox  # signed commands to post between reads (relay.py); None: off
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
        # Per endpoint, while it keeps failing: 5xx, and paths refused after a fresh login.
        self._server_errors: dict[str, Backoff] = {}
        self._refusals: dict[str, Backoff] = {}
        self._latest_soe: float | None = None
        self._trouble = TroubleLog()
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
            self._serve_commands()
            upcoming = self.schedule.next()
            if upcoming is None:
                self._pause(1.0)
                continue
            endpoint, due = upcoming
            wait = due - self._clock()
            # Wake at least every second for the status heartbeat, at once for a command.
            if wait > 0:
                self._pause(min(wait, 1.0))
                continue
            self._read(endpoint)
        _LOGGER.info("gateway reader stopped")

    def _pause(self, seconds: float) -> None:
        if self._inbox is None:
            self._stop.wait(seconds)
        else:
            self._inbox.wait(seconds)

    # ------------------------------------------------------------------ commands

    def _serve_commands(self) -> None:
        """Post the signed commands waiting, one at a time, between two reads."""
        if self._inbox is None:
            return
        while not self._stop.is_set():
            pending = self._inbox.take()
            if pending is None:
                return
            self._relay(pending)

    def _relay(self, pending: Pending) -> None:
        started = self._clock()
        done = execute(self._client, pending, self._client.din or "", self._clock)
        if isinstance(done.error, RateLimited):  # the 429 holds every request, reads too
            self._health.cooldown(done.error.cooldown_until)
            self.schedule.postpone_all(done.error.cooldown_until)
        if done.refusal is None:
            # A list (once a minute per dispatcher) is routine; a change is news.
            _LOGGER.log(
                logging.DEBUG if pending.call in READ_ONLY else logging.INFO,
                "relayed a signed %s command to the gateway (answered in %.2f s)",
                pending.call.value,
                self._clock() - started,
            )
        else:
            _LOGGER.warning(
                "a signed %s command was not relayed: %s, %s",
                pending.call.value,
                done.refusal.reason.value,
                done.refusal.detail,
            )
        answer = Answer(pending.reply_to, pending.correlation_id, done.body, done.relayed)
        self._inbox.answer(answer)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ reads

    def _read(self, endpoint: str) -> None:
        started = self._clock()
        try:
            reading = self._fetch(endpoint)
        except GatewayError as exc:
            self._failed(endpoint, started, exc)
            self._tell(str(exc)[:200])
            return
        self._unreachable.succeeded()
        self._server_errors.pop(endpoint, None)
        if self._refusals.pop(endpoint, None) is not None:
            _LOGGER.info("%s is read again: no longer refused", endpoint)
        self._health.success(endpoint, reading.time)
        self._note_session_refused()
        self.schedule.done(endpoint, self._clock())
        self._tell()
        self._emit(reading)

    def _tell(self, cause: str = "") -> None:
        """Log the gateway's state when it changed (or a reminder while trouble lasts)."""
        upcoming = self.schedule.next()
        line = self._trouble.observe(
            self._health.gateway_state,
            self._clock(),
            cause=cause,
            next_attempt=upcoming[1] if upcoming else None,
        )
        if line is not None:
            level, text = line
            _LOGGER.log(level, "%s", text)

    def _failed(self, endpoint: str, started: float, exc: GatewayError) -> None:
        """Carry out the error table's row for ``exc``."""
        policy = policy_for(exc)
        was = self._health.endpoints[endpoint].state
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
        elif then is Then.RETRY_LATER:
            assert isinstance(exc, GatewayHTTPError)
            backoff = self._server_errors.setdefault(
                endpoint, self._backoff(SERVER_ERROR_FIRST, SERVER_ERROR_CAP)
            )
            delay = backoff.next_delay()
            if exc.retry_after is not None:
                delay = exc.retry_after  # the gateway said when: that, not our guess
            self._retry(endpoint, delay)
        elif then is Then.REFUSE_PATH:
            backoff = self._refusals.setdefault(endpoint, self._backoff(REFUSED_FIRST, REFUSED_CAP))
            delay = self._retry(endpoint, backoff.next_delay())
            message = f"{exc}; the path is refused, next attempt in {delay:.0f} s"
            if was == "refused":
                level = logging.DEBUG  # one line when a path becomes refused, not each retry
            self._note_session_refused()
        elif then is Then.WAIT_FOR_LOGIN:
            assert isinstance(exc, LoginCapReached)
            self._retry(endpoint, exc.until - self._clock())
        else:  # NEXT_SLOT
            self.schedule.done(endpoint, self._clock())
        if policy.gateway_state is not None:
            level = logging.DEBUG  # the gateway's state line says it (trouble.py)
        if level is not None:
            _LOGGER.log(level, "%s", message)

    def _client_cooldown(self) -> float:
        login_wait = self._client.login_blocked_until - self._clock()
        return max(self._client.cooldown_remaining, login_wait, 60.0)

    def _backoff(self, first: float, cap: float) -> Backoff:
        return Backoff(first=first, cap=cap, jitter=0.2, rng=self._rng.random)

    def _retry(self, endpoint: str, delay: float) -> float:
        """Read ``endpoint`` again no sooner than ``delay`` s from now (at its first grid slot
        from then); the status says when. Returns the real wait."""
        now = self._clock()
        self.schedule.done(endpoint, now)
        self.schedule.postpone(endpoint, now + max(delay, 0.0))
        due = self.schedule.due(endpoint)
        self._health.retry_at(endpoint, due)
        return due - now

    def _note_session_refused(self) -> None:
        """Every path that needs the session is refused: the session (or the account) is bad."""
        needs_session = [e for e in self.schedule.endpoints if e not in OPEN_PATHS]
        states = self._health.endpoints
        if needs_session and all(states[e].state == "refused" for e in needs_session):
            self._health.session_refused()

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
        self._health.logins_last_hour = self._client.logins_last_hour
        self._health.login_blocked_until = self._client.login_blocked_until or None
        payload = self._health.payload(now, self._client.logins, buffer)
        din = self._client.din or contract.UNKNOWN_GATEWAY
        message = poller_status_message(now, din, payload, self._name)
        self._outbox.put(message, now)

    def publish_final_status(self) -> None:
        """One last status at shutdown."""
        self._health.gateway_state = "stopped"
        self._publish_status_if_due(force=True)
