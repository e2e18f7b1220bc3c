"""What a simulated site *is*: its options, its firmware, and the identity of its hardware.

Everything here is fixed for the life of a simulated gateway (only the firmware can be
switched at runtime, by replacing the :class:`Firmware` value). Serial numbers, part numbers
and pack capacities are derived from ``SiteOptions.seed`` with a hash, never with the global
random state, so one seed always describes the same house, on every machine and Python
version, and two gateways with different seeds never share a DIN.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.gateway.payloads import gateway_reserve, version_at_least

__all__ = [
    "MAX_POWERWALLS",
    "Firmware",
    "PowerwallIdentity",
    "SiteIdentity",
    "SiteOptions",
    "seeded_rng",
]

MAX_POWERWALLS = 4
#: A gateway DIN as the simulator accepts it: "<part number>--<serial>", no dots or spaces.
_DIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*--[A-Za-z0-9]+")

_VERSION_RE = re.compile(r"^(\d+(?:\.\d+){0,3})(?:\s+([0-9a-f]{6,40}))?$")


def seeded_rng(seed: int, purpose: str) -> random.Random:
    """A private random stream for one purpose of one site.

    Separate streams per purpose keep, say, the cloud pattern unchanged when the number of
    Powerwalls changes. SHA-256 of the text makes the stream stable across Python versions.
    """
    digest = hashlib.sha256(f"powerwall-bus/{seed}/{purpose}".encode()).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


@dataclass(frozen=True)
class Firmware:
    """A gateway firmware as ``/api/status`` shows it: "<numbers> <short git hash>"."""

    numbers: tuple[int, ...]
    short_hash: str
    git_hash: str

    @classmethod
    def parse(cls, text: str) -> Firmware:
        """Parse "23.12.10 8f14e45f" (the hash is optional and invented when absent)."""
        match = _VERSION_RE.match(text.strip())
        if match is None:
            raise ConfigError("firmware", f"{text!r} is not like '23.12.10 8f14e45f'")
        numbers = tuple(int(part) for part in match.group(1).split("."))
        # Real gateways report a 40-hex git hash whose first 8 characters are the short hash;
        # we extend the given prefix deterministically so the pair always agrees.
        filler = hashlib.sha1(match.group(1).encode()).hexdigest()
        given = match.group(2) or filler[:8]
        git_hash = (given + filler)[:40]
        return cls(numbers=numbers, short_hash=given[:8], git_hash=git_hash)

    @property
    def number_text(self) -> str:
        """The numeric part, e.g. "23.12.10"."""
        return ".".join(str(n) for n in self.numbers)

    @property
    def version(self) -> str:
        """The ``/api/status`` ``version`` field, e.g. "23.12.10 8f14e45f"."""
        return f"{self.number_text} {self.short_hash}"

    @property
    def component_hash(self) -> str:
        """The 14-hex hash that battery blocks and devices report as their firmware."""
        return self.git_hash[:14]

    def at_least(self, *numbers: int) -> bool:
        """True when this firmware is ``numbers`` or newer (23.44 == 23.44.0)."""
        return version_at_least(self.numbers, numbers)


@dataclass(frozen=True)
class SiteOptions:
    """How to build a simulated site. Invalid values raise :class:`ConfigError` at once.

    ``reserve_percent`` is on the Tesla app scale (0-100); the gateway reports
    ``5 + 0.95 * reserve`` in ``/api/operation`` (``payloads.gateway_reserve``).
    ``initial_soe`` is on the gateway scale, the one ``/api/system_status/soe`` reports;
    ``None`` lets the seed choose. ``start`` is the simulated time at creation (UTC-aware);
    ``None`` means the clock's "now".
    """

    seed: int = 1
    powerwalls: int = 2
    firmware: str = "23.12.10 8f14e45f"
    timezone: str = "America/Los_Angeles"
    site_name: str = "My Home"
    solar_kw: float = 7.6
    powerwall_plus: bool = True
    speed: float = 1.0
    start: datetime | None = None
    reserve_percent: float = 20.0
    initial_soe: float | None = None
    din: str | None = None  # "<part number>--<serial>"; None: made from the seed
    #: A Powerwall 3 as its wired LAN shows it: only the live power paths answer (no
    #: /api/status, no vitals); every other /api/ path is 404 (see endpoints.routes).
    powerwall3: bool = False

    def __post_init__(self) -> None:
        if self.din is not None and not _DIN.fullmatch(self.din):
            raise ConfigError(
                "din", f"must look like 1232100-00-E--TG123456789ABC, got {self.din!r}"
            )
        if not 1 <= self.powerwalls <= MAX_POWERWALLS:
            raise ConfigError("powerwalls", f"must be 1..{MAX_POWERWALLS}, got {self.powerwalls}")
        if not self.speed > 0:
            raise ConfigError("speed", f"must be positive, got {self.speed}")
        if not 0 <= self.solar_kw <= 100:
            raise ConfigError("solar_kw", f"must be 0..100 kW, got {self.solar_kw}")
        if not 0 <= self.reserve_percent <= 100:
            raise ConfigError("reserve_percent", f"must be 0..100, got {self.reserve_percent}")
        if self.initial_soe is not None and not 0 <= self.initial_soe <= 100:
            raise ConfigError("initial_soe", f"must be 0..100, got {self.initial_soe}")
        if self.start is not None and self.start.utcoffset() is None:
            raise ConfigError("start", "must be timezone-aware (UTC)")
        if not self.site_name:
            raise ConfigError("site_name", "must not be empty")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ConfigError("timezone", f"unknown time zone {self.timezone!r}") from err
        Firmware.parse(self.firmware)

    @property
    def has_solar(self) -> bool:
        """True when the site has PV panels."""
        return self.solar_kw > 0

    @property
    def has_pvac(self) -> bool:
        """True when a Powerwall+ inverter (PVAC/PVS) converts the solar power."""
        return self.powerwall_plus and self.has_solar

    @property
    def gateway_reserve_percent(self) -> float:
        """The backup reserve on the gateway's scale (the app's 0 % is the gateway's 5 %)."""
        return gateway_reserve(self.reserve_percent)


