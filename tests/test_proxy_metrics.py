"""/metrics: the collector's output read back with prometheus_client's own parsers.

The state is fed with the simulator's bodies (as the poller would publish them) and a
poller.status message; every value is compared with the body it came from or with the
proxy's own answer for the same data (/aggregates, /soe, /pod), never with numbers written
here.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from powerwall_bus.consumers.proxy.main import ProxyConfig
from powerwall_bus.consumers.proxy.metrics import exposition, registry_for
from powerwall_bus.consumers.proxy.render import RenderOptions, render
from powerwall_bus.consumers.proxy.state import ProxyState, Stats
from powerwall_bus.shared.follow import Gateway, GatewayView
from powerwall_bus.shared.messages import (
    Envelope,
    parse_envelope,
    poller_status_message,
    reading_message,
)
from powerwall_bus.shared.schemas import validate_message
from powerwall_bus.shared.settings import ProxySettings
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.feed import reading_for
from powerwall_bus.simulator.site import SiteOptions
from tests.support.poller_status import poller_status
from tests.support.running_proxy import RunningProxy

PATHS = (
    "/api/meters/aggregates",
    "/api/system_status/soe",
    "/api/system_status/grid_status",
    "/api/system_status",
    "/api/devices/vitals",
    "/api/status",
    "/api/operation",
    "/api/site_info/site_name",
)
NAME = 'home "north"\nwing'  # a gateway name that needs escaping in the text format


def fed_state(gateway: SimulatedGateway, *, status: dict[str, Any] | None = None) -> ProxyState:
    state = ProxyState()
    for path in PATHS:
        state.update(parse_envelope(reading_message(reading_for(gateway, path)).body))
    if status is not None:
        message = poller_status_message(time.time(), gateway.din, status)
        assert validate_message(message.routing_key, message.body) == []  # a real one
        state.update(parse_envelope(message.body))
    return state


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(found: dict[str, Any], name: str) -> list[Any]:
    return list(found[name].samples) if name in found else []


def by_label(found: dict[str, Any], name: str, label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for s in samples(found, name)}


class Clock:
    """The simulator's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gateway(clock: Clock) -> SimulatedGateway:
    return SimulatedGateway(SiteOptions(seed=21, powerwalls=2), clock)


def _scrape(state: ProxyState, stats: Stats | None = None) -> dict[str, Any]:
    registry = registry_for(state, stats or Stats(), RenderOptions())
    body, content_type = exposition(registry, "text/plain")
    assert content_type.startswith("text/plain")
    return families(body.decode())


def test_readings_equal_the_bodies_they_came_from(gateway) -> None:
    state = fed_state(gateway, status=poller_status(gateway.din))
    state.gateways = GatewayView(followed=Gateway(gateway.din, NAME))
    found = _scrape(state)
    aggregates = state.payload("meters")
    for meter in ("site", "battery", "load", "solar"):
        section = aggregates[meter]
        power = by_label(found, "powerwall_meter_power_watts", "meter")
        assert power[meter] == pytest.approx(section["instant_power"], abs=0)
        imported = by_label(found, "powerwall_meter_energy_imported_watt_hours", "meter")
        exported = by_label(found, "powerwall_meter_energy_exported_watt_hours", "meter")
        assert imported[meter] == section["energy_imported"]
        assert exported[meter] == section["energy_exported"]
    assert found["powerwall_meter_energy_imported_watt_hours"].type == "counter"
    assert all(
        s.name.endswith("_total")
        for s in samples(found, "powerwall_meter_energy_imported_watt_hours")
    )
    raw = state.payload("soe")["percentage"]
    (soe,) = samples(found, "powerwall_state_of_energy_percent")
    (level,) = samples(found, "powerwall_battery_level_percent")
    assert soe.value == raw
    assert level.value == raw / 0.95 - 5 / 0.95
    # Every gateway series is labelled with the served gateway (the name survives escaping).
    assert soe.labels == {"din": gateway.din, "name": NAME}
    grid = by_label(found, "powerwall_grid_status", "state")
    assert [state for state, value in grid.items() if value == 1] == [
        state.payload("grid_status")["grid_status"]
    ]
    (info,) = samples(found, "powerwall_gateway_info")
    assert info.labels["firmware"] == state.payload("api.status")["version"]
    assert info.labels["site_name"] == state.payload("api.site_info.site_name")["site_name"]


