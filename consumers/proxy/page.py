"""The power-flow page: ``/``, its static files, the live update stream and
``/example.html`` (how to embed the page in another one, as pyPowerwall's example page).

``/`` is our own page (``web/index.html`` with the style applied here), ``/static/<name>``
its assets, ``/events`` a Server-Sent Events stream of the numbers the page shows and
``/events/latest`` the same numbers once, as JSON (what the page polls when it cannot have
the stream).

The assets are a fixed table read once from the package's ``web`` folder: a request only
ever selects an entry of that table by exact name, so no path from a request reaches the
filesystem. Every URL in the page is relative, so it works unchanged behind
``PROXY_BASE_URL`` (``/base`` without the trailing slash is redirected to ``/base/`` so
that relative URLs resolve inside the prefix).

The event numbers come from :func:`consumers.proxy.render.aggregates_view`, the same
function ``/aggregates`` is rendered from, so the page and the API always agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import html
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web

from powerwall_bus.consumers.proxy.render import RenderOptions, aggregates_view
from powerwall_bus.consumers.proxy.state import GRID_STATUS, METERS, SOE, ProxyState
from powerwall_bus.shared.gateway.payloads import Flow, app_soe_clamped, finite_float, soe_percent
from powerwall_bus.shared.settings import ProxySettings

_LOGGER = logging.getLogger(__name__)

#: Concurrent ``/events`` streams per proxy; beyond this a client gets 503 (and polls).
MAX_STREAMS = 100
#: Shortest gap between two events to one client (at most 10 events/s).
MIN_INTERVAL = 0.1
#: A comment line is sent when nothing else was for this long (keeps proxies from timing out).
KEEPALIVE = 15.0
#: How often a waiting stream checks that its client is still there.
_POLL = 1.0
#: The kinds whose updates reach the page.
LIVE_KINDS = frozenset({METERS, SOE, GRID_STATUS})

STATIC_PREFIX = "/static/"
#: The page's own paths besides the static files (the app routes only these here).
PATHS = frozenset({"/", "/events", "/events/latest", "/example.html"})
_TEMPLATE = "index.html"
_EXAMPLE = "example.html"
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_CORS = {"Access-Control-Allow-Origin": "*"}
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Everything the page needs comes from here; no inline script, nothing external.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'"
    ),
}
#: The example page frames ``/`` (same origin) and has only its own inline style.
_EXAMPLE_HEADERS = {
    **_PAGE_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; base-uri 'none'; "
        "form-action 'none'"
    ),
}


@dataclass(frozen=True)
class Asset:
    """One static file, in memory."""

    body: bytes
    content_type: str
    etag: str


@dataclass(frozen=True)
class Assets:
    """The page template and the static files, read once."""

    template: str
    example: str  # /example.html, served as it is
    files: dict[str, Asset]
    version: str  # changes whenever an asset does: appended to asset URLs against stale caches


@functools.cache
def assets() -> Assets:
    """Read ``web/`` once: the template and every asset with a known type."""
    folder = resources.files("powerwall_bus.consumers.proxy") / "web"
    template = example = ""
    files: dict[str, Asset] = {}
    for entry in folder.iterdir():
        if not entry.is_file():
            continue
        if entry.name == _TEMPLATE:
            template = entry.read_text(encoding="utf-8")
            continue
        if entry.name == _EXAMPLE:
            example = entry.read_text(encoding="utf-8")
            continue
        suffix = entry.name[entry.name.rfind(".") :] if "." in entry.name else ""
        content_type = _TYPES.get(suffix)
        if content_type is None:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        files[entry.name] = Asset(body, content_type, etag)
    if not template or not example:
        raise RuntimeError(f"{_TEMPLATE} or {_EXAMPLE} is missing from {folder}")
    version = hashlib.sha256("".join(sorted(a.etag for a in files.values())).encode())
    return Assets(template, example, files, version.hexdigest()[:12])


# --------------------------------------------------------------------------- routing


async def serve(
    request: web.Request,
    path: str,
    state: ProxyState,
    options: RenderOptions,
    settings: ProxySettings,
) -> web.StreamResponse | None:
    """Answer ``path`` if it is one of the page's (``/``, ``/static/...``, ``/events``),
    else None (the app then tries the data routes)."""
    if path == "/":
        return _index(request, settings)
    if path.startswith(STATIC_PREFIX):
        return _static(request, path[len(STATIC_PREFIX) :], settings)
    if path == "/events":
        return await _events(request, state, options, settings)
    if path == "/events/latest":
        return _latest(state, options)
    if path == "/example.html":
        return web.Response(
            text=assets().example,
            content_type="text/html",
            charset="utf-8",
            headers={**_CORS, **_EXAMPLE_HEADERS},
        )
    return None


def _index(request: web.Request, settings: ProxySettings) -> web.StreamResponse:
    if not request.path.endswith("/"):
        # ``/base`` -> ``base/`` (relative, so it also works behind a path-stripping proxy).
        tail = request.rel_url.raw_path.rsplit("/", 1)[-1]
        raw_query = request.rel_url.raw_query_string
        query = f"?{raw_query}" if raw_query else ""
        return web.Response(status=302, headers={"Location": f"{tail}/{query}", **_CORS})
    return web.Response(
        text=page_html(settings),
        content_type="text/html",
        charset="utf-8",
        headers={**_CORS, **_PAGE_HEADERS},
    )


def page_html(settings: ProxySettings) -> str:
    """The page with the settings applied (style, staleness limit)."""
    values = {
        "{{STYLE}}": settings.style,
        "{{STALE_AFTER}}": f"{settings.health_max_age:g}",
        "{{VERSION}}": assets().version,
    }
    text = assets().template
    for token, value in values.items():
        text = text.replace(token, html.escape(value, quote=True))
    return text


def _static(request: web.Request, name: str, settings: ProxySettings) -> web.StreamResponse | None:
    asset = assets().files.get(name)  # exact names only: "../x", "a/b", "%2e%2e" never match
    if asset is None:
        return None
    cache = (
        f"max-age={settings.browser_cache}" if settings.browser_cache > 0 else "no-cache, no-store"
    )
    headers = {
        **_CORS,
        "Cache-Control": cache,
        "ETag": asset.etag,
        "X-Content-Type-Options": "nosniff",
    }
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})


# --------------------------------------------------------------------------- the numbers


def snapshot(state: ProxyState, options: RenderOptions) -> dict[str, Any]:
    """What one event says: powers (W, exactly as ``/aggregates``), battery, grid, time.

    ``level`` is the Tesla app's battery level (0..100), computed here so that the page
    never needs to know the gateway's scale.
    """
    flow = Flow.from_aggregates(aggregates_view(state, options))
    soe = finite_float(soe_percent(state.payload(SOE)))
    grid = state.payload(GRID_STATUS)
    grid_status = grid.get("grid_status") if isinstance(grid, dict) else None
    meters = state.item(METERS)
    age = state.age(METERS)
    return {
        "grid": flow.site,
        "home": flow.load,
        "solar": flow.solar,
        "battery": flow.battery,
        "soe": soe,
        "level": None if soe is None else app_soe_clamped(soe),
        "grid_status": grid_status if isinstance(grid_status, str) else None,
        "time": None
        if meters is None
        else dt.datetime.fromtimestamp(meters.reading_time, dt.UTC).isoformat(
            timespec="milliseconds"
        ),
        "age": None if age is None else round(age, 3),
    }


def _latest(state: ProxyState, options: RenderOptions) -> web.Response:
    """``/events/latest``: one event's numbers, for the page's polling fallback."""
    return web.Response(
        text=json.dumps(snapshot(state, options), separators=(",", ":"), allow_nan=False),
        content_type="application/json",
        headers={**_CORS, "Cache-Control": "no-cache, no-store"},
    )


# --------------------------------------------------------------------------- /events


@dataclass(eq=False)
class _Client:
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    closing: bool = False

    def notify(self, kind: str) -> None:
        if kind in LIVE_KINDS:
            self.changed.set()


class EventStreams:
    """The open ``/events`` streams of one application (``app[EVENT_STREAMS]``)."""

    def __init__(self) -> None:
        self._clients: set[_Client] = set()

    def __len__(self) -> int:
        return len(self._clients)

    def add(self, client: _Client) -> None:
        """A stream opened."""
        self._clients.add(client)

    def discard(self, client: _Client) -> None:
        """A stream ended."""
        self._clients.discard(client)

    def close_all(self) -> None:
        """End every open stream: each sends nothing more and returns."""
        for client in self._clients:
            client.closing = True
            client.changed.set()


EVENT_STREAMS = web.AppKey("event_streams", EventStreams)


async def event_streams(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the registry of open ``/events`` streams, for the application's life;
    whatever is still open at cleanup is ended."""
    streams = app[EVENT_STREAMS] = EventStreams()
    yield
    streams.close_all()


