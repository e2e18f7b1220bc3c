"""Readings straight from the simulated gateway, as the poller would have made them.

For tests and benchmarks that want bus messages without running the poller.
"""

from __future__ import annotations

import json
import time

from powerwall_bus.shared.gateway.vitals import decode_vitals
from powerwall_bus.shared.messages import Reading
from powerwall_bus.simulator.endpoints import SimulatedGateway

VITALS_PATH = "/api/devices/vitals"


def reading_for(gateway: SimulatedGateway, path: str, at: float | None = None) -> Reading:
    """The reading the poller would publish for ``path`` (vitals decoded as it does)."""
    reply = gateway.get(path)
    if reply.status != 200:
        raise ValueError(f"{path} answered {reply.status}")
    moment = time.time() if at is None else at
    if path == VITALS_PATH:
        return Reading(path, moment, gateway.din, reply.body, decode_vitals(reply.body))
    return Reading(path, moment, gateway.din, json.loads(reply.body))
