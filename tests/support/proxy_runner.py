"""The proxy's aiohttp application on 127.0.0.1:<free port>, on its own loop in a thread.

Tests feed the state with real envelopes (built by the poller's own message code) on the
server's loop, the way the bus feed does, and talk to the server over real sockets.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from powerwall_bus.consumers.proxy import page
from powerwall_bus.consumers.proxy.app import create_app
from powerwall_bus.consumers.proxy.state import ProxyState, Stats
from powerwall_bus.shared.loop_thread import LoopThread
from powerwall_bus.shared.messages import Envelope, Reading, parse_envelope, reading_message
from powerwall_bus.shared.settings import ProxySettings
from powerwall_bus.simulator.endpoints import SimulatedGateway

T = TypeVar("T")

GATEWAY = "1232100-00-E--TG122021974971"
AGGREGATES = "/api/meters/aggregates"
SOE = "/api/system_status/soe"
GRID_STATUS = "/api/system_status/grid_status"


def envelope(endpoint: str, payload: Any, at: float | None = None) -> Envelope:
    """The envelope the poller would publish for this reading, parsed as the proxy does."""
    reading = Reading(endpoint, time.time() if at is None else at, GATEWAY, payload)
    return parse_envelope(reading_message(reading).body)


def simulated_envelopes(gateway: SimulatedGateway, at: float | None = None) -> list[Envelope]:
    """Meters, state of energy and grid status read from the gateway simulator."""
    result = []
    for endpoint in (AGGREGATES, SOE, GRID_STATUS):
        reply = gateway.get(endpoint)
        assert reply.status == 200, (endpoint, reply.status)
        result.append(envelope(endpoint, json.loads(reply.body), at))
    return result


class ProxyRunner:
    """``create_app(settings, state=..., stats=...)`` served in a background thread (no bus:
    tests feed the state themselves)."""

    def __init__(self, settings: ProxySettings | None = None) -> None:
        self.settings = settings or ProxySettings()
        self.state = ProxyState()
        self.state.bus_connected = True
        self.stats = Stats()
        self.port = 0
        self.app = create_app(self.settings, state=self.state, stats=self.stats)
        self._runner: web.AppRunner | None = None
        self._loop: LoopThread | None = None

    @property
    def root(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The page's URL (with PROXY_BASE_URL and a trailing slash)."""
        base = self.settings.base_url.rstrip("/")
        return f"{self.root}{base}/"

    def start(self) -> ProxyRunner:
        """Start listening; returns once the port is open."""
        self._loop = LoopThread("proxy-under-test").start()
        try:
            self._loop.run(self._start())
        except BaseException:
            self._loop.stop()
            raise
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` on the server's loop and return its result."""
        assert self._loop is not None
        return self._loop.call(function, *args)

    def feed(self, *envelopes: Envelope) -> None:
        """Apply envelopes to the state on the server's loop, as the bus feed does."""

        def apply() -> None:
            for item in envelopes:
                self.state.update(item)

        self.call(apply)

    def stream_count(self) -> int:
        """How many ``/events`` streams are open."""
        return self.call(lambda: len(self.app[page.EVENT_STREAMS]))

    def stop(self) -> None:
        """Stop the server (the application ends open event streams first) and its loop."""
        if self._loop is not None:
            if self._runner is not None:
                self._loop.run(self._runner.cleanup())
            self._loop.stop()
            self._loop = None

    def __enter__(self) -> ProxyRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.stop()
