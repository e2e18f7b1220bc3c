"""The bus topology, declared in one place and by every process that uses it.

Everything goes through one durable topic exchange (default ``Tesla``, the name the
Tesla-API examples use). Every process declares it on connect, with the same arguments, so
a consumer that starts before the poller does not fail: declaring an existing exchange with
identical arguments is a no-op.

Routing keys:

* ``MeterStream``: the Tesla-API compatible meters message (see :mod:`shared.messages`).
* ``powerwall.meters``, ``powerwall.soe``, ``powerwall.grid_status``, ``powerwall.vitals``:
  the live kinds of our own contract.
* ``powerwall.api.<path>``: every other endpoint, the path after ``/api/`` with ``/`` as
  ``.`` (``/api/site_info/site_name`` -> ``powerwall.api.site_info.site_name``).
* ``powerwall.poller.status``: the poller's health.
* ``control.resync``: a consumer's request for the latest message of every kind. The
  poller answers from memory, straight to the queue named in the request's ``reply_to``,
  without calling the gateway. It lies outside ``powerwall.#`` on purpose, so a consumer
  bound to ``powerwall.#`` receives only messages of the contract.
"""

from __future__ import annotations

from typing import Protocol

DEFAULT_EXCHANGE = "Tesla"
METER_STREAM = "MeterStream"
RESYNC = "control.resync"
POLLER_STATUS = "powerwall.poller.status"
ALL_POWERWALL = "powerwall.#"

#: Endpoints with a routing key of their own; everything else is powerwall.api.<path>.
DEDICATED_KEYS = {
    "/api/meters/aggregates": "powerwall.meters",
    "/api/system_status/soe": "powerwall.soe",
    "/api/system_status/grid_status": "powerwall.grid_status",
    "/api/devices/vitals": "powerwall.vitals",
}


class _Channel(Protocol):
    def exchange_declare(
        self, exchange: str, exchange_type: str = ..., durable: bool = ..., **kwargs: object
    ) -> object: ...


def routing_key_for(endpoint: str) -> str:
    """The routing key of readings from ``endpoint`` (a gateway path)."""
    path = endpoint.split("?", 1)[0].rstrip("/") or "/"
    if path in DEDICATED_KEYS:
        return DEDICATED_KEYS[path]
    tail = path.removeprefix("/api/").strip("/")
    words = [w for w in tail.replace(".", "_").split("/") if w]
    return "powerwall.api." + ".".join(words)


def kind_of_endpoint(endpoint: str) -> str:
    """The message kind of readings from ``endpoint`` (routing key without ``powerwall.``)."""
    return routing_key_for(endpoint).removeprefix("powerwall.")


def declare_exchange(channel: _Channel, exchange: str = DEFAULT_EXCHANGE) -> None:
    """Declare the exchange exactly as every process does (durable topic)."""
    channel.exchange_declare(exchange=exchange, exchange_type="topic", durable=True)
