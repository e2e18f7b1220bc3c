"""The AMQP properties of a message this project publishes to the exchange.

Every producer (the poller, the Octopus poller, the dispatch consumer's result messages)
publishes :class:`~powerwall_bus.shared.messages.OutgoingMessage` the same way: persistent,
JSON, with the message's id, time, kind and headers, and ``user_id`` set to the broker user
we publish as. RabbitMQ refuses a ``user_id`` that is not the connection's own, so a
consumer can trust it to say who published (they refuse readings not from the poller's
user). ``app_id`` names the program, for people reading the queue.
"""

from __future__ import annotations

import pika

from powerwall_bus.shared.messages import CONTENT_TYPE, OutgoingMessage

__all__ = ["message_properties"]


def message_properties(
    message: OutgoingMessage,
    *,
    app_id: str,
    user_id: str | None,
    correlation_id: str | None = None,
) -> pika.BasicProperties:
    """The properties to publish ``message`` with (``correlation_id``: an answer to a resync)."""
    return pika.BasicProperties(
        user_id=user_id,
        content_type=CONTENT_TYPE,
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=message.message_id,
        timestamp=message.timestamp,
        app_id=app_id,
        type=message.type,
        headers=message.headers,
        correlation_id=correlation_id,
    )
