"""What a display knows, and how fresh it is: pure, fed with deliveries, read as a View.

A display accepts exactly what the proxy accepts and keeps the latest message of a kind by
the same order: every delivery is judged (:func:`~powerwall_bus.shared.acceptance.judge`),
filtered to the followed gateway (:class:`~powerwall_bus.shared.follow.GatewayFollower`,
``PWBUS_GATEWAY``) and stored in a :class:`~powerwall_bus.consumers.proxy.state.ProxyState`,
whose run/seq order decides which copy is the latest. So a display and the proxy fed the
same messages show the same numbers, and a bare Tesla-API ``MeterStream`` is enough.

Freshness is the display's own rule: with no reading for ``stale_after`` seconds (by the
injected monotonic clock, from when a reading *arrived*) the data is stale; when the
poller says the gateway is unreachable, rate-limited or refusing it, that is said instead.
Everything here is pure but for a lock: the bus thread feeds, the display thread reads.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from powerwall_bus.consumers.proxy.state import (
    GRID_STATUS,
    METERS,
    OPERATION,
    POLLER_STATUS,
    SOE,
    ProxyState,
)
from powerwall_bus.shared.acceptance import Policy, Refusal, judge
from powerwall_bus.shared.follow import GatewayFollower, sender_of
from powerwall_bus.shared.gateway.payloads import (
    Flow,
    Watts,
    app_soe_clamped,
    charging,
    discharging,
    exporting,
    importing,
    soe_percent,
)
from powerwall_bus.shared.gateway.states import trouble_words
from powerwall_bus.shared.messages import MeterStream

__all__ = ["KINDS", "DisplayState", "Freshness", "Power", "View", "trouble_of"]

_LOGGER = logging.getLogger(__name__)

#: The kinds a display reads; resync answers bring every kind, the rest are dropped.
KINDS = frozenset({METERS, SOE, GRID_STATUS, OPERATION, POLLER_STATUS})

#: grid_status strings in words (unknown states read "unknown", never fail).
_GRID: Mapping[str, str] = {
    "SystemGridConnected": "on-grid",
    "SystemIslandedActive": "off-grid",
    "SystemIslandedReady": "off-grid (ready to reconnect)",
    "SystemTransitionToGrid": "reconnecting to the grid",
    "SystemTransitionToIsland": "going off-grid",
    "SystemWaitForUser": "off-grid (waiting for you)",
    "SystemMicroGridFaulted": "off-grid (fault)",
}


class Freshness(enum.Enum):
    """Whether the numbers of a view can be shown as live."""

    WAITING = "waiting"  # nothing yet
    LIVE = "live"
    STALE = "stale"  # no reading for stale_after seconds
    TROUBLE = "trouble"  # the poller reports the gateway unavailable


@dataclass(frozen=True)
class Power:
    """One flow: the meter's W with the gateway's sign, its size (>= 0) and direction word."""

    watts: Watts | None = None
    size: Watts | None = None
    direction: str = ""


@dataclass(frozen=True)
class View:
    """Everything a display draws, worked out; renderers only format it."""

    solar: Power
    home: Power
    battery: Power
    grid: Power
    soe: float | None  # the Tesla app's %, 0..100
    grid_status: str | None  # "on-grid", "off-grid", ...; None: not heard yet
    mode: str | None  # /api/operation real_mode
    reading_time: float | None  # epoch seconds of the meters reading shown
    gateway: str  # the followed gateway's label ("" until one is heard)
    freshness: Freshness
    age: float | None  # seconds since the meters reading arrived
    trouble: str | None  # why the gateway is unavailable, per the poller
    bus_connected: bool
    problem: str | None = None  # several gateways and none chosen, ...


def _powers(aggregates: Any) -> tuple[Power, Power, Power, Power]:
    """Solar, home, battery and grid with their directions (``payloads`` names the signs)."""
    flow = Flow.from_aggregates(aggregates)
    grid = battery = Power(None)
    if flow.site is not None:
        word = "importing" if importing(flow.site) else "exporting" if exporting(flow.site) else ""
        grid = Power(flow.site, abs(flow.site), word)
    if flow.battery is not None:
        b = flow.battery
        word = "discharging" if discharging(b) else "charging" if charging(b) else "idle"
        battery = Power(b, abs(b), word)
    solar = Power(flow.solar, flow.solar_production, "") if flow.solar is not None else Power()
    home = Power(flow.load, flow.load, "") if flow.load is not None else Power()
    return solar, home, battery, grid


def trouble_of(poller_status: Any) -> str | None:
    """The poller status's ``gateway_state`` in words when it means no fresh data, else None."""
    state = poller_status.get("gateway_state") if isinstance(poller_status, dict) else None
    return trouble_words(state)


