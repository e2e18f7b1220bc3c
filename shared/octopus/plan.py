"""The Octopus dispatch plan as the project passes it around: typed, UTC, validated once.

Octopus answers ``flexPlannedDispatches`` with offset-aware ISO times, a charging type
(``SMART``, ``BOOST``, ``TEST``) and ``energyAddedKwh`` as a decimal string that may be
null or even negative. The producer turns that into a :class:`DispatchPlan`; the bus carries
its :meth:`~DispatchPlan.to_payload`; the dispatcher reads it back with
:meth:`~DispatchPlan.from_payload`. Times are always timezone-aware UTC here: local time
(Europe/London) is a matter for the decisions and the displays, never for the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from powerwall_bus.shared.errors import MalformedMessage

__all__ = ["DispatchPlan", "PlannedDispatch", "parse_time"]


def parse_time(text: Any) -> datetime:
    """An ISO-8601 time with an offset (``Z`` or ``+00:00``) as aware UTC; naive is refused."""
    if not isinstance(text, str):
        raise MalformedMessage(f"a dispatch time must be text, not {type(text).__name__}")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedMessage(f"not an ISO-8601 time: {text[:40]!r}") from None
    if moment.tzinfo is None:
        raise MalformedMessage(f"a dispatch time needs its UTC offset: {text[:40]!r}")
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, order=True)
class PlannedDispatch:
    """One planned charging slot ``[start, end)``; ``kind`` is Octopus's ``type``."""

    start: datetime
    end: datetime
    kind: str = "SMART"
    energy_kwh: float | None = None  # as Octopus says; its sign is not to be trusted

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise MalformedMessage("dispatch times must be timezone-aware")
        if self.end <= self.start:
            raise MalformedMessage(f"a dispatch must end after it starts ({_iso(self.start)})")

    def to_payload(self) -> dict[str, Any]:
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "type": self.kind,
            "energy_kwh": self.energy_kwh,
        }

    @classmethod
    def from_payload(cls, item: Mapping[str, Any]) -> PlannedDispatch:
        energy = item.get("energy_kwh")
        if energy is not None and (isinstance(energy, bool) or not isinstance(energy, int | float)):
            raise MalformedMessage("energy_kwh must be a number or null")
        kind = item.get("type")
        if not isinstance(kind, str) or not kind:
            raise MalformedMessage("a dispatch needs its type")
        return cls(
            parse_time(item.get("start")),
            parse_time(item.get("end")),
            kind,
            None if energy is None else float(energy),
        )


@dataclass(frozen=True)
class DispatchPlan:
    """Every planned dispatch of one Octopus device, as fetched at ``fetched_at`` (UTC)."""

    device_id: str
    fetched_at: datetime
    dispatches: tuple[PlannedDispatch, ...] = field(default_factory=tuple)

    def to_payload(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "fetched_at": _iso(self.fetched_at),
            "dispatches": [d.to_payload() for d in sorted(self.dispatches)],
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DispatchPlan:
        items = payload.get("dispatches")
        if not isinstance(items, Sequence) or isinstance(items, str | bytes):
            raise MalformedMessage("a dispatch plan needs a list of dispatches")
        device = payload.get("device_id")
        if not isinstance(device, str):
            raise MalformedMessage("a dispatch plan needs its device_id")
        return cls(
            device,
            parse_time(payload.get("fetched_at")),
            tuple(sorted(PlannedDispatch.from_payload(item) for item in items)),
        )
