"""What the gateway's numbers mean: the one place every consumer and display reads them from.

The bus carries the gateway's JSON unchanged; this module is how a program *interprets* it.
Each rule is a small named function, so the proxy, the history writer, the reports, the
power-flow page and the displays still to come cannot drift apart:

* **Numbers** (:func:`number`): a value counts as a number when it is a JSON number, that is
  an ``int`` or ``float`` that is *not* a ``bool`` and is finite. ``None``, booleans, text
  (also numeric text such as ``"12"``), NaN and the infinities are "no number". The type is
  kept (``7`` stays an ``int``), because the proxy must print exactly what pyPowerwall
  prints. :func:`finite_float` is the same rule giving a ``float`` (for storage);
  :func:`lenient_float` is a *different* rule, Python's ``float()``, kept only where
  pyPowerwall itself calls ``float()`` on a field (``get_reserve()``).
* **State of energy**: the gateway reports the charge on its own scale, whose bottom 5 % it
  keeps for itself; the Tesla app shows ``(raw - 5) / 0.95``, so the gateway's 5 % is the
  app's 0 % and both scales end at 100 %. :func:`app_soe` is that mapping (not clamped, so
  the raw value stays recoverable), :func:`app_soe_clamped` keeps it to 0..100 for display,
  :func:`gateway_soe` is the inverse. The backup reserve (``/api/operation``) uses the same
  scale: :func:`app_reserve` (never below 0, as pyPowerwall's ``get_reserve()``) and
  :func:`gateway_reserve`. The arithmetic is pyPowerwall's, ``raw / 0.95 - 5 / 0.95``, so
  the proxy matches it to the last bit and every other program agrees with the proxy.
* **Meter signs** (``/api/meters/aggregates``, ``instant_power`` in W): ``site`` positive is
  importing from the grid, negative exporting; ``battery`` positive is discharging, negative
  charging; ``solar`` positive is producing (a small negative value is the inverter's own
  draw at night); ``load`` is the home's use, positive. :class:`Flow` holds the four, with
  the named directions as properties; :func:`importing` and friends name the tests.
* **Firmware** (``/api/status`` ``version``, e.g. ``"23.44.0 eb113390"``): a release number
  and a short git hash. :func:`parse_firmware` splits it, :func:`version_at_least` compares
  release numbers (``23.44`` == ``23.44.0``), :func:`vitals_supported` says whether the
  firmware still serves ``/api/devices/vitals``; :func:`pypowerwall_vint` is pyPowerwall's
  integer form (``234400``) for the proxy's ``/version``.

Everything here is pure: no I/O, and no function modifies its input.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

__all__ = [
    "APP_SCALE",
    "GATEWAY_RESERVED_PERCENT",
    "METERS",
    "VITALS_REMOVED_IN",
    "AggregatesPayload",
    "FirmwareVersion",
    "Flow",
    "MeterName",
    "MeterPayload",
    "OperationPayload",
    "SoePayload",
    "StatusPayload",
    "Watts",
    "app_reserve",
    "app_soe",
    "app_soe_clamped",
    "charging",
    "discharging",
    "exporting",
    "finite_float",
    "gateway_reserve",
    "gateway_soe",
    "importing",
    "lenient_float",
    "meter_power",
    "number",
    "parse_firmware",
    "pypowerwall_vint",
    "soe_percent",
    "version_at_least",
    "vitals_supported",
]

_isfinite = math.isfinite

#: A power in W as the gateway sent it (an int or a float; see :func:`number`).
Watts = int | float
MeterName = Literal["site", "battery", "load", "solar"]
#: The four meters of ``/api/meters/aggregates`` every site has, in the gateway's order.
METERS: tuple[MeterName, ...] = ("site", "battery", "load", "solar")


# --------------------------------------------------------------------------- payload shapes


class SoePayload(TypedDict):
    """``/api/system_status/soe``: the charge on the gateway's scale, %."""

    percentage: float


class MeterPayload(TypedDict, total=False):
    """One meter of ``/api/meters/aggregates`` (the fields consumers read)."""

    last_communication_time: str
    instant_power: float
    instant_reactive_power: float
    instant_apparent_power: float
    frequency: float
    energy_exported: float
    energy_imported: float
    instant_average_voltage: float
    instant_total_current: float


class AggregatesPayload(TypedDict, total=False):
    """``/api/meters/aggregates``: old firmware adds ``busway``, ``frequency``, ``generator``."""

    site: MeterPayload
    battery: MeterPayload
    load: MeterPayload
    solar: MeterPayload


class OperationPayload(TypedDict, total=False):
    """``/api/operation``: the reserve is on the gateway's scale (see :func:`app_reserve`)."""

    real_mode: str
    backup_reserve_percent: float


