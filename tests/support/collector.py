"""A plain pika consumer in a background thread that records what arrives (tests only)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pika
from pika.adapters.blocking_connection import BlockingChannel

from powerwall_bus.shared.topology import declare_exchange
from tests.support.waiting import wait_until


@dataclass(frozen=True)
class Received:
    """One delivered message."""

    routing_key: str
    properties: pika.BasicProperties
    body: bytes
    at: float  # time.monotonic() on arrival


class Collector:
    """Binds one or more fresh queues to ``keys`` and records every delivery."""

    def __init__(self, url: str, exchange: str, keys: Iterable[str], *, queues: int = 1) -> None:
        self._url = url
        self._exchange = exchange
        self._keys = list(keys)
        self._queues = queues
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.queue_names: list[str] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="collector")
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("collector did not start")
        if self._error is not None:
            raise self._error

    @property
    def queue(self) -> str:
        """The first queue's name (for reply_to)."""
        return self.queue_names[0]

    def _run(self) -> None:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(self._url))
            for _ in range(self._queues):
                channel = connection.channel()
                declare_exchange(channel, self._exchange)
                declared = channel.queue_declare(queue="", exclusive=True, auto_delete=True)
                name = declared.method.queue
                for key in self._keys:
                    channel.queue_bind(queue=name, exchange=self._exchange, routing_key=key)
                channel.basic_consume(queue=name, on_message_callback=self._on, auto_ack=True)
                self.queue_names.append(name)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        while not self._stop.is_set():
            connection.process_data_events(time_limit=0.05)
        connection.close()

    def _on(
        self,
        channel: BlockingChannel,
        method: pika.spec.Basic.Deliver,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        with self._lock:
            self._messages.append(Received(method.routing_key, properties, body, time.monotonic()))

    def messages(self, key: str | None = None) -> list[Received]:
        """Everything received so far (optionally only one routing key)."""
        with self._lock:
            return [m for m in self._messages if key is None or m.routing_key == key]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float) -> bool:
        """Poll until ``predicate(messages)`` holds or the timeout passes."""
        return wait_until(lambda: predicate(self.messages()), timeout)

    def close(self) -> None:
        """Stop consuming and close the connection."""
        self._stop.set()
        self._thread.join(10)
