"""The proxy's HTTP surface: bad input, TLS, PROXY_BASE_URL, stats, health, OpenAPI fuzzing."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from powerwall_bus.consumers.proxy.main import ProxyConfig
from powerwall_bus.consumers.proxy.openapi import openapi_document
from powerwall_bus.shared.settings import ProxySettings
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.site import SiteOptions
from tests.support.running_proxy import RunningProxy
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]


def _feed(proxy: RunningProxy, *paths: str) -> None:
    """Put simulator bodies into the proxy's state as if they came from the bus."""
    proxy.feed(SimulatedGateway(SiteOptions(seed=8)), *paths)


@pytest.fixture
def proxy(bus) -> Iterator[RunningProxy]:
    with RunningProxy(
        ProxyConfig(ProxySettings(port=0, bind_address="127.0.0.1"), bus.settings)
    ) as running:
        yield running


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_unknown_paths_methods_and_traversal(proxy) -> None:
    assert requests.get(proxy.url + "/nope", timeout=5).status_code == 404
    assert requests.get(proxy.url + "/api/not/allowed", timeout=5).status_code == 404
    for verb in ("post", "put", "delete", "patch"):
        response = getattr(requests, verb)(proxy.url + "/aggregates", timeout=5)
        assert response.status_code == 405 and response.headers["Allow"] == "GET, HEAD"
    for path in (
        "/static/../consumers/proxy/app.py",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/../../etc/passwd",
        "/static/..%2fapp.py",
    ):
        reply = _raw(
            proxy.server.port,
            f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
        )
        assert reply.split(b"\r\n", 1)[0].split()[1] in (b"400", b"404"), (path, reply[:80])
        assert b"import" not in reply and b"root:" not in reply
    assert requests.get(proxy.url + "/aggregates", timeout=5).status_code == 200  # still up


def test_oversized_headers_and_urls_are_refused(proxy) -> None:
    huge_header = b"GET /aggregates HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    assert _raw(proxy.server.port, huge_header).split(b" ", 2)[1] in (b"400", b"431")
    long_url = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert _raw(proxy.server.port, long_url).split(b" ", 2)[1] in (b"400", b"414")
    many = (
        b"GET /aggregates HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: 1\r\n" % i for i in range(200))
        + b"\r\n"
    )
    assert _raw(proxy.server.port, many).split(b" ", 2)[1] in (b"400", b"431")
    assert requests.get(proxy.url + "/soe", timeout=5).status_code == 200  # still up


def test_compatibility_headers_and_empty_shapes(proxy) -> None:
    response = requests.get(proxy.url + "/aggregates", timeout=5)
    assert response.status_code == 200 and response.text == "null"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert requests.get(proxy.url + "/csv", timeout=5).text.startswith("0.00,0.00,0.00,0.00,0.00")
    assert requests.get(proxy.url + "/version", timeout=5).json() == {
        "version": "SolarOnly",
        "vint": 0,
    }
    stats = requests.get(proxy.url + "/stats", timeout=5).json()
    assert stats["timeout"] >= 2  # no-data answers count as pyPowerwall's "timeout"


def test_health_is_honest_without_data(proxy) -> None:
    health = requests.get(proxy.url + "/health", timeout=5)
    assert health.status_code == 503
    assert "no meter data received yet" in health.json()["problems"]
    _feed(proxy, "/api/meters/aggregates")
    assert wait_until(lambda: proxy.server.state.bus_connected, 5)
    assert requests.get(proxy.url + "/health", timeout=5).status_code == 200


def test_stats_and_clear(proxy) -> None:
    _feed(proxy, "/api/meters/aggregates", "/api/system_status/soe")
    for _ in range(3):
        requests.get(proxy.url + "/aggregates", timeout=5)
    requests.get(proxy.url + "/vitals", timeout=5)  # no vitals: a "timeout"
    stats = requests.get(proxy.url + "/stats", timeout=5).json()
    for key in (
        "gets",
        "errors",
        "timeout",
        "uri",
        "ts",
        "start",
        "clear",
        "uptime",
        "mem",
        "site_name",
    ):
        assert key in stats, key
    assert stats["uri"]["/aggregates"] == 3 and stats["timeout"] >= 1
    assert set(stats["bus"]["age_seconds"]) >= {"meters", "soe"}
    cleared = requests.get(proxy.url + "/stats/clear", timeout=5).json()
    assert cleared["gets"] == 0 and cleared["uri"] == {} and cleared["timeout"] >= 1
    page = requests.get(proxy.url + "/help", timeout=5)
    assert page.headers["Content-Type"].startswith("text/html") and "<table>" in page.text


def test_proxy_base_url(bus) -> None:
    settings = ProxySettings(port=0, bind_address="127.0.0.1", base_url="/powerwall")
    with RunningProxy(ProxyConfig(settings, bus.settings)) as proxy:
        _feed(proxy, "/api/system_status/soe")
        assert requests.get(proxy.url + "/powerwall/soe", timeout=5).json()["percentage"] > 0
        assert requests.get(proxy.url + "/soe", timeout=5).status_code == 404
        spec = requests.get(proxy.url + "/powerwall/openapi.json", timeout=5).json()
        assert spec["servers"] == [{"url": "/powerwall"}]


