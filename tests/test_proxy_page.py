"""The power-flow page (``/``, ``/static/*``, ``/events``) over real sockets and in a real
headless Chromium.

The proxy runs ``create_app`` on 127.0.0.1 in a background thread (tests/support/proxy_runner)
and is fed the envelopes the poller would publish for simulator readings. The browser
tests need the Debian packages ``chromium`` (and ``chromium-driver``) and the PyPI package
``playwright`` (the system Chromium is used: never ``playwright install``); without them
they fail and say what to install.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from powerwall_bus.consumers.proxy import page
from powerwall_bus.shared.gateway.payloads import app_soe_clamped
from powerwall_bus.shared.settings import ProxySettings
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.site import SiteOptions
from tests.support.proxy_runner import (
    AGGREGATES,
    GRID_STATUS,
    SOE,
    ProxyRunner,
    envelope,
    simulated_envelopes,
)
from tests.support.waiting import wait_until

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_COPY = Path("/tmp/pwbus-page.png")
METERS = ("site", "load", "solar", "battery")
#: page element -> /aggregates meter
ELEMENTS = {"grid": "site", "home": "load", "solar": "solar", "battery": "battery"}


# --------------------------------------------------------------------------- helpers


def _http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def _raw_get(port: int, raw_path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as given (no client-side normalisation)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.putrequest("GET", raw_path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _gateway(seed: int = 1) -> SimulatedGateway:
    return SimulatedGateway(SiteOptions(seed=seed))


def _aggregates(site: float, load: float, solar: float, battery: float) -> dict[str, Any]:
    """A meters payload like the simulator's, with chosen instant powers."""
    payload = json.loads(_gateway().get(AGGREGATES).body)
    for meter, watts in zip(METERS, (site, load, solar, battery), strict=True):
        payload[meter]["instant_power"] = watts
    return payload


def _read_event(lines: Iterator[bytes]) -> dict[str, Any]:
    """The data of the next SSE event (comments and other fields skipped)."""
    data: list[str] = []
    for raw in lines:
        line = raw.decode()
        if line == "" and data:
            return json.loads("\n".join(data))
        if line.startswith("data:"):
            data.append(line[5:].strip())
    raise AssertionError("the event stream ended")


@pytest.fixture
def proxy() -> Iterator[ProxyRunner]:
    with ProxyRunner() as runner:
        yield runner


@pytest.fixture
def fed_proxy(proxy: ProxyRunner) -> ProxyRunner:
    proxy.feed(*simulated_envelopes(_gateway()))
    return proxy


# --------------------------------------------------------------------------- plain HTTP


def test_static_files_come_from_the_table_with_cache_headers(proxy: ProxyRunner) -> None:
    http = _http()
    for name, media in (
        ("app.js", "text/javascript"),
        ("styles.css", "text/css"),
        ("icon.svg", "image/svg+xml"),
    ):
        response = http.get(f"{proxy.root}/static/{name}", timeout=5)
        assert response.status_code == 200, name
        assert response.headers["Content-Type"].startswith(media)
        assert response.headers["Cache-Control"] == "no-cache, no-store"
        assert response.content == page.assets().files[name].body
        again = http.get(
            f"{proxy.root}/static/{name}",
            timeout=5,
            headers={"If-None-Match": response.headers["ETag"]},
        )
        assert again.status_code == 304
    with ProxyRunner(ProxySettings(browser_cache=300)) as cached:
        response = http.get(f"{cached.root}/static/app.js", timeout=5)
        assert response.headers["Cache-Control"] == "max-age=300"


@pytest.mark.parametrize(
    "raw_path",
    [
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/%2E%2E/page.py",
        "/static/..%2fapp.py",
        "/static/%2e%2e%2f%2e%2e%2fshared%2fsettings.py",
        "/static/../../shared/settings.py",
        "/static/..\\app.py",
        "/static/web/app.js",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/",
        "/static/index.html",
        "/static/app.js/",
        "/static/./app.js%00",
        "/static/APP.JS",
    ],
)
def test_static_path_traversal_goes_nowhere(proxy: ProxyRunner, raw_path: str) -> None:
    status, body = _raw_get(proxy.port, raw_path)
    assert status == 404, (raw_path, status, body[:200])
    assert b"import " not in body and b"root:" not in body


