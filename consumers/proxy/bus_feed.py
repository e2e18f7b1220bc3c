"""The proxy's bus subscription: deliveries in, state updates on the event loop out.

:func:`bus_subscription` is a ``cleanup_ctx`` entry of the application: it subscribes when
the application starts and unsubscribes when it is cleaned up, so the subscription lives
exactly as long as the server and nothing outside the application has to remember it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pika
from aiohttp import web

from powerwall_bus.consumers.proxy.keys import AMQP, STATE
from powerwall_bus.consumers.proxy.state import ProxyState
from powerwall_bus.shared.bus import BusSubscriber
from powerwall_bus.shared.errors import MalformedMessage
from powerwall_bus.shared.messages import parse_envelope, parse_meter_stream
from powerwall_bus.shared.topology import ALL_POWERWALL, METER_STREAM

_LOGGER = logging.getLogger(__name__)


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


async def bus_subscription(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: feed ``app[STATE]`` from every message of the contract on the broker
    ``app[AMQP]`` while the application runs."""
    loop = asyncio.get_running_loop()
    feed = BusFeed(app[STATE], loop)
    subscriber = BusSubscriber(
        app[AMQP],
        [ALL_POWERWALL],
        feed.on_message,
        name="proxy",
        on_connection=feed.on_connection,
    ).start()
    try:
        yield
    finally:
        # Joining the subscriber's thread blocks: not on the loop.
        await loop.run_in_executor(None, subscriber.stop)
