"""The /api/devices/vitals protobuf body: encode (for the simulator) and decode (for the client).

Gateways before firmware 23.44 answer this endpoint with a serialized ``DevicesWithVitals``
message (field numbers and wire rules: ``docs/vitals-protobuf.md``). The wire code is
written by hand so the project needs no ``protobuf`` runtime nor generated classes for one
read-only message tree.

The decoder returns exactly the dict pyPowerwall's ``vitals()`` builds, because the proxy's
``/vitals`` route and the dashboards behind it consume that shape. Per device, in this order:
``componentParentDin``, ``partNumber``, ``serialNumber``, ``manufacturer``, ``firmwareVersion``
(str, each only when its wrapper is on the wire), ``firstCommunicationTime`` and
``lastCommunicationTime`` (int epoch seconds, only when present), at most one attribute dict
(``teslaEnergyEcuAttributes``, ``generatorAttributes``, ``pvInverterAttributes`` or
``meterAttributes``), then one key per vital in wire order, then ``alerts`` (a list, only when
the device has any). A DIN seen twice keeps its first primary fields and merges the rest.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NoReturn

from powerwall_bus.shared.errors import UnexpectedResponse

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


_PATH = "/api/devices/vitals"

# Wire types.
_VARINT, _I64, _LEN, _START_GROUP, _END_GROUP, _I32 = 0, 1, 2, 3, 4, 5

_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1
_INT64 = (-(1 << 63), (1 << 63) - 1)
_INT32 = (-(1 << 31), (1 << 31) - 1)
_UINT64 = (0, _MASK64)
_UINT32 = (0, _MASK32)

# Device fields that hold a StringValue, in the order pyPowerwall adds them to its dict.
_PRIMARY_STRINGS = (
    (6, "componentParentDin"),
    (2, "partNumber"),
    (3, "serialNumber"),
    (4, "manufacturer"),
    (7, "firmwareVersion"),
)
_TIMESTAMPS = ((8, "firstCommunicationTime"), (9, "lastCommunicationTime"))

# DeviceAttributes oneof members.
_ECU, _GENERATOR, _PV_INVERTER, _METER = 1, 2, 3, 4


# --------------------------------------------------------------------------- encoding


def _varint(value: int) -> bytes:
    """Base-128 varint; a negative int64/int32 goes out as its 64-bit two's complement."""
    value &= _MASK64
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _checked(value: int, bounds: tuple[int, int], what: str) -> int:
    """Refuse values the declared protobuf type cannot carry instead of silently wrapping."""
    if isinstance(value, bool) or not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"vitals: {what} out of range: {value!r}")
    return value


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3 | _VARINT) + _varint(value)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LEN) + _varint(len(payload)) + payload


def _string_value(number: int, text: str) -> bytes:
    """A ``StringValue`` wrapper; the gateway wraps every Device string this way."""
    return _len_field(number, _len_field(1, text.encode()))


def _encode_vital(name: str, value: VitalValue) -> bytes:
    body = _len_field(1, name.encode())
    if isinstance(value, bool):  # before int: bool is an int subclass
        return body + _varint_field(6, int(value))
    if isinstance(value, int):
        return body + _varint_field(3, _checked(value, _INT64, f"vital {name}"))
    if isinstance(value, float):
        return body + _varint(4 << 3 | _I64) + struct.pack("<d", value)
    if isinstance(value, str):
        return body + _len_field(5, value.encode())
    raise TypeError(f"vitals: vital {name} has unsupported type {type(value).__name__}")


def _encode_attributes(dev: VitalsDevice) -> bytes | None:
    """The ``deviceAttributes`` oneof: a device can carry only one kind of attributes."""
    kinds = (dev.ecu_type, dev.meter_location, dev.pv_nameplate_w)
    if sum(kind is not None for kind in kinds) > 1:
        raise ValueError(
            f"vitals: {dev.din}: ecu_type, meter_location and pv_nameplate_w exclude each other"
        )
    # Scalars inside have implicit presence: a zero is not written.
    if dev.ecu_type is not None:
        ecu = _checked(dev.ecu_type, _INT32, "ecu_type")
        return _len_field(_ECU, _varint_field(1, ecu) if ecu else b"")
    if dev.pv_nameplate_w is not None:
        watts = _checked(dev.pv_nameplate_w, _UINT64, "pv_nameplate_w")
        return _len_field(_PV_INVERTER, _varint_field(1, watts) if watts else b"")
    if dev.meter_location is not None:
        packed = b"".join(
            _varint(_checked(x, _UINT32, "meter_location")) for x in dev.meter_location
        )
        return _len_field(_METER, _len_field(1, packed) if packed else b"")
    return None


