"""The bus topology, declared in one place and by every process that uses it.

Everything goes through one durable topic exchange (default ``Tesla``, the name the
Tesla-API examples use). Every process declares it on connect, with the same arguments, so
a consumer that starts before the poller does not fail: declaring an existing exchange with
identical arguments is a no-op.

The routing keys themselves come from the contract table (:mod:`shared.contract`); the
names here are the ones every process needs:

* ``MeterStream``: the Tesla-API compatible meters message (see :mod:`shared.messages`).
* ``powerwall.*.#``: every message of our own contract (``powerwall.<gateway>.<kind>``), of
  every gateway; ``powerwall.<gateway>.#`` is one gateway's.
* ``powerwall.*.poller.status``: every poller's health.
* ``control.resync``: a consumer's request for the latest message of every kind. Every
  poller answers from memory, straight to the queue named in the request's ``reply_to``,
  without calling the gateway. It lies outside ``powerwall.#`` on purpose, so a consumer
  bound to ``powerwall.#`` receives only messages of the contract.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from powerwall_bus.shared import contract

_LOGGER = logging.getLogger(__name__)

DEFAULT_EXCHANGE = "Tesla"
METER_STREAM = contract.routing_key(contract.METER_STREAM, contract.ANY_GATEWAY)
RESYNC = contract.routing_key(contract.RESYNC, contract.ANY_GATEWAY)
#: The topic pattern of every poller's status (a binding, not a key messages carry).
POLLER_STATUS = contract.routing_key(contract.POLLER_STATUS, contract.ANY_GATEWAY)
#: The topic pattern of every kind of our contract, of every gateway.
ALL_POWERWALL = contract.routing_key("#", contract.ANY_GATEWAY)


def gateway_pattern(gateway: str) -> str:
    """The topic pattern of every kind of our contract from one gateway (its DIN)."""
    return contract.routing_key("#", gateway)


class _Channel(Protocol):
    def exchange_declare(
        self, exchange: str, exchange_type: str = ..., durable: bool = ..., **kwargs: object
    ) -> object: ...


def declare_exchange(channel: _Channel, exchange: str = DEFAULT_EXCHANGE) -> None:
    """Declare the exchange exactly as every process does (durable topic)."""
    channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)


# --------------------------------------------------------------------------- durable queues

#: The kinds the MySQL writer stores (``consumers.mysql.rows.STORED_KINDS`` is checked equal by
#: a test): the poller binds the writer's queue to them before the writer ever ran.
WRITER_KINDS = frozenset(
    {"meters", "soe", "grid_status", "api.system_status", "vitals", "poller.status"}
)


def writer_bindings(
    meter_stream: bool = False, kinds: frozenset[str] | set[str] = WRITER_KINDS
) -> list[str]:
    """The routing keys the writer's queue is bound to: every gateway's stored kinds, plus
    ``MeterStream`` when asked."""
    keys = [contract.routing_key(kind, contract.ANY_GATEWAY) for kind in sorted(kinds)]
    return [*keys, METER_STREAM] if meter_stream else keys


def dead_letter_limits(max_length: int, ttl_days: float) -> dict[str, int]:
    """The dead-letter queue's arguments: a length limit (the oldest dropped first) and a
    message TTL; a 0 leaves that limit out."""
    arguments: dict[str, int] = {}
    if max_length:
        arguments["x-max-length"] = int(max_length)
    if ttl_days:
        arguments["x-message-ttl"] = round(ttl_days * 86_400_000)
    return arguments


def limits_policy_hint(queue: str, limits: dict[str, int], vhost: str = "/") -> str:
    """The ``rabbitmqctl`` command that applies ``limits`` to an existing queue."""
    import json
    import re
    import shlex

    definition = {
        "max-length": limits.get("x-max-length"),
        "message-ttl": limits.get("x-message-ttl"),
    }
    text = json.dumps({k: v for k, v in definition.items() if v is not None}, separators=(",", ":"))
    pattern = f"^{re.escape(queue)}$"
    return (
        f"rabbitmqctl set_policy -p {shlex.quote(vhost)} pwbus-dead-letters "
        f"{shlex.quote(pattern)} {shlex.quote(text)} --apply-to queues"
    )


def declare_durable_queue(
    channel: Any,
    exchange: str,
    queue: str,
    dead_letter_queue: str,
    keys: list[str],
    *,
    limits: dict[str, int],
    vhost: str = "/",
    logger: logging.Logger | None = None,
) -> None:
    """A consumer's durable queue, bound to ``keys``, with its dead-letter queue; the same
    arguments whoever declares it (the consumer, or the poller before the consumer's first
    start). Idempotent.

    The dead-letter queue is declared with ``limits`` on a channel of its own: one declared
    by an older version, without them, makes RabbitMQ refuse the redeclaration (406
    PRECONDITION_FAILED); it is then kept as it is, with one WARNING telling how to apply
    the limits by a policy. Any other refusal (of the main queue too) is raised as pika's
    ``ChannelClosedByBroker`` for the caller to judge.
    """
    import pika.exceptions

    log = logger or _LOGGER
    probe = channel.connection.channel()
    try:
        probe.queue_declare(dead_letter_queue, durable=True, arguments=limits or None)
    except pika.exceptions.ChannelClosedByBroker as exc:
        if exc.reply_code != 406:
            raise
        log.warning(
            "dead-letter queue %r exists with other arguments, kept as it is (no length limit "
            "or TTL of this version); apply them with: %s",
            dead_letter_queue,
            limits_policy_hint(dead_letter_queue, limits, vhost),
        )
    finally:
        if probe.is_open:
            probe.close()
    channel.queue_declare(
        queue,
        durable=True,
        arguments={
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead_letter_queue,
        },
    )
    for key in keys:
        channel.queue_bind(queue, exchange, routing_key=key)
