"""The writer's place on the broker: its durable queue, its dead-letter queue, its bindings.

Declared on every connect, so the writer may start before the poller; the poller declares
the same queue (:func:`powerwall_bus.shared.topology.declare_durable_queue`, same
arguments) unless ``poller.declare_writer_queue`` is off, so readings published before the
writer's first start wait for it. The dead-letter queue keeps at most
``writer.dead_letter_max_length`` messages for ``writer.dead_letter_ttl_days``.

The queue is bound to every gateway's stored kinds (derived from the contract and
:data:`~powerwall_bus.consumers.mysql.rows.STORED_KINDS`), plus ``MeterStream`` when
``writer.meter_stream`` is on (and unbound when it is off, so a durable binding from an
earlier run does not linger). A message the writer cannot store goes to the dead-letter
queue with the ``x-pwbus-*`` headers named here.
"""

from __future__ import annotations

import logging

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from powerwall_bus.consumers.mysql.rows import STORED_KINDS
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import WriterSettings
from powerwall_bus.shared.topology import (
    METER_STREAM,
    dead_letter_limits,
    declare_durable_queue,
    declare_exchange,
    writer_bindings,
)

_LOGGER = logging.getLogger(__name__)

#: The binding patterns of the kinds the writer stores, from every gateway (MeterStream only
#: with writer.meter_stream).
WRITER_KEYS = tuple(writer_bindings(False, STORED_KINDS))

REASON_HEADER = "x-pwbus-reason"
ROUTING_KEY_HEADER = "x-pwbus-routing-key"
EXCHANGE_HEADER = "x-pwbus-exchange"
DEAD_AT_HEADER = "x-pwbus-dead-lettered-at"

_REASON_LENGTH = 300


def bindings(settings: WriterSettings) -> list[str]:
    """The routing keys the writer's queue is bound to."""
    return [*WRITER_KEYS, METER_STREAM] if settings.meter_stream else list(WRITER_KEYS)


def one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _REASON_LENGTH else text[: _REASON_LENGTH - 3] + "..."


def limits(settings: WriterSettings) -> dict[str, int]:
    """The dead-letter queue's length limit and TTL."""
    return dead_letter_limits(settings.dead_letter_max_length, settings.dead_letter_ttl_days)


def declare_topology(
    channel: BlockingChannel, exchange: str, settings: WriterSettings, vhost: str = "/"
) -> None:
    """The exchange, the dead-letter queue and the bound durable queue (idempotent)."""
    declare_exchange(channel, exchange)
    try:
        declare_durable_queue(
            channel,
            exchange,
            settings.queue,
            settings.dead_letter_queue,
            bindings(settings),
            limits=limits(settings),
            vhost=vhost,
            logger=_LOGGER,
        )
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code == 406:
            raise ConfigError(
                "writer.queue",
                f"queue {settings.queue!r} exists with other arguments "
                f"({one_line(exc.reply_text)}); delete it or pick another",
            ) from None
        raise
    if not settings.meter_stream:
        channel.queue_unbind(settings.queue, exchange, routing_key=METER_STREAM)