class StatusPayload(TypedDict, total=False):
    """``/api/status`` (no login needed): the firmware and the gateway's DIN."""

    din: str
    version: str
    git_hash: str
    up_time_seconds: str


# --------------------------------------------------------------------------- numbers


def number(value: object) -> int | float | None:
    """``value`` when it is a finite JSON number, else None; ints stay ints.

    Not numbers: None, booleans (JSON ``true`` is a flag, not 1), text (even ``"12"``: the
    gateway sends numbers as numbers, so text there is a fault), NaN and the infinities
    (they would turn into invalid JSON or poison sums). An int is a number at any size.
    """
    if type(value) is float:  # the common case first: the writer calls this per field
        return value if _isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not _isfinite(value):
        return None
    return value


def finite_float(value: object) -> float | None:
    """:func:`number` as a ``float`` (what a DOUBLE column stores); None also for an int
    too large for a float."""
    if type(value) is float:
        return value if _isfinite(value) else None
    found = number(value)
    if found is None:
        return None
    try:
        return float(found)
    except OverflowError:
        return None


def lenient_float(value: Any) -> float | None:
    """Python's ``float(value)``, for the few fields pyPowerwall reads that way.

    Unlike :func:`number` this accepts numeric text (``"43"``, ``" 4.5 "``) and booleans
    (``True`` is 1.0), as pyPowerwall's ``get_reserve()`` does. None when ``float()``
    refuses, and (our one difference) for NaN and the infinities, which would otherwise
    reach the proxy's answers as invalid JSON.
    """
    try:
        converted = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return converted if _isfinite(converted) else None


# --------------------------------------------------------------------------- state of energy

#: The gateway's percentage that the Tesla app shows as 0 %.
GATEWAY_RESERVED_PERCENT = 5.0
#: Gateway percent per app percent: (100 - 5) / 100.
APP_SCALE = 0.95


def app_soe(raw: float) -> float:
    """Gateway scale -> Tesla-app scale, not clamped: 5 -> 0, 52.5 -> 50, 100 -> 100, 0 -> -5.26.

    Written as pyPowerwall writes it (``raw / 0.95 - 5 / 0.95``), which is not always the
    same double as ``(raw - 5) / 0.95``: the proxy has to print pyPowerwall's digits.
    """
    return raw / APP_SCALE - GATEWAY_RESERVED_PERCENT / APP_SCALE


def app_soe_clamped(raw: float) -> float:
    """:func:`app_soe` kept to 0..100, what a display shows as the battery level."""
    return min(100.0, max(0.0, app_soe(raw)))


def gateway_soe(app: float) -> float:
    """Tesla-app scale -> gateway scale (the inverse of :func:`app_soe`): 0 -> 5, 20 -> 24."""
    return GATEWAY_RESERVED_PERCENT + APP_SCALE * app


def app_reserve(raw: float) -> float:
    """The backup reserve of ``/api/operation`` on the app's scale, never below 0
    (pyPowerwall's ``get_reserve()``): 24 -> 20, 4 -> 0.0."""
    return max(0.0, app_soe(raw))


def gateway_reserve(app: float) -> float:
    """An app-scale backup reserve as the gateway stores it (``/api/operation``): 20 -> 24."""
    return gateway_soe(app)


def soe_percent(soe: object) -> int | float | None:
    """The raw ``percentage`` of an ``/api/system_status/soe`` payload (:func:`number`)."""
    return number(soe.get("percentage")) if isinstance(soe, dict) else None


# --------------------------------------------------------------------------- meter signs


def importing(site_w: float, idle_w: float = 0.0) -> bool:
    """True when the site meter shows power bought from the grid (positive)."""
    return site_w > idle_w


def exporting(site_w: float, idle_w: float = 0.0) -> bool:
    """True when the site meter shows power sent to the grid (negative)."""
    return site_w < -idle_w


def discharging(battery_w: float, idle_w: float = 0.0) -> bool:
    """True when the battery meter shows the Powerwalls supplying power (positive)."""
    return battery_w > idle_w


def charging(battery_w: float, idle_w: float = 0.0) -> bool:
    """True when the battery meter shows the Powerwalls taking power in (negative)."""
    return battery_w < -idle_w


def meter_power(aggregates: object, meter: str) -> Watts | None:
    """``aggregates[meter]["instant_power"]`` when it is a :func:`number`, else None."""
    part = aggregates.get(meter) if isinstance(aggregates, dict) else None
    return number(part.get("instant_power")) if isinstance(part, dict) else None


def _positive(value: Watts | None) -> Watts | None:
    """The size of a flow in the meter's positive direction (0 when it goes the other way)."""
    if value is None:
        return None
    return value if value > 0 else 0


