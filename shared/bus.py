"""A live subscription to the bus for consumers that want the latest data (proxy, GUI, LEDs).

One background thread owns a pika connection. On every (re)connect it declares the
exchange (so it does not matter whether the poller started first), binds a fresh exclusive
queue to the wanted routing keys and, unless told otherwise, asks the poller for the latest
message of every kind (``control.resync``), so a consumer that starts late, or reconnects
after an outage, is complete within a second. Reconnecting, and deciding what a failure
means, is :class:`~powerwall_bus.shared.amqp.BrokerLink`'s job; the connection state is
reported through a callback.

The thread never dies quietly: a broker that refuses our settings, or a bug, ends it and
goes to ``on_fatal``, by default the process's handler (:mod:`powerwall_bus.shared.threads`:
the main thread stops and exits 2 or 1, or without one the process ends at once).

Durable, acknowledged consumption (the MySQL writer) does not use this class.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import pika
from pika.adapters.blocking_connection import BlockingChannel

from powerwall_bus.shared.amqp import BrokerLink
from powerwall_bus.shared.retry import Backoff
from powerwall_bus.shared.settings import AmqpSettings
from powerwall_bus.shared.threads import FatalHandler, fatal, guarded
from powerwall_bus.shared.topology import RESYNC, declare_exchange

_LOGGER = logging.getLogger(__name__)

MessageHandler = Callable[[str, pika.BasicProperties, bytes], None]

_TICK = 0.2  # longest wait in the pika loop: how quickly stop() is noticed


class BusSubscriber:
    """Consume ``bindings`` from the exchange in a background thread."""

    def __init__(
        self,
        settings: AmqpSettings,
        bindings: Iterable[str],
        on_message: MessageHandler,
        *,
        name: str,
        resync: bool = True,
        on_connection: Callable[[bool], None] | None = None,
        on_fatal: FatalHandler | None = None,
        backoff_max: float = 30.0,
    ) -> None:
        self._settings = settings
        self._bindings = list(bindings)
        self._on_message = on_message
        self._name = name
        self._resync = resync
        self._on_connection = on_connection or (lambda connected: None)
        self._on_fatal = on_fatal or fatal
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: pika.BlockingConnection | None = None
        self._link = BrokerLink(
            settings,
            f"pwbus-{name}",
            self._stop,
            backoff=Backoff(first=1.0, cap=backoff_max, jitter=0.5),
            on_state=self._state,
            logger=_LOGGER,
        )
        self.queue: str | None = None
        self.connected = threading.Event()
        self.error: BaseException | None = None  # what ended the thread, if anything did

    def start(self) -> BusSubscriber:
        """Start consuming in the background."""
        name = f"bus-{self._name}"
        self._thread = threading.Thread(
            target=guarded(self._run, name, self._fatal), name=name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop consuming and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._link.run(self._open, self._serve)
        finally:
            self._connection = None
            self.connected.clear()
            self._on_connection(False)

    def _fatal(self, exc: BaseException) -> None:
        self.error = exc
        self._on_fatal(exc)

    def _open(self, connection: pika.BlockingConnection) -> None:
        channel = connection.channel()
        declare_exchange(channel, self._settings.exchange)
        declared = channel.queue_declare(queue="", exclusive=True, auto_delete=True)
        queue = declared.method.queue
        for key in self._bindings:
            channel.queue_bind(queue=queue, exchange=self._settings.exchange, routing_key=key)
        channel.basic_consume(queue=queue, on_message_callback=self._deliver, auto_ack=True)
        if self._resync:
            channel.basic_publish(
                exchange=self._settings.exchange,
                routing_key=RESYNC,
                body=b"",
                properties=pika.BasicProperties(reply_to=queue, app_id=f"pwbus-{self._name}"),
            )
        self.queue = queue
        self._connection = connection

    def _serve(self) -> None:
        assert self._connection is not None
        while not self._stop.is_set():
            self._connection.process_data_events(time_limit=_TICK)

    def _state(self, up: bool) -> str | None:
        if up:
            self.connected.set()
        else:
            self._connection = None
            self.connected.clear()
        self._on_connection(up)
        return f"subscribed to {', '.join(self._bindings)}" if up else None

    def _deliver(
        self,
        channel: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        try:
            self._on_message(method.routing_key, properties, body)
        except Exception:  # a bad message must not kill the subscription
            _LOGGER.exception("handling a message from %s failed", method.routing_key)
