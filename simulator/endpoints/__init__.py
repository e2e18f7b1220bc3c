"""The JSON (and protobuf) bodies a Tesla Energy Gateway serves, rendered from the site model.

:class:`SimulatedGateway` (:mod:`.gateway`) is the pure core behind the simulator's HTTPS
shell: ``get(path)`` returns a :class:`Reply`. The table of paths is :mod:`.routes`; the
bodies are rendered by one module per family of endpoints:

- :mod:`.meters`: aggregates, state of energy, grid status, meter details and readings;
- :mod:`.system`: system status and grid faults, status, site info, site master, updates;
- :mod:`.powerwalls`: Powerwalls with their diagnostics, the Powerwall+ inverter;
- :mod:`.vitals`: the protobuf device vitals (before firmware 23.44);
- :mod:`.config`: installation, solar, networks, grid codes, setup wizard documents;
- :mod:`.base`: what they share (reply, switches, site facts, Go's number and time formats).

Every live body is rendered from one :class:`~simulator.snapshot.Snapshot`, so aggregates,
state of energy, battery blocks, vitals and meter details always agree with each other.
Shapes, key order and value formats follow the newest real recordings (firmware 23.28.2
where recorded, else 21.44): compact JSON as Go writes it, whole numbers without ".0",
RFC 3339 times with nanoseconds and the site's UTC offset, ``up_time_seconds`` as a Go
duration, ``start_time`` with its literal "+0800".
"""

from __future__ import annotations

from powerwall_bus.simulator.endpoints.base import JSON_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE, Reply
from powerwall_bus.simulator.endpoints.gateway import SimulatedGateway

__all__ = ["JSON_CONTENT_TYPE", "PROTOBUF_CONTENT_TYPE", "Reply", "SimulatedGateway"]
