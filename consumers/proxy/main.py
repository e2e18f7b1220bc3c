"""``pwbus proxy``: wire the bus subscription, the state and the HTTP server together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import tempfile
from pathlib import Path

import pika
from aiohttp import web

from powerwall_bus.consumers.proxy import page
from powerwall_bus.consumers.proxy.app import build_app
from powerwall_bus.consumers.proxy.command import ProxyConfig
from powerwall_bus.consumers.proxy.state import ProxyState, Stats
from powerwall_bus.shared.bus import BusSubscriber
from powerwall_bus.shared.certs import make_self_signed
from powerwall_bus.shared.errors import ConfigError, MalformedMessage
from powerwall_bus.shared.messages import parse_envelope, parse_meter_stream
from powerwall_bus.shared.settings import ProxySettings
from powerwall_bus.shared.topology import METER_STREAM

_LOGGER = logging.getLogger(__name__)

#: aiohttp's request-line and header limits: long enough for any dashboard, refused beyond.
_MAX_LINE = 4096
_MAX_FIELD = 4096
_MAX_HEADERS = 64


class BusFeed:
    """Turns bus deliveries (on the subscriber's thread) into state updates on the loop."""

    def __init__(self, state: ProxyState, loop: asyncio.AbstractEventLoop) -> None:
        self._state = state
        self._loop = loop
        self.malformed = 0

    def on_message(self, routing_key: str, properties: pika.BasicProperties, body: bytes) -> None:
        """Parse on the bus thread (keeps the loop free), apply on the loop."""
        kind = properties.type or routing_key
        try:
            if kind == METER_STREAM:
                stream = parse_meter_stream(body)
                self._loop.call_soon_threadsafe(self._state.update_meter_stream, stream)
            else:
                envelope = parse_envelope(body)
                self._loop.call_soon_threadsafe(self._state.update, envelope)
        except MalformedMessage as exc:
            self.malformed += 1
            if self.malformed == 1 or self.malformed % 100 == 0:
                _LOGGER.warning(
                    "ignoring a malformed message on %s: %s (%d so far)",
                    routing_key,
                    exc,
                    self.malformed,
                )
        except RuntimeError:
            pass  # the loop is closing

    def on_connection(self, connected: bool) -> None:
        """Record the bus state (shown by /stats and /health)."""

        def apply() -> None:
            self._state.bus_connected = connected

        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(apply)


def tls_context(settings: ProxySettings) -> ssl.SSLContext | None:
    """The server TLS context for PW_HTTPS=yes (a certificate is made when none is given)."""
    if settings.https != "yes":
        return None
    cert, key = settings.cert_file, settings.key_file
    if cert is None or key is None:
        cert, key = make_self_signed(Path(tempfile.mkdtemp(prefix="pwbus-proxy-")), "pwbus-proxy")
        _LOGGER.info("serving HTTPS with a self-signed certificate made at start")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("proxy.cert_file", f"cannot load the certificate: {exc}") from None
    return context


class ProxyServer:
    """The running proxy: HTTP server plus bus subscription. Usable in tests and the stack."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.state = ProxyState()
        self.stats = Stats()
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._subscriber: BusSubscriber | None = None

    async def start(self) -> None:
        """Subscribe to the bus and start listening."""
        settings = self.config.proxy
        context = tls_context(settings)
        feed = BusFeed(self.state, asyncio.get_running_loop())
        self._subscriber = BusSubscriber(
            self.config.amqp,
            ["powerwall.#"],
            feed.on_message,
            name="proxy",
            on_connection=feed.on_connection,
        ).start()
        app = build_app(self.state, self.stats, settings)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=2.0,
            max_line_size=_MAX_LINE,
            max_field_size=_MAX_FIELD,
            max_headers=_MAX_HEADERS,
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            settings.bind_address or None,
            settings.port,
            ssl_context=context,
            reuse_address=True,
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
        """Stop serving and unsubscribe."""
        page.close_streams(self.state)  # open /events streams would delay the shutdown
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._subscriber is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._subscriber.stop)
            self._subscriber = None


def run_proxy(config: ProxyConfig) -> int:
    """Serve until SIGTERM/SIGINT."""

    async def main() -> None:
        server = ProxyServer(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await server.start()
        await stop.wait()
        _LOGGER.info("proxy stopping")
        await server.stop()
        _LOGGER.info("proxy stopped")

    asyncio.run(main())
    return 0
