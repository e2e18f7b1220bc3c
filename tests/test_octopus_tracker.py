"""The producer's state machine without I/O: when to publish, when to ask again, what to log."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from powerwall_bus.producers.octopus.tracker import RATE_LIMIT_CAP, Tracker, describe_plan
from powerwall_bus.shared.errors import (
    OctopusApiError,
    OctopusAuthError,
    OctopusDeviceError,
    OctopusError,
    OctopusRateLimited,
    OctopusUnreachable,
)
from powerwall_bus.shared.octopus.client import PlanResult
from powerwall_bus.shared.octopus.plan import DispatchPlan, PlannedDispatch

T0 = 1_800_000_000.0


def _plan(*hours: int) -> PlanResult:
    slots = tuple(
        PlannedDispatch(
            datetime.fromtimestamp(T0 + h * 3600, UTC),
            datetime.fromtimestamp(T0 + h * 3600 + 1800, UTC),
            "SMART",
            1.0,
        )
        for h in hours
    )
    return PlanResult(DispatchPlan("dev", datetime.fromtimestamp(T0, UTC), slots), "flex")


def _tracker() -> Tracker:
    return Tracker("A-1", poll_interval=120.0, refused_retry=1800.0, started=T0)


def test_publish_on_change_and_recovery_only(caplog: pytest.LogCaptureFixture) -> None:
    tracker = _tracker()
    with caplog.at_level(logging.INFO):
        first = tracker.succeeded(_plan(1), T0)
        same = tracker.succeeded(_plan(1), T0 + 120)
        changed = tracker.succeeded(_plan(1, 2), T0 + 240)
        down = tracker.failed(OctopusUnreachable("no answer"), T0 + 360)
        still = tracker.failed(OctopusUnreachable("no answer"), T0 + 400)
        back = tracker.succeeded(_plan(1, 2), T0 + 500)
    assert [o.publish for o in (first, same, changed, down, still, back)] == [
        True,
        False,
        True,
        True,
        False,
        True,
    ]
    assert first.next_poll == T0 + 120 and back.next_poll == T0 + 620
    assert T0 + 360 < down.next_poll <= T0 + 390  # a short back-off, then doubling
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4, messages  # reachable, changed, unreachable, reachable again
    assert messages[1].startswith("Octopus plan changed: 2 dispatches, next at")
    message = tracker.message(T0 + 500)
    assert message.state == "ok" and message.retry_at is None
    assert message.plan is not None and len(message.plan.dispatches) == 2


@pytest.mark.parametrize(
    ("error", "state", "wait"),
    [
        (OctopusAuthError("Octopus refused the API key"), "refused", 1800.0),
        (OctopusDeviceError("no device"), "no_device", 600.0),
        (OctopusRateLimited("KT-CT-1199", until=T0 + 10), "rate_limited", 120.0),
        (
            OctopusRateLimited("Retry-After: a day", until=T0 + 86400),
            "rate_limited",
            RATE_LIMIT_CAP,
        ),
        (OctopusApiError("KT-CT-9999 Something"), "error", None),
    ],
)
def test_each_trouble_has_its_state_and_wait(
    error: OctopusError, state: str, wait: float | None
) -> None:
    tracker = _tracker()
    outcome = tracker.failed(error, T0)
    assert outcome.publish and tracker.state == state
    if wait is not None:
        assert outcome.next_poll == pytest.approx(T0 + wait, abs=25)
    message = tracker.message(T0)
    assert message.plan is None and message.retry_at is not None


def test_describe_plan() -> None:
    assert describe_plan(_plan(1).plan, T0) == "1 dispatch, next at 2027-01-15 09:00:00Z"
    assert describe_plan(_plan(1).plan, T0 + 7200) == "1 dispatch, none to come"
    assert describe_plan(_plan().plan, T0) == "0 dispatches, none to come"
