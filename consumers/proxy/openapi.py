"""/openapi.json: a description of every route the proxy answers (OpenAPI 3.0).

The gateway paths it passes through or refuses come from the contract's table
(:mod:`shared.contract`); the proxy's own routes are described here.
``tests/test_contract.py`` checks that the document, the dispatcher's routes and the table
agree, path for path.
"""

from __future__ import annotations

from typing import Any

from powerwall_bus import __version__
from powerwall_bus.consumers.proxy.page import assets
from powerwall_bus.consumers.proxy.render import CONTROL, PW_NAMES
from powerwall_bus.shared import contract

_JSON_ROUTES = {
    "/aggregates": "Meters (site, battery, load, solar) with PW_NEG_SOLAR and "
    "PW_SITE_ZERO_THRESHOLD applied; null without data",
    "/api/meters/aggregates": "Same as /aggregates",
    "/soe": "Raw state of energy {percentage}; null without data",
    "/api/system_status/soe": "App-scaled state of energy (p/0.95 - 5/0.95)",
    "/api/troubleshooting/problems": 'Always {"problems": []}, as in pyPowerwall',
    "/vitals": "Device vitals (pretty, sorted); null without vitals",
    "/strings": "PV strings A, B, ... (pretty, sorted); {} without data",
    "/temps": "Powerwall temperatures by device (pretty, sorted)",
    "/temps/pw": "PW1_temp, PW2_temp, ... in device order",
    "/alerts": "Alert names (pretty list)",
    "/alerts/pw": "Alert names mapped to 1",
    "/freq": "Frequencies and voltages per Powerwall, islanding and meter values",
    "/pod": "Battery pod energies and flags per Powerwall",
    "/version": "Gateway firmware {version, vint}",
    "/json": "Power, level, grid status, reserve and strings in one object",
    "/fans": "Fan speeds ({} without TEDAPI)",
    "/fans/pw": "Fan speeds FANn_actual/target ({} without TEDAPI)",
    "/events/latest": "The numbers of the power-flow page, once (its polling fallback)",
    "/stats": "Request statistics, bus state and the age of each kind of data",
    "/stats/clear": "Reset the request statistics and return them",
    "/health": "200 when fresh data flows; 503 when data is stale or the gateway is down",
    "/health/reset": "Reset the health counters",
    "/openapi.json": "This document",
}
_TEXT_ROUTES = {
    "/csv": "grid,home,solar,battery,level (text/plain; add ?headers for a header row)",
    "/csv/v2": "As /csv plus grid status and reserve",
    "/metrics": "Prometheus metrics: the gateway's readings and the pipeline's health "
    "(text format; OpenMetrics when asked for)",
}
_HTML_ROUTES = {
    "/": "The live power-flow page",
    "/example.html": "How to embed the power-flow page in another page (an iframe example)",
    "/help": "Statistics as an HTML page",
}


def _operation(summary: str, media: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {media: {"schema": {}}}},
        "404": {"description": "Not a route of this proxy"},
    }
    if extra:
        responses.update(extra)
    return {"get": {"summary": summary, "responses": responses}}


def _family(summary: str, name: str, schema: dict[str, Any], media: str) -> dict[str, Any]:
    """A family of routes under one path template (``/pw/{name}``)."""
    parameter = {"name": name, "in": "path", "required": True, "schema": schema}
    content = {"200": {"description": "OK", "content": {media: {"schema": {}}}}}
    return {"get": {"summary": summary, "parameters": [parameter], "responses": content}}


def _gateway_paths() -> dict[str, Any]:
    """The gateway paths the contract's table says the proxy passes through or refuses."""
    paths: dict[str, Any] = {}
    for endpoint in contract.ENDPOINTS:
        if endpoint.proxy is contract.Proxy.PASS_THROUGH:
            note = f" ({endpoint.note})" if endpoint.note else ""
            summary = f"The latest {endpoint.path} read by the poller{note}; null without data"
        elif endpoint.proxy is contract.Proxy.REFUSED:
            summary = 'Disabled, as in pyPowerwall: {"status": "404 Response - API Disabled"}'
        else:
            continue  # a route of the proxy's own (described above) or not served
        paths[endpoint.path] = _operation(summary, "application/json")
    return paths


def openapi_document(base_url: str = "/") -> dict[str, Any]:
    """The OpenAPI 3.0 document; paths are relative to PROXY_BASE_URL."""
    paths: dict[str, Any] = {}
    for path, summary in _JSON_ROUTES.items():
        extra = {"503": {"description": "Unhealthy"}} if path == "/health" else None
        paths[path] = _operation(summary, "application/json", extra)
    for path, summary in _TEXT_ROUTES.items():
        paths[path] = _operation(summary, "text/plain")
    for path, summary in _HTML_ROUTES.items():
        paths[path] = _operation(summary, "text/html")
    paths["/events"] = _operation(
        "Live updates of the power flow (Server-Sent Events)",
        "text/event-stream",
        {"503": {"description": "Too many streams"}},
    )
    paths.update(_gateway_paths())
    paths["/pw/{name}"] = _family(
        "pyPowerwall library values",
        "name",
        {"type": "string", "enum": sorted(PW_NAMES)},
        "application/json",
    )
    for family in ("tedapi", "cloud", "fleetapi"):
        paths[f"/{family}/{{sub}}"] = _family(
            f"/{family}: not enabled here; an error object, as in pyPowerwall",
            "sub",
            {"type": "string", "pattern": "^[a-z_]{1,20}$"},
            "application/json",
        )
    paths["/control/{command}"] = _family(
        "Control commands: disabled here; an error object, as in pyPowerwall",
        "command",
        {"type": "string", "enum": [path.removeprefix("/control/") for path in CONTROL]},
        "application/json",
    )
    paths["/static/{name}"] = _family(
        "The power-flow page's scripts, styles and images",
        "name",
        {"type": "string", "enum": sorted(assets().files)},
        "*/*",
    )
    server = "/" if base_url == "/" else base_url
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "powerwall-bus proxy",
            "version": __version__,
            "description": "The pyPowerwall proxy's endpoints, served from the message bus. "
            "Every GET answers from memory; nothing is forwarded to the gateway.",
        },
        "servers": [{"url": server}],
        "paths": paths,
    }
