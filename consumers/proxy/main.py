"""``pwbus proxy``: serve the proxy application (TLS, limits, signals) until told to stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

from powerwall_bus.consumers.proxy.app import create_app
from powerwall_bus.consumers.proxy.command import ProxyConfig
from powerwall_bus.consumers.proxy.guard import (
    RESERVED_DESCRIPTORS,
    GuardedSite,
    MalformedRequestLog,
    raise_open_files_limit,
)
from powerwall_bus.consumers.proxy.keys import STATE
from powerwall_bus.consumers.proxy.state import ProxyState
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import ProxySettings
from powerwall_bus.shared.threads import ThreadFailures, fatal_errors_to
from powerwall_bus.shared.throttle import Throttle

__all__ = ["ProxyConfig", "ProxyServer", "run_proxy", "tls_context"]

_LOGGER = logging.getLogger(__name__)

#: aiohttp's request-line and header limits: long enough for any dashboard, refused beyond.
_MAX_LINE = 4096
_MAX_FIELD = 4096
_MAX_HEADERS = 64


def tls_context(settings: ProxySettings) -> ssl.SSLContext | None:
    """The server TLS context for PW_HTTPS=yes (a certificate is made when none is given)."""
    if settings.https != "yes":
        return None
    cert, key = settings.cert_file, settings.key_file
    if cert is None or key is None:
        cert = key = None
        _LOGGER.info("serving HTTPS with a self-signed certificate made at start")
    try:
        return server_context(cert, key, common_name="pwbus-proxy")
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("proxy.cert_file", f"cannot load the certificate: {exc}") from None


class ProxyServer:
    """The running proxy: the application (with its bus subscription) on a TCP site.

    Usable in tests and the stack: :meth:`start` returns once the port is open, :meth:`stop`
    ends the event streams, the server and the subscription, in that order.
    """

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.app = create_app(config.proxy, config.amqp, follow=config.follow)
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self.site: GuardedSite | None = None

    @property
    def state(self) -> ProxyState:
        """What the proxy knows (fed by the bus subscription while it runs)."""
        return self.app[STATE]

    async def start(self) -> None:
        """Subscribe to the bus and start listening."""
        settings = self.config.proxy
        context = tls_context(settings)
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=2.0,
            keepalive_timeout=settings.keepalive_timeout,
            max_line_size=_MAX_LINE,
            max_field_size=_MAX_FIELD,
            max_headers=_MAX_HEADERS,
        )
        await self._runner.setup()  # starts the cleanup_ctx entries: the bus subscription
        MalformedRequestLog.install()
        open_files = raise_open_files_limit()
        max_connections = max(8, min(settings.max_connections, open_files - RESERVED_DESCRIPTORS))
        if max_connections < settings.max_connections:
            _LOGGER.info(
                "serving at most %d connections (open-files limit %d)", max_connections, open_files
            )
        site = self.site = GuardedSite(
            self._runner,
            settings.bind_address or None,
            settings.port,
            header_timeout=settings.header_timeout,
            max_connections=max_connections,
            ssl_context=context,
        )
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise ConfigError(
                "proxy.port", f"cannot listen on port {settings.port}: {exc.strerror}"
            ) from None
        # With port 0 and no bind address, IPv4 and IPv6 each get a port: report IPv4's.
        ipv4 = [address for address in self._runner.addresses if len(address) == 2]
        addresses = ipv4 or self._runner.addresses
        self.port = addresses[0][1] if addresses else settings.port
        scheme = "https" if context else "http"
        _LOGGER.info(
            "proxy listening on %s://%s:%s%s",
            scheme,
            settings.bind_address or "0.0.0.0",
            self.port,
            settings.base_url,
        )

    async def stop(self) -> None:
        """Stop serving and unsubscribe (the application's shutdown and cleanup)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _quiet_exception_handler(
    throttle: Throttle,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """asyncio's handler for errors no task owns, with its repeats held back.

    Out of file descriptors, asyncio reports every failed ``accept()`` (thousands a second);
    one line a minute with a count says the same.
    """

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", "unexpected error in the event loop"))
        exception = context.get("exception")
        swallowed = throttle.allow(message)
        if swallowed is None:
            return
        detail = f": {exception}" if exception is not None else ""
        _LOGGER.error("%s%s%s", message, detail, Throttle.suffix(swallowed))

    return handle


def run_proxy(config: ProxyConfig) -> int:
    """Serve until SIGTERM/SIGINT, or until the bus thread fails (then exit 2 or 1)."""
    failures = ThreadFailures()

    async def main() -> None:
        server = ProxyServer(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_quiet_exception_handler(Throttle(60.0)))
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        failures.wake_with(lambda: loop.call_soon_threadsafe(stop.set))
        await server.start()
        await stop.wait()
        _LOGGER.info("proxy stopping")
        await server.stop()
        _LOGGER.info("proxy stopped")

    with fatal_errors_to(failures):  # the bus thread's refusal or crash ends the proxy
        asyncio.run(main())
    return failures.exit_status()
