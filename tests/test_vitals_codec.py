"""The /api/devices/vitals codec: wire layout, pyPowerwall's dict shape, and hostile input."""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerwall_bus.shared.errors import UnexpectedResponse
from powerwall_bus.shared.gateway.vitals import VitalsDevice, decode_vitals, encode_vitals

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"

GATEWAY = "STSTSM--1232100-00-E--TG0123456789AB"
THC = "TETHC--2012170-25-E--TG0123456789CD"
PVAC = "PVAC--1538100-00-F--CN0123456789EF"

# Keys of a decoded device that are not vitals.
NOT_VITALS = {
    "componentParentDin",
    "partNumber",
    "serialNumber",
    "manufacturer",
    "firmwareVersion",
    "firstCommunicationTime",
    "lastCommunicationTime",
    "teslaEnergyEcuAttributes",
    "generatorAttributes",
    "pvInverterAttributes",
    "meterAttributes",
    "alerts",
}


def tesla(din: str, parent: str, ecu_type: int, **kwargs: Any) -> VitalsDevice:
    """A Tesla ECU whose part and serial numbers come from its DIN, as on a real gateway."""
    _, part, serial = din.split("--")
    device = VitalsDevice(
        din=din,
        part_number=part,
        serial_number=serial,
        component_parent_din=parent,
        firmware_version="c58c2df39ec207",
        last_communication_time=1642742952,
        ecu_type=ecu_type,
    )
    return replace(device, **kwargs)


SITE = [
    tesla(
        GATEWAY,
        "",
        207,
        firmware_version="2021-12-14-ge0e7fa81c",
        vitals=(("STSTSM-Location", "Gateway"),),
        alerts=("GridCodesWrite", "GridCodesWrite", "FWUpdateSucceeded"),
    ),
    tesla(THC, GATEWAY, 224, vitals=(("THC_State", "THC_STATE_AUTONOMOUSCONTROL"),)),
    tesla(
        "TEPOD--1081100-13-V--T0123456789",
        THC,
        226,
        vitals=(
            ("POD_ActiveHeating", False),
            ("POD_enable_line", True),
            ("POD_nom_energy_remaining", 9011.0),
            ("POD_state", "POD_ACTIVE"),
        ),
    ),
    tesla(
        "TEPINV--1081100-13-V--T0123456789",
        THC,
        253,
        vitals=(("PINV_Pout", -0.18), ("PINV_Vout", 241.10000000000002), ("PINV_Qout", 0.0)),
        alerts=("PINV_a067_overvoltageNeutralChassis",),
    ),
    tesla(
        "TESYNC--1493315-01-F--JBL0123456789",
        GATEWAY,
        259,
        vitals=(("ISLAND_L1L2PhaseDelta", -256.0), ("ISLAND_GridConnected", True)),
    ),
    tesla(
        PVAC,
        THC,
        296,
        vitals=(
            ("PVAC_Pout", 1610.0),
            ("PVAC_State", "PVAC_Active"),
            ("PVAC_Counter", 7),
            ("PVAC_Offset", -1),
            ("PVAC_Min", -(2**63)),
            ("PVAC_Max", 2**63 - 1),
            ("PVAC_Zero", 0),
            ("PVAC_Empty", ""),
        ),
    ),
    tesla(
        "PVS--1538100-00-F--CN0123456789EF",
        PVAC,
        297,
        vitals=(("PVS_StringB_Connected", False),),
        alerts=("PVS_a018_MciStringB",),
    ),
    VitalsDevice(
        din="NEURIO--VAH0123456789",
        serial_number="VAH0123456789",
        manufacturer="NEURIO",
        component_parent_din=GATEWAY,
        firmware_version="1.6.1-Tesla",
        last_communication_time=1642742952,
        meter_location=(5,),
        ip_address="PWRview-73533",
        vitals=(
            ("NEURIO_CT0_InstRealPower", -15.920000076293945),
            ("NEURIO_CT0_Location", "solar"),
        ),
    ),
    VitalsDevice(
        din="TESLA--JBL0123456789",
        serial_number="JBL0123456789",
        component_parent_din=GATEWAY,
        last_communication_time=1642742952,
        meter_location=(1, 4),
    ),
    VitalsDevice(
        din="TESLA--1538100-00-F--CN0123456789EF",
        serial_number="1538100-00-F--CN0123456789EF",
        component_parent_din=GATEWAY,
        firmware_version="c58c2df39ec207",
        last_communication_time=1642742952,
        pv_nameplate_w=7680,
        ip_address="",
    ),
]


