"""The pyPowerwall proxy's ``/stats`` and ``/health`` keys that we have no direct twin for.

Tools written against the pyPowerwall proxy (its ``regression_test.py``, Powerwall-Dashboard's
``verify.sh``, Docker health checks) look for every key of its answers (newest, t97). Ours
has them all, with honest values: what the poller reports about the gateway connection
(:mod:`~powerwall_bus.consumers.proxy.poller_view`) where pyPowerwall reports its own, the
fixed answers of a proxy with no cloud, no TEDAPI and no fallback mode, and null where we
do not know. The keys of our own stay beside them (see :mod:`.service`).

Mapping, where it is not obvious:

* ``connection_health``: the poller's requests to the gateway (successes = requests minus
  errors); degraded while the poller reports the gateway in trouble.
* ``endpoint_statistics``: per polled gateway path, from the poller's counts.
* ``cached_data``: the latest message of every kind, which is what the proxy serves from;
  ``is_expired`` once older than ``proxy.health_max_age``.
* ``mem_cache``: the kinds held (``performance_cache``) and the paths counted
  (``endpoint_stats``); we keep no error or degradation caches (0); sizes are not measured
  (null).
* ``graceful_degradation`` is true: with the gateway away we keep answering with the last
  data (and an ``X-Pwbus-Data-Age`` header). There is no fail-fast or fallback mode.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

from powerwall_bus.consumers.proxy.poller_view import PollerView, poller_view
from powerwall_bus.consumers.proxy.state import POLLER_STATUS, ProxyState, Stats
from powerwall_bus.shared.gateway.states import TROUBLE
from powerwall_bus.shared.settings import ProxySettings

#: /stats and /health "mode": pyPowerwall says "Local", "Cloud", ...; we read the bus.
MODE = "Bus"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _age(now: float, moment: float | None) -> float | None:
    return None if moment is None else _round(max(0.0, now - moment))


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="seconds")


def connection_health(poller: PollerView, state: ProxyState) -> dict[str, Any]:
    """pyPowerwall's connection_health, from the poller's requests to the gateway."""
    return {
        "consecutive_failures": poller.consecutive_errors,
        "total_failures": poller.failed,
        "total_successes": max(0, poller.requests - poller.failed),
        "is_degraded": poller.gateway_state in TROUBLE,
        "last_success_time": poller.last_success,
        "cache_size": len(state.kinds()),
    }


def fallback_mode() -> dict[str, Any]:
    """pyPowerwall's TEDAPI SolarOnly fallback: there is none here."""
    return {
        "is_fallback_mode": False,
        "fallback_since": None,
        "fallback_duration_seconds": None,
        "recovery_attempts": 0,
        "last_recovery_attempt": None,
        "recovery_enabled": False,
    }


def _config(settings: ProxySettings | None) -> dict[str, Any]:
    """The proxy's settings (secrets as "*", as pyPowerwall shows its own)."""
    if settings is None:
        return {}
    shown: dict[str, Any] = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if field.metadata.get("secret"):
            value = "*" if value else ""
        elif not isinstance(value, str | int | float | bool | type(None)):
            value = str(value)
        shown[field.name] = value
    return shown


def stats_keys(
    state: ProxyState, stats: Stats, settings: ProxySettings | None = None
) -> dict[str, Any]:
    """The pyPowerwall /stats keys beyond the ones :func:`.service.stats_document` fills."""
    poller = poller_view(state.payload(POLLER_STATUS))
    none = {"entries": 0, "size_bytes": 0}
    return {
        "posts": 0,  # no POST is answered here (405)
        "fleetapi": False,
        "pw3": None,
        "tedapi_mode": "off",
        "tedapi_api_version": None,
        "siteid": None,
        "counter": 0,  # pyPowerwall's cloud-call counter: no cloud here
        "authmode": None,  # the poller logs in, not the proxy
        "cf": None,  # no login cache file: the proxy never logs in
        "config": _config(settings),
        "connection_health": connection_health(poller, state),
        "fallback_mode": fallback_mode(),
        "mem_cache": {
            "error_counts": none,
            "network_error_summary": none,
            "degradation_cache": none,
            "performance_cache": {"entries": len(state.kinds()), "size_bytes": None},
            "endpoint_stats": {"entries": len(stats.uri), "size_bytes": None},
            "total_cache_bytes": None,
            "total_cache_mb": None,
        },
    }


def health_keys(state: ProxyState, stats: Stats, max_age: float) -> dict[str, Any]:
    """The pyPowerwall /health keys beyond the ones :func:`.service.health_document` fills."""
    now = time.time()
    poller = poller_view(state.payload(POLLER_STATUS))
    health = connection_health(poller, state)
    health["last_success_age_seconds"] = _age(now, poller.last_success)
    cached = {}
    for kind in state.kinds():
        age = state.age(kind)
        if age is not None:
            cached[kind] = {"age_seconds": _round(age), "is_expired": age > max_age}
    endpoints = {}
    for endpoint in poller.endpoints:
        calls, failed = endpoint.requests, endpoint.failed
        rate = None if calls == 0 else round(100 * max(0, calls - failed) / calls, 1)
        endpoints[endpoint.path] = {
            "total_calls": calls,
            "successful_calls": max(0, calls - failed),
            "failed_calls": failed,
            "success_rate_percent": rate,
            "last_success_age_seconds": _age(now, endpoint.last_success),
            "last_failure_age_seconds": _age(now, endpoint.last_error_at),
        }
    return {
        "mode": MODE,
        "tedapi_mode": "off",
        "pypowerwall_cache_expire": None,  # no cache in front of a gateway: the bus pushes
        "degradation_cache_ttl_seconds": None,  # the last data is kept, however old
        "graceful_degradation": True,
        "fail_fast_mode": False,
        "health_check_enabled": True,
        "startup_time": _iso(stats.start),
        "transports": {"bus": {"connected": state.bus_connected}},
        "connection_health": health,
        "fallback_mode": fallback_mode(),
        "cached_data": {"cache_size": len(cached), "endpoints": cached},
        "endpoint_statistics": endpoints,
    }
