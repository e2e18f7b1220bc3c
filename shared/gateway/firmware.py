"""Firmware version rules: what a given gateway firmware does and does not serve."""

from __future__ import annotations

import re

#: The first firmware without /api/devices/vitals (it answers 404 from here on).
VITALS_REMOVED_IN = (23, 44)

_NUMBERS = re.compile(r"\d+")


def parse_version(version: str) -> tuple[int, ...]:
    """``"23.44.0 4e9c9d3a"`` -> ``(23, 44, 0)``; unparsable text gives ``()``."""
    head = version.strip().split(" ")[0] if version.strip() else ""
    return tuple(int(n) for n in _NUMBERS.findall(head))


def vitals_supported(version: str) -> bool:
    """True when this firmware still serves /api/devices/vitals (before 23.44)."""
    parsed = parse_version(version)
    return not parsed or parsed[:2] < VITALS_REMOVED_IN