def test_packs_equal_the_proxys_pod_answer(gateway) -> None:
    state = fed_state(gateway)
    found = _scrape(state)
    pod = json.loads(render("/pod", "", state, RenderOptions()).text)  # type: ignore[union-attr]
    remaining = by_label(found, "powerwall_pack_energy_remaining_watt_hours", "pack")
    full = by_label(found, "powerwall_pack_full_energy_watt_hours", "pack")
    assert set(remaining) == set(full) == {"PW1", "PW2"}
    for pack in ("PW1", "PW2"):
        assert remaining[pack] == pod[f"{pack}_POD_nom_energy_remaining"]
        assert full[pack] == pod[f"{pack}_POD_nom_full_pack_energy"]
    serials = {s.labels["serial"] for s in samples(found, "powerwall_pack_power_watts")}
    assert serials == {pod["PW1_PackageSerialNumber"], pod["PW2_PackageSerialNumber"]}
    (total,) = samples(found, "powerwall_energy_remaining_watt_hours")
    assert total.value == pod["nominal_energy_remaining"]
    (reserve,) = samples(found, "powerwall_backup_reserve_percent")
    assert reserve.value == pod["backup_reserve_percent"]
    temps = json.loads(render("/temps/pw", "", state, RenderOptions()).text)  # type: ignore[union-attr]
    celsius = by_label(found, "powerwall_pack_temperature_celsius", "pack")
    assert celsius == {key.removesuffix("_temp"): value for key, value in temps.items()}


def test_pipeline_health_from_the_poller_status(gateway) -> None:
    until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=4)
    status = poller_status(gateway.din, cooldown=until)
    found = _scrape(fed_state(gateway, status=status))
    requests_ = by_label(found, "pwbus_poller_requests", "endpoint")
    assert requests_ == {p: e["requests"] for p, e in status["endpoints"].items()}
    errors = {
        (s.labels["endpoint"], s.labels["error"]): s.value
        for s in samples(found, "pwbus_poller_errors")
    }
    assert errors == {
        (path, kind): count
        for path, endpoint in status["endpoints"].items()
        for kind, count in endpoint["errors"].items()
    }
    consecutive = by_label(found, "pwbus_poller_consecutive_errors", "endpoint")
    assert consecutive["/api/system_status/soe"] == 4
    states = by_label(found, "pwbus_poller_gateway_state", "state")
    assert [s for s, v in states.items() if v == 1] == ["cooldown"] and len(states) == 9
    assert samples(found, "pwbus_poller_cooldown_active")[0].value == 1
    (end,) = samples(found, "pwbus_poller_cooldown_until_timestamp_seconds")
    assert end.value == pytest.approx(until.timestamp(), abs=0.001)
    assert samples(found, "pwbus_poller_outbox_messages")[0].value == 3
    assert samples(found, "pwbus_poller_outbox_dropped_messages")[0].value == 1
    assert samples(found, "pwbus_poller_broker_connected")[0].value == 1
    assert samples(found, "pwbus_poller_publish_latency_median_seconds")[0].value == 0.004
    assert samples(found, "pwbus_poller_publish_latency_p99_seconds")[0].value == 0.025
    ages = by_label(found, "pwbus_data_age_seconds", "kind")
    assert {"meters", "soe", "vitals", "poller.status"} <= set(ages)
    assert all(0 <= age < 30 for age in ages.values())
    # No cool-down: active 0 and no end time.
    calm = _scrape(fed_state(gateway, status=poller_status(gateway.din)))
    assert samples(calm, "pwbus_poller_cooldown_active")[0].value == 0
    assert samples(calm, "pwbus_poller_cooldown_until_timestamp_seconds") == []


def test_missing_data_is_absent_not_zero_and_junk_never_breaks_a_scrape() -> None:
    empty = _scrape(ProxyState())
    for name in (
        "powerwall_meter_power_watts",
        "powerwall_state_of_energy_percent",
        "powerwall_grid_status",
        "powerwall_pack_energy_remaining_watt_hours",
        "pwbus_data_age_seconds",
    ):
        assert samples(empty, name) == [], name
    assert "pwbus_poller_requests" not in empty  # no poller.status yet
    assert samples(empty, "pwbus_proxy_broker_connected")[0].value == 0
    state = ProxyState()
    now = dt.datetime.now(dt.UTC)
    junk = {
        "gateway_state": ["ok"],
        "buffer": 7,
        "cooldown_until": "soon",
        "endpoints": {"/api/x": {"requests": "lots", "errors": {"HTTP500": -1, "E": True}}},
    }
    state.update(Envelope(1, "poller.status", now, "din", None, junk))
    meters = {"site": {"instant_power": "12", "energy_imported": 5}, "odd": 3}
    state.update(Envelope(1, "meters", now, "din", "/api/meters/aggregates", meters))
    found = _scrape(state)
    assert by_label(found, "pwbus_poller_requests", "endpoint") == {"/api/x": 0}
    assert samples(found, "pwbus_poller_errors") == []
    assert samples(found, "pwbus_poller_cooldown_active")[0].value == 0
    assert by_label(found, "powerwall_meter_power_watts", "meter") == {}  # text is not a number
    assert by_label(found, "powerwall_meter_energy_imported_watt_hours", "meter") == {"site": 5}


