"""The pyPowerwall proxy's data routes, rendered from the bus state. Pure: no I/O.

:func:`render` answers every data route of the newest pyPowerwall proxy (t97) the way that
proxy does (the rules are written up in ``docs/proxy-compatibility.md``), from the
latest message of each kind in :class:`ProxyState` instead of from the gateway:

* JSON is compact with ``", "``/``": "`` separators in insertion order, except /vitals,
  /strings, /temps and /alerts (indent 4, sorted keys). /csv* is ``text/plain``.
* Missing data keeps HTTP-200 semantics: ``null`` for /aggregates, /soe, /vitals and the
  /api/* pass-throughs, the route's empty shape elsewhere, zeros for CSV. Such bodies carry
  ``no_data=True`` so the app can count them as pyPowerwall's "timeout".
* The query string is ignored except for ``headers`` on /csv*.
* Which /api/* paths answer, and how, is the contract's table (:mod:`shared.contract`):
  pass-throughs re-serialise the latest payload, refused paths say "API Disabled", and
  every other /api/* path renders as None (the app answers 404). Nothing here ever reaches
  a gateway; TEDAPI/cloud/FleetAPI/control answer "not enabled".

Rendering depends only on the state's data (and so may be cached per ``state.version``),
except bodies marked ``cacheable=False`` (/pw/is_connected depends on the clock too).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from powerwall_bus.consumers.proxy import derived
from powerwall_bus.consumers.proxy.state import (
    GRID_STATUS,
    METERS,
    OPERATION,
    SITE_NAME,
    SOE,
    SOLAR_POWERWALL,
    STATUS,
    SYSTEM_STATUS,
    ProxyState,
)
from powerwall_bus.shared import contract

JSON = "application/json"
CSV = "text/plain; charset=utf-8"

#: Gateway paths answered with the latest payload read from them (the contract's table).
PASS_THROUGH = contract.proxy_paths(contract.Proxy.PASS_THROUGH)
#: Gateway paths pyPowerwall allow-lists but refuses anyway (its DISABLED list).
DISABLED = contract.proxy_paths(contract.Proxy.REFUSED)

_NOT_ENABLED = {
    "/tedapi": {"error": "TEDAPI not enabled"},
    "/cloud": {"error": "Cloud API not enabled"},
    "/fleetapi": {"error": "FleetAPI not enabled"},
}
#: The control commands pyPowerwall answers (disabled here, as without PW_CONTROL_SECRET).
CONTROL = (
    "/control/reserve",
    "/control/mode",
    "/control/grid_charging",
    "/control/grid_export",
    "/control/max_backup",
)
_CONTROL_DISABLED = {"error": "Control Commands Disabled - Set PW_CONTROL_SECRET to enable"}
_CSV_HEADER = "Grid,Home,Solar,Battery,BatteryLevel"
_CSV_V2_HEADER = _CSV_HEADER + ",GridStatus,Reserve"


@dataclass(frozen=True)
class RenderOptions:
    """The proxy settings that change what the data routes say."""

    neg_solar: bool = True  # PW_NEG_SOLAR
    site_zero_threshold: float = 0.0  # PW_SITE_ZERO_THRESHOLD
    connected_max_age: float = 30.0  # /pw/is_connected: meters newer than this many seconds


@dataclass(frozen=True)
class Body:
    """A rendered answer."""

    text: str
    content_type: str = JSON
    no_data: bool = False  # the route had no data (pyPowerwall counts these as "timeout")
    cacheable: bool = True  # False: the body also depends on the clock, not only the state
    status: int = 200


# --------------------------------------------------------------------------- serialisation


def compact(value: Any) -> str:
    """pyPowerwall's default ``json.dumps``: ``", "`` and ``": "``, insertion order."""
    return json.dumps(value)


def pretty(value: Any) -> str:
    """The library's ``jsonformat=True`` output: indent 4, sorted keys."""
    return json.dumps(value, indent=4, sort_keys=True)


def _json(value: Any, no_data: bool = False) -> Body:
    return Body(compact(value), no_data=no_data)


