"""The proxy's service routes: ``/stats``, ``/help``, ``/health``, ``/metrics`` and
``/openapi.json``.

They describe the proxy rather than the Powerwall, so they are not cached and not counted
as data. ``/stats`` keeps the pyPowerwall proxy's keys where they mean something here, and
says which gateway is served; ``/health`` is honest on purpose: 503 when the meter data is
stale, the bus is down, the poller reports the gateway unreachable or rate-limited, or a
second gateway appeared while none was chosen (``PWBUS_GATEWAY``). Both count the messages
the proxy dropped (``bus.refused``: by reason, see :mod:`~powerwall_bus.shared.acceptance`);
a dropped message never changes the data, so it cannot make the data look old either.
Both also carry every other key of the pyPowerwall proxy's answers
(:mod:`~powerwall_bus.consumers.proxy.pypowerwall_keys`), ours winning where a name is
shared.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from powerwall_bus import __version__
from powerwall_bus.consumers.proxy.keys import SETTINGS, STATE, STATS
from powerwall_bus.consumers.proxy.metrics import metrics_route
from powerwall_bus.consumers.proxy.openapi import openapi_document
from powerwall_bus.consumers.proxy.pypowerwall_keys import MODE, health_keys, stats_keys
from powerwall_bus.consumers.proxy.state import METERS, POLLER_STATUS, SITE_NAME, ProxyState, Stats
from powerwall_bus.shared.health import Freshness, health_problems
from powerwall_bus.shared.settings import ProxySettings

VERSION = f"powerwall-bus {__version__}"
CORS = {"Access-Control-Allow-Origin": "*"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def stats_document(
    state: ProxyState, stats: Stats, settings: ProxySettings | None = None
) -> dict[str, Any]:
    """The /stats object: every key of pyPowerwall's, plus ours."""
    now = time.time()
    site = state.payload(SITE_NAME)
    ours = {
        "pypowerwall": VERSION,
        "mode": MODE,
        "gets": stats.gets,
        "errors": stats.errors,
        "timeout": stats.timeout,
        "uri": dict(stats.uri),
        "ts": int(now),
        "start": int(stats.start),
        "clear": int(stats.clear),
        "uptime": str(dt.timedelta(seconds=int(now - stats.start))),
        "mem": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "site_name": site.get("site_name") if isinstance(site, dict) else None,
        "cloudmode": False,
        "tedapi": False,
        "gateway": state.gateways.document(),
        "bus": {
            "connected": state.bus_connected,
            "age_seconds": {
                kind: round(age, 3)
                for kind in state.kinds()
                if (age := state.age(kind)) is not None
            },
            "refused": state.refused.counts(),
        },
    }
    return {**stats_keys(state, stats, settings), **ours}


def health_document(state: ProxyState, stats: Stats, max_age: float) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of /health: 503 when data is stale or the gateway is down."""
    meters_age = state.age(METERS)
    facts = Freshness(
        bus_connected=state.bus_connected,
        meters_age=meters_age,
        max_age=max_age,
        poller_status=state.payload(POLLER_STATUS),
        several_gateways=state.gateways.problem(),
    )
    problems = health_problems(facts)
    gateway_state = facts.gateway_state
    body = {
        **health_keys(state, stats, max_age),
        "pypowerwall": VERSION,
        "status": "ok" if not problems else "unhealthy",
        "problems": problems,
        "bus_connected": state.bus_connected,
        "gateway_state": gateway_state,
        "gateway": state.gateways.document(),
        "meters_age_seconds": None if meters_age is None else round(meters_age, 3),
        "max_age_seconds": max_age,
        "refused_messages": state.refused.total(),
        "proxy_stats": {
            "total_gets": stats.gets,
            "total_posts": 0,
            "total_errors": stats.errors,
            "total_timeouts": stats.timeout,
        },
        "current_time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return (200 if not problems else 503), body


async def _stats(request: web.Request) -> web.Response:
    request.app[STATS].count("/stats")
    app = request.app
    return json_response(stats_document(app[STATE], app[STATS], app[SETTINGS]))


async def _stats_clear(request: web.Request) -> web.Response:
    request.app[STATS].reset()
    app = request.app
    return json_response(stats_document(app[STATE], app[STATS], app[SETTINGS]))


async def _health(request: web.Request) -> web.Response:
    app = request.app
    status, body = health_document(app[STATE], app[STATS], app[SETTINGS].health_max_age)
    return json_response(body, status=status)


async def _health_reset(request: web.Request) -> web.Response:
    stats = request.app[STATS]
    cleared = len(stats.uri)
    stats.reset()
    stats.timeout = 0
    return json_response(
        {
            "status": "reset_complete",
            "health_counters_reset": True,
            "cache_cleared": False,
            "cache_entries_removed": 0,
            "endpoint_stats_cleared": cleared,
        }
    )


async def _help(request: web.Request) -> web.Response:
    stats = request.app[STATS]
    stats.count("/help")
    page = _help_page(stats_document(request.app[STATE], stats, request.app[SETTINGS]))
    return web.Response(text=page, content_type="text/html", headers=CORS)


async def _openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(request.app[SETTINGS].base_url))


#: Path -> handler of every service route.
SERVICE_ROUTES: dict[str, Handler] = {
    "/stats": _stats,
    "/stats/clear": _stats_clear,
    "/health": _health,
    "/health/reset": _health_reset,
    "/help": _help,
    "/metrics": metrics_route,
    "/openapi.json": _openapi,
}


def json_response(document: Any, status: int = 200) -> web.Response:
    """A JSON answer with the pyPowerwall proxy's CORS header."""
    return web.Response(
        text=json.dumps(document), status=status, content_type="application/json", headers=CORS
    )


def _help_page(stats: dict[str, Any]) -> str:
    """A small HTML page of the statistics (refreshes every 5 s, like pyPowerwall's)."""
    rows = []
    for key, value in stats.items():
        if key in ("uri", "bus", "gateway") or isinstance(value, dict):
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
    gateway = stats["gateway"]
    served = " / ".join(str(gateway[key]) for key in ("name", "din") if gateway[key])
    served = served or (f"{gateway['wanted']} (not seen yet)" if gateway["wanted"] else "none yet")
    others = ", ".join(gateway["others"]) or "none"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta http-equiv='refresh' content='5'><title>powerwall-bus proxy</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:2px 12px}"
        "table{border-collapse:collapse;margin-bottom:1.5em}tr:nth-child(odd){background:#eee}"
        "</style></head><body><h1>powerwall-bus proxy</h1>"
        f"<p>Message bus: {connected}. Data comes from the poller; this proxy never "
        "calls the gateway.</p>"
        f"<p>Gateway served: {html.escape(served)}; other gateways seen: "
        f"{html.escape(others)}.</p>"
        f"<h2>Statistics</h2><table>{''.join(rows)}</table>"
        f"<h2>Requests by path</h2><table>{uris}</table>"
        f"<h2>Age of the data</h2><table>{ages}</table>"
        "<p>API description: <a href='openapi.json'>openapi.json</a></p></body></html>"
    )
