"""Messages to table rows: the pure core of the MySQL writer (no I/O, no database).

:func:`rows_for_envelope` and :func:`rows_for_meter_stream` turn one parsed message into
:class:`Rows`, one list per table of ``schema/migrations/0001_initial.sql``. Rows name the
gateway (and, for vitals, the device and signal) by their text; the database layer swaps
those for the dictionary ids. Decisions, in one place:

* **Times** are the reading time, UTC, as naive ``datetime`` truncated to whole
  milliseconds (``DATETIME(3)``), exactly like the envelope's ``time`` and ``message_id``.
  A ``MeterStream`` ``timestamp`` is truncated the same way, so it lands on the same
  millisecond as the ``meters`` message of the same reading.
* **Numbers**: every stored number is a finite ``float``
  (:func:`~powerwall_bus.shared.gateway.payloads.finite_float`). A missing field, ``null``
  (a disabled battery pack reports null readings), a boolean where a number belongs, a
  string, NaN or an infinity all become ``None`` (SQL NULL) in the nullable columns.
* **Meters**: one row per meter for ``site``, ``battery``, ``load`` and ``solar`` (the
  column is an ENUM of those four); extra meters of old firmware (``busway``,
  ``frequency``, ``generator``) are not stored.
* **State of energy**: ``app_percentage`` is the Tesla app's scale
  (:func:`~powerwall_bus.shared.gateway.payloads.app_soe`, ``(percentage - 5) / 0.95``),
  **not clamped**, the very double the proxy's ``/api/system_status/soe`` shows: the raw
  value stays recoverable, and a raw reading under 5 % (which the gateway keeps in reserve)
  shows as a small negative number rather than silently as 0.
* **Grid status** is stored only when it changes, per gateway, plus the first sample when
  the :class:`GridStatusTracker` knows nothing about the gateway yet (the writer seeds it
  from ``grid_status_changes`` at start, so a restart does not store a change that was none).
  A sample not newer than the last one seen for its gateway (a redelivery) is ignored.
* **Battery blocks** come from ``api.system_status`` ``battery_blocks``, one row per
  Powerwall keyed by ``PackageSerialNumber``; a block without a serial is skipped.
* **Vitals**: numeric signals only, one row per (device, signal). Booleans are stored as
  0/1 (``POD_ActiveHeating``, ``PINV_PllLocked``... graph well that way); strings, lists
  (``alerts``), nested objects and the identity field ``lastCommunicationTime`` (an epoch,
  not a measurement) are skipped, as are names longer than the dictionary columns.
* **Poller status**: ``gateway_state``, ``firmware`` (cut to 40 characters) and the whole
  payload as compact JSON.
* **Text** that does not fit its column, or that UTF-8 cannot encode (JSON can carry lone
  surrogates), is never sent to the database: a vitals name or battery serial like that is
  skipped, a gateway DIN or status like that makes the message malformed.

Shapes the writer cannot store raise :class:`~shared.errors.MalformedMessage` (the writer
checks each message against its JSON Schema first, so this is belt and braces).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeGuard

from powerwall_bus.shared.errors import MalformedMessage
from powerwall_bus.shared.gateway.payloads import app_soe, finite_float
from powerwall_bus.shared.messages import Envelope, MeterStream

METERS = ("site", "battery", "load", "solar")

#: Ints this small convert to a float exactly (meter_rows takes them inline).
_PLAIN_INT = 2**53

#: The meter_readings value columns, in table order, as named in the gateway's JSON.
METER_FIELDS = (
    "instant_power",
    "instant_reactive_power",
    "instant_apparent_power",
    "instant_average_voltage",
    "frequency",
    "instant_total_current",
    "energy_imported",
    "energy_exported",
)

#: The battery_block_readings value columns, in table order, as named in battery_blocks.
BLOCK_FIELDS = (
    "p_out",
    "q_out",
    "v_out",
    "f_out",
    "i_out",
    "energy_charged",
    "energy_discharged",
    "nominal_energy_remaining",
    "nominal_full_pack_energy",
)

#: Numeric fields of a vitals device that describe it rather than measure anything.
VITALS_IDENTITY = frozenset({"lastCommunicationTime"})

MAX_DIN = 64  # gateways.din
MAX_DEVICE = 96  # vitals_devices.din
MAX_SIGNAL = 96  # vitals_signals.name
MAX_SERIAL = 40  # battery_block_readings.serial
MAX_FIRMWARE = 40  # poller_events.firmware
MAX_GATEWAY_STATE = 32  # poller_events.gateway_state
MAX_GRID_STATUS = 40  # grid_status_changes.grid_status

_EPOCH = dt.datetime(1970, 1, 1)


# --------------------------------------------------------------------------- rows


class MeterRow(NamedTuple):
    """meter_readings (with the gateway DIN in place of gateway_id)."""

    gateway: str
    ts: dt.datetime
    meter: str
    instant_power: float | None
    instant_reactive_power: float | None
    instant_apparent_power: float | None
    instant_average_voltage: float | None
    frequency: float | None
    instant_total_current: float | None
    energy_imported: float | None
    energy_exported: float | None


class SoeRow(NamedTuple):
    """soe_readings."""

    gateway: str
    ts: dt.datetime
    percentage: float
    app_percentage: float


class GridStatusRow(NamedTuple):
    """grid_status_changes."""

    gateway: str
    ts: dt.datetime
    grid_status: str
    grid_services_active: int | None


class BatteryBlockRow(NamedTuple):
    """battery_block_readings."""

    gateway: str
    ts: dt.datetime
    serial: str
    p_out: float | None
    q_out: float | None
    v_out: float | None
    f_out: float | None
    i_out: float | None
    energy_charged: float | None
    energy_discharged: float | None
    nominal_energy_remaining: float | None
    nominal_full_pack_energy: float | None


class VitalsRow(NamedTuple):
    """vitals_readings, with the device DIN and signal name in place of their ids."""

    gateway: str
    device: str
    signal: str
    ts: dt.datetime
    value: float


class PollerEventRow(NamedTuple):
    """poller_events."""

    gateway: str
    ts: dt.datetime
    gateway_state: str
    firmware: str | None
    payload: str


@dataclass
class Rows:
    """Rows for every table, from one message or a whole batch."""

    meters: list[MeterRow] = field(default_factory=list)
    soe: list[SoeRow] = field(default_factory=list)
    grid_status: list[GridStatusRow] = field(default_factory=list)
    battery_blocks: list[BatteryBlockRow] = field(default_factory=list)
    vitals: list[VitalsRow] = field(default_factory=list)
    poller_events: list[PollerEventRow] = field(default_factory=list)

    def extend(self, other: Rows) -> None:
        """Append another message's rows."""
        self.meters += other.meters
        self.soe += other.soe
        self.grid_status += other.grid_status
        self.battery_blocks += other.battery_blocks
        self.vitals += other.vitals
        self.poller_events += other.poller_events

    def __len__(self) -> int:
        return (
            len(self.meters)
            + len(self.soe)
            + len(self.grid_status)
            + len(self.battery_blocks)
            + len(self.vitals)
            + len(self.poller_events)
        )

    def _tables(self) -> tuple[list[Any], ...]:
        return (
            self.meters,
            self.soe,
            self.grid_status,
            self.battery_blocks,
            self.vitals,
            self.poller_events,
        )

    def gateways(self) -> set[str]:
        """Every gateway DIN the rows name."""
        found: set[str] = set()
        for table in self._tables():
            found.update(row.gateway for row in table)
        return found

    def first_seen(self) -> dict[str, dt.datetime]:
        """The earliest reading time of each gateway in the rows."""
        first: dict[str, dt.datetime] = {}
        for table in self._tables():
            for row in table:
                if row.gateway not in first or row.ts < first[row.gateway]:
                    first[row.gateway] = row.ts
        return first