def test_https_with_a_generated_certificate(bus) -> None:
    settings = ProxySettings(port=0, bind_address="127.0.0.1", https="yes")
    with RunningProxy(ProxyConfig(settings, bus.settings)) as proxy:
        assert proxy.url.startswith("https://")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", proxy.server.port), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            tls.sendall(b"GET /soe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = tls.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200")
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(proxy.url.replace("https", "http") + "/soe", timeout=5)


def test_openapi_describes_every_route() -> None:
    spec = openapi_document()
    for path in (
        "/aggregates",
        "/soe",
        "/api/system_status/soe",
        "/csv",
        "/csv/v2",
        "/vitals",
        "/strings",
        "/temps",
        "/temps/pw",
        "/alerts",
        "/alerts/pw",
        "/freq",
        "/pod",
        "/version",
        "/json",
        "/fans",
        "/fans/pw",
        "/stats",
        "/stats/clear",
        "/health",
        "/health/reset",
        "/help",
        "/",
        "/events",
        "/pw/{name}",
        "/tedapi/{sub}",
        "/api/status",
        "/api/site_info/site_name",
        "/api/troubleshooting/problems",
        "/api/auth/toggle/supported",
        "/api/solar_powerwall",
    ):
        assert path in spec["paths"], path


def test_pwbus_proxy_process_serves_and_stops_on_sigterm(bus) -> None:
    env = {
        **os.environ,
        "AMQP_URL": bus.settings.url,
        "AMQP_EXCHANGE": bus.settings.exchange,
        "PW_PORT": "0",
        "PW_BIND_ADDRESS": "127.0.0.1",
        "PWBUS_LOG_LEVEL": "INFO",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "powerwall_bus", "proxy"],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        deadline = time.monotonic() + 20
        assert process.stderr is not None
        while url is None and time.monotonic() < deadline:
            match = re.search(
                r"proxy listening on (http://\S+?):?(\d+)/", process.stderr.readline()
            )
            if match:
                url = f"http://127.0.0.1:{match.group(2)}"
        assert url, "the proxy did not say where it listens"
        assert requests.get(url + "/stats", timeout=5).json()["mode"] == "Bus"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert "proxy stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


def test_pwbus_proxy_bad_setting_is_one_line() -> None:
    env = {**os.environ, "PW_STYLE": "neon"}
    result = subprocess.run(
        [sys.executable, "-m", "powerwall_bus", "proxy"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "proxy.style" in result.stderr


@pytest.mark.parametrize(
    ("gateway_state", "healthy"),
    [
        ("ok", True),
        ("starting", True),
        ("unreachable", False),
        ("login_refused", False),
        ("session_refused", False),
        ("login_capped", False),
        ("cooldown", False),
        ("site_controller_stopped", False),
        ("stopped", False),
    ],
)
def test_health_follows_the_poller_state(gateway_state: str, healthy: bool) -> None:
    import datetime as dt

    from powerwall_bus.consumers.proxy.service import health_document
    from powerwall_bus.consumers.proxy.state import ProxyState, Stats
    from powerwall_bus.shared.messages import Envelope

    state = ProxyState()
    state.bus_connected = True
    now = dt.datetime.now(dt.UTC)
    din = "1232100-00-E--TG1234567890AB"
    state.update(Envelope(1, "meters", now, din, "/api/meters/aggregates", {"site": {}}))
    state.update(Envelope(1, "poller.status", now, din, None, {"gateway_state": gateway_state}))
    status, body = health_document(state, Stats(), 30.0)
    assert (status == 200) == healthy, body
    assert any(gateway_state in problem for problem in body["problems"]) != healthy


def test_an_unknown_pw_name_is_a_404_with_pypowerwalls_body(proxy) -> None:
    answer = requests.get(proxy.url + "/pw/no_such_function", timeout=5)
    assert answer.status_code == 404 and answer.json() == {"error": "Invalid Request"}
    assert requests.get(proxy.url + "/pw/level", timeout=5).status_code == 200


def test_stale_data_answers_say_how_old_the_data_is(bus) -> None:
    settings = ProxySettings(port=0, bind_address="127.0.0.1", health_max_age=1.0)
    with RunningProxy(ProxyConfig(settings, bus.settings)) as proxy:
        _feed(proxy, "/api/meters/aggregates", "/api/system_status/soe")
        fresh = requests.get(proxy.url + "/aggregates", timeout=5)
        assert fresh.ok and "X-Pwbus-Data-Age" not in fresh.headers
        time.sleep(2.2)
        for path in ("/aggregates", "/soe", "/api/meters/aggregates"):
            stale = requests.get(proxy.url + path, timeout=5)
            assert stale.ok and stale.json()  # still served: the last known numbers
            assert int(stale.headers["X-Pwbus-Data-Age"]) >= 2
        _feed(proxy, "/api/meters/aggregates")
        assert "X-Pwbus-Data-Age" not in requests.get(proxy.url + "/soe", timeout=5).headers