# --------------------------------------------------------------------------- inputs


def _vitals(state: ProxyState) -> dict[str, dict[str, Any]] | None:
    vitals = state.vitals
    if vitals is None:
        return None
    return {din: device for din, device in vitals.items() if isinstance(device, dict)}


def _dict(state: ProxyState, kind: str) -> dict[str, Any] | None:
    value = state.payload(kind)
    return value if isinstance(value, dict) else None


def _status_field(state: ProxyState, name: str) -> Any:
    status = _dict(state, STATUS)
    return None if status is None else status.get(name)


def _time_remaining(state: ProxyState) -> float | None:
    return derived.time_remaining(state.payload(SYSTEM_STATUS), state.aggregates)


def _strings(state: ProxyState) -> dict[str, dict[str, Any]]:
    return derived.strings(_vitals(state), state.payload(SOLAR_POWERWALL))


def _alerts(state: ProxyState) -> tuple[list[str], bool]:
    """The alerts, and whether every source of them was missing."""
    vitals, solar_powerwall = _vitals(state), state.payload(SOLAR_POWERWALL)
    grid_status = state.payload(GRID_STATUS)
    found = derived.alerts(vitals, solar_powerwall, grid_status)
    return found, vitals is None and solar_powerwall is None and grid_status is None


# --------------------------------------------------------------------------- meters and soe


def aggregates_view(state: ProxyState, options: RenderOptions) -> dict[str, Any] | None:
    """/api/meters/aggregates after PW_SITE_ZERO_THRESHOLD and PW_NEG_SOLAR, or None.

    The state's payload is never modified: changed sections are copies.
    """
    aggregates = state.aggregates
    if not aggregates:
        return None
    view = dict(aggregates)
    site = derived.section(view, "site")
    if options.site_zero_threshold > 0 and site is not None:
        watts = derived.number(site.get("instant_power"))
        if watts is not None and abs(watts) <= options.site_zero_threshold:
            view["site"] = {**site, "instant_power": 0}
    solar = derived.section(view, "solar")
    solar_watts = None if solar is None else derived.number(solar.get("instant_power"))
    if not options.neg_solar and solar is not None and solar_watts is not None and solar_watts < 0:
        load = derived.section(view, "load")
        load_watts = None if load is None else derived.number(load.get("instant_power"))
        if load is not None and load_watts is not None:
            view["load"] = {**load, "instant_power": load_watts - solar_watts}
        view["solar"] = {**solar, "instant_power": 0}
    return view


def _aggregates(state: ProxyState, options: RenderOptions) -> Body:
    view = aggregates_view(state, options)
    return _json(view, no_data=view is None)


def _soe(state: ProxyState, _options: RenderOptions) -> Body:
    soe = state.payload(SOE)
    return _json(soe, no_data=soe is None)


def _soe_scaled(state: ProxyState, _options: RenderOptions) -> Body:
    level = derived.level(state.payload(SOE), scale=True)
    return _json(None if level is None else {"percentage": level}, no_data=level is None)


def _csv(path: str, query: str, state: ProxyState, options: RenderOptions) -> Body:
    """/csv and /csv/v2 (every path starting with them), zeros when data is missing."""
    aggregates = state.aggregates
    grid, home, solar, battery = derived.power_values(
        aggregates, neg_solar=options.neg_solar, site_zero_threshold=options.site_zero_threshold
    )
    level = derived.level(state.payload(SOE)) or 0
    line = ",".join(f"{value:.2f}" for value in (grid, home, solar, battery, level))
    header = _CSV_HEADER
    if path.startswith("/csv/v2"):
        grid_status = 1 if derived.grid_up(state.payload(GRID_STATUS)) else 0
        reserve = derived.reserve(state.payload(OPERATION)) or 0
        line += f",{grid_status:d},{int(reserve):d}"
        header = _CSV_V2_HEADER
    text = line + "\n"
    if "headers" in path or "headers" in query:
        text = header + "\n" + text
    return Body(text, content_type=CSV, no_data=aggregates is None)


# --------------------------------------------------------------------------- vitals views


