"""The proxy's aiohttp application: routing, compatibility headers, statistics, health.

Data routes are rendered by :mod:`consumers.proxy.render` from the bus state and cached
until that state changes, so a dashboard polling every second costs a dictionary lookup.
Nothing here talks to the gateway: an unknown path is a 404, never forwarded.

Compatibility with the pyPowerwall proxy: GET answers carry
``Access-Control-Allow-Origin: *``; missing data is HTTP 200 with ``null`` or the route's
empty shape; ``PROXY_BASE_URL`` is stripped before routing. Where we differ on purpose:
unknown paths are 404 (not 200 "Not Found"), methods other than GET/HEAD are 405, and
``/health`` is honest: 503 when the data is stale or the gateway is unreachable.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import logging
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from powerwall_bus import __version__
from powerwall_bus.consumers.proxy import page
from powerwall_bus.consumers.proxy.openapi import openapi_document
from powerwall_bus.consumers.proxy.render import Body, RenderOptions, render
from powerwall_bus.consumers.proxy.state import METERS, POLLER_STATUS, SITE_NAME, ProxyState, Stats
from powerwall_bus.shared.settings import ProxySettings

_LOGGER = logging.getLogger(__name__)

VERSION = f"powerwall-bus {__version__}"
_CORS = {"Access-Control-Allow-Origin": "*"}
_MAX_PATH = 2048

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ProxyApp:
    """State, statistics and the handlers that read them."""

    def __init__(self, state: ProxyState, stats: Stats, settings: ProxySettings) -> None:
        self.state = state
        self.stats = stats
        self.settings = settings
        self.options = RenderOptions(
            neg_solar=settings.neg_solar,
            site_zero_threshold=settings.site_zero_threshold,
            connected_max_age=settings.health_max_age,
        )
        self._cache: dict[str, tuple[int, _Answer]] = {}
        self._own: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
            "/stats": self._stats,
            "/stats/clear": self._stats_clear,
            "/health": self._health,
            "/health/reset": self._health_reset,
            "/help": self._help,
            "/openapi.json": self._openapi,
        }

    # ------------------------------------------------------------------ routing

    def application(self) -> web.Application:
        """The aiohttp application (one catch-all route; routing is done here)."""
        app = web.Application(client_max_size=4096)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    def _refuse(self, request: web.Request) -> web.StreamResponse | None:
        """Answers for what is not a plain GET/HEAD of a sane path."""
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            return _json_error(405, "method not allowed", {"Allow": "GET, HEAD"})
        if request.method == "OPTIONS":
            return web.Response(
                status=204,
                headers={
                    **_CORS,
                    "Access-Control-Allow-Methods": "GET, HEAD",
                    "Access-Control-Allow-Headers": "*",
                },
            )
        if len(request.raw_path) > _MAX_PATH:
            return _json_error(414, "URI too long")
        return None

    def _route_path(self, request: web.Request) -> str | None:
        """The path to route, without PROXY_BASE_URL; None when outside the prefix."""
        path = request.path
        base = self.settings.base_url
        if base != "/":
            if path == base:
                return "/"
            if not path.startswith(base + "/"):
                return None
            path = path[len(base) :]
        return path

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET" or len(request.raw_path) > _MAX_PATH:
            refused = self._refuse(request)
            if refused is not None:
                return refused
        path = self._route_path(request)
        if path is None or "\x00" in path:
            return _json_error(404, "not found")
        own = self._own.get(path)
        if own is not None:
            return await own(request)
        if path in page.PATHS or path.startswith(page.STATIC_PREFIX):
            served = await page.serve(request, path, self.state, self.options, self.settings)
            if served is not None:
                self.stats.count(path)
                return served
        answer = self._answer(path, request.query_string)
        if answer is None:
            return _json_error(404, "not found")
        self.stats.count(path, "timeout" if answer.no_data else "ok")
        return web.Response(body=answer.body, headers=answer.headers)

    def _answer(self, path: str, query: str) -> _Answer | None:
        """The encoded answer for a data route, rendered once per state version."""
        key = f"{path}?{query}"
        cached = self._cache.get(key)
        if cached is not None and cached[0] == self.state.version:
            return cached[1]
        body = render(path, query, self.state, self.options)
        if body is None:
            return None
        answer = _Answer.of(body)
        if body.cacheable:
            if len(self._cache) > 512:  # bounded: query strings are client-controlled
                self._cache.clear()
            self._cache[key] = (self.state.version, answer)
        return answer

    # ------------------------------------------------------------------ stats, health

    def stats_document(self) -> dict[str, Any]:
        """The /stats object: pyPowerwall's keys where they mean something here, plus ours."""
        now = time.time()
        site = self.state.payload(SITE_NAME)
        return {
            "pypowerwall": VERSION,
            "mode": "Bus",
            "gets": self.stats.gets,
            "errors": self.stats.errors,
            "timeout": self.stats.timeout,
            "uri": dict(self.stats.uri),
            "ts": int(now),
            "start": int(self.stats.start),
            "clear": int(self.stats.clear),
            "uptime": str(dt.timedelta(seconds=int(now - self.stats.start))),
            "mem": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "site_name": site.get("site_name") if isinstance(site, dict) else None,
            "cloudmode": False,
            "tedapi": False,
            "bus": {
                "connected": self.state.bus_connected,
                "age_seconds": {
                    kind: round(age, 3)
                    for kind in self.state.kinds()
                    if (age := self.state.age(kind)) is not None
                },
            },
        }

    def health_document(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of /health: 503 when data is stale or the gateway is down."""
        problems = []
        meters_age = self.state.age(METERS)
        if not self.state.bus_connected:
            problems.append("not connected to the message bus")
        if meters_age is None:
            problems.append("no meter data received yet")
        elif meters_age > self.settings.health_max_age:
            problems.append(f"meter data is {meters_age:.0f} s old")
        poller = self.state.payload(POLLER_STATUS)
        gateway_state = poller.get("gateway_state") if isinstance(poller, dict) else None
        if gateway_state in ("unreachable", "login_refused", "cooldown"):
            problems.append(f"the poller reports the gateway as {gateway_state}")
        body = {
            "status": "ok" if not problems else "unhealthy",
            "problems": problems,
            "bus_connected": self.state.bus_connected,
            "gateway_state": gateway_state,
            "meters_age_seconds": None if meters_age is None else round(meters_age, 3),
            "max_age_seconds": self.settings.health_max_age,
            "proxy_stats": {
                "total_gets": self.stats.gets,
                "total_errors": self.stats.errors,
                "total_timeouts": self.stats.timeout,
            },
            "current_time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        return (200 if not problems else 503), body

    async def _stats(self, request: web.Request) -> web.Response:
        self.stats.count("/stats")
        return _json(self.stats_document())

    async def _stats_clear(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return _json(self.stats_document())

    async def _health(self, request: web.Request) -> web.Response:
        status, body = self.health_document()
        return _json(body, status=status)

    async def _health_reset(self, request: web.Request) -> web.Response:
        cleared = len(self.stats.uri)
        self.stats.reset()
        self.stats.timeout = 0
        return _json(
            {
                "status": "reset_complete",
                "health_counters_reset": True,
                "cache_cleared": False,
                "cache_entries_removed": 0,
                "endpoint_stats_cleared": cleared,
            }
        )

    async def _help(self, request: web.Request) -> web.Response:
        self.stats.count("/help")
        return web.Response(
            text=_help_page(self.stats_document()), content_type="text/html", headers=_CORS
        )

    async def _openapi(self, request: web.Request) -> web.Response:
        return _json(openapi_document(self.settings.base_url))


@dataclass(frozen=True)
class _Answer:
    """A rendered body, encoded once, with its response headers."""

    body: bytes
    headers: dict[str, str]
    no_data: bool

    @classmethod
    def of(cls, body: Body) -> _Answer:
        media, _, charset = body.content_type.partition(";")
        content_type = media.strip() + (f"; {charset.strip()}" if charset else "")
        return cls(body.text.encode(), {**_CORS, "Content-Type": content_type}, body.no_data)


def build_app(state: ProxyState, stats: Stats, settings: ProxySettings) -> web.Application:
    """The proxy application for this state."""
    return ProxyApp(state, stats, settings).application()


def _json(document: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(document), status=status, content_type="application/json", headers=_CORS
    )


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps({"error": message}),
        status=status,
        content_type="application/json",
        headers={**_CORS, **(headers or {})},
    )


def _help_page(stats: dict[str, Any]) -> str:
    """A small HTML page of the statistics (refreshes every 5 s, like pyPowerwall's)."""
    rows = []
    for key, value in stats.items():
        if key in ("uri", "bus"):
            continue
        rows.append(f"<tr><td>{html.escape(key)}</td><td>{html.escape(str(value))}</td></tr>")
    uris = "".join(
        f"<tr><td>{html.escape(path)}</td><td>{count}</td></tr>"
        for path, count in sorted(stats["uri"].items())
    )
    ages = "".join(
        f"<tr><td>{html.escape(kind)}</td><td>{age:.1f} s</td></tr>"
        for kind, age in stats["bus"]["age_seconds"].items()
    )
    connected = "connected" if stats["bus"]["connected"] else "NOT connected"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta http-equiv='refresh' content='5'><title>powerwall-bus proxy</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 12px}"
        "table{border-collapse:collapse;margin-bottom:1.5em}tr:nth-child(odd){background:#eee}"
        "</style></head><body><h1>powerwall-bus proxy</h1>"
        f"<p>Message bus: {connected}. Data comes from the poller; this proxy never "
        "calls the gateway.</p>"
        f"<h2>Statistics</h2><table>{''.join(rows)}</table>"
        f"<h2>Requests by path</h2><table>{uris}</table>"
        f"<h2>Age of the data</h2><table>{ages}</table>"
        "<p>API description: <a href='openapi.json'>openapi.json</a></p></body></html>"
    )