def expected(dev: VitalsDevice) -> dict[str, object]:
    """pyPowerwall's entry for one device, written out from its documented rules."""
    entry: dict[str, object] = {}
    for key, text in (
        ("componentParentDin", dev.component_parent_din),
        ("partNumber", dev.part_number),
        ("serialNumber", dev.serial_number),
        ("manufacturer", dev.manufacturer),
        ("firmwareVersion", dev.firmware_version),
    ):
        if text:
            entry[key] = text
    if dev.last_communication_time:
        entry["lastCommunicationTime"] = dev.last_communication_time
    if dev.ecu_type is not None:
        entry["teslaEnergyEcuAttributes"] = {"ecuType": dev.ecu_type}
    if dev.pv_nameplate_w is not None:
        entry["pvInverterAttributes"] = {"nameplateRealPowerW": dev.pv_nameplate_w}
    if dev.meter_location is not None:
        entry["meterAttributes"] = {"meterLocation": list(dev.meter_location)}
    entry.update(dev.vitals)
    if dev.alerts:
        entry["alerts"] = list(dev.alerts)
    return entry


def typed(value: object) -> str:
    """JSON text that tells True from 1 from 1.0 and keeps key order, unlike dict equality."""
    return json.dumps(value)


def entry_boundaries(payload: bytes) -> set[int]:
    """Offsets where a top-level ``devices`` entry ends (all entries here are < 16 KiB)."""
    ends, pos = {0}, 0
    while pos < len(payload):
        assert payload[pos] == 0x0A
        size, width = payload[pos + 1], 1
        if size & 0x80:
            size, width = (size & 0x7F) | payload[pos + 2] << 7, 2
        pos += 1 + width + size
        ends.add(pos)
    return ends


# --------------------------------------------------------------------------- round trip


def test_round_trip_reproduces_pypowerwall_dict_with_types_and_order() -> None:
    decoded = decode_vitals(encode_vitals(SITE))

    assert list(decoded) == [dev.din for dev in SITE]
    for dev in SITE:
        assert typed(decoded[dev.din]) == typed(expected(dev)), dev.din


def test_decoded_shape_matches_pypowerwall_key_names() -> None:
    decoded = decode_vitals(encode_vitals(SITE))

    pod = decoded["TEPOD--1081100-13-V--T0123456789"]
    assert list(pod) == [
        "componentParentDin",
        "partNumber",
        "serialNumber",
        "manufacturer",
        "firmwareVersion",
        "lastCommunicationTime",
        "teslaEnergyEcuAttributes",
        "POD_ActiveHeating",
        "POD_enable_line",
        "POD_nom_energy_remaining",
        "POD_state",
    ]
    assert pod["lastCommunicationTime"] == 1642742952
    assert type(pod["lastCommunicationTime"]) is int
    assert pod["componentParentDin"] == THC
    assert "alerts" not in pod  # only present when the device has alerts

    gateway = decoded[GATEWAY]
    assert "componentParentDin" not in gateway  # no parent: the wrapper is absent
    assert gateway["alerts"] == ["GridCodesWrite", "GridCodesWrite", "FWUpdateSucceeded"]
    assert list(gateway)[-1] == "alerts"

    meter = decoded["TESLA--JBL0123456789"]
    assert "partNumber" not in meter and "firmwareVersion" not in meter
    assert meter["meterAttributes"] == {"meterLocation": [1, 4]}
    neurio = decoded["NEURIO--VAH0123456789"]
    assert neurio["meterAttributes"] == {"meterLocation": [5]}
    assert "ipAddress" not in neurio  # pyPowerwall ignores connectionParameters
    assert decoded["TESLA--1538100-00-F--CN0123456789EF"]["pvInverterAttributes"] == {
        "nameplateRealPowerW": 7680
    }


