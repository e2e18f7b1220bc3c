"""The proxy's aiohttp application: :func:`create_app` and its one catch-all dispatcher.

Data routes are rendered by :mod:`consumers.proxy.render` from the bus state and cached,
encoded, until that state changes, so a dashboard polling every second costs a dictionary
lookup. That is why there is one catch-all route rather than one aiohttp route per path:
it was measured faster, and the routing tables it consults (the service routes, the page's
paths, the data routes derived from the contract's table) are listed by
:func:`routed_paths` / :data:`ROUTED_PREFIXES`, which ``tests/test_contract.py`` holds
against the contract and ``/openapi.json``. Nothing here talks to the gateway: an unknown
path is a 404, never forwarded.

The application follows aiohttp's conventions: shared objects live under typed keys
(:mod:`consumers.proxy.keys`), the bus subscription and the ``/events`` streams are
``cleanup_ctx`` entries, so they start and stop with the application.

Compatibility with the pyPowerwall proxy: GET answers carry
``Access-Control-Allow-Origin: *``; missing data is HTTP 200 with ``null`` or the route's
empty shape; ``PROXY_BASE_URL`` is stripped before routing. Where we differ on purpose:
unknown paths are 404 (not 200 "Not Found"), methods other than GET/HEAD are 405, and
``/health`` is honest: 503 when the data is stale or the gateway is unreachable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web

from powerwall_bus.consumers.proxy import page
from powerwall_bus.consumers.proxy.bus_feed import bus_subscription
from powerwall_bus.consumers.proxy.keys import (
    AMQP,
    FOLLOW,
    METRICS,
    OPTIONS,
    SETTINGS,
    STATE,
    STATS,
)
from powerwall_bus.consumers.proxy.metrics import registry_for
from powerwall_bus.consumers.proxy.render import (
    DATA_PATHS,
    DATA_PREFIXES,
    Body,
    RenderOptions,
    render,
)
from powerwall_bus.consumers.proxy.service import CORS, SERVICE_ROUTES
from powerwall_bus.consumers.proxy.state import METERS, ProxyState, Stats
from powerwall_bus.shared.follow import GatewayView
from powerwall_bus.shared.settings import AmqpSettings, ProxySettings

_MAX_PATH = 2048
_MAX_CACHED = 512  # bounded: query strings are client-controlled
#: On data answers once the meters data is older than proxy.health_max_age: its age in s.
STALE_HEADER = "X-Pwbus-Data-Age"

#: Path prefixes a family of routes answers (``/static/<name>``, ``/pw/<name>``, ...).
ROUTED_PREFIXES = (page.STATIC_PREFIX, *DATA_PREFIXES)


def routed_paths() -> frozenset[str]:
    """Every path the dispatcher answers exactly, whatever the state."""
    return frozenset(SERVICE_ROUTES) | page.PATHS | DATA_PATHS


def create_app(
    settings: ProxySettings,
    amqp: AmqpSettings | None = None,
    *,
    state: ProxyState | None = None,
    stats: Stats | None = None,
    follow: str = "",
) -> web.Application:
    """The proxy application.

    With ``amqp`` it subscribes to that broker while it runs, serving the gateway ``follow``
    (a DIN or a poller's name; "" = the only one on the bus); without, the caller feeds
    ``app[STATE]`` (tests). ``state`` and ``stats`` default to new, empty ones.
    """
    app = web.Application(client_max_size=4096)
    app[SETTINGS] = settings
    app[OPTIONS] = RenderOptions(
        neg_solar=settings.neg_solar,
        site_zero_threshold=settings.site_zero_threshold,
        connected_max_age=settings.health_max_age,
    )
    app[STATE] = ProxyState() if state is None else state
    app[STATS] = Stats() if stats is None else stats
    app[FOLLOW] = follow.strip()
    app[METRICS] = registry_for(app[STATE], app[STATS], app[OPTIONS])
    app[STATE].gateways = GatewayView(app[FOLLOW])
    app.cleanup_ctx.append(page.event_streams)
    # Open streams would hold the shutdown for its whole timeout: end them before aiohttp
    # waits for the running handlers (cleanup_ctx exits only after that wait).
    app.on_shutdown.append(page.end_event_streams)
    if amqp is not None:
        app[AMQP] = amqp
        app.cleanup_ctx.append(bus_subscription)
    app.router.add_route("*", "/{tail:.*}", _Dispatcher(app).dispatch)
    return app


class _Dispatcher:
    """The catch-all handler, holding direct references so the hot path has no lookups
    beyond its answer cache."""

    def __init__(self, app: web.Application) -> None:
        self.state = app[STATE]
        self.stats = app[STATS]
        self.settings = app[SETTINGS]
        self.options = app[OPTIONS]
        self._cache: dict[str, tuple[int, _Answer]] = {}

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET" or len(request.raw_path) > _MAX_PATH:
            refused = _refuse(request)
            if refused is not None:
                return refused
        path = self._route_path(request)
        if path is None or "\x00" in path:
            return _json_error(404, "not found")
        service = SERVICE_ROUTES.get(path)
        if service is not None:
            return await service(request)
        if path in page.PATHS or path.startswith(page.STATIC_PREFIX):
            served = await page.serve(request, path, self.state, self.options, self.settings)
            if served is not None:
                self.stats.count(path)
                return served
        answer = self._answer(path, request.query_string)
        if answer is None:
            return _json_error(404, "not found")
        self.stats.count(path, "timeout" if answer.no_data else "ok")
        age = self.state.age(METERS)
        if age is not None and age > self.settings.health_max_age:
            # Stale: the answer says how old the live data is, so a dashboard can tell.
            stale = {**answer.headers, STALE_HEADER: str(round(age))}
            return web.Response(body=answer.body, headers=stale, status=answer.status)
        return web.Response(body=answer.body, headers=answer.headers, status=answer.status)

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
            if len(self._cache) > _MAX_CACHED:
                self._cache.clear()
            self._cache[key] = (self.state.version, answer)
        return answer


@dataclass(frozen=True)
class _Answer:
    """A rendered body, encoded once, with its response headers."""

    body: bytes
    headers: dict[str, str]
    no_data: bool
    status: int = 200

    @classmethod
    def of(cls, body: Body) -> _Answer:
        media, _, charset = body.content_type.partition(";")
        content_type = media.strip() + (f"; {charset.strip()}" if charset else "")
        headers = {**CORS, "Content-Type": content_type}
        return cls(body.text.encode(), headers, body.no_data, body.status)


def _refuse(request: web.Request) -> web.StreamResponse | None:
    """Answers for what is not a plain GET/HEAD of a sane path."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        return _json_error(405, "method not allowed", {"Allow": "GET, HEAD"})
    if request.method == "OPTIONS":
        return web.Response(
            status=204,
            headers={
                **CORS,
                "Access-Control-Allow-Methods": "GET, HEAD",
                "Access-Control-Allow-Headers": "*",
            },
        )
    if len(request.raw_path) > _MAX_PATH:
        return _json_error(414, "URI too long")
    return None


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps({"error": message}),
        status=status,
        content_type="application/json",
        headers={**CORS, **(headers or {})},
    )