def _vitals_route(state: ProxyState, _options: RenderOptions) -> Body:
    vitals = state.vitals
    return Body(pretty(vitals), no_data=vitals is None)


def _strings_route(state: ProxyState, _options: RenderOptions) -> Body:
    no_data = state.vitals is None and state.payload(SOLAR_POWERWALL) is None
    return Body(pretty(_strings(state)), no_data=no_data)


def _temps_route(state: ProxyState, _options: RenderOptions) -> Body:
    return Body(pretty(derived.temps(_vitals(state))), no_data=state.vitals is None)


def _temps_pw(state: ProxyState, _options: RenderOptions) -> Body:
    temps = derived.temps(_vitals(state))
    numbered = {f"PW{n}_temp": value for n, value in enumerate(temps.values(), 1)}
    return _json(numbered, no_data=state.vitals is None)


def _alerts_route(state: ProxyState, _options: RenderOptions) -> Body:
    found, no_data = _alerts(state)
    return Body(pretty(found), no_data=no_data)


def _alerts_pw(state: ProxyState, _options: RenderOptions) -> Body:
    found, no_data = _alerts(state)
    return _json(dict.fromkeys(found, 1), no_data=no_data)


def _freq(state: ProxyState, _options: RenderOptions) -> Body:
    system_status, grid_status = state.payload(SYSTEM_STATUS), state.payload(GRID_STATUS)
    vitals = _vitals(state)
    body = derived.freq(system_status, vitals, grid_status)
    return _json(body, no_data=system_status is None and vitals is None and grid_status is None)


def _pod(state: ProxyState, _options: RenderOptions) -> Body:
    system_status, vitals = state.payload(SYSTEM_STATUS), _vitals(state)
    body = derived.pod(
        system_status,
        vitals,
        time_remaining_hours=_time_remaining(state),
        backup_reserve_percent=derived.reserve(state.payload(OPERATION)),
    )
    return _json(body, no_data=system_status is None and vitals is None)


# --------------------------------------------------------------------------- summaries


def _version(state: ProxyState, _options: RenderOptions) -> Body:
    version = _status_field(state, "version")
    if version is None:
        return _json({"version": "SolarOnly", "vint": 0}, no_data=True)
    return _json({"version": version, "vint": derived.parse_version(version)})


def _json_route(state: ProxyState, options: RenderOptions) -> Body:
    aggregates = state.aggregates
    grid, home, solar, battery = derived.power_values(
        aggregates, neg_solar=options.neg_solar, site_zero_threshold=options.site_zero_threshold
    )
    system_status = _dict(state, SYSTEM_STATUS) or {}
    body = {
        "grid": grid,
        "home": home,
        "solar": solar,
        "battery": battery,
        "soe": derived.level(state.payload(SOE)) or 0,
        "grid_status": int(derived.grid_up(state.payload(GRID_STATUS))),
        "reserve": derived.reserve(state.payload(OPERATION)) or 0,
        "time_remaining_hours": _time_remaining(state) or 0,
        "full_pack_energy": system_status.get("nominal_full_pack_energy") or 0,
        "energy_remaining": system_status.get("nominal_energy_remaining") or 0,
        "strings": _strings(state) or {},
    }
    return _json(body, no_data=aggregates is None)


def _empty(_state: ProxyState, _options: RenderOptions) -> Body:
    """/fans and /fans/pw: fan speeds come from TEDAPI only, which the bus does not carry."""
    return Body("{}")


def _problems(_state: ProxyState, _options: RenderOptions) -> Body:
    return _json({"problems": []})


def _disabled(_state: ProxyState, _options: RenderOptions) -> Body:
    return _json({"status": "404 Response - API Disabled"})


def _pass_through(path: str) -> _Route:
    """A pass-through /api/* path: the latest payload read from it, re-serialised."""
    kind = contract.kind_for_path(path)

    def route(state: ProxyState, _options: RenderOptions) -> Body:
        payload = state.payload(kind)
        if isinstance(payload, bytes | bytearray):
            payload = payload.decode("utf-8", "replace")  # a non-JSON reply: a string literal
        return _json(payload, no_data=payload is None)

    return route