def test_every_value_type_survives_exactly() -> None:
    pvac = decode_vitals(encode_vitals(SITE))[PVAC]
    pod = decode_vitals(encode_vitals(SITE))["TEPOD--1081100-13-V--T0123456789"]

    assert [(pvac[k], type(pvac[k])) for k in ("PVAC_Counter", "PVAC_Offset", "PVAC_Zero")] == [
        (7, int),
        (-1, int),
        (0, int),
    ]
    assert pvac["PVAC_Min"] == -(2**63) and pvac["PVAC_Max"] == 2**63 - 1
    assert pvac["PVAC_Empty"] == "" and pvac["PVAC_Pout"] == 1610.0
    assert type(pvac["PVAC_Pout"]) is float
    assert pod["POD_ActiveHeating"] is False and pod["POD_enable_line"] is True


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.builds(
            VitalsDevice,
            din=st.text(min_size=1, max_size=20),
            part_number=st.text(max_size=8),
            firmware_version=st.text(max_size=8),
            last_communication_time=st.integers(-(2**63), 2**63 - 1),
            ecu_type=st.none() | st.integers(-(2**31), 2**31 - 1),
            vitals=st.lists(
                st.tuples(
                    st.text(max_size=10),
                    st.booleans()
                    | st.integers(-(2**63), 2**63 - 1)
                    | st.floats(allow_nan=False)
                    | st.text(max_size=10),
                ),
                max_size=6,
                unique_by=lambda vital: vital[0],
            ).map(tuple),
            alerts=st.lists(st.text(max_size=10), max_size=3).map(tuple),
        ),
        max_size=4,
        unique_by=lambda dev: dev.din,
    )
)
def test_round_trip_property(devices: list[VitalsDevice]) -> None:
    decoded = decode_vitals(encode_vitals(devices))

    assert typed(decoded) == typed({dev.din: expected(dev) for dev in devices})


# --------------------------------------------------------------------------- wire layout


def test_encoder_writes_the_gateway_wire_layout() -> None:
    neurio = encode_vitals([SITE[7]])
    inverter = encode_vitals([SITE[9]])
    pvac = encode_vitals([SITE[5]])

    assert bytes.fromhex("0a170a15") + b"NEURIO--VAH0123456789" in neurio  # din: StringValue
    assert bytes.fromhex("52110a0f0a0d") + b"PWRview-73533" in neurio  # ipAddress wrapper
    assert bytes.fromhex("5a0522030a0105") in neurio  # packed meterLocation (5,)
    assert bytes.fromhex("5200") in inverter  # empty connectionParameters
    assert bytes.fromhex("5a051a0308803c") in inverter  # nameplateRealPowerW 7680
    assert bytes.fromhex("5a050a0308a802") in pvac  # ecuType 296
    assert b"\x0a\x0bPVAC_Offset\x18" + b"\xff" * 9 + b"\x01" in pvac  # -1: ten-byte varint
    assert b"\x0a\x09PVAC_Zero\x18\x00" in pvac  # oneof members keep zero values
    assert b"\x0a\x0aPVAC_Empty\x2a\x00" in pvac
    assert b"\x0a\x09PVAC_Pout\x21" + struct.pack("<d", 1610.0) in pvac
    assert b"\x0a\x15PVS_StringB_Connected\x30\x00" in encode_vitals([SITE[6]])


def test_small_device_encodes_to_exact_bytes() -> None:
    device = VitalsDevice(
        din="A",
        manufacturer="",
        last_communication_time=300,
        ecu_type=1,
        vitals=(("x", True),),
        alerts=("z",),
    )
    device_bytes = "0a03 0a0141" + "4a03 08ac02" + "5a04 0a020801"
    entry = "0a12 0a10" + device_bytes + "1205 0a0178 3001" + "1a01 7a"
    assert encode_vitals([device]) == bytes.fromhex("0a1e" + entry)