class DisplayState:
    """The followed gateway's latest readings, by the proxy's acceptance and order rules."""

    def __init__(
        self,
        policy: Policy,
        *,
        follow: str = "",
        stale_after: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._policy = policy
        self._follower = GatewayFollower(follow)
        self._stale_after = stale_after
        self._clock = clock
        self._wall_clock = wall_clock
        self._store = ProxyState(clock)
        self._lock = threading.Lock()
        self.bus_connected = False

    def deliver(
        self,
        kind: str,
        body: bytes,
        *,
        user_id: Any = None,
        headers: Mapping[str, Any] | None = None,
    ) -> bool:
        """Take one delivery (``kind``: ``properties.type``, else the routing key's kind);
        True when it changed what is known."""
        judged = judge(
            self._policy,
            kind,
            body,
            user_id=user_id,
            headers=headers,
            now=self._wall_clock(),
        )
        if isinstance(judged, Refusal):
            _LOGGER.debug("dropped a %s message: %s", kind[:80], judged)
            return False
        message = judged.message
        if not isinstance(message, MeterStream) and message.kind not in KINDS:
            return False
        body_gateway = None if isinstance(message, MeterStream) else message.gateway
        sender = sender_of(headers, body_gateway)
        with self._lock:
            verdict = self._follower.accept(sender.din, sender.name)
            self._follower.say(verdict, _LOGGER)
            if not verdict.take:
                return False
            before = self._store.version
            if isinstance(message, MeterStream):
                self._store.update_meter_stream(message, judged.position)
            else:
                self._store.update(message, judged.position)
            return self._store.version != before

    def view(self) -> View:
        """What to draw now."""
        with self._lock:
            store = self._store
            meters = store.item(METERS)
            age = store.age(METERS)
            trouble = trouble_of(store.payload(POLLER_STATUS))
            grid = store.payload(GRID_STATUS)
            grid_text = grid.get("grid_status") if isinstance(grid, dict) else None
            operation = store.payload(OPERATION)
            raw_soe = soe_percent(store.payload(SOE))
            gateway = self._follower.followed.label() if self._follower.followed else ""
            problem = self._follower.problem()
        if meters is None:
            freshness = Freshness.TROUBLE if trouble else Freshness.WAITING
        elif trouble:
            freshness = Freshness.TROUBLE
        elif age is not None and age > self._stale_after:
            freshness = Freshness.STALE
        else:
            freshness = Freshness.LIVE
        solar, home, battery, grid = _powers(None if meters is None else meters.payload)
        mode = operation.get("real_mode") if isinstance(operation, dict) else None
        return View(
            solar=solar,
            home=home,
            battery=battery,
            grid=grid,
            soe=None if raw_soe is None else app_soe_clamped(raw_soe),
            grid_status=(
                None if not isinstance(grid_text, str) else _GRID.get(grid_text, "unknown")
            ),
            mode=mode if isinstance(mode, str) else None,
            reading_time=None if meters is None else meters.reading_time,
            gateway=gateway,
            freshness=freshness,
            age=age,
            trouble=trouble,
            bus_connected=self.bus_connected,
            problem=problem,
        )
