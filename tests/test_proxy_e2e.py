"""End to end: simulator -> poller -> RabbitMQ -> proxy -> HTTP, as a dashboard sees it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from powerwall_bus.consumers.proxy.main import ProxyConfig
from powerwall_bus.shared.settings import ProxySettings
from powerwall_bus.simulator.faults import FaultSet
from powerwall_bus.simulator.server import SimulatorRunner
from tests.support.running_proxy import RunningProxy
from tests.support.simulated_poller import simulated_poller
from tests.support.waiting import wait_until

PASSWORD = "e2e-Pass-99"


@pytest.fixture
def pipeline(bus, tmp_path: Path) -> Iterator[tuple[SimulatorRunner, RunningProxy]]:
    with (
        simulated_poller(bus.settings, tmp_path, password=PASSWORD, seed=4) as (sim, _),
        RunningProxy(
            ProxyConfig(ProxySettings(port=0, bind_address="127.0.0.1"), bus.settings)
        ) as proxy,
    ):
        yield sim, proxy


def _get(proxy: RunningProxy, path: str) -> requests.Response:
    return requests.get(proxy.url + path, timeout=5)


def _wait_for_data(proxy: RunningProxy, path: str, timeout: float = 15) -> requests.Response:
    def answered() -> requests.Response | None:
        response = _get(proxy, path)
        return response if response.text not in ("null", "{}", "[]") else None

    response = wait_until(answered, timeout, step=0.2)
    if response is None:
        pytest.fail(f"{path} still has no data after {timeout} s")
    return response


def test_dashboard_endpoints_from_the_bus(pipeline) -> None:
    sim, proxy = pipeline
    aggregates = _wait_for_data(proxy, "/aggregates").json()
    assert {"site", "battery", "load", "solar"} <= set(aggregates)
    balance = sum(aggregates[m]["instant_power"] for m in ("site", "solar", "battery"))
    assert abs(aggregates["load"]["instant_power"] - balance) <= 0.01 * abs(balance) + 1
    soe = _wait_for_data(proxy, "/soe").json()["percentage"]
    scaled = _get(proxy, "/api/system_status/soe").json()["percentage"]
    assert scaled == pytest.approx(soe / 0.95 - 5 / 0.95)
    vitals = _wait_for_data(proxy, "/vitals").json()
    assert sum(key.startswith("TEPOD--") for key in vitals) == 2
    assert set(_wait_for_data(proxy, "/temps/pw").json()) == {"PW1_temp", "PW2_temp"}
    status = _wait_for_data(proxy, "/api/status").json()
    assert status["din"] == sim.server.gateway.din
    version = _get(proxy, "/version").json()
    assert version["version"] == status["version"]
    csv = _get(proxy, "/csv").text
    assert csv.endswith("\n") and len(csv.strip().split(",")) == 5
    assert _get(proxy, "/freq").json()["grid_status"] == 1
    assert _get(proxy, "/health").status_code == 200
    stats = _get(proxy, "/stats").json()
    assert stats["bus"]["connected"] is True
    assert stats["bus"]["age_seconds"]["meters"] < 5
    assert stats["uri"]["/aggregates"] >= 1


def test_no_dashboard_request_reaches_the_gateway(pipeline) -> None:
    sim, proxy = pipeline
    _wait_for_data(proxy, "/api/site_info")
    before = dict(sim.server.counters.by_path)
    for _ in range(20):
        for path in (
            "/api/site_info",
            "/api/sitemaster",
            "/api/powerwalls",
            "/vitals",
            "/api/status",
            "/api/no/such/thing",
            "/pw/site_name",
        ):
            _get(proxy, path)
    after = dict(sim.server.counters.by_path)
    for path in ("/api/site_info", "/api/sitemaster", "/api/powerwalls", "/api/status"):
        assert after[path] == before[path], path  # 5-minute cadence: still one read
    assert "/api/no/such/thing" not in after
    assert _get(proxy, "/api/no/such/thing").status_code == 404


def test_aggregates_follow_new_readings(pipeline) -> None:
    _, proxy = pipeline
    first = _wait_for_data(proxy, "/aggregates").json()["site"]["last_communication_time"]
    latest = lambda: _get(proxy, "/aggregates").json()["site"]["last_communication_time"]  # noqa: E731
    assert wait_until(lambda: latest() != first, 5, step=0.2)


def test_health_turns_503_when_the_poller_stops(pipeline) -> None:
    sim, proxy = pipeline
    _wait_for_data(proxy, "/aggregates")
    assert _get(proxy, "/health").status_code == 200
    sim.server.set_faults(FaultSet.parse(["drop"]))
    wait_until(lambda: _get(proxy, "/health").status_code != 200, 20, step=0.3)
    health = _get(proxy, "/health")
    assert health.status_code == 503
    assert any("unreachable" in p for p in health.json()["problems"])
    # Dashboards still get the last data with HTTP 200, as with pyPowerwall.
    assert _get(proxy, "/aggregates").status_code == 200
    assert json.loads(_get(proxy, "/aggregates").text) is not None
