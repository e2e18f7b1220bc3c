"""The Kraken GraphQL documents we send, and the pure reading of their answers.

Everything here is free of I/O: the client sends these documents and hands the ``data`` it
got back to these functions, which turn Octopus's shapes into the project's types. Field
facts (see docs/messages.md, "octopus.plan"):

* ``flexPlannedDispatches``: ``start``/``end`` offset-aware ISO times, ``type`` one of
  ``SMART``, ``BOOST``, ``TEST``, ``energyAddedKwh`` a decimal *string* (or null, or even
  negative: kept as Octopus says);
* the legacy ``plannedDispatches``: ``delta`` in kWh with import negative, and
  ``meta.source`` ``smart-charge`` / ``bump-charge`` / null (null counts as smart);
* ``devices``: every registration of the account, meters included (never a flex device).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from powerwall_bus.shared.errors import MalformedMessage, OctopusApiError, OctopusDeviceError
from powerwall_bus.shared.octopus.plan import DispatchPlan, PlannedDispatch, parse_time

__all__ = [
    "DEVICES_QUERY",
    "LEGACY_QUERY",
    "PLAN_QUERY",
    "TOKEN_MUTATION",
    "Device",
    "devices_from",
    "flex_plan",
    "legacy_plan",
    "pick_device",
]

TOKEN_MUTATION = """mutation ObtainKrakenToken($input: ObtainJSONWebTokenInput!) {
  obtainKrakenToken(input: $input) {
    token
    payload
    refreshToken
    refreshExpiresIn
  }
}"""

DEVICES_QUERY = """query Devices($accountNumber: String!) {
  devices(accountNumber: $accountNumber) {
    id
    name
    deviceType
    provider
    status {
      current
      currentState
      isSuspended
    }
    __typename
  }
}"""

#: One request per poll: the device (is it still registered? in what state?) and its plan,
#: two root fields in one document, as Octopus's own clients batch them.
PLAN_QUERY = """query FlexPlan($accountNumber: String!, $deviceId: String!) {
  devices(accountNumber: $accountNumber, deviceId: $deviceId) {
    id
    deviceType
    status {
      current
      currentState
    }
  }
  flexPlannedDispatches(deviceId: $deviceId) {
    start
    end
    type
    energyAddedKwh
  }
}"""

LEGACY_QUERY = """query PlannedDispatches($accountNumber: String!) {
  plannedDispatches(accountNumber: $accountNumber) {
    start
    end
    delta
    meta {
      source
      location
    }
  }
}"""

METERS = "ELECTRICITY_METERS"
_LEGACY_KINDS = {
    None: "SMART",
    "smart-charge": "SMART",
    "smart": "SMART",
    "bump-charge": "BOOST",
    "boost": "BOOST",
}


@dataclass(frozen=True)
class Device:
    """One smart-flex registration of the account."""

    id: str
    device_type: str
    live: bool
    state: str | None = None  # status.currentState, e.g. SMART_CONTROL_CAPABLE
    name: str | None = None


def devices_from(items: Any) -> list[Device]:
    """The ``devices`` answer as :class:`Device` records (null is an empty list)."""
    if items is None:
        return []
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise OctopusApiError("devices: expected a list")
    found = []
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            raise OctopusApiError("devices: an entry without an id")
        status = item.get("status")
        if not isinstance(status, Mapping):
            status = {}
        found.append(
            Device(
                id=item["id"],
                device_type=str(item.get("deviceType") or ""),
                live=status.get("current") in (None, "LIVE"),
                state=status.get("currentState"),
                name=item.get("name"),
            )
        )
    return found


def pick_device(devices: Sequence[Device], wanted: str = "") -> Device:
    """The device whose plan we follow.

    ``wanted`` (the configured id) must be on the account. Without one: meters never count,
    and of the rest the one live device (or else the only one). None or several raise
    :class:`OctopusDeviceError` naming what to configure.
    """
    flex = [d for d in devices if d.device_type != METERS]
    if wanted:
        for device in flex:
            if device.id == wanted:
                return device
        raise OctopusDeviceError(
            f"device {wanted} is not a smart-flex device of this account "
            f"(found: {', '.join(d.id for d in flex) or 'none'})",
            code="KT-CT-4301",
        )
    live = [d for d in flex if d.live] or flex
    if len(live) == 1:
        return live[0]
    if not live:
        raise OctopusDeviceError("the account has no smart-flex device (car or charger)")
    raise OctopusDeviceError(
        "the account has several smart-flex devices; set octopus_energy.device_id to one of "
        + ", ".join(d.id for d in live)
    )


def _energy(value: Any) -> float | None:
    """A Decimal as Octopus serialises it (a string, sometimes a number); None if unreadable."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _dispatch(start: Any, end: Any, kind: str, energy: float | None) -> PlannedDispatch:
    try:
        return PlannedDispatch(parse_time(start), parse_time(end), kind, energy)
    except MalformedMessage as exc:
        raise OctopusApiError(f"a planned dispatch Octopus sent is unreadable: {exc}") from None


def _items(value: Any, field: str) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise OctopusApiError(f"{field}: expected a list")
    return value


def flex_plan(device_id: str, items: Any, fetched_at: datetime) -> DispatchPlan:
    """The ``flexPlannedDispatches`` answer as a plan (null is an empty plan)."""
    dispatches = []
    for item in _items(items, "flexPlannedDispatches"):
        if not isinstance(item, Mapping):
            raise OctopusApiError("flexPlannedDispatches: an entry is not an object")
        kind = item.get("type")
        kind = kind if isinstance(kind, str) and kind else "SMART"
        dispatches.append(
            _dispatch(item.get("start"), item.get("end"), kind, _energy(item.get("energyAddedKwh")))
        )
    return DispatchPlan(device_id, fetched_at, tuple(sorted(dispatches)))


def legacy_plan(device_id: str, items: Any, fetched_at: datetime) -> DispatchPlan:
    """The legacy ``plannedDispatches`` answer as a plan: ``meta.source`` becomes the type
    (null and ``smart-charge`` are SMART, ``bump-charge`` BOOST, anything else upper-cased,
    so it never passes for SMART) and ``-delta`` the energy added (import is negative)."""
    dispatches = []
    for item in _items(items, "plannedDispatches"):
        if not isinstance(item, Mapping):
            raise OctopusApiError("plannedDispatches: an entry is not an object")
        meta = item.get("meta")
        if not isinstance(meta, Mapping):
            meta = {}
        source = meta.get("source")
        kind = _LEGACY_KINDS.get(source) or str(source).upper().replace("-", "_")
        delta = _energy(item.get("delta"))
        energy = None if delta is None else -delta
        dispatches.append(_dispatch(item.get("start"), item.get("end"), kind, energy))
    return DispatchPlan(device_id, fetched_at, tuple(sorted(dispatches)))
