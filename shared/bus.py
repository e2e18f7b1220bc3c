"""A live subscription to the bus for consumers that want the latest data (proxy, GUI, LEDs).

One background thread owns a pika connection. On every (re)connect it declares the
exchange (so it does not matter whether the poller started first), binds a fresh exclusive
queue to the wanted routing keys and, unless told otherwise, asks the poller for the latest
message of every kind (``control.resync``), so a consumer that starts late, or reconnects
after an outage, is complete within a second. It reconnects by itself with a capped,
jittered back-off and reports the connection state through a callback.

Durable, acknowledged consumption (the MySQL writer) does not use this class.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable, Iterable

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from powerwall_bus.shared.settings import AmqpSettings
from powerwall_bus.shared.topology import RESYNC, declare_exchange

_LOGGER = logging.getLogger(__name__)

MessageHandler = Callable[[str, pika.BasicProperties, bytes], None]


def connection_parameters(settings: AmqpSettings, name: str) -> pika.URLParameters:
    """pika parameters for the broker, with a connection name and sane timeouts."""
    parameters = pika.URLParameters(settings.url)
    parameters.heartbeat = settings.heartbeat
    parameters.connection_attempts = 1
    parameters.socket_timeout = 5
    parameters.blocked_connection_timeout = 60
    parameters.client_properties = {"connection_name": name, "product": "powerwall-bus"}
    return parameters


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
        backoff_max: float = 30.0,
    ) -> None:
        self._settings = settings
        self._bindings = list(bindings)
        self._on_message = on_message
        self._name = name
        self._resync = resync
        self._on_connection = on_connection or (lambda connected: None)
        self._backoff_max = backoff_max
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.queue: str | None = None
        self.connected = threading.Event()

    def start(self) -> BusSubscriber:
        """Start consuming in the background."""
        self._thread = threading.Thread(target=self._run, name=f"bus-{self._name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop consuming and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            connection = None
            try:
                connection = self._connect()
                if failures:
                    _LOGGER.info("message bus %s is back", self._settings.safe_url)
                failures = 0
                while not self._stop.is_set():
                    connection.process_data_events(time_limit=0.2)
            except (pika.exceptions.AMQPError, OSError) as exc:
                failures += 1
                self.connected.clear()
                self._on_connection(False)
                log = _LOGGER.warning if failures == 1 else _LOGGER.debug
                log(
                    "message bus %s unavailable (%s); retrying",
                    self._settings.safe_url,
                    type(exc).__name__,
                )
                delay = min(self._backoff_max, 2.0 ** min(failures - 1, 8))
                self._stop.wait(delay * random.uniform(0.5, 1.0))
            finally:
                if connection is not None and connection.is_open:
                    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                        connection.close()
        self.connected.clear()
        self._on_connection(False)

    def _connect(self) -> pika.BlockingConnection:
        connection = pika.BlockingConnection(
            connection_parameters(self._settings, f"pwbus-{self._name}")
        )
        channel = connection.channel()
        declare_exchange(channel, self._settings.exchange)
        declared = channel.queue_declare(queue="", exclusive=True, auto_delete=True)
        queue = declared.method.queue
        for key in self._bindings:
            channel.queue_bind(queue=queue, exchange=self._settings.exchange, routing_key=key)
        channel.basic_consume(queue=queue, on_message_callback=self._deliver, auto_ack=True)
        self.queue = queue
        if self._resync:
            channel.basic_publish(
                exchange=self._settings.exchange,
                routing_key=RESYNC,
                body=b"",
                properties=pika.BasicProperties(reply_to=queue, app_id=f"pwbus-{self._name}"),
            )
        _LOGGER.info("subscribed to %s on %s", ", ".join(self._bindings), self._settings.safe_url)
        self.connected.set()
        self._on_connection(True)
        return connection

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
