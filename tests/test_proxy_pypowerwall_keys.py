"""/stats and /health carry every key of the pyPowerwall proxy's answers; /example.html.

The key lists below are written from the reference facts about the newest pyPowerwall
proxy (t97): its /stats keys, the t40 ``authmode``, and its /health keys with their nested
objects. Our own keys stay beside them. Values must be honest: what the poller reports,
or the fixed answers of a proxy without cloud, TEDAPI or fallback mode.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin

import pytest
import requests

from powerwall_bus.consumers.proxy.main import ProxyConfig
from powerwall_bus.consumers.proxy.poller_view import epoch
from powerwall_bus.consumers.proxy.service import health_document, stats_document
from powerwall_bus.consumers.proxy.state import ProxyState, Stats
from powerwall_bus.shared.messages import parse_envelope, poller_status_message, reading_message
from powerwall_bus.shared.schemas import validate_message
from powerwall_bus.shared.settings import ProxySettings
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.feed import reading_for
from powerwall_bus.simulator.site import SiteOptions
from tests.support.poller_status import poller_status
from tests.support.running_proxy import RunningProxy

#: The newest pyPowerwall proxy's /stats keys, plus ``authmode`` (t40; after /help).
PYPOWERWALL_STATS = {
    "pypowerwall", "mode", "gets", "posts", "errors", "timeout", "uri",
    "ts", "start", "clear", "uptime", "mem", "site_name",
    "cloudmode", "fleetapi", "tedapi", "pw3", "tedapi_mode", "tedapi_api_version", "siteid",
    "counter", "cf", "config", "connection_health", "fallback_mode", "mem_cache", "authmode",
}  # fmt: skip
CONNECTION_HEALTH = {
    "consecutive_failures", "total_failures", "total_successes", "is_degraded",
    "last_success_time", "cache_size",
}  # fmt: skip
FALLBACK_MODE = {
    "is_fallback_mode", "fallback_since", "fallback_duration_seconds", "recovery_attempts",
    "last_recovery_attempt", "recovery_enabled",
}  # fmt: skip
MEM_CACHES = {
    "error_counts", "network_error_summary", "degradation_cache", "performance_cache",
    "endpoint_stats",
}  # fmt: skip
MEM_CACHE = MEM_CACHES | {"total_cache_bytes", "total_cache_mb"}
PYPOWERWALL_HEALTH = {
    "pypowerwall", "mode", "tedapi_mode", "pypowerwall_cache_expire",
    "degradation_cache_ttl_seconds", "graceful_degradation", "fail_fast_mode",
    "health_check_enabled", "startup_time", "current_time", "transports", "proxy_stats",
    "connection_health", "fallback_mode", "cached_data", "endpoint_statistics",
}  # fmt: skip
PROXY_STATS = {"total_gets", "total_posts", "total_errors", "total_timeouts"}
ENDPOINT_STATISTICS = {
    "total_calls", "successful_calls", "failed_calls", "success_rate_percent",
    "last_success_age_seconds", "last_failure_age_seconds",
}  # fmt: skip
#: Keys of ours that stay.
OURS_STATS = {"gateway", "bus"}
OURS_HEALTH = {"status", "problems", "bus_connected", "gateway_state", "meters_age_seconds"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _state(gateway_state: str = "ok", clock: Clock | None = None) -> tuple[ProxyState, dict]:
    gateway = SimulatedGateway(SiteOptions(seed=3))
    state = ProxyState() if clock is None else ProxyState(clock)
    for path in ("/api/meters/aggregates", "/api/system_status/soe"):
        state.update(parse_envelope(reading_message(reading_for(gateway, path)).body))
    status = poller_status(gateway.din)
    status["gateway_state"] = gateway_state
    message = poller_status_message(time.time(), gateway.din, status)
    assert validate_message(message.routing_key, message.body) == []
    state.update(parse_envelope(message.body))
    return state, status


def test_stats_has_every_pypowerwall_key_with_honest_values() -> None:
    state, status = _state()
    stats = Stats()
    stats.count("/aggregates")
    document = stats_document(state, stats, ProxySettings(port=8675))
    assert set(document) >= PYPOWERWALL_STATS | OURS_STATS
    assert set(document["connection_health"]) == CONNECTION_HEALTH
    assert set(document["fallback_mode"]) == FALLBACK_MODE
    assert set(document["mem_cache"]) == MEM_CACHE
    for cache in MEM_CACHES:
        assert set(document["mem_cache"][cache]) == {"entries", "size_bytes"}
    # What the poller reports about its requests to the gateway.
    endpoints = status["endpoints"].values()
    requests_ = sum(e["requests"] for e in endpoints)
    failures = sum(sum(e["errors"].values()) for e in endpoints)
    health = document["connection_health"]
    assert health["total_failures"] == failures
    assert health["total_successes"] == requests_ - failures
    assert health["consecutive_failures"] == max(e["consecutive_errors"] for e in endpoints)
    assert health["is_degraded"] is False
    assert health["last_success_time"] == max(
        epoch(e["last_success"]) or 0.0 for e in endpoints if e["last_success"]
    )
    assert health["cache_size"] == len(state.kinds()) == 3
    # A proxy without cloud, TEDAPI or fallback, and our settings as its config.
    assert document["cloudmode"] is False and document["fleetapi"] is False
    assert document["tedapi"] is False and document["tedapi_mode"] == "off"
    assert document["fallback_mode"]["is_fallback_mode"] is False
    assert document["config"]["port"] == 8675
    assert document["mode"] == "Bus" and document["gets"] == 1
    assert document["mem_cache"]["endpoint_stats"]["entries"] == 1
    trouble, _ = _state("unreachable")
    assert stats_document(trouble, Stats())["connection_health"]["is_degraded"] is True


def test_health_has_every_pypowerwall_key_with_honest_values() -> None:
    clock = Clock()
    state, status = _state(clock=clock)
    state.bus_connected = True
    code, body = health_document(state, Stats(), 30.0)
    assert code == 200
    assert set(body) >= PYPOWERWALL_HEALTH | OURS_HEALTH
    assert set(body["proxy_stats"]) == PROXY_STATS
    assert set(body["connection_health"]) == CONNECTION_HEALTH | {"last_success_age_seconds"}
    assert set(body["fallback_mode"]) == FALLBACK_MODE
    assert set(body["cached_data"]) == {"cache_size", "endpoints"}
    assert set(body["cached_data"]["endpoints"]) == set(state.kinds())
    for cached in body["cached_data"]["endpoints"].values():
        assert set(cached) == {"age_seconds", "is_expired"} and cached["is_expired"] is False
    assert set(body["endpoint_statistics"]) == set(status["endpoints"])
    for path, endpoint in status["endpoints"].items():
        statistics = body["endpoint_statistics"][path]
        assert set(statistics) == ENDPOINT_STATISTICS
        failed = sum(endpoint["errors"].values())
        assert statistics["total_calls"] == endpoint["requests"]
        assert statistics["failed_calls"] == failed
        assert statistics["success_rate_percent"] == round(
            100 * (endpoint["requests"] - failed) / endpoint["requests"], 1
        )
        assert (statistics["last_success_age_seconds"] is None) == (not endpoint["last_success"])
    assert body["transports"] == {"bus": {"connected": True}}
    assert body["graceful_degradation"] is True and body["fail_fast_mode"] is False
    dt.datetime.fromisoformat(body["startup_time"])
    dt.datetime.fromisoformat(body["current_time"])
    clock.now += 31.0  # the data grows old: expired, and /health says so as before
    code, body = health_document(state, Stats(), 30.0)
    assert code == 503 and body["status"] == "unhealthy"
    assert all(c["is_expired"] for c in body["cached_data"]["endpoints"].values())


@pytest.fixture
def proxy(bus) -> Iterator[RunningProxy]:
    settings = ProxySettings(port=0, bind_address="127.0.0.1", base_url="/pw")
    with RunningProxy(ProxyConfig(settings, bus.settings)) as running:
        yield running


def test_stats_and_health_over_http(proxy) -> None:
    proxy.feed(SimulatedGateway(SiteOptions(seed=3)), "/api/meters/aggregates")
    for path in ("/stats", "/stats/clear"):
        document = requests.get(f"{proxy.url}/pw{path}", timeout=5).json()
        assert set(document) >= PYPOWERWALL_STATS | OURS_STATS, path
        assert document["config"]["base_url"] == "/pw"
    health = requests.get(f"{proxy.url}/pw/health", timeout=5)
    assert set(health.json()) >= PYPOWERWALL_HEALTH | OURS_HEALTH
    # verify.sh's tedapi_mode check, in the newest proxy's JSON spacing.
    assert '"tedapi_mode": "off"' in requests.get(f"{proxy.url}/pw/stats", timeout=5).text
    metrics = requests.get(f"{proxy.url}/pw/metrics", timeout=5)  # under the base URL too
    assert metrics.status_code == 200 and "powerwall_meter_power_watts{" in metrics.text
    help_page = requests.get(f"{proxy.url}/pw/help", timeout=5).text
    assert "<td>cloudmode</td>" in help_page and "connection_health" not in help_page


class _Frames(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "iframe":
            self.frames.append(dict(attrs).get("src") or "")


def test_example_page_frames_the_power_flow_page(proxy) -> None:
    url = f"{proxy.url}/pw/example.html"
    page = requests.get(url, timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "frame-src 'self'" in page.headers["Content-Security-Policy"]
    assert "script-src" not in page.headers["Content-Security-Policy"]  # no script at all
    parser = _Frames()
    parser.feed(page.text)
    assert parser.frames == ["./"]
    framed = requests.get(urljoin(url, parser.frames[0]), timeout=5)
    assert framed.status_code == 200 and "Power flow" in framed.text
    # The framed page lets itself be framed.
    assert "X-Frame-Options" not in framed.headers
    assert "frame-ancestors" not in framed.headers["Content-Security-Policy"]
    assert "&lt;iframe" in page.text  # the snippet to copy is shown, not run
    stats = requests.get(f"{proxy.url}/pw/stats", timeout=5).json()
    assert stats["uri"].get("/example.html") == 1
