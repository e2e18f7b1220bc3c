"""/openapi.json: a description of every route the proxy answers (OpenAPI 3.0)."""

from __future__ import annotations

from typing import Any

from powerwall_bus import __version__
from powerwall_bus.shared.settings import DEFAULT_SLOW_ENDPOINTS

PW_NAMES = (
    "level",
    "power",
    "site",
    "solar",
    "battery",
    "battery_blocks",
    "load",
    "grid",
    "home",
    "vitals",
    "temps",
    "strings",
    "din",
    "uptime",
    "version",
    "status",
    "system_status",
    "grid_status",
    "aggregates",
    "site_name",
    "alerts",
    "is_connected",
    "get_reserve",
    "get_mode",
    "get_time_remaining",
)

#: Gateway paths served from the latest snapshot (the pyPowerwall allow list).
PASS_THROUGH = tuple(
    sorted(
        set(DEFAULT_SLOW_ENDPOINTS)
        | {
            "/api/system_status",
            "/api/operation",
            "/api/solar_powerwall",
            "/api/customer/registration",
        }
    )
)

_JSON_ROUTES = {
    "/aggregates": "Meters (site, battery, load, solar) with PW_NEG_SOLAR and "
    "PW_SITE_ZERO_THRESHOLD applied; null without data",
    "/api/meters/aggregates": "Same as /aggregates",
    "/soe": "Raw state of energy {percentage}; null without data",
    "/api/system_status/soe": "App-scaled state of energy (p/0.95 - 5/0.95)",
    "/api/system_status/grid_status": "Grid status as read from the gateway",
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
    "/stats": "Request statistics, bus state and the age of each kind of data",
    "/stats/clear": "Reset the request statistics and return them",
    "/health": "200 when fresh data flows; 503 when data is stale or the gateway is down",
    "/health/reset": "Reset the health counters",
    "/openapi.json": "This document",
}
_TEXT_ROUTES = {
    "/csv": "grid,home,solar,battery,level (text/plain; add ?headers for a header row)",
    "/csv/v2": "As /csv plus grid status and reserve",
}
_HTML_ROUTES = {"/": "The live power-flow page", "/help": "Statistics as an HTML page"}


def _operation(summary: str, media: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {media: {"schema": {}}}},
        "404": {"description": "Not a route of this proxy"},
    }
    if extra:
        responses.update(extra)
    return {"get": {"summary": summary, "responses": responses}}


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
    for path in PASS_THROUGH:
        paths[path] = _operation(
            f"The latest {path} read by the poller; null without data", "application/json"
        )
    paths["/pw/{name}"] = {
        "get": {
            "summary": "pyPowerwall library values",
            "parameters": [
                {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": list(PW_NAMES)},
                }
            ],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {}}}}
            },
        }
    }
    for family in ("tedapi", "cloud", "fleetapi"):
        paths[f"/{family}/{{sub}}"] = {
            "get": {
                "summary": f"/{family}: not enabled here; an error object, as in pyPowerwall",
                "parameters": [
                    {
                        "name": "sub",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[a-z_]{1,20}$"},
                    }
                ],
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {"schema": {}}}}
                },
            }
        }
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
