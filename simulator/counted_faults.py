"""Faults the fake cloud services answer with, armed by name for a number of answers.

The fake Octopus and the fake Tesla cloud each know a fixed set of fault names; a test (or
``POST .../faults`` on the fake's control API) arms some of them for so many answers, or
with -1 until cleared, and the fake asks :meth:`CountedFaults.fire` at the point where that
fault would strike. The gateway simulator's richer faults (latency, drops, rate limits by
path) are :mod:`powerwall_bus.simulator.faults`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

__all__ = ["CountedFaults"]


class CountedFaults:
    """Fault name -> answers left (-1: until cleared); names outside ``known`` are refused."""

    def __init__(self, known: Iterable[str]) -> None:
        self.known = tuple(known)
        self.armed: dict[str, int] = {}

    def arm(self, faults: Mapping[str, int], clear: Iterable[str] = ()) -> None:
        """Clear the faults named in ``clear``, then arm each of ``faults`` for that many answers.

        Raises ValueError for a name the fake does not know (nothing is changed then).
        """
        unknown = [name for name in faults if name not in self.known]
        if unknown:
            raise ValueError(f"unknown fault {unknown[0]!r}; known: {', '.join(self.known)}")
        for name in clear:
            self.armed.pop(name, None)
        for name, times in faults.items():
            self.armed[name] = int(times)

    def clear(self) -> None:
        """No fault armed."""
        self.armed = {}

    def fire(self, name: str) -> bool:
        """True if ``name`` is armed, using up one of its answers."""
        times = self.armed.get(name)
        if not times:
            return False
        if times == 1:
            del self.armed[name]
        elif times > 0:
            self.armed[name] = times - 1
        return True

    async def handle_control(self, request: web.Request) -> web.Response:
        """``POST faults`` of a control API: ``{"set": {NAME: times}, "clear": [NAME, ...]}``.

        Answers the faults now armed, or 400 with the reason for a body it cannot take.
        """
        try:
            payload: Any = await request.json()
            if not isinstance(payload, dict):
                raise TypeError("the body must be a JSON object")
            self.arm(dict(payload.get("set", {})), list(payload.get("clear", [])))
        except (ValueError, TypeError) as exc:  # not JSON (a ValueError), not an object
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"faults": self.armed})
