"""The broker side of the poller: publish the outbox in order, with confirms; answer resyncs.

One thread owns the pika connection (pika is not thread-safe). A message leaves the outbox
only when the broker has confirmed it, so a broker outage loses nothing that fits in the
outbox: the reader keeps filling it, this thread reconnects with a capped, jittered
back-off and then drains the backlog oldest first.

A message whose confirm was lost with the connection is sent again after reconnecting
(at-least-once); it keeps its ``message_id``, so a consumer can drop the duplicate.

Late joiners: a consumer publishes a ``control.resync`` request with ``reply_to`` set to its
own queue; the answer is the latest message of every kind, sent straight to that queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pika
from pika.adapters.blocking_connection import BlockingChannel

from powerwall_bus.producers.poller.health import Health
from powerwall_bus.producers.poller.outbox import Outbox
from powerwall_bus.shared.amqp import BrokerLink
from powerwall_bus.shared.messages import APP_ID, CONTENT_TYPE, OutgoingMessage
from powerwall_bus.shared.retry import Backoff
from powerwall_bus.shared.settings import AmqpSettings
from powerwall_bus.shared.topology import RESYNC, declare_exchange

_LOGGER = logging.getLogger(__name__)

_BATCH = 200
_IDLE_WAIT = 0.1


def properties_for(
    message: OutgoingMessage, correlation_id: str | None = None, user_id: str | None = None
) -> pika.BasicProperties:
    """The AMQP properties every published message carries. ``user_id`` is the broker user
    we publish as: RabbitMQ checks it against the connection's user, so consumers can trust
    it to say the message is the poller's (they refuse any other)."""
    return pika.BasicProperties(
        user_id=user_id,
        content_type=CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=message.message_id,
        timestamp=message.timestamp,
        app_id=APP_ID,
        type=message.type,
        headers=message.headers,
        correlation_id=correlation_id,
    )


class Publisher:
    """Drains the outbox into the exchange; reconnects by itself."""

    def __init__(
        self,
        settings: AmqpSettings,
        outbox: Outbox,
        health: Health,
        stop: threading.Event,
        *,
        backoff_max: float = 30.0,
        flush_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._health = health
        self._stop = stop
        self._flush_timeout = flush_timeout
        self._clock = clock
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._deadline: float | None = None
        self._link = BrokerLink(
            settings,
            "pwbus-poller",
            stop,
            backoff=Backoff(first=1.0, cap=backoff_max, jitter=0.5),
            on_state=self._state,
            logger=_LOGGER,
        )
        self.published = 0
        self.resyncs = 0

    def run(self) -> None:
        """Publish until stopped, then flush what is left (bounded by ``flush_timeout``).

        Raises BrokerRefused when the broker refuses our settings (the poller then exits 2).
        """
        try:
            self._link.run(self._open, self._pump, wanted=lambda: not self._finished())
        finally:
            self._connection = self._channel = None
        left = len(self._outbox)
        if left:
            _LOGGER.warning("stopping with %d messages not yet confirmed by the broker", left)
        _LOGGER.info("publisher stopped after %d messages", self.published)

    def _finished(self) -> bool:
        """After stop: True once the outbox is empty or the flush time is over."""
        if not self._stop.is_set():
            return False
        if self._deadline is None:
            self._deadline = time.monotonic() + self._flush_timeout
        return not len(self._outbox) or time.monotonic() > self._deadline

    # ------------------------------------------------------------------ connection

    def _open(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        declare_exchange(channel, self._settings.exchange)
        channel.confirm_delivery()
        resync = channel.queue_declare(queue="", exclusive=True, auto_delete=True)
        queue = resync.method.queue
        channel.queue_bind(queue=queue, exchange=self._settings.exchange, routing_key=RESYNC)
        channel.basic_consume(queue=queue, on_message_callback=self._on_resync, auto_ack=True)
        self._connection, self._channel = connection, channel

    def _state(self, up: bool) -> str:
        self._health.broker(up)
        if not up:
            self._connection = self._channel = None
            return "holding readings"
        if self._link.outages:
            return f"publishing {len(self._outbox)} held messages"
        return f"publishing to exchange {self._settings.exchange!r} with confirms"

    # ------------------------------------------------------------------ publishing

    def _pump(self) -> None:
        assert self._connection is not None and self._channel is not None
        while True:
            if self._finished():
                return
            entries = self._outbox.peek(_BATCH, timeout=0 if self._stop.is_set() else _IDLE_WAIT)
            for entry in entries:
                message = entry.expand()
                self._channel.basic_publish(
                    exchange=self._settings.exchange,
                    routing_key=message.routing_key,
                    body=message.body,
                    properties=properties_for(message, user_id=self._settings.username),
                )
                self._outbox.remove(entry)
                self.published += 1
                self._health.published(self._clock() - entry.taken_at)
            self._connection.process_data_events(time_limit=0)

    def _on_resync(
        self,
        channel: BlockingChannel,
        method: object,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        reply_to = properties.reply_to
        if not reply_to:
            _LOGGER.debug("ignoring a resync request without reply_to")
            return
        latest = self._outbox.latest()
        for message in latest:
            channel.basic_publish(
                exchange="",
                routing_key=reply_to,
                body=message.body,
                properties=properties_for(message, properties.correlation_id, self._settings.username),
            )
        self.resyncs += 1
        _LOGGER.debug("answered a resync to %s with %d messages", reply_to, len(latest))