def test_index_is_our_page_with_relative_urls(proxy: ProxyRunner) -> None:
    response = _http().get(proxy.url, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    text = response.text
    assert 'data-style="clear"' in text
    assert 'role="img"' in text and "<svg" in text
    assert 'src="static/app.js?v=' in text and 'href="static/styles.css?v=' in text
    assert "{{" not in text
    for forbidden in ('="/', "http://", "https://", "//fonts", "<script>"):
        assert forbidden not in text.replace('xmlns="http://www.w3.org/2000/svg"', ""), forbidden


def test_base_url_prefixes_everything() -> None:
    http = _http()
    with ProxyRunner(ProxySettings(base_url="/pw/")) as runner:
        redirect = http.get(f"{runner.root}/pw?x=1", timeout=5, allow_redirects=False)
        assert redirect.status_code == 302
        assert redirect.headers["Location"] == "pw/?x=1"
        assert http.get(f"{runner.root}/pw", timeout=5).url == f"{runner.root}/pw/"
        assert http.get(f"{runner.root}/pw/static/app.js", timeout=5).status_code == 200
        assert http.get(f"{runner.root}/static/app.js", timeout=5).status_code == 404
        assert http.get(f"{runner.root}/events", timeout=5).status_code == 404


@pytest.mark.parametrize(
    "settings",
    [ProxySettings(), ProxySettings(neg_solar=False, site_zero_threshold=50.0)],
    ids=["defaults", "neg_solar=no,threshold=50"],
)
def test_first_event_is_the_current_numbers(settings: ProxySettings) -> None:
    with ProxyRunner(settings) as runner:
        runner.feed(
            envelope(AGGREGATES, _aggregates(site=-42.5, load=812.25, solar=-17.0, battery=0)),
            envelope(SOE, {"percentage": 64.5}),
            envelope(GRID_STATUS, {"grid_status": "SystemIslandedActive"}),
        )
        http = _http()
        aggregates = http.get(f"{runner.root}/aggregates", timeout=5).json()
        with http.get(f"{runner.root}/events", stream=True, timeout=5) as response:
            assert response.status_code == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            assert response.headers["Cache-Control"].startswith("no-cache")
            event = _read_event(response.iter_lines())
    for key, meter in ELEMENTS.items():
        assert event[key] == aggregates[meter]["instant_power"], key
    if settings.neg_solar:
        assert (event["grid"], event["solar"], event["home"]) == (-42.5, -17.0, 812.25)
    else:
        assert (event["grid"], event["solar"], event["home"]) == (0, 0, 829.25)
    assert event["soe"] == 64.5
    assert event["level"] == pytest.approx((64.5 - 5) / 0.95)
    assert event["grid_status"] == "SystemIslandedActive"
    assert event["time"].endswith("+00:00") and 0 <= event["age"] < 5


def test_first_event_without_data_says_so(proxy: ProxyRunner) -> None:
    with _http().get(f"{proxy.root}/events", stream=True, timeout=5) as response:
        event = _read_event(response.iter_lines())
    assert event == dict.fromkeys(
        ("grid", "home", "solar", "battery", "soe", "level", "grid_status", "time", "age")
    )


def test_latest_event_is_the_stream_event_as_json(proxy: ProxyRunner) -> None:
    http = _http()
    empty = http.get(f"{proxy.root}/events/latest", timeout=5)
    assert empty.status_code == 200 and set(empty.json().values()) == {None}
    proxy.feed(
        envelope(AGGREGATES, _aggregates(site=1200, load=900.5, solar=0, battery=-299.5)),
        envelope(SOE, {"percentage": 2.0}),  # under the gateway's 5 %: the app shows 0 %
    )
    latest = http.get(f"{proxy.root}/events/latest", timeout=5)
    assert latest.headers["Content-Type"].startswith("application/json")
    assert latest.headers["Access-Control-Allow-Origin"] == "*"
    assert latest.headers["Cache-Control"].startswith("no-cache")
    with http.get(f"{proxy.root}/events", stream=True, timeout=5) as response:
        event = _read_event(response.iter_lines())
    body = latest.json()
    assert {k: v for k, v in body.items() if k != "age"} == {
        k: v for k, v in event.items() if k != "age"
    }
    assert (body["grid"], body["home"], body["battery"], body["soe"]) == (1200, 900.5, -299.5, 2.0)
    assert body["level"] == 0.0


def test_events_are_coalesced_and_end_with_the_latest(fed_proxy: ProxyRunner) -> None:
    events: list[dict[str, Any]] = []
    stop = threading.Event()

    def reader() -> None:
        with _http().get(f"{fed_proxy.root}/events", stream=True, timeout=5) as response:
            lines = response.iter_lines()
            while not stop.is_set():
                try:
                    events.append(_read_event(lines))
                except (AssertionError, requests.RequestException):
                    return  # the server stopped at teardown

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert wait_until(lambda: events, 5), "no first event"
    started = time.monotonic()
    for i in range(100):  # ~100 updates/s for one second
        fed_proxy.feed(envelope(AGGREGATES, _aggregates(i, 1000 + i, 0, 0)))
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    assert wait_until(lambda: events[-1]["grid"] == 99, 2), "no last update"
    stop.set()
    updates = len(events) - 1
    assert 2 <= updates <= 10 * elapsed + 3, (updates, elapsed)
    assert events[-1]["home"] == 1099


def test_listener_is_removed_when_the_client_disconnects(fed_proxy: ProxyRunner) -> None:
    baseline = len(fed_proxy.state.listeners)
    response = _http().get(f"{fed_proxy.root}/events", stream=True, timeout=5)
    _read_event(response.iter_lines())
    assert fed_proxy.stream_count() == 1
    assert len(fed_proxy.state.listeners) == baseline + 1
    response.close()
    assert wait_until(lambda: len(fed_proxy.state.listeners) == baseline, 3), "listeners left"
    assert fed_proxy.stream_count() == 0
    fed_proxy.feed(*simulated_envelopes(_gateway()))  # nothing left to notify


def test_streams_are_capped_and_kept_alive(
    fed_proxy: ProxyRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(page, "MAX_STREAMS", 1)
    monkeypatch.setattr(page, "KEEPALIVE", 0.3)
    http = _http()
    with http.get(f"{fed_proxy.root}/events", stream=True, timeout=5) as first:
        lines = first.iter_lines()
        _read_event(lines)
        refused = http.get(f"{fed_proxy.root}/events", timeout=5)
        assert refused.status_code == 503
        assert "Retry-After" in refused.headers
        assert next(line for line in lines if line.startswith(b":")) == b": keep-alive"


# --------------------------------------------------------------------------- the browser


def _chromium() -> str:
    path = os.environ.get("PWBUS_CHROMIUM", "")
    if not path:
        path = "/usr/bin/chromium"
        if not Path(path).exists():
            path = shutil.which("chromium") or shutil.which("chromium-browser") or path
    if not Path(path).exists():
        pytest.fail(
            f"Chromium is missing ({path}): install the Debian packages `chromium` and "
            "`chromium-driver` (apt-get install chromium chromium-driver), or set PWBUS_CHROMIUM",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (persistent context in a fresh profile folder)."""
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the browser tests need Playwright: `.venv/bin/pip install playwright` "
            "(the system Chromium is used; do not run `playwright install`)",
            pytrace=False,
        )
    profile = tempfile.mkdtemp(prefix="pwbus-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 800, "height": 600},
            service_workers="block",
        )
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


class Page:
    """A browser tab on the page, recording console errors and requests."""

    def __init__(self, context: Any, url: str) -> None:
        self.tab = context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.tab.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.tab.on("pageerror", lambda e: self.errors.append(str(e)))
        self.tab.on("request", lambda r: self.requests.append(r.url))
        self.tab.goto(url)

    def wait_conn(self, *states: str, timeout: float = 5.0) -> str:
        self.tab.wait_for_function(
            "states => states.includes(document.documentElement.dataset.conn)",
            arg=list(states),
            timeout=timeout * 1000,
        )
        return str(self.tab.evaluate("document.documentElement.dataset.conn"))

    def values(self) -> dict[str, Any]:
        return dict(
            self.tab.evaluate(
                """() => {
                  const out = {};
                  for (const k of ["grid", "home", "solar", "battery"]) {
                    const e = document.getElementById(k + "-value");
                    out[k] = {w: e.dataset.w, text: e.textContent,
                              flow: document.getElementById("flow-" + k).dataset.flow};
                  }
                  const l = document.getElementById("battery-level");
                  out.level = {text: l.textContent, level: l.dataset.level, soe: l.dataset.soe};
                  out.grid_status = document.getElementById("grid-status").textContent;
                  out.conn = document.getElementById("conn-status").textContent;
                  out.source = document.documentElement.dataset.source;
                  out.desc = document.getElementById("flow-desc").textContent;
                  return out;
                }"""
            )
        )

    def wait_grid_w(self, watts: float, timeout: float) -> float:
        """Seconds until the grid label shows ``watts``."""
        started = time.monotonic()
        self.tab.wait_for_function(
            "w => Number(document.getElementById('grid-value').dataset.w) === w",
            arg=watts,
            timeout=timeout * 1000,
        )
        return time.monotonic() - started

    def close(self) -> None:
        self.tab.close()


def _check_matches_api(shown: dict[str, Any], runner: ProxyRunner, prefix: str = "") -> None:
    http = _http()
    aggregates = http.get(f"{runner.root}{prefix}/aggregates", timeout=5).json()
    soe = http.get(f"{runner.root}{prefix}/soe", timeout=5).json()["percentage"]
    for key, meter in ELEMENTS.items():
        watts = aggregates[meter]["instant_power"]
        assert float(shown[key]["w"]) == watts, (key, shown[key], watts)
        kw_text = shown[key]["text"]
        assert kw_text.endswith(" kW") and len(kw_text.split()[0].split(".")[1]) == 2
        assert abs(float(kw_text.split()[0]) - abs(watts) / 1000) <= 0.005 + 1e-9, (key, kw_text)
    assert float(shown["level"]["soe"]) == soe
    assert float(shown["level"]["level"]) == pytest.approx(app_soe_clamped(soe), abs=1e-9)
    assert shown["level"]["text"] == f"{round(app_soe_clamped(soe))}%"


def test_page_renders_and_matches_the_api(
    browser: Any, fed_proxy: ProxyRunner, tmp_path: Path
) -> None:
    tab = Page(browser, fed_proxy.url)
    try:
        assert tab.wait_conn("live") == "live"
        svg = tab.tab.locator("svg#flow")
        assert svg.get_attribute("role") == "img"
        assert svg.get_attribute("aria-labelledby")
        shown = tab.values()
        _check_matches_api(shown, fed_proxy)
        assert shown["grid_status"] == "Grid connected"
        assert shown["source"] == "events" and shown["conn"] == "Live"
        assert "Solar" in shown["desc"] and "kW" in shown["desc"]
        aggregates = _http().get(f"{fed_proxy.root}/aggregates", timeout=5).json()
        site = aggregates["site"]["instant_power"]
        expected_grid = "none" if abs(site) < 10 else ("to-hub" if site > 0 else "from-hub")
        assert shown["grid"]["flow"] == expected_grid
        tab.tab.wait_for_timeout(300)  # let the dots move
        shot = tmp_path / "pwbus-page.png"
        tab.tab.screenshot(path=str(shot))
        shutil.copyfile(shot, SCREENSHOT_COPY)
        assert shot.stat().st_size > 5000
        assert tab.errors == []
        assert all(url.startswith(fed_proxy.root + "/") for url in tab.requests), tab.requests
    finally:
        tab.close()


def test_page_updates_within_a_second_and_follows_the_signs(
    browser: Any, fed_proxy: ProxyRunner
) -> None:
    tab = Page(browser, fed_proxy.url)
    try:
        tab.wait_conn("live")
        fed_proxy.feed(envelope(AGGREGATES, _aggregates(-1534.75, 2021, 4321.5, -765.25)))
        elapsed = tab.wait_grid_w(-1534.75, timeout=1.0)
        assert elapsed < 1.0
        shown = tab.values()
        assert {k: shown[k]["flow"] for k in ELEMENTS} == {
            "grid": "from-hub",
            "home": "from-hub",
            "solar": "to-hub",
            "battery": "from-hub",
        }
        assert shown["grid"]["text"] == "1.53 kW" and shown["solar"]["text"] == "4.32 kW"
        _check_matches_api(shown, fed_proxy)

        fed_proxy.feed(envelope(AGGREGATES, _aggregates(2500, 3000, 0, 500)))
        assert tab.wait_grid_w(2500, timeout=1.0) < 1.0
        shown = tab.values()
        assert (shown["grid"]["flow"], shown["battery"]["flow"]) == ("to-hub", "to-hub")
        assert shown["solar"]["flow"] == "none"

        fed_proxy.feed(envelope(GRID_STATUS, {"grid_status": "SystemIslandedActive"}))
        tab.tab.wait_for_function(
            "() => document.getElementById('grid-badge').dataset.grid === 'down'", timeout=1000
        )
        assert tab.values()["grid_status"] == "OFF-GRID"
        assert tab.tab.get_by_text("OFF-GRID", exact=True).is_visible()
        assert tab.errors == []
    finally:
        tab.close()


def test_polling_fallback_when_the_stream_is_refused(
    browser: Any, fed_proxy: ProxyRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(page, "MAX_STREAMS", 0)  # /events answers 503
    tab = Page(browser, fed_proxy.url)
    try:
        tab.wait_conn("polling")
        shown = tab.values()
        assert shown["source"] == "polling" and shown["conn"] == "Live (polling)"
        _check_matches_api(shown, fed_proxy)
        fed_proxy.feed(envelope(AGGREGATES, _aggregates(777.5, 1000, 222.5, 0)))
        assert tab.wait_grid_w(777.5, timeout=3.0) < 3.0  # polled every 2 s
        assert any(url.endswith("/events/latest") for url in tab.requests)
    finally:
        tab.close()


def test_no_data_stale_and_lost_stream_are_shown(browser: Any) -> None:
    runner = ProxyRunner(ProxySettings(health_max_age=1.5)).start()
    try:
        tab = Page(browser, runner.url)
        try:
            assert tab.wait_conn("nodata") == "nodata"
            assert tab.values()["grid"]["text"] == "--"
            runner.feed(*simulated_envelopes(_gateway()))
            tab.wait_conn("live", timeout=1.0)
            assert tab.wait_conn("stale", timeout=4.0) == "stale"
            assert tab.values()["conn"] == "Stale data"
            runner.stop()
            assert tab.wait_conn("reconnecting", "offline") in ("reconnecting", "offline")
        finally:
            tab.close()
    finally:
        runner.stop()


def _background(context: Any, runner: ProxyRunner) -> dict[str, str]:
    tab = Page(context, runner.url)
    try:
        tab.wait_conn("live")
        return dict(
            tab.tab.evaluate(
                """() => ({
                  bg: getComputedStyle(document.body).backgroundColor,
                  fg: getComputedStyle(document.querySelector('.value')).fill,
                  style: document.documentElement.dataset.style})"""
            )
        )
    finally:
        tab.close()


def test_styles_differ_and_base_url_works(browser: Any) -> None:
    seen: dict[str, dict[str, str]] = {}
    for style in ("clear", "black", "white", "grafana-dark", "grafana", "dakboard", "solar"):
        base = "/pw" if style == "black" else "/"
        with ProxyRunner(ProxySettings(style=style, base_url=base)) as runner:
            runner.feed(*simulated_envelopes(_gateway()))
            seen[style] = _background(browser, runner)
            if style == "black":  # PROXY_BASE_URL: everything stays under /pw/
                tab = Page(browser, f"{runner.root}/pw")
                try:
                    tab.wait_conn("live")
                    assert tab.tab.url == f"{runner.root}/pw/"
                    _check_matches_api(tab.values(), runner, prefix="/pw")
                    assert all(u.startswith(f"{runner.root}/pw") for u in tab.requests)
                    assert tab.errors == []
                finally:
                    tab.close()
    assert seen["clear"]["bg"] == "rgba(0, 0, 0, 0)"  # transparent, for Grafana iframes
    assert seen["black"]["bg"] == "rgb(0, 0, 0)"
    assert seen["white"]["bg"] == "rgb(255, 255, 255)"
    assert seen["grafana-dark"]["bg"] == "rgb(24, 27, 31)"
    assert seen["white"]["fg"] != seen["black"]["fg"]
    backgrounds = {seen[s]["bg"] for s in ("clear", "black", "white", "grafana-dark")}
    assert len(backgrounds) == 4
    assert all(seen[s]["style"] == s for s in seen)
