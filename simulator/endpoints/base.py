"""What every endpoint family shares: the reply, the switches, the site's fixed facts, Go's formats.

Bodies are rendered by plain functions, one module per family of endpoints, each taking the
:class:`SiteFacts` (what never changes while the simulator runs), the current
:class:`~simulator.snapshot.Snapshot` when the body is live, and the :class:`Switches`. The
helpers here print values the way the gateway's Go code does, so every family agrees on
number, time and duration formats.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from powerwall_bus.shared.gateway.payloads import VITALS_REMOVED_IN
from powerwall_bus.simulator.site import Firmware, SiteIdentity, SiteOptions, seeded_rng
from powerwall_bus.simulator.snapshot import Snapshot

JSON_CONTENT_TYPE = "application/json"
PROTOBUF_CONTENT_TYPE = "application/octet-stream"

NEW_FIELDS_FROM = (23, 0)  # /api/status, /api/system_status, /api/site_info gained fields in 23.x

SQRT3_HALF = math.sqrt(3.0) / 2.0  # the synchrometer averages split-phase legs this way
UNUSED_TIME = "0001-01-01T00:00:00Z"
METER_TIMEOUT_NS = 1500000000
PVAC_TIMEOUT_NS = 1000000000
NEURIO_FIRMWARE = "1.7.1-Tesla"


@dataclass(frozen=True)
class Reply:
    """One HTTP answer. An empty ``content_type`` means: send no Content-Type header."""

    status: int
    body: bytes
    content_type: str = JSON_CONTENT_TYPE


@dataclass(frozen=True)
class Switches:
    """The runtime switches, replaced as a whole so a request sees one consistent set."""

    firmware: Firmware
    sitemaster_running: bool

    @property
    def new_fields(self) -> bool:
        """Firmware 23.x or newer: a few bodies carry more keys."""
        return self.firmware.at_least(*NEW_FIELDS_FROM)

    @property
    def has_vitals(self) -> bool:
        """``/api/devices/vitals`` still exists on this firmware."""
        return not self.firmware.at_least(*VITALS_REMOVED_IN)


@dataclass(frozen=True)
class SiteFacts:
    """What the bodies need besides the snapshot, fixed when the simulated gateway starts."""

    options: SiteOptions
    identity: SiteIdentity
    boot_ns: int  # when the gateway booted (epoch ns): start_time, up_time_seconds
    last_update_ms: int  # when its firmware update finished: /api/system/update/status
    strings_hash: str  # the PV string safety unit's firmware hash (vitals)

    @classmethod
    def at_start(cls, options: SiteOptions, identity: SiteIdentity, first: Snapshot) -> SiteFacts:
        """The facts of a gateway that has been up ``identity.uptime_at_start_s`` at ``first``."""
        boot_rng = seeded_rng(options.seed, "boot")
        boot_ns = (
            snapshot_ns(first) - int(identity.uptime_at_start_s * 1e9) - boot_rng.randrange(10**9)
        )
        return cls(
            options=options,
            identity=identity,
            boot_ns=boot_ns,
            last_update_ms=boot_ns // 1_000_000 + boot_rng.randrange(120_000, 900_000),
            strings_hash=seeded_rng(options.seed, "pvs-firmware").getrandbits(56).to_bytes(7).hex(),
        )


# --------------------------------------------------------------------------- replies


def encode(document: object) -> bytes:
    """Compact JSON like Go's encoder, including its HTML-safe escaping of < > &."""
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    if "<" in text or ">" in text or "&" in text:
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode()


def json_reply(document: object, status: int = 200) -> Reply:
    """``document`` as the gateway's compact JSON."""
    return Reply(status, encode(document))


def error_reply(status: int, error: str, message: str) -> Reply:
    """The gateway's error body: ``{"code", "error", "message"}``."""
    return json_reply({"code": status, "error": error, "message": message}, status)


NOT_FOUND = error_reply(404, "endpoint not found", "Not Found")
SITE_CONTROLLER_STOPPED = Reply(502, b"", "")


# --------------------------------------------------------------------------- Go's formats


def n(value: float) -> int | float:
    """A float as Go prints it: whole values have no fraction (72.0 -> 72)."""
    whole = int(value)
    return whole if whole == value else value


def rfc3339(epoch_ns: int, offset_s: int) -> str:
    """RFC 3339 with trailing-zero-trimmed nanoseconds, as Go's time.RFC3339Nano."""
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    t = time.gmtime(seconds + offset_s)
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    if offset_s:
        sign = "-" if offset_s < 0 else "+"
        hours, minutes = divmod(abs(offset_s) // 60, 60)
        zone = f"{sign}{hours:02d}:{minutes:02d}"
    else:
        zone = "Z"
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}{fraction}{zone}"
    )


def go_duration(total_ns: int) -> str:
    """A Go time.Duration string, e.g. "230h55m59.932079901s"."""
    hours, rest = divmod(total_ns, 3600 * 1_000_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000_000)
    seconds, nanos = divmod(rest, 1_000_000_000)
    fraction = f".{nanos:09d}".rstrip("0") if nanos else ""
    if hours:
        return f"{hours}h{minutes}m{seconds}{fraction}s"
    if minutes:
        return f"{minutes}m{seconds}{fraction}s"
    return f"{seconds}{fraction}s"


def sub_second_ns(step: int, salt: int) -> int:
    """A stable pseudo-random lag (50-950 ms) so meter timestamps differ like real ones."""
    x = (step * 2654435761 + salt * 40503 + 12345) & 0xFFFFFFFF
    x = ((x ^ (x >> 13)) * 0x5BD1E995) & 0xFFFFFFFF
    return 50_000_000 + (x ^ (x >> 15)) % 900_000_000


def snapshot_ns(snap: Snapshot) -> int:
    """The snapshot's simulated time in epoch nanoseconds (microsecond precision)."""
    return round(snap.epoch * 1_000_000) * 1000
