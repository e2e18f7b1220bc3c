"""The LAN road for signed commands: over the bus, through the poller, to the gateway.

:class:`LanChannel` is the :class:`~powerwall_bus.consumers.dispatch.channel.SignedChannel`
of a dispatcher on the same bus as the gateway's poller. Each :meth:`~LanChannel.send` is
one RPC (``shared/control.py``): a transient ``control.tedapi`` message under
``control.<DIN>.tedapi`` with ``reply_to`` (our exclusive queue), a fresh
``correlation_id`` and an ``expiration`` of the time we are willing to wait, published
``mandatory`` with confirms, so a bus with no poller taking commands for the gateway says
so at once instead of a timeout. The answer is taken only from the poller's broker user
(``amqp.poller_user``, which RabbitMQ vouches for): anyone may publish to our queue.

The connection is made on the first send and again after it broke (the next send), through
the project's one broker boundary (:func:`powerwall_bus.shared.amqp.connect` and its error
translation): a broker away is :class:`~powerwall_bus.shared.errors.BusUnavailable`, never
a pika exception. A dispatcher acts once a minute, so a lazy reconnect is all it needs.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from powerwall_bus.shared import control
from powerwall_bus.shared.amqp import close_quietly, connect, translate
from powerwall_bus.shared.contract import CONTROL_TEDAPI, CONTROL_TEDAPI_REPLY
from powerwall_bus.shared.errors import (
    MalformedMessage,
    RelayRefused,
    RelayUnavailable,
)
from powerwall_bus.shared.messages import CONTENT_TYPE
from powerwall_bus.shared.settings import AmqpSettings
from powerwall_bus.shared.topology import declare_exchange

__all__ = ["APP_ID", "LanChannel"]

_LOGGER = logging.getLogger(__name__)

APP_ID = "pwbus-dispatch"
_TICK = 0.1


class LanChannel:
    """Signed commands to the gateway ``din`` through its poller (one RPC at a time)."""

    name = "lan"

    def __init__(
        self,
        settings: AmqpSettings,
        din: str,
        *,
        clock: Callable[[], float] = time.time,
        connection_name: str = APP_ID,
    ) -> None:
        self._settings = settings
        self._din = din
        self._clock = clock
        self._connection_name = connection_name
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._queue = ""
        self._replies: dict[str, bytes] = {}
        self.ignored = 0  # replies not from the poller's user, or for no command of ours

    # ------------------------------------------------------------------ SignedChannel

    def send(self, routable: bytes, *, timeout: float) -> bytes:
        """The gateway's answer to ``routable``, relayed by the poller.

        Raises RelayRefused (the poller's refusal, with its reason), RelayUnavailable (no
        poller takes commands for the gateway, or no answer within ``timeout``) or
        BusUnavailable (the broker is away).
        """
        try:
            return self._call(routable, timeout)
        except (RelayRefused, RelayUnavailable):
            raise
        except Exception as exc:
            error = translate(exc, self._settings)
            if error is None:
                raise
            self.close()
            raise error from exc

    def close(self) -> None:
        """Drop the connection (the next send connects again)."""
        close_quietly(self._connection)
        self._connection = self._channel = None
        self._queue = ""
        self._replies.clear()

    # ------------------------------------------------------------------ internals

    def _open(self) -> BlockingChannel:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self.close()
        self._connection = connect(self._settings, self._connection_name)
        channel = self._connection.channel()
        declare_exchange(channel, self._settings.exchange)
        channel.confirm_delivery()  # mandatory + confirms: an unroutable command raises
        self._queue = channel.queue_declare(queue="", exclusive=True, auto_delete=True).method.queue
        channel.basic_consume(queue=self._queue, on_message_callback=self._on_reply, auto_ack=True)
        self._channel = channel
        return channel

    def _call(self, routable: bytes, timeout: float) -> bytes:
        channel = self._open()
        assert self._connection is not None
        correlation_id = uuid.uuid4().hex
        started = self._clock()
        try:
            channel.basic_publish(
                exchange=self._settings.exchange,
                routing_key=control.command_key(self._din),
                body=control.command_body(self._din, routable, started),
                properties=pika.BasicProperties(
                    user_id=self._settings.username,
                    content_type=CONTENT_TYPE,
                    delivery_mode=pika.DeliveryMode.Transient,
                    app_id=APP_ID,
                    type=CONTROL_TEDAPI,
                    reply_to=self._queue,
                    correlation_id=correlation_id,
                    expiration=str(max(1, int(timeout * 1000))),
                ),
                mandatory=True,
            )
        except pika.exceptions.UnroutableError:
            raise RelayUnavailable(
                f"no poller takes commands for gateway {self._din} on exchange "
                f"{self._settings.exchange!r} (is pwbus poller running for it, with "
                "poller.relay_commands on?)"
            ) from None
        deadline = started + timeout
        while True:
            body = self._replies.pop(correlation_id, None)
            if body is not None:
                return self._read(body)
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise RelayUnavailable(
                    f"no answer from the poller of gateway {self._din} within {timeout:g} s"
                )
            self._connection.process_data_events(time_limit=min(remaining, _TICK))

    def _read(self, body: bytes) -> bytes:
        try:
            reply = control.parse_reply(body)
        except MalformedMessage as exc:
            raise RelayUnavailable(f"the poller's answer is unreadable: {exc}") from None
        if reply.refusal is not None:
            refusal = reply.refusal
            raise RelayRefused(refusal.reason.value, refusal.detail, refusal.retry_at)
        assert reply.response is not None
        return reply.response

    def _on_reply(
        self,
        channel: BlockingChannel,
        method: object,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        trusted = self._settings.trusted_publisher
        if (
            properties.user_id != trusted
            or properties.type != CONTROL_TEDAPI_REPLY
            or not properties.correlation_id
        ):
            self.ignored += 1
            _LOGGER.debug("ignored a reply not from the poller's user %r", trusted)
            return
        self._replies[str(properties.correlation_id)] = body
        if len(self._replies) > 16:  # answers to commands we gave up on
            self._replies.pop(next(iter(self._replies)))
