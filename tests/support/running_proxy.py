"""Run the real proxy (HTTP server + bus subscription) on its own loop in a thread (tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from powerwall_bus.consumers.proxy.main import ProxyConfig, ProxyServer
from powerwall_bus.shared.loop_thread import LoopThread
from powerwall_bus.shared.messages import parse_envelope, reading_message
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.feed import reading_for


class RunningProxy:
    """``with RunningProxy(config) as proxy: proxy.url``"""

    def __init__(self, config: ProxyConfig) -> None:
        self.server = ProxyServer(config)
        self._loop = LoopThread("proxy-loop")

    @property
    def url(self) -> str:
        scheme = "https" if self.server.config.proxy.https == "yes" else "http"
        return f"{scheme}://127.0.0.1:{self.server.port}"

    def call(self, function: Callable[..., Any], *args: Any) -> None:
        """Run a plain function on the proxy's loop (e.g. a state update) and wait for it."""
        self._loop.call(function, *args)

    def feed(self, gateway: SimulatedGateway, *paths: str) -> None:
        """Put the gateway's current bodies into the state, as if the poller had sent them."""
        for path in paths:
            message = reading_message(reading_for(gateway, path))
            self.call(self.server.state.update, parse_envelope(message.body))

    def __enter__(self) -> RunningProxy:
        self._loop.start()
        self._loop.run(self.server.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.run(self.server.stop())
        self._loop.stop()
