"""What the facade knows: the latest body of every gateway path on the bus, ready to serve.

Deliveries are taken by the rules every consumer shares: judged
(:func:`~powerwall_bus.shared.acceptance.judge`: size, sender, JSON, time window), filtered
to the followed gateway (:class:`~powerwall_bus.shared.follow.GatewayFollower`,
``PWBUS_GATEWAY``), and the latest copy of a path is the later one in the poller's order
(:class:`~powerwall_bus.shared.ordering.RunOrder`), never the later reading time. A reading
envelope names its gateway path (``endpoint``), so the facade keeps bodies by path and
serves any path the poller reads, the ones a user added included; a ``MeterStream`` fills
the meters and state-of-energy paths.

Bodies are encoded once, when they arrive, the way the gateway writes them (compact JSON as
Go's encoder prints it; vitals as the raw protobuf), so a request only copies bytes. The
poller's status is kept too: which paths the gateway answered 404 (``missing``) and whether
its site controller is stopped, which the facade then answers as the gateway would.

Pure but for a lock: the bus thread feeds, the web server's loop reads.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from powerwall_bus.shared import contract
from powerwall_bus.shared.acceptance import Policy, Refusal, judge
from powerwall_bus.shared.follow import GatewayFollower, GatewayView, sender_of
from powerwall_bus.shared.messages import MeterStream
from powerwall_bus.shared.ordering import Position, RunOrder
from powerwall_bus.shared.refusals import RefusalLog

__all__ = ["AGGREGATES", "SOE", "Body", "FacadeState", "gateway_json"]

_LOGGER = logging.getLogger(__name__)

AGGREGATES = "/api/meters/aggregates"
SOE = "/api/system_status/soe"
JSON = "application/json"
PROTOBUF = "application/octet-stream"

#: Paths kept at most (the contract has about 30; the rest is room for added endpoints).
MAX_PATHS = 256
TOO_MANY_PATHS = "too_many_paths"


def gateway_json(document: Any) -> bytes:
    """``document`` as the gateway writes JSON: compact, UTF-8, and < > & escaped as Go's
    encoder escapes them."""
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    if "<" in text or ">" in text or "&" in text:
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode()


@dataclass(frozen=True)
class Body:
    """The latest answer of one path, ready to send."""

    content: bytes
    content_type: str
    received: float  # monotonic seconds, when the facade got it
    position: Position | None


class FacadeState:
    """The followed gateway's latest bodies by path, its poller's status, and the bus state."""

    def __init__(
        self,
        policy: Policy,
        *,
        follow: str = "",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._policy = policy
        self._follower = GatewayFollower(follow)
        self._clock = clock
        self._wall_clock = wall_clock
        self._bodies: dict[str, Body] = {}
        self._poller: dict[str, Any] | None = None
        self._poller_position: Position | None = None
        self._order = RunOrder()
        self._lock = threading.Lock()
        self.refused = RefusalLog(_LOGGER)
        self.bus_connected = False

    # ------------------------------------------------------------------ feeding (bus thread)

    def deliver(
        self,
        kind: str,
        body: bytes,
        *,
        user_id: Any = None,
        headers: Mapping[str, Any] | None = None,
    ) -> bool:
        """Take one delivery (``kind``: ``properties.type``, else the routing key); True when
        it changed what is served."""
        judged = judge(
            self._policy, kind, body, user_id=user_id, headers=headers, now=self._wall_clock()
        )
        if isinstance(judged, Refusal):
            self.refused.refused(judged.reason.value, judged.detail, kind[:80])
            return False
        message = judged.message
        if isinstance(message, MeterStream):
            updates = [
                (AGGREGATES, gateway_json(message.readings), JSON),
                (SOE, gateway_json({"percentage": message.state_of_energy}), JSON),
            ]
            body_gateway = None
        elif message.kind == contract.POLLER_STATUS:
            updates = []
            body_gateway = message.gateway
        elif message.endpoint and message.endpoint.startswith("/api/"):
            payload = message.payload
            if isinstance(payload, bytes):
                updates = [(message.endpoint, payload, PROTOBUF)]
            else:
                updates = [(message.endpoint, gateway_json(payload), JSON)]
            body_gateway = message.gateway
        else:
            return False  # not a gateway reading (nothing else is bound, but be sure)
        sender = sender_of(headers, body_gateway)
        with self._lock:
            verdict = self._follower.accept(sender.din, sender.name)
            self._follower.say(verdict, _LOGGER)
            if not verdict.take:
                return False
            if not updates:  # the poller's status
                payload = message.payload if not isinstance(message, MeterStream) else None
                if isinstance(payload, dict) and self._order.later(
                    judged.position, self._poller_position
                ):
                    self._poller, self._poller_position = payload, judged.position
                    return True
                return False
            changed = False
            for path, content, content_type in updates:
                changed |= self._store(path, content, content_type, judged.position)
            return changed

    def _store(
        self, path: str, content: bytes, content_type: str, position: Position | None
    ) -> bool:
        current = self._bodies.get(path)
        if current is None and len(self._bodies) >= MAX_PATHS:
            self.refused.refused(TOO_MANY_PATHS, f"already {MAX_PATHS} paths kept", path[:80])
            return False
        if current is not None and not self._order.later(position, current.position):
            return False  # an older copy (a resync answer) or the same message again
        self._bodies[path] = Body(content, content_type, self._clock(), position)
        return True

    # ------------------------------------------------------------------ reading (web loop)

    def body(self, path: str) -> Body | None:
        """The latest body of ``path``, if one arrived."""
        with self._lock:
            return self._bodies.get(path)

    def paths(self) -> list[str]:
        """Every path with a body."""
        with self._lock:
            return sorted(self._bodies)

    def age(self, path: str) -> float | None:
        """Seconds since the latest body of ``path`` arrived, or None."""
        found = self.body(path)
        return None if found is None else self._clock() - found.received

    @property
    def poller(self) -> dict[str, Any] | None:
        """The followed gateway's poller status (poller-status.json), if one arrived."""
        with self._lock:
            return self._poller

    def endpoint_state(self, path: str) -> str | None:
        """The poller's word for ``path`` (``ok``, ``missing`` = the gateway said 404,
        ``stopped`` = its site controller is stopped, ...); None when it does not read it."""
        endpoints = (self.poller or {}).get("endpoints")
        entry = endpoints.get(path) if isinstance(endpoints, dict) else None
        state = entry.get("state") if isinstance(entry, dict) else None
        return state if isinstance(state, str) else None

    def endpoint_interval(self, path: str) -> float | None:
        """How often the poller reads ``path``, seconds (its status says); None: unknown."""
        endpoints = (self.poller or {}).get("endpoints")
        entry = endpoints.get(path) if isinstance(endpoints, dict) else None
        interval = entry.get("interval") if isinstance(entry, dict) else None
        if isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0:
            return float(interval)
        return None

    def gateways(self) -> GatewayView:
        """Which gateway is served, and which others were seen."""
        with self._lock:
            return self._follower.view()