def test_hand_built_bytes_decode() -> None:
    device = (
        "0a0a 0a08" + b"TEPOD--X".hex()  # din (StringValue)
        + "1206 0a04" + b"1081".hex()  # partNumber
        + "4a06 08a889a98f06"  # lastCommunicationTime 1642742952
        + "5a05 0a0308e201"  # teslaEnergyEcuAttributes.ecuType 226
    )  # fmt: skip
    entry = (
        "0a25 0a23" + device  # device.device
        + "120c 0a0166 21000000000000f83f"  # "f": floatValue 1.5
        + "1207 0a0173 2a026f6e"  # "s": stringValue "on"
        + "1205 0a0162 3000"  # "b": boolValue false
        + "120e 0a0169 18feffffffffffffffff01"  # "i": intValue -2
        + "1206 0a016e 18ac02"  # "n": intValue 300
        + "1a03 414243"  # alert "ABC"
    )  # fmt: skip
    payload = bytes.fromhex("0a62" + entry)

    decoded = decode_vitals(payload)

    assert typed(decoded) == typed(
        {
            "TEPOD--X": {
                "partNumber": "1081",
                "lastCommunicationTime": 1642742952,
                "teslaEnergyEcuAttributes": {"ecuType": 226},
                "f": 1.5,
                "s": "on",
                "b": False,
                "i": -2,
                "n": 300,
                "alerts": ["ABC"],
            }
        }
    )


def msg(key: str, *parts: str) -> str:
    """Hex of one length-delimited field: the key byte(s) as written, its length, the parts."""
    body = "".join(parts).replace(" ", "")
    size = len(body) // 2
    assert size < 0x4000
    length = f"{size:02x}" if size < 0x80 else f"{size & 0x7F | 0x80:02x}{size >> 7:02x}"
    return key + length + body


def test_other_attribute_kinds_and_first_communication_time() -> None:
    generator = msg("5a", msg("12", "08e807 1005"))  # generatorAttributes 1000 W, 5 VA
    first = msg("42", "08a889a98f06")  # firstCommunicationTime 1642742952
    unpacked_meter = msg("5a", msg("22", "0801 0804"))  # meterLocation 1, 4 unpacked
    payload = bytes.fromhex(
        msg("0a", msg("0a", msg("0a", msg("0a", msg("0a", "47")), first, generator)))
        + msg("0a", msg("0a", msg("0a", msg("0a", msg("0a", "4d")), unpacked_meter)))
    )

    decoded = decode_vitals(payload)

    assert typed(decoded) == typed(
        {
            "G": {
                "firstCommunicationTime": 1642742952,
                "generatorAttributes": {"nameplateRealPowerW": 1000, "nameplateApparentPowerVa": 5},
            },
            "M": {"meterAttributes": {"meterLocation": [1, 4]}},
        }
    )


def test_powerwall2_layout_repeated_device_and_attributes_merge() -> None:
    # SiteControllerConnectedDevice repeated in one entry, each holding part of the Device.
    first = msg("0a", msg("0a", msg("0a", msg("0a", "44"))))  # din "D"
    second = msg("0a", msg("0a", msg("3a", msg("0a", b"fw1".hex())), msg("5a", msg("22", "0801"))))
    third = msg("0a", msg("0a", msg("5a", msg("22", msg("0a", "020304")))))  # packed 2, 3, 4
    fourth = msg("0a", msg("0a", msg("5a", msg("0a", ""))))  # another oneof member: ecu
    ecu_then_pv = msg("0a", msg("0a", msg("5a", msg("0a", "0805")), msg("5a", msg("1a", ""))))

    merged = decode_vitals(bytes.fromhex(msg("0a", first, second, third)))
    replaced = decode_vitals(bytes.fromhex(msg("0a", first, second, third, fourth)))
    cleared = decode_vitals(bytes.fromhex(msg("0a", first, ecu_then_pv)))

    assert merged == {
        "D": {"firmwareVersion": "fw1", "meterAttributes": {"meterLocation": [1, 2, 3, 4]}}
    }
    assert replaced == {"D": {"firmwareVersion": "fw1", "teslaEnergyEcuAttributes": {"ecuType": 0}}}
    assert cleared == {"D": {"pvInverterAttributes": {"nameplateRealPowerW": 0}}}  # not 5


