"""The broker side of ``pwbus octopus``: publish the newest plan message, with confirms.

The plan is whole state: a newer message replaces an older one that has not gone out yet
(:class:`LatestMessage`), so a broker outage of any length holds exactly one message, the
newest, published as soon as the broker is back. A message leaves the slot only once the
broker confirmed it (``confirm_delivery``, persistent delivery), as the poller's outbox
does. Reconnecting and what a broker failure means are :class:`BrokerLink`'s job.
"""

from __future__ import annotations

import logging
import threading

import pika
from pika.adapters.blocking_connection import BlockingChannel

from powerwall_bus.shared.amqp import BrokerLink
from powerwall_bus.shared.messages import OutgoingMessage
from powerwall_bus.shared.publishing import message_properties
from powerwall_bus.shared.retry import Backoff
from powerwall_bus.shared.settings import AmqpSettings
from powerwall_bus.shared.topology import declare_exchange

_LOGGER = logging.getLogger(__name__)

APP_ID = "pwbus-octopus"
_TICK = 0.2


class LatestMessage:
    """A one-message slot: the newest message to publish, until the broker confirmed it."""

    def __init__(self) -> None:
        self._message: OutgoingMessage | None = None
        self._changed = threading.Condition()

    def put(self, message: OutgoingMessage) -> None:
        """Replace whatever waits with ``message``."""
        with self._changed:
            self._message = message
            self._changed.notify_all()

    def wait(self, timeout: float) -> OutgoingMessage | None:
        """The message waiting, after up to ``timeout`` s for one."""
        with self._changed:
            if self._message is None:
                self._changed.wait(timeout)
            return self._message

    def done(self, message: OutgoingMessage) -> None:
        """``message`` was confirmed: clear the slot unless a newer one came meanwhile."""
        with self._changed:
            if self._message is message:
                self._message = None

    def wake(self) -> None:
        """Wake a waiting publisher (to stop)."""
        with self._changed:
            self._changed.notify_all()

    def __len__(self) -> int:
        return 0 if self._message is None else 1


class PlanPublisher:
    """Publishes :class:`LatestMessage`'s content; reconnects by itself."""

    def __init__(
        self,
        settings: AmqpSettings,
        slot: LatestMessage,
        stop: threading.Event,
    ) -> None:
        self._settings = settings
        self._slot = slot
        self._stop = stop
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._link = BrokerLink(
            settings,
            APP_ID,
            stop,
            backoff=Backoff(first=1.0, cap=30.0, jitter=0.5),
            on_state=self._state,
            logger=_LOGGER,
        )
        self.published = 0

    def run(self) -> None:
        """Publish until stopped (the message waiting then still goes out if the broker is
        there); raises BrokerRefused when the broker refuses our settings (exit 2)."""
        try:
            self._link.run(self._open, self._pump)
        finally:
            self._connection = self._channel = None
        if len(self._slot):
            _LOGGER.warning("stopping with the latest plan not confirmed by the broker")
        _LOGGER.info("publisher stopped after %d messages", self.published)

    def _open(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        declare_exchange(channel, self._settings.exchange)
        channel.confirm_delivery()
        self._connection, self._channel = connection, channel

    def _state(self, up: bool) -> str:
        if not up:
            self._connection = self._channel = None
            return "holding the latest plan"
        return f"publishing to exchange {self._settings.exchange!r} with confirms"

    def _publish(self, message: OutgoingMessage) -> None:
        assert self._channel is not None
        self._channel.basic_publish(
            exchange=self._settings.exchange,
            routing_key=message.routing_key,
            body=message.body,
            properties=message_properties(message, app_id=APP_ID, user_id=self._settings.username),
        )
        self._slot.done(message)
        self.published += 1

    def _pump(self) -> None:
        assert self._connection is not None
        while not self._stop.is_set():
            message = self._slot.wait(_TICK)
            if message is not None and not self._stop.is_set():
                self._publish(message)
            self._connection.process_data_events(time_limit=0)
        # Stopping: what waits now goes out on this connection if it can.
        message = self._slot.wait(0)
        if message is not None:
            self._publish(message)
