"""What the producer knows about Octopus, and what each poll's outcome changes: no I/O.

:class:`Tracker` takes each poll's result (a plan, or the error it ended with), decides
when to ask next, whether the message must go out now (the plan or the state changed),
and writes the one log line of each state change:

* ``Octopus reachable: plan of 2 dispatches, next at 13:00Z``
* ``Octopus plan changed: 3 dispatches, next at 23:30Z``
* ``Octopus unreachable (...); next try at ...`` / ``Octopus rate limits us (...) until ...``
* ``Octopus refused the API key (...)`` (ERROR), ``no Octopus device to follow (...)``

An unchanged plan, or the same trouble again, logs nothing: the message still goes out
every ``publish_every`` seconds, carrying the state and the last plan's ``fetched_at``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from powerwall_bus.shared.errors import (
    OctopusAuthError,
    OctopusDeviceError,
    OctopusError,
    OctopusRateLimited,
    OctopusUnreachable,
)
from powerwall_bus.shared.octopus.client import PlanResult
from powerwall_bus.shared.octopus.message import PlanMessage
from powerwall_bus.shared.octopus.plan import DispatchPlan
from powerwall_bus.shared.retry import Backoff

_LOGGER = logging.getLogger(__name__)

#: Without a device to follow, look again this often at most (someone may register one).
NO_DEVICE_RETRY = 600.0
#: Octopus may make us wait this long at most (a longer Retry-After is cut to it).
RATE_LIMIT_CAP = 3600.0


def _at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def describe_plan(plan: DispatchPlan, now: float) -> str:
    """``2 dispatches, next at 2026-01-14 13:00:00Z`` (the next one not yet over)."""
    count = len(plan.dispatches)
    upcoming = [d for d in plan.dispatches if d.end.timestamp() > now]
    noun = "dispatch" if count == 1 else "dispatches"
    if not upcoming:
        return f"{count} {noun}, none to come"
    return f"{count} {noun}, next at {_at(upcoming[0].start.timestamp())}"


def _state_of(error: OctopusError) -> str:
    if isinstance(error, OctopusRateLimited):
        return "rate_limited"
    if isinstance(error, OctopusAuthError):
        return "refused"
    if isinstance(error, OctopusDeviceError):
        return "no_device"
    if isinstance(error, OctopusUnreachable):
        return "unreachable"
    return "error"


@dataclass(frozen=True)
class Outcome:
    """What one poll changed: publish now? when to ask Octopus next (epoch s)?"""

    publish: bool
    next_poll: float


class Tracker:
    """The state behind the ``octopus.plan`` message, one poll at a time."""

    def __init__(
        self,
        account: str,
        *,
        poll_interval: float,
        refused_retry: float,
        started: float,
    ) -> None:
        self.account = account
        self._poll_interval = poll_interval
        self._refused_retry = refused_retry
        self.state = "error"
        self.since = started
        self.retry_at: float | None = None
        self.result: PlanResult | None = None
        self._first = True
        self._trouble = Backoff(first=min(30.0, poll_interval), cap=max(poll_interval, 600.0))
        self._limited = Backoff(first=poll_interval, cap=max(poll_interval, 1800.0), jitter=0.2)

    @staticmethod
    def _content(result: PlanResult | None) -> object:
        if result is None:
            return None
        plan = result.plan
        return (plan.device_id, plan.dispatches, result.source, result.device_state, result.note)

    def succeeded(self, result: PlanResult, now: float) -> Outcome:
        """A plan was fetched."""
        changed = self._content(result) != self._content(self.result)
        recovered = self.state != "ok"
        self.result = result
        self._trouble.succeeded()
        self._limited.succeeded()
        if recovered:
            self.state, self.since, self.retry_at = "ok", now, None
            _LOGGER.info(
                "Octopus reachable (%s query): plan of %s",
                result.source,
                describe_plan(result.plan, now),
            )
        elif changed:
            _LOGGER.info("Octopus plan changed: %s", describe_plan(result.plan, now))
        self._first = False
        return Outcome(publish=changed or recovered, next_poll=now + self._poll_interval)

    def failed(self, error: OctopusError, now: float) -> Outcome:
        """A poll ended with ``error``."""
        state = _state_of(error)
        if state == "rate_limited":
            assert isinstance(error, OctopusRateLimited)
            retry = min(max(error.until, now + self._limited.next_delay()), now + RATE_LIMIT_CAP)
        elif state == "refused":
            retry = now + self._refused_retry
        elif state == "no_device":
            retry = now + max(self._poll_interval, NO_DEVICE_RETRY)
        else:
            retry = now + self._trouble.next_delay()
        changed = state != self.state or self._first
        self._first = False
        self.retry_at = retry
        if changed:
            self.state, self.since = state, now
            self._log(state, error, retry)
        return Outcome(publish=changed, next_poll=retry)

    def _log(self, state: str, error: OctopusError, retry: float) -> None:
        when = _at(retry)
        if state == "rate_limited":
            _LOGGER.warning("Octopus rate limits us (%s) until %s", error, when)
        elif state == "refused":
            _LOGGER.error("%s; trying again at %s", error, when)
        elif state == "no_device":
            _LOGGER.error("no Octopus device to follow: %s; looking again at %s", error, when)
        elif state == "unreachable":
            _LOGGER.warning("Octopus unreachable (%s); next try at %s", error, when)
        else:
            _LOGGER.warning("Octopus answered with an error (%s); next try at %s", error, when)

    def message(self, now: float) -> PlanMessage:
        """The message for the state as it is now."""
        result = self.result
        return PlanMessage(
            account=self.account,
            time=datetime.fromtimestamp(now, UTC),
            state=self.state,
            since=datetime.fromtimestamp(self.since, UTC),
            plan=None if result is None else result.plan,
            retry_at=None if self.retry_at is None else datetime.fromtimestamp(self.retry_at, UTC),
            source=None if result is None else result.source,
            device_state=None if result is None else result.device_state,
            note=None if result is None else result.note,
        )
