"""The /api/devices/vitals protobuf body: encode (for the simulator) and decode (for the client).

INTERFACE STUB - being implemented. The dataclass and function signatures below are fixed;
other modules already program against them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VitalValue = int | float | str | bool


@dataclass(frozen=True)
class VitalsDevice:
    """One entry of ``DevicesWithVitals.devices``.

    ``din`` is the key pyPowerwall uses, "<ECU type>--<part number>--<serial>"
    (e.g. "TEPOD--1081100-13-V--TG1234567890AB"), or "NEURIO--<serial>" / "TESLA--<serial>"
    for meters. ``vitals`` keeps the gateway's order; a Python ``bool`` is encoded as
    boolValue, ``int`` as intValue, ``float`` as floatValue (double), ``str`` as stringValue.
    """

    din: str
    part_number: str = ""
    serial_number: str = ""
    manufacturer: str = "TESLA"
    component_parent_din: str = ""
    firmware_version: str = ""
    last_communication_time: int = 0  # epoch seconds
    ecu_type: int | None = None  # TeslaEnergyEcuAttributes.ecuType, e.g. 226 for TEPOD
    meter_location: tuple[int, ...] | None = None  # MeterAttributes.meterLocation
    pv_nameplate_w: int | None = None  # PVInverterAttributes.nameplateRealPowerW
    ip_address: str | None = None  # ConnectionParameters.ipAddress
    vitals: tuple[tuple[str, VitalValue], ...] = ()
    alerts: tuple[str, ...] = field(default=())


def encode_vitals(devices: list[VitalsDevice]) -> bytes:
    """Serialize devices as a ``DevicesWithVitals`` protobuf message."""
    raise NotImplementedError


def decode_vitals(payload: bytes) -> dict[str, dict[str, object]]:
    """Decode a ``DevicesWithVitals`` body into pyPowerwall's ``vitals()`` dict."""
    raise NotImplementedError
