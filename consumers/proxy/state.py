"""What the proxy knows: the latest message of every kind, and its own request statistics.

The proxy never talks to the gateway. The bus consumer feeds :meth:`ProxyState.update`
with parsed envelopes; HTTP handlers read. Everything runs on the event loop, so no locks.
``version`` increases on every update, which lets rendered bodies be cached until the data
they were made from changes.

Which message of a kind is the latest is decided by the poller's order (run and seq, see
:mod:`~powerwall_bus.shared.ordering`), never by the reading time: a message dated 2099, or
a poller whose clock stepped back, must not make the real readings after it look older and
freeze the proxy. The number of kinds kept is bounded (:data:`MAX_KINDS`): kinds come from
messages, and memory must not.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from powerwall_bus.shared import contract
from powerwall_bus.shared.follow import GatewayView
from powerwall_bus.shared.gateway.payloads import soe_percent
from powerwall_bus.shared.messages import Envelope, MeterStream
from powerwall_bus.shared.ordering import Position, RunOrder, position_of
from powerwall_bus.shared.refusals import RefusalLog

_LOGGER = logging.getLogger(__name__)

#: The most kinds kept; a message of a further kind is dropped (counted as ``too_many_kinds``).
#: The contract has about 30; the rest of the room is for endpoints a user adds.
MAX_KINDS = 256
TOO_MANY_KINDS = "too_many_kinds"


def _kind(path: str) -> str:
    return contract.endpoint(path).kind


#: Kinds the proxy's computed routes are made from, by the gateway path they are read from.
METERS = _kind("/api/meters/aggregates")
SOE = _kind("/api/system_status/soe")
GRID_STATUS = _kind("/api/system_status/grid_status")
VITALS = _kind("/api/devices/vitals")
SYSTEM_STATUS = _kind("/api/system_status")
OPERATION = _kind("/api/operation")
STATUS = _kind("/api/status")
SOLAR_POWERWALL = _kind("/api/solar_powerwall")
SITE_NAME = _kind("/api/site_info/site_name")
POLLER_STATUS = contract.POLLER_STATUS


@dataclass(frozen=True)
class Item:
    """The latest message of one kind."""

    payload: Any
    decoded: Any
    reading_time: float  # epoch seconds, when the poller read it
    received: float  # monotonic seconds, when the proxy got it
    position: Position | None = None  # its place in the poller's order; None: unknown


class ProxyState:
    """The latest data, by message kind."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._items: dict[str, Item] = {}
        self.version = 0
        self.bus_connected = False
        self.gateways = GatewayView()  # which gateway is served, and which others were seen
        self.listeners: list[Callable[[str], None]] = []  # called with the kind on update
        self.refused = RefusalLog(_LOGGER)  # dropped deliveries by reason (/stats)
        self._order = RunOrder()

    def update(self, envelope: Envelope, position: Position | None = None) -> None:
        """Store a message of our contract (``position``: by default the envelope's)."""
        if position is None:
            position = position_of(None, envelope.run, envelope.seq)
        self._store(envelope.kind, envelope.payload, envelope.decoded, envelope.epoch, position)

    def update_meter_stream(self, message: MeterStream, position: Position | None = None) -> None:
        """Store a MeterStream message (``position``: from its headers; None from a
        Tesla-API publisher, which sets none)."""
        time_ = message.timestamp
        self._store(METERS, message.readings, None, time_, position)
        self._store(SOE, {"percentage": message.state_of_energy}, None, time_, position)

    def _store(
        self, kind: str, payload: Any, decoded: Any, reading_time: float, position: Position | None
    ) -> None:
        current = self._items.get(kind)
        if current is None and len(self._items) >= MAX_KINDS:
            self.refused.refused(TOO_MANY_KINDS, f"already {MAX_KINDS} kinds kept", kind[:80])
            return
        if current is not None and not self._order.later(position, current.position):
            return  # an older copy (a resync answer) or the same message again
        self._items[kind] = Item(payload, decoded, reading_time, self._clock(), position)
        self.version += 1
        for listener in self.listeners:
            listener(kind)

    def item(self, kind: str) -> Item | None:
        """The latest message of a kind, if any arrived."""
        return self._items.get(kind)

    def payload(self, kind: str) -> Any:
        """The latest payload of a kind, or None."""
        item = self._items.get(kind)
        return None if item is None else item.payload

    def age(self, kind: str) -> float | None:
        """Seconds since the latest message of a kind arrived, or None."""
        item = self._items.get(kind)
        return None if item is None else self._clock() - item.received

    def kinds(self) -> list[str]:
        """Every kind seen so far."""
        return sorted(self._items)

    # Convenience accessors for the computed routes -------------------------------

    @property
    def aggregates(self) -> dict[str, Any] | None:
        """/api/meters/aggregates as the gateway sent it."""
        value = self.payload(METERS)
        return value if isinstance(value, dict) else None

    @property
    def soe(self) -> float | None:
        """The raw state of energy, %, by the project's one rule for gateway numbers."""
        percentage = soe_percent(self.payload(SOE))
        return None if percentage is None else float(percentage)

    @property
    def vitals(self) -> dict[str, dict[str, Any]] | None:
        """pyPowerwall's decoded vitals dict (devices in protobuf order)."""
        item = self._items.get(VITALS)
        return item.decoded if item is not None and isinstance(item.decoded, dict) else None


@dataclass
class Stats:
    """Request statistics, with the pyPowerwall proxy's meanings."""

    start: float = field(default_factory=time.time)
    clear: float = field(default_factory=time.time)
    gets: int = 0
    errors: int = 0
    timeout: int = 0
    uri: collections.Counter[str] = field(default_factory=collections.Counter)

    MAX_URIS = 100

    def count(self, path: str, outcome: str = "ok") -> None:
        """Count one GET: ``ok`` (gets + uri), ``timeout`` (no data) or ``error``."""
        if outcome == "timeout":
            self.timeout += 1
            return
        if outcome == "error":
            self.errors += 1
            return
        self.gets += 1
        key = path if path in self.uri or len(self.uri) < self.MAX_URIS else "other"
        self.uri[key] += 1

    def reset(self) -> None:
        """/stats/clear: gets, errors and uri restart; timeout does not (as in pyPowerwall)."""
        self.gets = 0
        self.errors = 0
        self.uri.clear()
        self.clear = time.time()
