"""Helpers for the MySQL writer tests: schema, queries, publishing, a writer in a thread."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterable
from typing import Any

import mysql.connector
import pika

from powerwall_bus.consumers.mysql.command import WriterConfig
from powerwall_bus.consumers.mysql.migrate import migrate
from powerwall_bus.consumers.mysql.writer import Writer
from powerwall_bus.producers.poller.publisher import properties_for
from powerwall_bus.shared.messages import OutgoingMessage
from powerwall_bus.shared.settings import AmqpSettings, MysqlSettings, WriterSettings

TABLES = (
    "meter_readings",
    "soe_readings",
    "grid_status_changes",
    "battery_block_readings",
    "vitals_readings",
    "poller_events",
)


def db_connect(settings: MysqlSettings) -> Any:
    """A plain autocommit connection to the test database."""
    return mysql.connector.connect(
        host=settings.host,
        port=settings.port,
        user=settings.user,
        password=settings.password,
        database=settings.database,
        autocommit=True,
    )


def apply_schema(settings: MysqlSettings) -> int:
    """Create the tables (the project's migration runner); the schema version."""
    connection = db_connect(settings)
    try:
        return migrate(connection)
    finally:
        connection.close()


def query(settings: MysqlSettings, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
    """All rows of one query (a fresh connection, so it sees every commit)."""
    connection = db_connect(settings)
    try:
        cursor = connection.cursor()
        cursor.execute(sql, tuple(params))
        return list(cursor.fetchall())
    finally:
        connection.close()


def execute(settings: MysqlSettings, sql: str) -> None:
    """Run one statement (DDL, a trigger...)."""
    connection = db_connect(settings)
    try:
        connection.cursor().execute(sql)
    finally:
        connection.close()


def count(settings: MysqlSettings, table: str) -> int:
    """Rows in one table."""
    return int(query(settings, f"SELECT COUNT(*) FROM {table}")[0][0])


def counts(settings: MysqlSettings) -> dict[str, int]:
    """Rows per data table."""
    return {table: count(settings, table) for table in TABLES}


def writer_settings(queue: str, dead: str, **overrides: Any) -> WriterSettings:
    """Writer settings with test queue names and quick batches unless overridden."""
    values: dict[str, Any] = {
        "queue": queue,
        "dead_letter_queue": dead,
        "batch_wait": 0.2,
        "retry_max": 2.0,
        "migrate": False,
        "retention": False,  # test data is dated days back: the raw rows must stay
    }
    values.update(overrides)
    return WriterSettings(**values)


class Publisher:
    """A plain confirmed publisher to the test exchange."""

    def __init__(self, amqp: AmqpSettings) -> None:
        self.amqp = amqp
        self.connection = pika.BlockingConnection(pika.URLParameters(amqp.url))
        self.channel = self.connection.channel()
        self.channel.exchange_declare(amqp.exchange, exchange_type="topic", durable=True)
        self.channel.confirm_delivery()

    def message(self, message: OutgoingMessage) -> None:
        """Publish one message of the contract, with the poller's properties (as the
        poller's broker user: consumers take messages from their own user by default)."""
        properties = properties_for(message, user_id=self.amqp.username)
        self.channel.basic_publish(
            self.amqp.exchange, message.routing_key, message.body, properties
        )

    def raw(self, routing_key: str, body: bytes, **properties: Any) -> None:
        """Publish any body under any routing key (as our broker user unless ``user_id`` is
        given; ``user_id=None`` sends none)."""
        properties.setdefault("user_id", self.amqp.username)
        self.channel.basic_publish(
            self.amqp.exchange,
            routing_key,
            body,
            pika.BasicProperties(delivery_mode=2, **properties),
        )

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


def queue_depth(amqp: AmqpSettings, queue: str) -> tuple[int, int]:
    """(ready messages, consumers) of a queue (passive declare)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp.url))
    try:
        declared = connection.channel().queue_declare(queue, passive=True)
        return declared.method.message_count, declared.method.consumer_count
    finally:
        connection.close()


def drain(amqp: AmqpSettings, queue: str) -> list[tuple[pika.BasicProperties, bytes]]:
    """Every message now in ``queue`` (acknowledged, so removed)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp.url))
    found: list[tuple[pika.BasicProperties, bytes]] = []
    try:
        channel = connection.channel()
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return found
            found.append((properties, body))
    finally:
        connection.close()


class RunningWriter:
    """``with RunningWriter(config) as writer:`` the real writer on a thread of its own."""

    def __init__(self, config: WriterConfig) -> None:
        self.writer = Writer(config)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mysql-writer", daemon=True)

    def _run(self) -> None:
        try:
            self.writer.run()
        except BaseException as exc:  # reported by the test
            self.error = exc

    def __enter__(self) -> Writer:
        self._thread.start()
        if not self.writer.ready.wait(15):
            raise RuntimeError(f"the writer did not start consuming ({self.error!r})")
        return self.writer

    def stop(self, timeout: float = 15.0) -> None:
        self.writer.stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("the writer did not stop")

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.error is not None:
            raise self.error


def replace(settings: Any, **changes: Any) -> Any:
    """dataclasses.replace for the frozen settings objects."""
    return dataclasses.replace(settings, **changes)


def body_of(message: OutgoingMessage) -> dict[str, Any]:
    """A published message's body as JSON."""
    return json.loads(message.body)