def _negated_positive(value: Watts | None) -> Watts | None:
    """The size of a flow in the meter's negative direction (0 when it goes the other way)."""
    if value is None:
        return None
    return -value if value < 0 else 0


@dataclass(frozen=True, slots=True)
class Flow:
    """The instant power of the four meters, W, with the gateway's signs; None = no number.

    ``site``: + importing, - exporting. ``battery``: + discharging, - charging. ``solar``:
    + producing. ``load``: the home's use. The properties name each direction as a size
    (always >= 0, 0 when the flow goes the other way), so displays never handle signs.
    """

    site: Watts | None = None
    battery: Watts | None = None
    solar: Watts | None = None
    load: Watts | None = None

    @classmethod
    def from_aggregates(cls, aggregates: object) -> Flow:
        """The four meters of an ``/api/meters/aggregates`` payload (or a view of one)."""
        return cls(
            site=meter_power(aggregates, "site"),
            battery=meter_power(aggregates, "battery"),
            solar=meter_power(aggregates, "solar"),
            load=meter_power(aggregates, "load"),
        )

    @property
    def grid_import(self) -> Watts | None:
        """W bought from the grid."""
        return _positive(self.site)

    @property
    def grid_export(self) -> Watts | None:
        """W sent to the grid."""
        return _negated_positive(self.site)

    @property
    def battery_discharge(self) -> Watts | None:
        """W the Powerwalls supply."""
        return _positive(self.battery)

    @property
    def battery_charge(self) -> Watts | None:
        """W going into the Powerwalls."""
        return _negated_positive(self.battery)

    @property
    def solar_production(self) -> Watts | None:
        """W the panels produce (their inverter's own draw at night counts as 0)."""
        return _positive(self.solar)


# --------------------------------------------------------------------------- firmware

#: The first firmware without ``/api/devices/vitals`` (it answers 404 from there on).
VITALS_REMOVED_IN = (23, 44)

_DIGIT_RUNS = re.compile(r"\d+")


@dataclass(frozen=True, slots=True)
class FirmwareVersion:
    """An ``/api/status`` ``version``: ``"23.44.0 eb113390"`` -> release ``"23.44.0"``,
    numbers ``(23, 44, 0)``, git_hash ``"eb113390"``."""

    text: str
    release: str  # the text before the hash (the whole text when it is blank)
    numbers: tuple[int, ...]  # every run of digits of the release; () when it has none
    git_hash: str | None

    def at_least(self, *minimum: int) -> bool:
        """True when this release is ``minimum`` or newer (see :func:`version_at_least`)."""
        return version_at_least(self.numbers, minimum)


def parse_firmware(text: str) -> FirmwareVersion:
    """Split a firmware string at whitespace; never fails (garbage gives no numbers)."""
    words = text.split()
    release = words[0] if words else text
    numbers = tuple(int(run) for run in _DIGIT_RUNS.findall(release))
    return FirmwareVersion(text, release, numbers, words[1] if len(words) > 1 else None)


def version_at_least(numbers: Iterable[int], minimum: Iterable[int]) -> bool:
    """Compare release numbers, missing parts counting as 0: (23, 44) == (23, 44, 0)."""
    mine, theirs = tuple(numbers), tuple(minimum)
    width = max(len(mine), len(theirs))
    return mine + (0,) * (width - len(mine)) >= theirs + (0,) * (width - len(theirs))


def vitals_supported(version: str) -> bool:
    """True when this firmware still serves ``/api/devices/vitals`` (before 23.44).

    A version without numbers is given the benefit of the doubt: asking costs one 404.
    """
    numbers = parse_firmware(version).numbers
    return not numbers or not version_at_least(numbers, VITALS_REMOVED_IN)


def pypowerwall_vint(version: object) -> int | None:
    """pyPowerwall's integer firmware version: ``"23.44.0 9064fc6a"`` -> 234400.

    pyPowerwall's rule, for the proxy's ``/version``: the text before the first space, less
    every character but digits and ``./\\``, padded to three dot-separated parts; then
    ``major*10000 + minor*100 + patch`` (a fourth part would weigh 10**6). Where pyPowerwall
    raises, this answers: an empty part counts as 0, and only decimal digits count (a
    superscript "²" passes ``isdigit()`` but not ``int()``). None for a non-string.
    """
    if not isinstance(version, str):
        return None
    text = "".join(ch for ch in version.split(" ")[0] if ch.isdecimal() or ch in "./\\")
    parts = text.split(".")
    parts += ["0"] * (3 - len(parts))
    total = 0
    for part in parts:
        digits = "".join(ch for ch in part if ch.isdecimal())
        total = total * 100 + (int(digits) if digits else 0)
    return total