@dataclass(frozen=True)
class PowerwallIdentity:
    """One Powerwall: the package (TETHC) and its battery pod + inverter (TEPOD/TEPINV)."""

    package_part_number: str
    package_serial_number: str
    kind: str  # "/api/powerwalls" type: "SolarPowerwall" (Powerwall+) or "ACPW"
    pod_part_number: str
    pod_serial_number: str
    full_pack_energy_wh: int  # usable capacity of this (slightly aged) pack

    @property
    def thc_din(self) -> str:
        """Vitals key of the thermal controller, named after the package."""
        return f"TETHC--{self.package_part_number}--{self.package_serial_number}"

    @property
    def pod_din(self) -> str:
        """Vitals key of the battery pod."""
        return f"TEPOD--{self.pod_part_number}--{self.pod_serial_number}"

    @property
    def pinv_din(self) -> str:
        """Vitals key of the battery inverter (same part and serial as the pod)."""
        return f"TEPINV--{self.pod_part_number}--{self.pod_serial_number}"


@dataclass(frozen=True)
class SiteIdentity:
    """Every serial, part number and fixed hardware fact of one simulated site."""

    gateway_part_number: str
    gateway_serial_number: str
    powerwalls: tuple[PowerwallIdentity, ...]
    sync_part_number: str
    meter_serial_number: str  # the synchrometer (meters X/Y) inside the gateway
    pvac_part_number: str
    pvac_serial_number: str
    neurio_serial_number: str
    neurio_short_id: str
    neurio_mac: str
    pv_nameplate_w: int
    uptime_at_start_s: float  # how long the gateway had been up when the simulation began
    commission_count: int

    @property
    def gateway_din(self) -> str:
        """The gateway DIN, "<part number>--<serial>"."""
        return f"{self.gateway_part_number}--{self.gateway_serial_number}"

    @property
    def ststsm_din(self) -> str:
        """Vitals key of the gateway itself."""
        return f"STSTSM--{self.gateway_din}"

    @property
    def pvac_din(self) -> str:
        """Vitals key of the Powerwall+ solar inverter."""
        return f"PVAC--{self.pvac_part_number}--{self.pvac_serial_number}"

    @property
    def pvs_din(self) -> str:
        """Vitals key of the Powerwall+ string safety unit."""
        return f"PVS--{self.pvac_part_number}--{self.pvac_serial_number}"

    @property
    def tesync_din(self) -> str:
        """Vitals key of the backup switch / synchronizer."""
        return f"TESYNC--{self.sync_part_number}--{self.meter_serial_number}"

    @classmethod
    def for_options(cls, options: SiteOptions) -> SiteIdentity:
        """Derive the identity of the site described by ``options`` (pure, deterministic)."""
        rng = seeded_rng(options.seed, "identity")
        powerwalls = tuple(
            _powerwall_identity(rng, solar=(index == 0 and options.powerwall_plus))
            for index in range(options.powerwalls)
        )
        short_id = f"{rng.randrange(10000, 99999)}"
        seeded_serial = _tesla_serial(rng)  # drawn always, so --din changes nothing else
        part, serial = (
            options.din.split("--", 1) if options.din else ("1232100-00-E", seeded_serial)
        )
        return cls(
            gateway_part_number=part,
            gateway_serial_number=serial,
            powerwalls=powerwalls,
            sync_part_number=rng.choice(("1493315-01-F", "1493315-02-F")),
            meter_serial_number=f"JBL{rng.randrange(10000, 99999)}Y1F{rng.randrange(1000):03d}",
            pvac_part_number="1538100-00-F",
            pvac_serial_number=f"CN32{rng.randrange(10, 99)}{_chars(rng, 8)}",
            neurio_serial_number=_neurio_serial(rng),
            neurio_short_id=short_id,
            neurio_mac="-".join(f"{rng.randrange(256):02x}" for _ in range(6)),
            pv_nameplate_w=round(options.solar_kw * 1000),
            uptime_at_start_s=rng.uniform(2 * 3600.0, 60 * 86400.0),
            commission_count=rng.randrange(0, 12),
        )