def _encode_device(dev: VitalsDevice) -> bytes:
    """A ``Device`` in field-number order; an empty string means the wrapper is absent."""
    strings = (
        (1, dev.din),
        (2, dev.part_number),
        (3, dev.serial_number),
        (4, dev.manufacturer),
        (6, dev.component_parent_din),
        (7, dev.firmware_version),
    )
    parts = [_string_value(number, text) for number, text in strings if text]
    if dev.last_communication_time:  # 0 means unknown: no Timestamp at all
        seconds = _checked(dev.last_communication_time, _INT64, "last_communication_time")
        parts.append(_len_field(9, _varint_field(1, seconds)))
    if dev.ip_address is not None:  # "" gives the empty ConnectionParameters real gateways send
        parts.append(_len_field(10, _string_value(1, dev.ip_address) if dev.ip_address else b""))
    attributes = _encode_attributes(dev)
    if attributes is not None:
        parts.append(_len_field(11, attributes))
    return b"".join(parts)


def encode_vitals(devices: list[VitalsDevice]) -> bytes:
    """Serialize devices as a ``DevicesWithVitals`` protobuf message.

    Raises ValueError or TypeError for a device the wire format cannot carry.
    """
    out = []
    for dev in devices:
        entry = [_len_field(1, _len_field(1, _encode_device(dev)))]  # device.device
        entry += [_len_field(2, _encode_vital(name, value)) for name, value in dev.vitals]
        entry += [_len_field(3, alert.encode()) for alert in dev.alerts]
        out.append(_len_field(1, b"".join(entry)))
    return b"".join(out)


# --------------------------------------------------------------------------- decoding


def _fail(reason: str) -> NoReturn:
    raise UnexpectedResponse(f"vitals: {reason}", path=_PATH)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Return (value, next position); more than 10 bytes is malformed, as in protobuf."""
    result = 0
    for shift in range(0, 70, 7):
        if pos >= len(buf):
            _fail("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & _MASK64, pos
    _fail("varint longer than 10 bytes")


def _read_key(buf: bytes, pos: int) -> tuple[int, int, int]:
    """Return (field number, wire type, next position)."""
    key, pos = _read_varint(buf, pos)
    if key > _MASK32 or key >> 3 == 0:
        _fail(f"invalid field key {key:#x}")
    return key >> 3, key & 7, pos


def _end_of(buf: bytes, pos: int, width: int) -> int:
    """Where a value of ``width`` bytes starting at ``pos`` ends; it must fit in the buffer."""
    if width > len(buf) - pos:
        _fail("field runs past the end of its message")
    return pos + width


def _read_raw(buf: bytes, pos: int, wire: int) -> tuple[bytes, int]:
    """Return (raw bytes, next position) of a fixed-width or length-delimited value."""
    if wire == _LEN:
        size, pos = _read_varint(buf, pos)
        end = _end_of(buf, pos, size)
    elif wire == _I64:
        end = _end_of(buf, pos, 8)
    elif wire == _I32:
        end = _end_of(buf, pos, 4)
    else:
        _fail(f"invalid wire type {wire}")
    return buf[pos:end], end


def _skip_group(buf: bytes, pos: int, number: int) -> int:
    """Skip a (deprecated) group up to its matching end tag, iteratively: no recursion limit."""
    open_groups = [number]
    while open_groups:
        inner, wire, pos = _read_key(buf, pos)
        if wire == _START_GROUP:
            open_groups.append(inner)
        elif wire == _END_GROUP:
            if open_groups.pop() != inner:
                _fail("mismatched end-group tag")
        elif wire == _VARINT:
            pos = _read_varint(buf, pos)[1]
        else:
            pos = _read_raw(buf, pos, wire)[1]
    return pos


def _fields(buf: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """Yield (number, wire type, varint value, raw bytes) for every field of one message.

    Varints come as the int (raw is empty); fixed and length-delimited values as their raw
    bytes (int is 0). Groups are skipped here since nothing in the schema uses them.
    """
    pos = 0
    while pos < len(buf):
        number, wire, pos = _read_key(buf, pos)
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
            yield number, wire, value, b""
        elif wire == _START_GROUP:
            pos = _skip_group(buf, pos, number)
        elif wire == _END_GROUP:
            _fail("unexpected end-group tag")
        else:
            raw, pos = _read_raw(buf, pos, wire)
            yield number, wire, 0, raw


def _text(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        _fail("string field is not valid UTF-8")


def _signed(value: int, bits: int) -> int:
    """Reinterpret the low ``bits`` of a varint as two's complement (int64 / int32)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


@dataclass
class _Device:
    """One ``Device`` as merged from every occurrence on the wire (protobuf merge rules)."""

    strings: dict[int, str] = field(default_factory=dict)
    times: dict[int, int] = field(default_factory=dict)
    attribute_kind: int = 0  # the DeviceAttributes oneof member last seen, 0 for none
    numbers: dict[int, int] = field(default_factory=dict)  # scalars of that member
    locations: list[int] = field(default_factory=list)  # MeterAttributes.meterLocation


def _merge_string_value(dev: _Device, number: int, raw: bytes) -> None:
    dev.strings.setdefault(number, "")
    for inner, wire, _, data in _fields(raw):
        if inner == 1 and wire == _LEN:
            dev.strings[number] = _text(data)


def _merge_timestamp(dev: _Device, number: int, raw: bytes) -> None:
    dev.times.setdefault(number, 0)
    for inner, wire, value, _ in _fields(raw):
        if inner == 1 and wire == _VARINT:
            dev.times[number] = _signed(value, 64)