def test_repeated_din_and_vital_names_follow_pypowerwall() -> None:
    devices = [
        VitalsDevice(din="X", serial_number="1", vitals=(("a", 1.0), ("b", "x")), alerts=("old",)),
        VitalsDevice(din="X", serial_number="2", vitals=(("c", True), ("a", 2.0)), alerts=("new",)),
        VitalsDevice(din="Y", vitals=(("v", 1), ("w", 0), ("v", 3))),
    ]

    decoded = decode_vitals(encode_vitals(devices))

    assert typed(decoded["X"]) == typed(
        {
            "serialNumber": "1",  # primary fields come from the first entry only
            "manufacturer": "TESLA",
            "a": 2.0,  # later value, first position
            "b": "x",
            "alerts": ["new"],  # later alerts replace earlier ones
            "c": True,
        }
    )
    assert typed(decoded["Y"]) == typed({"manufacturer": "TESLA", "v": 3, "w": 0})


def test_vital_without_value_and_empty_payload() -> None:
    assert decode_vitals(bytes.fromhex("0a05 1203 0a0171")) == {"": {"q": None}}
    assert decode_vitals(b"") == {}
    body = bytearray(encode_vitals(SITE[:1]))  # e.g. a buffer filled from a stream
    assert decode_vitals(body) == {GATEWAY: expected(SITE[0])}  # type: ignore[arg-type]


def test_last_value_field_wins_in_the_oneof() -> None:
    vital = msg("12", "0a0176 3001 2a0161 21", struct.pack("<d", 2.5).hex())
    payload = bytes.fromhex(msg("0a", vital))

    assert decode_vitals(payload) == {"": {"v": 2.5}}


# --------------------------------------------------------------------------- unknown fields

# One unknown field of each wire type: varint, i64, len, i32, and a group holding a group.
UNKNOWN = bytes.fromhex(
    "f807 96 01"  # field 127 varint
    "f107 0102030405060708"  # field 126 i64
    "ea07 03 0a0141"  # field 125 len (looks like a message, must not be read)
    "e507 01020304"  # field 124 i32
    "db07 0801 e307 1001 e407 dc07"  # field 123 group { 1: 1, group 124 { 2: 1 } }
)


def test_unknown_fields_of_every_wire_type_are_skipped_at_every_level() -> None:
    def build(u: str) -> bytes:
        """A device with ``u`` inserted in every message, wrappers and attributes included."""
        device = (
            u
            + msg("0a", u, msg("0a", "44"), u)  # din "D"
            + msg("4a", u, "0805", u)  # lastCommunicationTime 5
            + msg("5a", u, msg("0a", u, "0807", u), u)  # ecuType 7
            + u
        )
        vital = msg("12", u, "0a0176", u, "3001", u)  # "v": True
        entry = msg("0a", u, msg("0a", u, msg("0a", device), u), vital, u, "1a0141", u)
        return bytes.fromhex(u + entry + u)

    plain, noisy = build(""), build(UNKNOWN.hex())
    assert len(noisy) > len(plain) + 20 * len(UNKNOWN)

    want = {
        "D": {
            "lastCommunicationTime": 5,
            "teslaEnergyEcuAttributes": {"ecuType": 7},
            "v": True,
            "alerts": ["A"],
        }
    }
    assert typed(decode_vitals(plain)) == typed(want)
    assert typed(decode_vitals(noisy)) == typed(want)


def test_known_field_with_wrong_wire_type_is_skipped() -> None:
    device = "1001 4805 5807 3a00"  # partNumber, lastCommunicationTime, attributes as varints
    payload = bytes.fromhex(
        msg(
            "0a",
            "1005",  # vitals as a varint
            "1a00",  # a real (empty) alert
            msg("0a", msg("0a", device)),
            msg("12", "0a0178"),  # vital "x" without a value
            msg("12", "0a0179 2001"),  # vital "y": boolValue sent as field 4 varint (wrong type)
        )
    )
    # The one Device field with the right type is an empty firmwareVersion wrapper: it counts.
    assert decode_vitals(payload) == {
        "": {"firmwareVersion": "", "x": None, "y": None, "alerts": [""]}
    }