def _chars(
    rng: random.Random, count: int, alphabet: str = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
) -> str:
    return "".join(rng.choice(alphabet) for _ in range(count))


def _tesla_serial(rng: random.Random) -> str:
    """A "TG12..." style serial: factory, year, week, sequence and a check-like suffix."""
    year, week, sequence = rng.randrange(18, 24), rng.randrange(1, 53), rng.randrange(1000)
    return f"TG12{year}{week:02d}{sequence:03d}{_chars(rng, 3)}"


def _neurio_serial(rng: random.Random) -> str:
    """A Neurio meter serial like "VAH1234AB1234"."""
    letters = _chars(rng, 2, string.ascii_uppercase)
    return f"VAH{rng.randrange(1000, 9999)}{letters}{rng.randrange(1000, 9999)}"


def _pod_serial(rng: random.Random) -> str:
    """A battery pod / inverter serial like "T21C0007854"."""
    return f"T{rng.randrange(18, 24)}{rng.choice('ABCDEFGH')}{rng.randrange(10**7):07d}"


def _powerwall_identity(rng: random.Random, *, solar: bool) -> PowerwallIdentity:
    if solar:
        package, kind = rng.choice(("2012170-25-E", "2012170-18-E")), "SolarPowerwall"
    else:
        package, kind = rng.choice(("3012170-05-B", "3012170-10-B", "1092170-03-E")), "ACPW"
    return PowerwallIdentity(
        package_part_number=package,
        package_serial_number=_tesla_serial(rng),
        kind=kind,
        pod_part_number=rng.choice(("1081100-10-U", "1081100-13-V", "1081100-22-U")),
        pod_serial_number=_pod_serial(rng),
        # A new Powerwall 2 holds about 14 kWh; packs age toward 13 kWh.
        full_pack_energy_wh=rng.randrange(12700, 14300),
    )