async def end_event_streams(app: web.Application) -> None:
    """``on_shutdown``: end the open streams before aiohttp waits for running handlers, so an
    open page does not hold a shutdown for the whole shutdown timeout."""
    app[EVENT_STREAMS].close_all()


async def _events(
    request: web.Request, state: ProxyState, options: RenderOptions, settings: ProxySettings
) -> web.StreamResponse:
    headers = {
        **_CORS,
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache, no-store",
        "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
    }
    if request.method == "HEAD":
        return web.Response(headers=headers)
    clients = request.app[EVENT_STREAMS]
    if len(clients) >= MAX_STREAMS:
        _LOGGER.info("refused an event stream: %d are open (the page will poll)", len(clients))
        return web.Response(
            status=503,
            text=json.dumps({"error": "too many event streams; poll events/latest instead"}),
            content_type="application/json",
            headers={**_CORS, "Retry-After": "30"},
        )
    client = _Client()
    response = web.StreamResponse(headers=headers)
    clients.add(client)
    state.listeners.append(client.notify)
    try:
        await response.prepare(request)
        await _pump(request, response, client, state, options)
    except ConnectionError:
        pass  # the client went away while we were writing
    finally:
        clients.discard(client)
        with contextlib.suppress(ValueError):
            state.listeners.remove(client.notify)
    return response