def test_present_but_empty_wrappers_give_empty_strings_and_zero_time() -> None:
    device = "0a00 1200 3200 4a00"  # din, partNumber, componentParentDin, lastCommunicationTime
    payload = bytes.fromhex(msg("0a", msg("0a", msg("0a", device))))

    assert typed(decode_vitals(payload)) == typed(
        {"": {"componentParentDin": "", "partNumber": "", "lastCommunicationTime": 0}}
    )


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("0a05 0a01", "past the end"),  # length points past the end
        ("0aff ffff ff0f", "past the end"),  # a hostile 4 GiB length
        ("0a", "truncated varint"),
        ("0a80", "truncated varint"),
        ("08ffffffffffffffffffff01", "longer than 10 bytes"),
        ("0e00", "wire type 6"),
        ("0f00", "wire type 7"),
        ("0001", "invalid field key"),  # field number 0
        ("8080808080 01", "invalid field key"),  # key beyond 32 bits
        ("0c", "unexpected end-group"),
        ("0b 14", "mismatched end-group"),  # group 1 closed by end of group 2
        ("0b 08", "truncated varint"),  # unterminated group
        ("0a03 1a01 ff", "UTF-8"),  # alert that is not UTF-8
        ("0a09 0a07 0a05 0a03 0a01 c3", "UTF-8"),  # din that is not UTF-8
        ("0a05 1203 2101 02", "past the end"),  # truncated double
        ("0a09 0a07 0a05 5a03 2201 0a", "truncated varint"),  # meterLocation key, no length
        ("0a0a 0a08 0a06 5a04 2202 0a01", "past the end"),  # packed length past its field
        ("0a0b 0a09 0a07 5a05 2203 0a0180", "truncated varint"),  # packed varint cut
    ],
)
def test_malformed_input_raises_unexpected_response(payload: str, reason: str) -> None:
    with pytest.raises(UnexpectedResponse) as caught:
        decode_vitals(bytes.fromhex(payload))

    assert caught.value.path == "/api/devices/vitals"
    message = str(caught.value)
    assert message.startswith("vitals: ") and "\n" not in message
    assert reason in message


def test_every_truncation_inside_an_entry_raises() -> None:
    payload = encode_vitals(SITE)
    boundaries = sorted(entry_boundaries(payload))
    assert len(boundaries) == len(SITE) + 1 and boundaries[-1] == len(payload)

    for cut in range(len(payload)):
        if cut in boundaries:  # a cut between entries is a shorter but valid message
            assert len(decode_vitals(payload[:cut])) == boundaries.index(cut)
        else:
            with pytest.raises(UnexpectedResponse):
                decode_vitals(payload[:cut])


def test_non_bytes_body_raises_unexpected_response() -> None:
    with pytest.raises(UnexpectedResponse, match="not bytes"):
        decode_vitals("0a00")  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_never_raise_anything_else(payload: bytes) -> None:
    try:
        result = decode_vitals(payload)
    except UnexpectedResponse as exc:
        assert str(exc).startswith("vitals: ")
    else:
        assert isinstance(result, dict)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzz_mutated_payload_never_raises_anything_else(data: st.DataObject) -> None:
    payload = bytearray(encode_vitals(SITE[5:8]))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(payload) - 1))
        payload[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(payload)))
    try:
        result = decode_vitals(bytes(payload[:cut]))
    except UnexpectedResponse as exc:
        assert exc.path == "/api/devices/vitals"
    else:
        assert all(isinstance(entry, dict) for entry in result.values())


# --------------------------------------------------------------------------- encoder errors


@pytest.mark.parametrize(
    ("device", "error"),
    [
        (VitalsDevice(din="A", vitals=(("big", 2**63),)), ValueError),
        (VitalsDevice(din="A", vitals=(("small", -(2**63) - 1),)), ValueError),
        (VitalsDevice(din="A", vitals=(("none", None),)), TypeError),  # type: ignore[arg-type]
        (VitalsDevice(din="A", ecu_type=207, meter_location=(1,)), ValueError),
        (VitalsDevice(din="A", meter_location=(-1,)), ValueError),
        (VitalsDevice(din="A", pv_nameplate_w=-5), ValueError),
        (VitalsDevice(din="A", ecu_type=2**31), ValueError),
    ],
)
def test_encoder_refuses_what_the_wire_cannot_carry(
    device: VitalsDevice, error: type[Exception]
) -> None:
    with pytest.raises(error, match="vitals: "):
        encode_vitals([device])


