"""The proxy's bus subscription: deliveries in, state updates on the event loop out.

:func:`bus_subscription` is a ``cleanup_ctx`` entry of the application: it subscribes when
the application starts and unsubscribes when it is cleaned up, so the subscription lives
exactly as long as the server and nothing outside the application has to remember it.

The proxy serves one gateway. A wanted DIN is bound alone (``powerwall.<DIN>.#``); a name,
or nothing, binds every gateway's messages (``powerwall.*.#``). Either way every delivery
goes through a :class:`~powerwall_bus.shared.follow.GatewayFollower`, because resync answers
come from every poller and ignore bindings, and a name is only in the headers.

Before that, every delivery is judged (:func:`~powerwall_bus.shared.acceptance.judge`): too
large, not from the poller's broker user, non-finite numbers, malformed, or dated outside the
window around this host's clock, it is dropped, counted by reason in ``/stats`` and logged at
most once a minute per reason. Nothing dropped is ever served.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable

import pika
from aiohttp import web

from powerwall_bus.consumers.proxy.keys import AMQP, FOLLOW, SETTINGS, STATE
from powerwall_bus.consumers.proxy.state import ProxyState
from powerwall_bus.shared.acceptance import Policy, Refusal, judge
from powerwall_bus.shared.bus import BusSubscriber
from powerwall_bus.shared.follow import GatewayFollower, Verdict, looks_like_din, sender_of
from powerwall_bus.shared.messages import MeterStream
from powerwall_bus.shared.topology import ALL_POWERWALL, gateway_pattern

_LOGGER = logging.getLogger(__name__)


def bindings(follow: str) -> list[str]:
    """The routing keys the proxy binds to follow ``follow`` (a DIN, a name, or "")."""
    return [gateway_pattern(follow)] if looks_like_din(follow) else [ALL_POWERWALL]


class BusFeed:
    """Turns bus deliveries (on the subscriber's thread) into state updates on the loop,
    for the followed gateway's messages only."""

    def __init__(
        self,
        state: ProxyState,
        loop: asyncio.AbstractEventLoop,
        follow: str = "",
        *,
        policy: Policy,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = state
        self._loop = loop
        self._follower = GatewayFollower(follow)  # used on the bus thread only
        self._policy = policy
        self._clock = clock

    def on_message(self, routing_key: str, properties: pika.BasicProperties, body: bytes) -> None:
        """Judge, parse and choose on the bus thread (keeps the loop free), apply on the loop."""
        kind = properties.type or routing_key
        judged = judge(
            self._policy,
            kind,
            body,
            user_id=properties.user_id,
            headers=properties.headers,
            now=self._clock(),
        )
        if isinstance(judged, Refusal):
            self._state.refused.refused(judged.reason.value, judged.detail, routing_key)
            return
        message = judged.message
        update: Callable[[], None]
        if isinstance(message, MeterStream):
            update = functools.partial(self._state.update_meter_stream, message, judged.position)
            body_gateway = None  # Tesla-API's body has no room for it
        else:
            update = functools.partial(self._state.update, message, judged.position)
            body_gateway = message.gateway
        sender = sender_of(properties.headers, body_gateway)
        verdict = self._follower.accept(sender.din, sender.name)
        if verdict in (Verdict.TAKE_FIRST, Verdict.SKIP_NEW):
            self._gateways_changed(verdict)
        if verdict.take:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._loop.call_soon_threadsafe(update)

    def _gateways_changed(self, verdict: Verdict) -> None:
        """Log the change once, and show it in /stats and /health."""
        self._follower.say(verdict, _LOGGER)
        view = self._follower.view()

        def apply() -> None:
            self._state.gateways = view

        with contextlib.suppress(RuntimeError):
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
    policy = Policy.for_consumer(app[AMQP], app[SETTINGS], "proxy")
    feed = BusFeed(app[STATE], loop, follow, policy=policy)
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
