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

from typing import Protocol

from powerwall_bus.shared import contract

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