# --------------------------------------------------------------------------- conformance


def vitals_fixtures() -> list[Path]:
    if not FIXTURES.is_dir():
        pytest.skip(f"{FIXTURES} is absent")
    found = sorted(FIXTURES.glob("gateway/*/api_devices_vitals__decoded*.json"))
    assert found, "no decoded vitals fixtures under the fixtures folder"
    return found


def device_from_pypowerwall(din: str, entry: dict[str, object]) -> VitalsDevice:
    """The VitalsDevice whose body pyPowerwall decoded into ``entry``."""

    def text(key: str) -> str:
        value = entry.get(key, "")
        assert isinstance(value, str)
        return value

    ecu = entry.get("teslaEnergyEcuAttributes")
    meter = entry.get("meterAttributes")
    inverter = entry.get("pvInverterAttributes")
    alerts = entry.get("alerts", [])
    assert isinstance(alerts, list)
    assert not {"firstCommunicationTime", "generatorAttributes"} & set(entry)
    vitals = []
    for key, value in entry.items():
        if key not in NOT_VITALS:
            assert isinstance(value, bool | int | float | str)
            vitals.append((key, value))
    seconds = entry["lastCommunicationTime"]
    assert isinstance(seconds, int)
    return VitalsDevice(
        din=din,
        part_number=text("partNumber"),
        serial_number=text("serialNumber"),
        manufacturer=text("manufacturer"),
        component_parent_din=text("componentParentDin"),
        firmware_version=text("firmwareVersion"),
        last_communication_time=seconds,
        ecu_type=ecu["ecuType"] if isinstance(ecu, dict) else None,
        meter_location=tuple(meter["meterLocation"]) if isinstance(meter, dict) else None,
        pv_nameplate_w=inverter["nameplateRealPowerW"] if isinstance(inverter, dict) else None,
        vitals=tuple(vitals),
        alerts=tuple(alerts),
    )


def as_powerwall2_sample(entry: dict[str, object]) -> dict[str, object]:
    """The older shape of vloschiavo/powerwall2's sample: Parent, '' for absent, string time."""
    out = {key: value for key, value in entry.items() if key not in NOT_VITALS}
    out["Parent"] = entry.get("componentParentDin", "")
    for key in ("firmwareVersion", "manufacturer", "partNumber", "serialNumber"):
        out[key] = entry.get(key, "")
    out["lastCommunicationTime"] = str(entry["lastCommunicationTime"])
    return out


@pytest.mark.conformance
def test_conformance_pypowerwall_fixtures_round_trip_exactly() -> None:
    checked = 0
    for path in vitals_fixtures():
        if path.parent.name != "pypowerwall":
            continue
        sample = json.loads(path.read_text())
        devices = [device_from_pypowerwall(din, entry) for din, entry in sample.items()]

        decoded = decode_vitals(encode_vitals(devices))

        assert json.dumps(decoded, sort_keys=True) == json.dumps(sample, sort_keys=True), path
        checked += 1
    assert checked >= 1


@pytest.mark.conformance
def test_conformance_powerwall2_sample_round_trips_in_its_older_shape() -> None:
    paths = [p for p in vitals_fixtures() if p.parent.name == "powerwall2"]
    assert paths
    for path in paths:
        sample = json.loads(path.read_text())
        devices = []
        for din, old in sample.items():
            entry = {k: v for k, v in old.items() if v != "" or k not in NOT_VITALS | {"Parent"}}
            entry["componentParentDin"] = entry.pop("Parent", "")
            entry["lastCommunicationTime"] = int(old["lastCommunicationTime"])
            devices.append(device_from_pypowerwall(din, entry))

        decoded = decode_vitals(encode_vitals(devices))

        reshaped = {din: as_powerwall2_sample(entry) for din, entry in decoded.items()}
        assert json.dumps(reshaped, sort_keys=True) == json.dumps(sample, sort_keys=True), path