# --------------------------------------------------------------------------- values


def utc_millis(moment: dt.datetime) -> dt.datetime:
    """A naive UTC datetime truncated to whole milliseconds (what DATETIME(3) stores)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


def epoch_millis(epoch: float) -> dt.datetime:
    """Epoch seconds as a naive UTC datetime truncated to whole milliseconds."""
    if not math.isfinite(epoch):
        raise MalformedMessage("timestamp is not a finite number")
    try:
        return _EPOCH + dt.timedelta(milliseconds=int(epoch * 1000))
    except OverflowError:
        raise MalformedMessage("timestamp is out of range") from None


def storable(text: object, limit: int) -> TypeGuard[str]:
    """True for a non-empty string of at most ``limit`` characters that UTF-8 can encode.

    (JSON may carry lone surrogates such as ``"\\ud800"``, which no database column takes.)
    """
    if not isinstance(text, str) or not text or len(text) > limit:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _gateway(din: str) -> str:
    if not storable(din, MAX_DIN):
        raise MalformedMessage(f"gateway must be 1 to {MAX_DIN} characters of valid text")
    return din


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise MalformedMessage(f"{what} is not an object")
    return value


# --------------------------------------------------------------------------- grid status


class GridStatusTracker:
    """The last grid status sample seen per gateway, to store only the changes.

    Seed it with the newest row of ``grid_status_changes`` per gateway. Use :meth:`copy` for
    a batch and keep the copy only once the batch is committed, so a batch that has to be
    written again produces the same change rows.
    """

    def __init__(self, seed: Iterable[tuple[str, dt.datetime, str]] = ()) -> None:
        self._last: dict[str, tuple[dt.datetime, str]] = {}
        for gateway, ts, status in seed:
            self._last[gateway] = (ts, status)

    def copy(self) -> GridStatusTracker:
        """An independent tracker with the same state."""
        twin = GridStatusTracker()
        twin._last = dict(self._last)
        return twin

    def last(self, gateway: str) -> tuple[dt.datetime, str] | None:
        """(time, status) of the newest sample seen for ``gateway``."""
        return self._last.get(gateway)

    def observe(self, gateway: str, ts: dt.datetime, status: str) -> bool:
        """Record a sample; True when it is a change (or the first) and must be stored."""
        previous = self._last.get(gateway)
        if previous is not None and ts <= previous[0]:
            return False  # not newer than what we know: a redelivery or a late duplicate
        self._last[gateway] = (ts, status)
        return previous is None or previous[1] != status


# --------------------------------------------------------------------------- per kind


def meter_rows(gateway: str, ts: dt.datetime, aggregates: Any) -> list[MeterRow]:
    """One row per known meter of an ``/api/meters/aggregates`` body.

    The writer's hottest loop (32 values a message): a finite float or a plain int of
    ordinary size is taken inline; anything else goes through ``finite_float``, which has
    the last word (None for text, booleans, NaN, the infinities, ints beyond a float).
    """
    body = _object(aggregates, "the meters payload")
    rows = []
    for meter in METERS:
        values = body.get(meter)
        if values is None:
            continue
        get = _object(values, f"meter {meter}").get
        rows.append(
            MeterRow(
                gateway,
                ts,
                meter,
                *[
                    value
                    if type(value) is float and value - value == 0.0  # inf - inf is NaN
                    else float(value)
                    if type(value) is int and -_PLAIN_INT < value < _PLAIN_INT
                    else finite_float(value)
                    for value in map(get, METER_FIELDS)
                ],
            )
        )
    return rows


def soe_row(gateway: str, ts: dt.datetime, percentage: Any) -> SoeRow:
    """The soe_readings row for a raw percentage."""
    value = finite_float(percentage)
    if value is None:
        raise MalformedMessage("percentage is missing or not a number")
    return SoeRow(gateway, ts, value, app_soe(value))


def grid_status_rows(
    gateway: str, ts: dt.datetime, payload: Any, tracker: GridStatusTracker
) -> list[GridStatusRow]:
    """A row when the status changed (the tracker is updated)."""
    body = _object(payload, "the grid_status payload")
    status = body.get("grid_status")
    if not storable(status, MAX_GRID_STATUS):
        raise MalformedMessage("grid_status is missing or not a short string")
    active = body.get("grid_services_active")
    flag = int(active) if isinstance(active, bool) else None
    if not tracker.observe(gateway, ts, status):
        return []
    return [GridStatusRow(gateway, ts, status, flag)]


def battery_block_rows(gateway: str, ts: dt.datetime, payload: Any) -> list[BatteryBlockRow]:
    """One row per entry of ``battery_blocks`` with a serial number."""
    body = _object(payload, "the system_status payload")
    blocks = body.get("battery_blocks")
    if blocks is None:
        return []
    if not isinstance(blocks, list):
        raise MalformedMessage("battery_blocks is not a list")
    rows = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        serial = block.get("PackageSerialNumber")
        if not storable(serial, MAX_SERIAL):
            continue
        values = (finite_float(block.get(f)) for f in BLOCK_FIELDS)
        rows.append(BatteryBlockRow(gateway, ts, serial, *values))
    return rows


def vitals_rows(gateway: str, ts: dt.datetime, decoded: Any) -> list[VitalsRow]:
    """Numeric (and boolean, as 0/1) signals of a decoded vitals dict."""
    devices = _object(decoded, "decoded vitals")
    rows = []
    for device, signals in devices.items():
        if not isinstance(signals, dict) or not storable(device, MAX_DEVICE):
            continue
        for name, raw in signals.items():
            if name in VITALS_IDENTITY or not storable(name, MAX_SIGNAL):
                continue
            value = float(raw) if isinstance(raw, bool) else finite_float(raw)
            if value is not None:
                rows.append(VitalsRow(gateway, device, name, ts, value))
    return rows


def poller_event_row(gateway: str, ts: dt.datetime, payload: Any) -> PollerEventRow:
    """The poller_events row of a ``poller.status`` message."""
    body = _object(payload, "the poller.status payload")
    state = body.get("gateway_state")
    if not storable(state, MAX_GATEWAY_STATE):
        raise MalformedMessage("gateway_state is missing or not a short string")
    firmware = body.get("firmware")
    firmware = firmware[:MAX_FIRMWARE] if isinstance(firmware, str) else None
    if firmware is not None and not storable(firmware, MAX_FIRMWARE):
        firmware = None
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    if not storable(text, len(text)):  # lone surrogates somewhere: keep them as escapes
        text = json.dumps(body, separators=(",", ":"))
    return PollerEventRow(gateway, ts, state, firmware, text)


# --------------------------------------------------------------------------- messages

#: The envelope kinds the writer stores.
STORED_KINDS = frozenset(
    {"meters", "soe", "grid_status", "api.system_status", "vitals", "poller.status"}
)


def rows_for_envelope(envelope: Envelope, tracker: GridStatusTracker) -> Rows:
    """The rows of one message of our contract (kinds the writer does not store: none)."""
    rows = Rows()
    kind = envelope.kind
    if kind not in STORED_KINDS:
        return rows
    gateway = _gateway(envelope.gateway)
    ts = utc_millis(envelope.time)
    if kind == "meters":
        rows.meters = meter_rows(gateway, ts, envelope.payload)
    elif kind == "soe":
        rows.soe = [soe_row(gateway, ts, _object(envelope.payload, "soe").get("percentage"))]
    elif kind == "grid_status":
        rows.grid_status = grid_status_rows(gateway, ts, envelope.payload, tracker)
    elif kind == "api.system_status":
        rows.battery_blocks = battery_block_rows(gateway, ts, envelope.payload)
    elif kind == "vitals":
        rows.vitals = vitals_rows(gateway, ts, envelope.decoded)
    else:  # poller.status
        rows.poller_events = [poller_event_row(gateway, ts, envelope.payload)]
    return rows


def rows_for_meter_stream(stream: MeterStream, gateway: str) -> Rows:
    """A Tesla-API ``MeterStream`` message: meter rows and a soe row under ``gateway``."""
    gateway = _gateway(gateway)
    ts = epoch_millis(stream.timestamp)
    return Rows(
        meters=meter_rows(gateway, ts, stream.readings),
        soe=[soe_row(gateway, ts, stream.state_of_energy)],
    )
