"""The /health rules the proxy and the Home Assistant facade share (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from powerwall_bus.shared.health import Freshness, health_problems


def _facts(**changes: Any) -> Freshness:
    healthy: dict[str, Any] = {
        "bus_connected": True,
        "meters_age": 3.0,
        "max_age": 60.0,
        "poller_status": {"gateway_state": "ok"},
        "several_gateways": None,
    }
    return Freshness(**{**healthy, **changes})


@pytest.mark.parametrize(
    ("changes", "problems"),
    [
        ({}, []),
        ({"meters_age": 60.0}, []),  # at the limit is still fresh
        ({"poller_status": None}, []),  # a bare Tesla-API publisher has no poller status
        ({"poller_status": {"gateway_state": "starting"}}, []),
        ({"poller_status": {"gateway_state": ["cooldown"]}}, []),  # garbage is no state
        ({"bus_connected": False}, ["not connected to the message bus"]),
        ({"meters_age": None}, ["no meter data received yet"]),
        ({"meters_age": 61.4}, ["meter data is 61 s old"]),
        (
            {"poller_status": {"gateway_state": "login_refused"}},
            ["the poller reports the gateway as login_refused"],
        ),
        ({"several_gateways": "readings from 2 gateways"}, ["readings from 2 gateways"]),
        (
            {
                "bus_connected": False,
                "meters_age": None,
                "poller_status": {"gateway_state": "stopped"},
            },
            [
                "not connected to the message bus",
                "no meter data received yet",
                "the poller reports the gateway as stopped",
            ],
        ),
    ],
)
def test_health_problems(changes: dict[str, Any], problems: list[str]) -> None:
    assert health_problems(_facts(**changes)) == problems


def test_the_gateway_state_is_read_only_from_a_status_object() -> None:
    assert _facts().gateway_state == "ok"
    assert _facts(poller_status="cooldown").gateway_state is None
    assert _facts(poller_status={"gateway_state": 3}).gateway_state is None
