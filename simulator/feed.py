"""Readings straight from the simulated gateway, as the poller would have made them.

For tests and benchmarks that want bus messages without running the poller.
"""

from __future__ import annotations

import json
import time

from shared.gateway.vitals import decode_vitals
from shared.messages import Reading
from simulator.endpoints import SimulatedGateway

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