# --------------------------------------------------------------------------- /pw/<name>

# Each gives (value, whether its source was missing); the route wraps the value in JSON.
_PwFunction = Callable[[ProxyState, RenderOptions], tuple[Any, bool]]


def _pw_aggregate_section(name: str) -> _PwFunction:
    def fetch(state: ProxyState, _options: RenderOptions) -> tuple[Any, bool]:
        return derived.section(state.aggregates, name), state.aggregates is None

    return fetch


def _pw_status_field(name: str, key: str) -> _PwFunction:
    def fetch(state: ProxyState, _options: RenderOptions) -> tuple[Any, bool]:
        return {name: _status_field(state, key)}, state.payload(STATUS) is None

    return fetch


def _pw_payload(kind: str) -> _PwFunction:
    def fetch(state: ProxyState, _options: RenderOptions) -> tuple[Any, bool]:
        payload = state.payload(kind)
        return payload, payload is None

    return fetch


def _pw_level(state: ProxyState, _options: RenderOptions) -> tuple[Any, bool]:
    level = derived.level(state.payload(SOE))
    return {"level": level}, level is None


def _pw_power(state: ProxyState, _options: RenderOptions) -> tuple[Any, bool]:
    return derived.power(state.aggregates), state.aggregates is None


def _pw_battery_blocks(state: ProxyState, _options: RenderOptions) -> tuple[Any, bool]:
    system_status = state.payload(SYSTEM_STATUS)
    return derived.battery_blocks(system_status, _vitals(state)), system_status is None


def _pw_vitals(state: ProxyState, _options: RenderOptions) -> tuple[Any, bool]:
    return state.vitals, state.vitals is None


def _pw_temps(state: ProxyState, _options: RenderOptions) -> tuple[Any, bool]:
    return derived.temps(_vitals(state)), state.vitals is None


def _pw_strings(state: ProxyState, _options: RenderOptions) -> tuple[Any, bool]:
    solar_powerwall = state.payload(SOLAR_POWERWALL)
    verbose = derived.strings_verbose(_vitals(state), solar_powerwall)
    return verbose, state.vitals is None and solar_powerwall is None


def _pw_grid_status(state: ProxyState, _options: RenderOptions) -> tuple[Any, bool]:
    # The library's grid_status("json") is sorted JSON, which the proxy parses again.
    payload = state.payload(GRID_STATUS)
    if not isinstance(payload, dict):
        return {}, True
    return json.loads(json.dumps(payload, sort_keys=True)), False


def _pw_site_name(state: ProxyState, _options: RenderOptions) -> tuple[Any, bool]:
    payload = _dict(state, SITE_NAME)
    return {"site_name": None if payload is None else payload.get("site_name")}, payload is None


def _pw_alerts(state: ProxyState, _options: RenderOptions) -> tuple[Any, bool]:
    found, no_data = _alerts(state)
    return {"alerts": found}, no_data


def _pw_reserve(state: ProxyState, _options: RenderOptions) -> tuple[Any, bool]:
    value = derived.reserve(state.payload(OPERATION))
    return {"reserve": value}, value is None


def _pw_mode(state: ProxyState, _options: RenderOptions) -> tuple[Any, bool]:
    value = derived.mode(state.payload(OPERATION))
    return {"mode": value}, value is None


def _pw_time_remaining(state: ProxyState, _options: RenderOptions) -> tuple[Any, bool]:
    value = _time_remaining(state)
    return {"time_remaining": value}, value is None


def is_connected(state: ProxyState, options: RenderOptions) -> bool:
    """Whether meters data arrived within ``options.connected_max_age`` seconds."""
    age = state.age(METERS)
    return age is not None and age <= options.connected_max_age


