"""The display state fed from the bus: what the console, the window and the LED display share.

One subscriber per display, bound to the followed gateway's keys (or every gateway's when it
follows a poller's name) and to the Tesla-API ``MeterStream`` key, asking for a resync at
every (re)connect so a display shows data within a second of starting, not at the next reading.
"""

from __future__ import annotations

from typing import Protocol

import pika

from powerwall_bus.consumers.display.state import DisplayState
from powerwall_bus.shared.bus import BusSubscriber
from powerwall_bus.shared.follow import looks_like_din
from powerwall_bus.shared.settings import AmqpSettings
from powerwall_bus.shared.threads import FatalHandler
from powerwall_bus.shared.topology import ALL_POWERWALL, METER_STREAM, gateway_pattern

__all__ = ["BusSource", "Source", "bindings"]


class Source(Protocol):
    """A running feed of the display state."""

    def stop(self) -> None: ...


def bindings(follow: str) -> list[str]:
    """One gateway's keys when given a DIN, else every gateway's; and the Tesla-API stream."""
    return [gateway_pattern(follow) if looks_like_din(follow) else ALL_POWERWALL, METER_STREAM]


class BusSource:
    """The display state fed from the bus, with a resync at every (re)connect."""

    def __init__(
        self,
        state: DisplayState,
        amqp: AmqpSettings,
        follow: str,
        on_fatal: FatalHandler,
        *,
        name: str = "display",
    ) -> None:
        self._state = state
        self._subscriber = BusSubscriber(
            amqp,
            bindings(follow),
            self._on_message,
            name=name,
            resync=True,
            on_connection=self._on_connection,
            on_fatal=on_fatal,
        ).start()

    def _on_message(self, routing_key: str, properties: pika.BasicProperties, body: bytes) -> None:
        self._state.deliver(
            properties.type or routing_key,
            body,
            user_id=properties.user_id,
            headers=properties.headers,
        )

    def _on_connection(self, connected: bool) -> None:
        self._state.bus_connected = connected

    def stop(self) -> None:
        self._subscriber.stop()
