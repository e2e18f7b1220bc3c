"""Property-based fuzzing of the proxy over its own /openapi.json: no input gives a 5xx.

Schemathesis generates requests for every documented route (path parameters, query strings,
headers), against the real proxy with real data in its state. ``/events`` is left out: it
is an endless stream by design. ``/health`` may answer 503 on purpose (stale data), so it
is checked separately in test_proxy_http.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from powerwall_bus.consumers.proxy.main import ProxyConfig
from powerwall_bus.consumers.proxy.openapi import openapi_document
from powerwall_bus.shared.settings import AmqpSettings, ProxySettings
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.site import SiteOptions
from tests.support.running_proxy import RunningProxy

schema = (
    schemathesis.openapi.from_dict(openapi_document())
    .exclude(path="/events")
    .exclude(path="/health")
)

FED_PATHS = (
    "/api/meters/aggregates",
    "/api/system_status/soe",
    "/api/system_status/grid_status",
    "/api/system_status",
    "/api/operation",
    "/api/status",
    "/api/devices/vitals",
    "/api/solar_powerwall",
    "/api/site_info/site_name",
    "/api/powerwalls",
)


@pytest.fixture(scope="module")
def proxy_url(amqp_base_url: str) -> Iterator[str]:
    amqp = AmqpSettings(url=amqp_base_url, exchange=f"test.fuzz.{uuid.uuid4().hex[:8]}")
    with RunningProxy(ProxyConfig(ProxySettings(port=0, bind_address="127.0.0.1"), amqp)) as proxy:
        gateway = SimulatedGateway(SiteOptions(seed=12, powerwalls=3))
        proxy.feed(gateway, *FED_PATHS)
        yield proxy.url


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_gives_a_server_error(case, proxy_url: str) -> None:
    response = case.call_and_validate(base_url=proxy_url, checks=[not_a_server_error])
    assert response.status_code < 500