_PW: dict[str, _PwFunction] = {
    "level": _pw_level,
    "power": _pw_power,
    "site": _pw_aggregate_section("site"),
    "solar": _pw_aggregate_section("solar"),
    "battery": _pw_aggregate_section("battery"),
    "battery_blocks": _pw_battery_blocks,
    "load": _pw_aggregate_section("load"),
    "grid": _pw_aggregate_section("site"),
    "home": _pw_aggregate_section("load"),
    "vitals": _pw_vitals,
    "temps": _pw_temps,
    "strings": _pw_strings,
    "din": _pw_status_field("din", "din"),
    "uptime": _pw_status_field("uptime", "up_time_seconds"),
    "version": _pw_status_field("version", "version"),
    "status": _pw_payload(STATUS),
    "system_status": _pw_payload(SYSTEM_STATUS),
    "grid_status": _pw_grid_status,
    "aggregates": _pw_payload(METERS),
    "site_name": _pw_site_name,
    "alerts": _pw_alerts,
    "get_reserve": _pw_reserve,
    "get_mode": _pw_mode,
    "get_time_remaining": _pw_time_remaining,
}
#: Every name /pw/<name> answers.
PW_NAMES = frozenset(_PW) | {"is_connected"}


def _pw(name: str, state: ProxyState, options: RenderOptions) -> Body:
    if name == "is_connected":
        connected = is_connected(state, options)
        return Body(compact({"is_connected": connected}), cacheable=False)
    function = _PW.get(name)
    if function is None:  # pyPowerwall's body, with the status that says what it means
        return Body(compact({"error": "Invalid Request"}), status=404)
    value, no_data = function(state, options)
    return _json(value, no_data=no_data)


# --------------------------------------------------------------------------- routing

_Route = Callable[[ProxyState, RenderOptions], Body]
_PrefixRoute = Callable[[str, str, ProxyState, RenderOptions], Body]

#: The data routes of the proxy's own, by exact path (some at a gateway path: the contract's
#: table marks those ``Proxy.OWN_ROUTE``).
_OWN: dict[str, _Route] = {
    "/aggregates": _aggregates,
    "/api/meters/aggregates": _aggregates,
    "/soe": _soe,
    "/api/system_status/soe": _soe_scaled,
    "/vitals": _vitals_route,
    "/strings": _strings_route,
    "/temps": _temps_route,
    "/temps/pw": _temps_pw,
    "/alerts": _alerts_route,
    "/alerts/pw": _alerts_pw,
    "/freq": _freq,
    "/pod": _pod,
    "/json": _json_route,
    "/version": _version,
    "/api/troubleshooting/problems": _problems,
    "/fans": _empty,
}
_EXACT: dict[str, _Route] = {
    **{path: _pass_through(path) for path in sorted(PASS_THROUGH)},
    **dict.fromkeys(sorted(DISABLED), _disabled),
    **_OWN,
}


def _fixed(value: Any) -> _PrefixRoute:
    body = _json(value)
    return lambda _path, _query, _state, _options: body


#: Families of routes by path prefix, tried in order after the exact paths.
_PREFIXED: tuple[tuple[str, _PrefixRoute], ...] = (
    ("/csv", _csv),
    *((prefix, _fixed(answer)) for prefix, answer in _NOT_ENABLED.items()),
    *((prefix, _fixed(_CONTROL_DISABLED)) for prefix in CONTROL),
    ("/fans/pw", lambda _path, _query, state, options: _empty(state, options)),
    ("/pw/", lambda path, _query, state, options: _pw(path[len("/pw/") :], state, options)),
)

#: Every path a data route answers exactly.
DATA_PATHS = frozenset(_EXACT)
#: The data routes of the proxy's own (not pass-through, not refused).
OWN_PATHS = frozenset(_OWN)
#: Every path prefix a family of data routes answers.
DATA_PREFIXES = tuple(prefix for prefix, _ in _PREFIXED)


def render(path: str, query: str, state: ProxyState, options: RenderOptions) -> Body | None:
    """The answer for a GET of ``path`` (already without PROXY_BASE_URL), or None if the
    path is not a data route (the app then answers 404)."""
    route = _EXACT.get(path)
    if route is not None:
        return route(state, options)
    for prefix, family in _PREFIXED:
        if path.startswith(prefix):
            return family(path, query, state, options)
    return None