async def _pump(
    request: web.Request,
    response: web.StreamResponse,
    client: _Client,
    state: ProxyState,
    options: RenderOptions,
) -> None:
    """Send the current numbers, then one event per change (coalesced), until the client goes."""
    await response.write(b"retry: 3000\n" + _event(state, options))
    last_write = last_event = time.monotonic()
    while not client.closing:
        if request.transport is None or request.transport.is_closing():
            return  # the client went away
        now = time.monotonic()
        wait = min(_POLL, max(0.0, KEEPALIVE - (now - last_write)))
        try:
            await asyncio.wait_for(client.changed.wait(), wait)
        except TimeoutError:
            if time.monotonic() - last_write >= KEEPALIVE:
                await response.write(b": keep-alive\n\n")
                last_write = time.monotonic()
            continue
        if client.closing:
            return
        delay = MIN_INTERVAL - (time.monotonic() - last_event)
        if delay > 0:
            await asyncio.sleep(delay)  # later changes join this event
        client.changed.clear()
        await response.write(_event(state, options))
        last_write = last_event = time.monotonic()


def _event(state: ProxyState, options: RenderOptions) -> bytes:
    data = json.dumps(snapshot(state, options), separators=(",", ":"), allow_nan=False)
    return f"id: {state.version}\ndata: {data}\n\n".encode()
