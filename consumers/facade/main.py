"""``pwbus facade``: TLS, the bus subscription and the HTTPS server, until told to stop.

The certificate is the given one (``facade.cert_file``/``key_file``) or one made at the
first start and kept in the state folder (``<gateway.state_dir>/facade-tls/``, key 0600),
so its SHA-256 fingerprint, logged at every start, stays the same for clients that pin it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pika
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from powerwall_bus.consumers.facade.app import create_app
from powerwall_bus.consumers.facade.command import FacadeConfig
from powerwall_bus.consumers.facade.sessions import Sessions
from powerwall_bus.consumers.facade.state import FacadeState
from powerwall_bus.shared.acceptance import Policy
from powerwall_bus.shared.bus import BusSubscriber
from powerwall_bus.shared.certs import make_self_signed, server_context
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.follow import looks_like_din
from powerwall_bus.shared.threads import ThreadFailures, fatal_errors_to
from powerwall_bus.shared.topology import ALL_POWERWALL, METER_STREAM, gateway_pattern

__all__ = ["FacadeServer", "bindings", "run_facade", "tls_context"]

_LOGGER = logging.getLogger(__name__)

#: The folder under the state folder where a certificate made by the facade is kept.
TLS_FOLDER = "facade-tls"


def bindings(follow: str) -> list[str]:
    """One gateway's keys when given a DIN, else every gateway's; and the Tesla-API stream."""
    return [gateway_pattern(follow) if looks_like_din(follow) else ALL_POWERWALL, METER_STREAM]


def fingerprint(cert_file: Path) -> str:
    """The SHA-256 fingerprint (hex) of the first certificate in a PEM file."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def tls_context(config: FacadeConfig) -> tuple[ssl.SSLContext, str]:
    """(server context, certificate fingerprint): the given files, else the kept ones (made
    at the first start)."""
    cert, key = config.facade.cert_file, config.facade.key_file
    if cert is None or key is None:
        folder = config.state_dir / TLS_FOLDER
        cert, key = folder / "cert.pem", folder / "key.pem"
        if not (cert.exists() and key.exists()):
            try:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                make_self_signed(folder, common_name="teg")
            except OSError as exc:
                raise ConfigError(
                    "gateway.state_dir", f"cannot keep the facade's certificate in {folder}: {exc}"
                ) from None
            _LOGGER.info("made a self-signed certificate for the facade in %s", folder)
    try:
        return server_context(cert, key), fingerprint(cert)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError("facade.cert_file", f"cannot load the certificate: {exc}") from None


class FacadeServer:
    """The running facade: the application (with its bus subscription) on a TCP site.

    :meth:`start` returns once the port is open; :meth:`stop` ends the server and the
    subscription. Usable in tests and the stack.
    """

    def __init__(self, config: FacadeConfig) -> None:
        self.config = config
        settings = config.facade
        policy = Policy.for_consumer(config.amqp, settings, "facade")
        self.state = FacadeState(policy, follow=config.follow)
        self.sessions = Sessions(settings.password, max_failed=settings.max_failed_logins)
        self.app = create_app(
            self.state,
            self.sessions,
            health_max_age=settings.health_max_age,
            cleanup=self._subscription,
        )
        self.port: int | None = None
        self.fingerprint = ""
        self._runner: web.AppRunner | None = None

    async def _subscription(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: feed the state from the bus while the application runs."""
        follow = self.config.follow
        if follow:
            _LOGGER.info("serving gateway %r", follow)
        else:
            _LOGGER.info("serving the only gateway on the bus (PWBUS_GATEWAY is not set)")

        def on_connection(connected: bool) -> None:
            self.state.bus_connected = connected

        def on_message(key: str, properties: pika.BasicProperties, body: bytes) -> None:
            self.state.deliver(
                properties.type or key, body, user_id=properties.user_id, headers=properties.headers
            )

        subscriber = BusSubscriber(
            self.config.amqp,
            bindings(follow),
            on_message,
            name="facade",
            resync=True,  # the latest of every path at once, not at the next slow read
            on_connection=on_connection,
        ).start()
        try:
            yield
        finally:
            await asyncio.get_running_loop().run_in_executor(None, subscriber.stop)

    async def start(self) -> None:
        """Subscribe to the bus and start listening on HTTPS."""
        settings = self.config.facade
        context, self.fingerprint = tls_context(self.config)
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, settings.bind_address or None, settings.port, ssl_context=context
        )
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise ConfigError(
                "facade.port", f"cannot listen on port {settings.port}: {exc.strerror}"
            ) from None
        ipv4 = [address for address in self._runner.addresses if len(address) == 2]
        addresses = ipv4 or self._runner.addresses
        self.port = addresses[0][1] if addresses else settings.port
        _LOGGER.info(
            "facade listening on https://%s:%s (certificate SHA-256 %s); read-only, from the bus",
            settings.bind_address or "0.0.0.0",
            self.port,
            self.fingerprint,
        )

    async def stop(self) -> None:
        """Stop serving and unsubscribe."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def run_facade(config: FacadeConfig) -> int:
    """Serve until SIGTERM/SIGINT, or until the bus thread fails (then exit 2 or 1)."""
    failures = ThreadFailures()

    async def main() -> None:
        server = FacadeServer(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        failures.wake_with(lambda: loop.call_soon_threadsafe(stop.set))
        await server.start()
        await stop.wait()
        _LOGGER.info("facade stopping")
        await server.stop()

    with fatal_errors_to(failures):  # the bus thread's refusal or crash ends the facade
        asyncio.run(main())
    return failures.exit_status()