def test_names_follow_prometheus_conventions(gateway) -> None:
    stats = Stats()
    stats.count("/aggregates")
    found = _scrape(fed_state(gateway, status=poller_status(gateway.din)), stats)
    units = ("_watts", "_watt_hours", "_percent", "_seconds", "_celsius", "_volts", "_amperes")
    counts = ("_messages", "_errors", "_requests", "_answers", "_logins", "_gateways", "_code")
    for name, family in found.items():
        if name.startswith("process_"):
            continue  # prometheus_client's own
        assert re.fullmatch(r"(powerwall|pwbus)_[a-z0-9_]+", name), name
        for sample in family.samples:
            assert sample.name.endswith("_total") == (family.type == "counter"), sample.name
        if family.type == "info":
            continue
        unit = name.endswith(units) or name.endswith(counts) or name.endswith("_hertz")
        flag = family.type == "gauge" and all(s.value in (0, 1) for s in family.samples)
        assert unit or flag, f"{name}: no unit in the name"
    assert by_label(found, "pwbus_proxy_path_requests", "path") == {"/aggregates": 1}
    assert "process_resident_memory_bytes" in found


def test_openmetrics_when_the_scraper_asks(gateway) -> None:
    registry = registry_for(fed_state(gateway), Stats(), RenderOptions())
    body, content_type = exposition(registry, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    text = body.decode()
    assert text.endswith("# EOF\n")
    parsed = {family.name: family for family in openmetrics_families(text)}
    energy = parsed["powerwall_meter_energy_imported_watt_hours"]
    assert energy.type == "counter" and energy.samples[0].name.endswith("_total")
    assert parsed["powerwall_gateway"].type == "info"


@pytest.fixture
def proxy(bus) -> Iterator[RunningProxy]:
    with RunningProxy(
        ProxyConfig(ProxySettings(port=0, bind_address="127.0.0.1"), bus.settings)
    ) as running:
        yield running


def test_metrics_over_http_equal_aggregates_and_soe(proxy, gateway, clock) -> None:
    proxy.feed(gateway, *PATHS)
    response = requests.get(proxy.url + "/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    found = families(response.text)
    aggregates = requests.get(proxy.url + "/aggregates", timeout=5).json()
    power = by_label(found, "powerwall_meter_power_watts", "meter")
    assert power == {m: float(aggregates[m]["instant_power"]) for m in aggregates}
    soe = requests.get(proxy.url + "/soe", timeout=5).json()["percentage"]
    assert samples(found, "powerwall_state_of_energy_percent")[0].value == soe
    scaled = requests.get(proxy.url + "/api/system_status/soe", timeout=5).json()["percentage"]
    assert samples(found, "powerwall_battery_level_percent")[0].value == scaled
    # The scrape reads the state as it is now: a new reading shows at once.
    before = by_label(found, "powerwall_meter_energy_imported_watt_hours", "meter")
    clock.now += 3600.0
    proxy.feed(gateway, "/api/meters/aggregates")
    again = families(requests.get(proxy.url + "/metrics", timeout=5).text)
    latest = requests.get(proxy.url + "/aggregates", timeout=5).json()
    assert by_label(again, "powerwall_meter_power_watts", "meter")["load"] == float(
        latest["load"]["instant_power"]
    )
    after = by_label(again, "powerwall_meter_energy_imported_watt_hours", "meter")
    assert after["load"] == latest["load"]["energy_imported"] > before["load"]
    # The proxy's request counters count the data answers it gave (up to that scrape).
    counted = by_label(again, "pwbus_proxy_path_requests", "path")
    assert counted["/aggregates"] == 1 and counted["/soe"] == 1  # before the second
    assert "/metrics" not in counted