def _merge_attributes(dev: _Device, raw: bytes) -> None:
    for kind, wire, _, data in _fields(raw):
        if wire != _LEN or kind not in (_ECU, _GENERATOR, _PV_INVERTER, _METER):
            continue
        if kind != dev.attribute_kind:  # another oneof member replaces the previous one
            dev.attribute_kind, dev.numbers, dev.locations = kind, {}, []
        for inner, inner_wire, value, packed in _fields(data):
            if kind == _METER:
                if inner == 1 and inner_wire == _VARINT:  # unpacked form
                    dev.locations.append(value & _MASK32)
                elif inner == 1 and inner_wire == _LEN:  # packed form, as real gateways send
                    pos = 0
                    while pos < len(packed):
                        location, pos = _read_varint(packed, pos)
                        dev.locations.append(location & _MASK32)
            elif inner_wire != _VARINT:
                continue
            elif kind == _ECU and inner == 1:  # int32 ecuType
                dev.numbers[1] = _signed(value, 32)
            elif inner == 1 or (kind == _GENERATOR and inner == 2):  # uint64 nameplates
                dev.numbers[inner] = value


def _merge_device(dev: _Device, raw: bytes) -> None:
    for number, wire, _, data in _fields(raw):
        if wire != _LEN:
            continue
        if number in (1, 2, 3, 4, 6, 7):
            _merge_string_value(dev, number, data)
        elif number in (8, 9):
            _merge_timestamp(dev, number, data)
        elif number == 11:
            _merge_attributes(dev, data)
        # 5 siteLabel and 10 connectionParameters are not part of pyPowerwall's dict.


def _decode_vital(raw: bytes) -> tuple[str, VitalValue | None]:
    """Name and value; the last value field on the wire wins, as in a protobuf oneof."""
    name = ""
    value: VitalValue | None = None
    for number, wire, varint, data in _fields(raw):
        if number == 1 and wire == _LEN:
            name = _text(data)
        elif number == 3 and wire == _VARINT:
            value = _signed(varint, 64)
        elif number == 4 and wire == _I64:
            value = struct.unpack("<d", data)[0]
        elif number == 5 and wire == _LEN:
            value = _text(data)
        elif number == 6 and wire == _VARINT:
            value = varint != 0
    return name, value


def _attributes(dev: _Device) -> tuple[str, dict[str, object]] | None:
    if dev.attribute_kind == _ECU:
        return "teslaEnergyEcuAttributes", {"ecuType": dev.numbers.get(1, 0)}
    if dev.attribute_kind == _GENERATOR:
        return "generatorAttributes", {
            "nameplateRealPowerW": dev.numbers.get(1, 0),
            "nameplateApparentPowerVa": dev.numbers.get(2, 0),
        }
    if dev.attribute_kind == _PV_INVERTER:
        return "pvInverterAttributes", {"nameplateRealPowerW": dev.numbers.get(1, 0)}
    if dev.attribute_kind == _METER:
        return "meterAttributes", {"meterLocation": list(dev.locations)}
    return None


def _add_entry(out: dict[str, dict[str, object]], raw: bytes) -> None:
    """Decode one SiteControllerConnectedDeviceWithVitals into ``out`` the way pyPowerwall does."""
    dev = _Device()
    vitals: list[tuple[str, VitalValue | None]] = []
    alerts: list[str] = []
    for number, wire, _, data in _fields(raw):
        if wire != _LEN:
            continue
        if number == 1:  # SiteControllerConnectedDevice: singular or repeated, merged alike
            for inner, inner_wire, _, device in _fields(data):
                if inner == 1 and inner_wire == _LEN:
                    _merge_device(dev, device)
        elif number == 2:
            vitals.append(_decode_vital(data))
        elif number == 3:
            alerts.append(_text(data))

    din = dev.strings.get(1, "")
    entry = out.get(din)
    if entry is None:  # pyPowerwall records the primary fields of a DIN only once
        entry = out[din] = {}
        for number, key in _PRIMARY_STRINGS:
            if number in dev.strings:
                entry[key] = dev.strings[number]
        for number, key in _TIMESTAMPS:
            if number in dev.times:
                entry[key] = dev.times[number]
    attributes = _attributes(dev)
    if attributes is not None:
        entry[attributes[0]] = attributes[1]
    for name, value in vitals:
        entry[name] = value
    if alerts:
        entry["alerts"] = alerts


def decode_vitals(payload: bytes) -> dict[str, dict[str, object]]:
    """Decode a ``DevicesWithVitals`` body into pyPowerwall's ``vitals()`` dict.

    Unknown fields of any wire type are skipped; truncated or malformed input raises
    UnexpectedResponse, so a changed or corrupt body never surfaces as IndexError and such.
    """
    if not isinstance(payload, bytes | bytearray | memoryview):
        _fail(f"body is {type(payload).__name__}, not bytes")
    buf = bytes(payload)
    out: dict[str, dict[str, object]] = {}
    for number, wire, _, data in _fields(buf):
        if number == 1 and wire == _LEN:
            _add_entry(out, data)
    return out
