"""The proxy's bus subscription: deliveries in, state updates on the event loop out.

:func:`bus_subscription` is a ``cleanup_ctx`` entry of the application: it subscribes when
the application starts and unsubscribes when it is cleaned up, so the subscription lives
exactly as long as the server and nothing outside the application has to remember it.

The proxy serves one gateway. A wanted DIN is bound alone (``powerwall.<DIN>.#``); a name,
or nothing, binds every gateway's messages (``powerwall.*.#``). Either way every delivery
goes through a :class:`~powerwall_bus.shared.follow.GatewayFollower`, because resync answers
come from every poller and ignore bindings, and a name is only in the headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable

import pika
from aiohttp import web

from powerwall_bus.consumers.proxy.keys import AMQP, FOLLOW, STATE
from powerwall_bus.consumers.proxy.state import ProxyState
from powerwall_bus.shared.bus import BusSubscriber
from powerwall_bus.shared.errors import MalformedMessage
from powerwall_bus.shared.follow import GatewayFollower, Verdict, looks_like_din, sender_of
from powerwall_bus.shared.messages import parse_envelope, parse_meter_stream
from powerwall_bus.shared.topology import ALL_POWERWALL, METER_STREAM, gateway_pattern

_LOGGER = logging.getLogger(__name__)


def bindings(follow: str) -> list[str]:
    """The routing keys the proxy binds to follow ``follow`` (a DIN, a name, or "")."""
    return [gateway_pattern(follow)] if looks_like_din(follow) else [ALL_POWERWALL]


class BusFeed:
    """Turns bus deliveries (on the subscriber's thread) into state updates on the loop,
    for the followed gateway's messages only."""

    def __init__(
        self, state: ProxyState, loop: asyncio.AbstractEventLoop, follow: str = ""
    ) -> None:
        self._state = state
        self._loop = loop
        self._follower = GatewayFollower(follow)  # used on the bus thread only
        self.malformed = 0

    def on_message(self, routing_key: str, properties: pika.BasicProperties, body: bytes) -> None:
        """Parse and choose on the bus thread (keeps the loop free), apply on the loop."""
        kind = properties.type or routing_key
        update: Callable[[], None]
        try:
            if kind == METER_STREAM:
                stream = parse_meter_stream(body)
                update = functools.partial(self._state.update_meter_stream, stream)
                body_gateway = None  # Tesla-API's body has no room for it
            else:
                envelope = parse_envelope(body)
                update = functools.partial(self._state.update, envelope)
                body_gateway = envelope.gateway
            sender = sender_of(properties.headers, body_gateway)
            verdict = self._follower.accept(sender.din, sender.name)
            if verdict in (Verdict.TAKE_FIRST, Verdict.SKIP_NEW):
                self._gateways_changed(verdict)
            if verdict.take:
                self._loop.call_soon_threadsafe(update)
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

    def _gateways_changed(self, verdict: Verdict) -> None:
        """Log the change once, and show it in /stats and /health."""
        follower = self._follower
        followed = follower.followed.label()
        if verdict is Verdict.TAKE_FIRST:
            _LOGGER.info("following gateway %s", followed)
        elif follower.wanted:
            _LOGGER.info(
                "ignoring gateway %s: following %s",
                follower.others[-1].label(),
                followed if follower.followed else repr(follower.wanted),
            )
        else:
            _LOGGER.warning(
                "gateway %s is on the bus too: serving only %s; set PWBUS_GATEWAY (or "
                "--gateway) to the DIN or name of the one to serve",
                follower.others[-1].label(),
                followed,
            )
        view = follower.view()

        def apply() -> None:
            self._state.gateways = view

        self._loop.call_soon_threadsafe(apply)

    def on_connection(self, connected: bool) -> None:
        """Record the bus state (shown by /stats and /health)."""

        def apply() -> None:
            self._state.bus_connected = connected

        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(apply)


async def bus_subscription(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: feed ``app[STATE]`` from the followed gateway's messages on the
    broker ``app[AMQP]`` while the application runs."""
    loop = asyncio.get_running_loop()
    follow = app[FOLLOW]
    feed = BusFeed(app[STATE], loop, follow)
    if follow:
        _LOGGER.info("serving gateway %r", follow)
    else:
        _LOGGER.info("serving the only gateway on the bus (PWBUS_GATEWAY is not set)")
    subscriber = BusSubscriber(
        app[AMQP],
        bindings(follow),
        feed.on_message,
        name="proxy",
        on_connection=feed.on_connection,
    ).start()
    try:
        yield
    finally:
        # Joining the subscriber's thread blocks: not on the loop.
        await loop.run_in_executor(None, subscriber.stop)
