"""The writer's pure core: messages to rows (hand-computed), and the fast schema check."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from powerwall_bus.consumers.mysql.checks import MessageCheck
from powerwall_bus.consumers.mysql.rows import (
    GridStatusTracker,
    MeterRow,
    Rows,
    rows_for_envelope,
    rows_for_meter_stream,
)
from powerwall_bus.producers.poller.health import Health
from powerwall_bus.producers.poller.reader import intervals_for
from powerwall_bus.shared.contract import kind_of, routing_key
from powerwall_bus.shared.errors import MalformedMessage
from powerwall_bus.shared.gateway.payloads import app_soe, finite_float
from powerwall_bus.shared.messages import (
    iso_time,
    meter_stream_message,
    parse_envelope,
    parse_meter_stream,
    poller_status_message,
    reading_message,
)
from powerwall_bus.shared.schemas import validate_message
from powerwall_bus.shared.settings import PollerSettings
from powerwall_bus.shared.topology import METER_STREAM
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.feed import reading_for
from powerwall_bus.simulator.site import SiteOptions

DIN = "1232100-00-E--TG121832953V3E"
TIME = "2026-11-21T14:03:58.347Z"
TS = dt.datetime(2026, 11, 21, 14, 3, 58, 347000)

ENDPOINTS = {
    "meters": "/api/meters/aggregates",
    "soe": "/api/system_status/soe",
    "grid_status": "/api/system_status/grid_status",
    "api.system_status": "/api/system_status",
    "vitals": "/api/devices/vitals",
    "api.status": "/api/status",
}


def envelope(kind: str, payload: Any, *, time: str = TIME, gateway: str = DIN, **extra: Any):
    document = {
        "version": 1,
        "kind": kind,
        "time": time,
        "gateway": gateway,
        "endpoint": ENDPOINTS.get(kind),
        "payload": payload,
        **extra,
    }
    return parse_envelope(json.dumps(document).encode())


def rows_of(kind: str, payload: Any, tracker: GridStatusTracker | None = None, **kw: Any) -> Rows:
    return rows_for_envelope(envelope(kind, payload, **kw), tracker or GridStatusTracker())


def meter(power: float, imported: float, exported: float, **more: Any) -> dict[str, Any]:
    return {
        "instant_power": power,
        "energy_imported": imported,
        "energy_exported": exported,
        **more,
    }


# --------------------------------------------------------------------------- meters


def test_meters_give_one_row_per_meter_with_the_published_values() -> None:
    payload = {
        "site": meter(
            23,
            6335035.788852731,
            18117752.220857784,
            instant_reactive_power=-174,
            instant_apparent_power=175.5,
            instant_average_voltage=208.91,
            frequency=0,
            instant_total_current=0.84,
            timeout=1500000000,
            last_communication_time="2026-11-21T06:03:58.100220111-08:00",
        ),
        "battery": meter(740, 18623618, 16237868, frequency=59.998),
        "load": meter(765, 35218876.2, 0),
        "solar": meter(2, 5213.7, 41040791.5),
        "busway": meter(0, 0, 0),  # old firmware's extra meter: not stored
    }
    rows = rows_of("meters", payload)
    assert rows.meters == [
        MeterRow(
            DIN,
            TS,
            "site",
            23.0,
            -174.0,
            175.5,
            208.91,
            0.0,
            0.84,
            6335035.788852731,
            18117752.220857784,
        ),
        MeterRow(DIN, TS, "battery", 740.0, None, None, None, 59.998, None, 18623618.0, 16237868.0),
        MeterRow(DIN, TS, "load", 765.0, None, None, None, None, None, 35218876.2, 0.0),
        MeterRow(DIN, TS, "solar", 2.0, None, None, None, None, None, 5213.7, 41040791.5),
    ]
    assert len(rows) == 4 and not rows.soe and rows.gateways() == {DIN}
    assert all(isinstance(v, float) for row in rows.meters for v in row[3:] if v is not None)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (None, None),
        (True, None),  # a boolean is not a measurement
        ("12", None),
        (float("nan"), None),
        (float("inf"), None),
        (10**400, None),  # too large for a DOUBLE
        (7, 7.0),
        (-0.5, -0.5),
    ],
)
def test_numbers_that_are_not_finite_become_null(value: Any, stored: float | None) -> None:
    assert finite_float(value) == stored
    payload = {m: meter(1, 2, 3) for m in ("site", "battery", "load", "solar")}
    parsed = envelope("meters", payload)  # a body with NaN is refused before it gets here
    payload["site"]["instant_power"] = value  # (parse_envelope); rows stay defensive anyway
    rows = rows_for_envelope(dataclasses.replace(parsed, payload=payload), GridStatusTracker())
    assert rows.meters[0].instant_power == stored


def test_missing_meter_is_skipped_and_a_non_object_payload_is_malformed() -> None:
    rows = rows_of("meters", {"site": meter(1, 2, 3), "load": meter(4, 5, 6)})
    assert [row.meter for row in rows.meters] == ["site", "load"]
    with pytest.raises(MalformedMessage):
        rows_of("meters", [1, 2])
    with pytest.raises(MalformedMessage):
        rows_of("meters", {"site": 5})


# --------------------------------------------------------------------------- times


@pytest.mark.parametrize(
    "time",
    [
        "2026-11-21T14:03:58.347Z",
        "2026-11-21T14:03:58.347999Z",  # truncated, like the message id
        "2026-11-21T15:03:58.347+01:00",  # converted to UTC
    ],
)
def test_times_are_utc_truncated_to_milliseconds(time: str) -> None:
    rows = rows_of("soe", {"percentage": 50}, time=time)
    assert rows.soe[0].ts == TS
    assert rows.soe[0].ts.tzinfo is None


def test_meter_stream_rows_land_on_the_envelope_millisecond() -> None:
    epoch = 1795269838.3479
    aggregates = {m: meter(10, 20, 30) for m in ("site", "battery", "load", "solar")}
    stream = parse_meter_stream(meter_stream_message(epoch, 52.5, aggregates, DIN).body)
    rows = rows_for_meter_stream(stream, "tesla-api")
    expected_ts = rows_of("meters", aggregates, time=iso_time(epoch)).meters[0].ts
    assert [row.meter for row in rows.meters] == ["site", "battery", "load", "solar"]
    assert {row.ts for row in rows.meters} == {expected_ts}
    assert expected_ts == TS  # 1795269838.3479 is 14:03:58.3479 UTC
    assert rows.gateways() == {"tesla-api"}
    assert rows.soe[0][2:] == (52.5, 50.0)


# --------------------------------------------------------------------------- soe


@pytest.mark.parametrize(
    ("raw", "app"),
    [(52.5, 50.0), (100, 100.0), (5, 0.0), (24, 20.0), (2.15, -3.0), (0, -5.0 / 0.95)],
)
def test_app_percentage_is_the_apps_scale_not_clamped(raw: float, app: float) -> None:
    assert app_soe(raw) == pytest.approx(app)
    row = rows_of("soe", {"percentage": raw}).soe[0]
    assert row.percentage == raw and row.app_percentage == pytest.approx(app)
    assert row.app_percentage == app_soe(raw)  # the very double the proxy shows


def test_soe_without_a_number_is_malformed() -> None:
    for payload in ({"percentage": None}, {"percentage": "50"}, {}, [50]):
        with pytest.raises(MalformedMessage):
            rows_of("soe", payload)


# --------------------------------------------------------------------------- grid status


def grid(status: str, second: int, tracker: GridStatusTracker, active: Any = False) -> list:
    payload: dict[str, Any] = {"grid_status": status}
    if active is not None:
        payload["grid_services_active"] = active
    time = f"2026-11-21T14:00:{second:02d}.000Z"
    return rows_of("grid_status", payload, tracker, time=time).grid_status


def test_grid_status_is_stored_only_when_it_changes() -> None:
    tracker = GridStatusTracker()
    stored = [
        grid("SystemGridConnected", 1, tracker),  # first sample this writer sees
        grid("SystemGridConnected", 2, tracker),
        grid("SystemIslandedActive", 3, tracker, active=True),
        grid("SystemIslandedActive", 4, tracker),
        grid("SystemTransitionToGrid", 5, tracker, active=None),
        grid("SystemGridConnected", 6, tracker),
        grid("SystemIslandedActive", 3, tracker),  # redelivered, older: ignored
        grid("SystemGridConnected", 6, tracker),  # the same sample again
    ]
    flat = [(row.ts.second, row.grid_status, row.grid_services_active) for r in stored for row in r]
    assert flat == [
        (1, "SystemGridConnected", 0),
        (3, "SystemIslandedActive", 1),
        (5, "SystemTransitionToGrid", None),
        (6, "SystemGridConnected", 0),
    ]
    assert tracker.last(DIN) == (dt.datetime(2026, 11, 21, 14, 0, 6), "SystemGridConnected")


def test_grid_status_tracker_seeded_from_the_database_and_copied_per_batch() -> None:
    seed = [(DIN, dt.datetime(2026, 11, 21, 13, 0), "SystemGridConnected")]
    tracker = GridStatusTracker(seed)
    assert grid("SystemGridConnected", 1, tracker) == []  # a restart: no change
    trial = tracker.copy()
    assert len(grid("SystemIslandedActive", 2, trial)) == 1
    assert grid("SystemIslandedActive", 2, tracker.copy()) != []  # same rows when re-done
    untouched = (dt.datetime(2026, 11, 21, 14, 0, 1), "SystemGridConnected")
    assert tracker.last(DIN) == untouched  # the copies did not change the original
    other = GridStatusTracker([(DIN, dt.datetime(2026, 11, 21, 13, 0), "SystemIslandedActive")])
    assert len(grid("SystemGridConnected", 1, other)) == 1
    assert len(grid("SystemGridConnected", 1, GridStatusTracker(), "x")) == 1  # not a bool
    assert grid("SystemGridConnected", 1, GridStatusTracker(), "x")[0].grid_services_active is None


# --------------------------------------------------------------------------- battery blocks


def test_battery_blocks_with_a_disabled_pack_store_nulls() -> None:
    blocks = [
        {
            "PackageSerialNumber": "TG121815967DSN",
            "p_out": 380,
            "q_out": 0,
            "v_out": 243.4,
            "f_out": 59.999,
            "i_out": 7.8,
            "energy_charged": 8445200,
            "energy_discharged": 7592872,
            "nominal_energy_remaining": 5785,
            "nominal_full_pack_energy": 13824,
            "off_grid": False,
        },
        {  # disabled: the gateway reports nulls
            "PackageSerialNumber": "TG121819867RAX",
            "p_out": None,
            "q_out": None,
            "v_out": None,
            "f_out": None,
            "i_out": None,
            "energy_charged": None,
            "energy_discharged": None,
            "nominal_energy_remaining": None,
            "nominal_full_pack_energy": None,
            "disabled_reasons": ["DisabledExcessiveVoltageDrop"],
        },
        {"p_out": 1},  # no serial: skipped
        {"PackageSerialNumber": "S" * 41, "p_out": 1},  # does not fit: skipped
        "junk",
    ]
    payload = {"nominal_full_pack_energy": 26677, "nominal_energy_remaining": 11163}
    rows = rows_of("api.system_status", {**payload, "battery_blocks": blocks}).battery_blocks
    assert [tuple(row) for row in rows] == [
        (
            DIN,
            TS,
            "TG121815967DSN",
            380.0,
            0.0,
            243.4,
            59.999,
            7.8,
            8445200.0,
            7592872.0,
            5785.0,
            13824.0,
        ),
        (DIN, TS, "TG121819867RAX", *([None] * 9)),
    ]
    assert rows_of("api.system_status", payload).battery_blocks == []


# --------------------------------------------------------------------------- vitals


def test_vitals_keep_numbers_and_booleans_only() -> None:
    decoded = {
        "TEPOD--1081100-13-V--T19C8860291": {
            "componentParentDin": "TETHC--2012170-25-E--TG121815967DSN",
            "partNumber": "1081100-13-V",
            "firmwareVersion": "8f14e45fe93692",
            "lastCommunicationTime": 1795272738,  # identity, not a vital
            "teslaEnergyEcuAttributes": {"ecuType": 226},
            "POD_ActiveHeating": False,
            "POD_enable_line": True,
            "POD_nom_energy_remaining": 5785.0,
            "POD_available_charge_power": 5000,
            "POD_state": "POD_ACTIVE",
            "POD_broken": None,
            "alerts": ["a"],
        },
        "STSTSM--1232100-00-E--TG121832953V3E": {"alerts": [], "STSTSM-Location": "Gateway"},
        "X" * 97: {"V": 1.0},  # a device name that does not fit
    }
    rows = rows_of("vitals", "AAAA", decoded=decoded, payload_encoding="base64").vitals
    device = "TEPOD--1081100-13-V--T19C8860291"
    assert {(row.device, row.signal, row.value) for row in rows} == {
        (device, "POD_ActiveHeating", 0.0),
        (device, "POD_enable_line", 1.0),
        (device, "POD_nom_energy_remaining", 5785.0),
        (device, "POD_available_charge_power", 5000.0),
    }
    assert {(row.gateway, row.ts) for row in rows} == {(DIN, TS)}


def test_vitals_from_the_simulator_store_every_numeric_signal() -> None:
    gateway = SimulatedGateway(SiteOptions(seed=3, powerwalls=2))
    reading = reading_for(gateway, "/api/devices/vitals")
    rows = rows_for_envelope(parse_envelope(reading_message(reading).body), GridStatusTracker())
    expected = {
        (device, name)
        for device, fields in reading.decoded.items()
        for name, value in fields.items()
        if isinstance(value, int | float) and name != "lastCommunicationTime"
    }
    assert {(row.device, row.signal) for row in rows.vitals} == expected
    assert len(expected) > 100
    assert rows.gateways() == {gateway.din}


# --------------------------------------------------------------------------- poller status and text


def test_poller_status_row_keeps_state_firmware_and_the_payload() -> None:
    health = Health(intervals_for(PollerSettings()), 1795269000.0)
    health.identity(DIN, "23.12.10 8f14e45f")
    payload = health.payload(1795269060.0, 1, {"queued": 0, "capacity": 10, "dropped": 0})
    message = poller_status_message(1795269060.5, DIN, payload)
    rows = rows_for_envelope(parse_envelope(message.body), GridStatusTracker())
    (row,) = rows.poller_events
    assert row.gateway == DIN and row.ts == dt.datetime(2026, 11, 21, 13, 51, 0, 500000)
    assert (row.gateway_state, row.firmware) == (payload["gateway_state"], "23.12.10 8f14e45f")
    assert json.loads(row.payload) == payload

    long_firmware = {**payload, "firmware": "f" * 50, "note": "\ud800"}
    row = rows_of("poller.status", long_firmware, time=TIME).poller_events[0]
    assert row.firmware == "f" * 40
    assert json.loads(row.payload) == long_firmware
    row.payload.encode("utf-8")  # a lone surrogate stays an escape: storable


def test_text_the_database_cannot_take_is_never_sent() -> None:
    with pytest.raises(MalformedMessage):
        rows_of("soe", {"percentage": 1}, gateway="G" * 65)
    with pytest.raises(MalformedMessage):
        rows_of("soe", {"percentage": 1}, gateway="bad\ud800din")
    decoded = {"DEV": {"ok": 1.0, "bad\udc00": 2.0}}
    rows = rows_of("vitals", "AAAA", decoded=decoded, payload_encoding="base64")
    assert [row.signal for row in rows.vitals] == ["ok"]


def test_kinds_the_writer_does_not_store_give_no_rows() -> None:
    assert len(rows_of("api.status", {"din": DIN})) == 0
    assert len(rows_of("api.operation", {"real_mode": "self_consumption"})) == 0


# --------------------------------------------------------------------------- the schema check


def _bodies() -> dict[str, bytes]:
    gateway = SimulatedGateway(SiteOptions(seed=8, powerwalls=2))
    bodies = {}
    for path in ENDPOINTS.values():
        message = reading_message(reading_for(gateway, path))
        bodies[message.routing_key] = message.body
    aggregates = json.loads(gateway.get("/api/meters/aggregates").body)
    bodies[METER_STREAM] = meter_stream_message(1795269838.25, 41.5, aggregates, DIN).body
    health = Health(intervals_for(PollerSettings()), 1795269000.0)
    payload = health.payload(1795269060.0, 1, {"queued": 0, "capacity": 10, "dropped": 0})
    status = poller_status_message(1795269060.5, DIN, payload)
    bodies[status.routing_key] = status.body
    return bodies


def _paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node[:2]):
            yield from _paths(value, (*prefix, index))


def _mutants(document: Any) -> Iterator[Any]:
    """Wrong types, removed and added keys at (a fixed sample of) the places of a document."""
    paths = [path for path in _paths(document) if path]
    for path in random.Random(len(paths)).sample(paths, min(len(paths), 30)):
        replacements: tuple[Any, ...] = ("x", None, -1, 101, 1.5, True, [], "2026-02-30T00:00:00Z")
        for replacement in replacements:
            mutant = copy.deepcopy(document)
            parent = mutant
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = replacement
            yield mutant
        if isinstance(path[-1], str):
            mutant = copy.deepcopy(document)
            parent = mutant
            for step in path[:-1]:
                parent = parent[step]
            del parent[path[-1]]
            yield mutant
    yield {**document, "extra": 1}
    yield [document]


def test_fast_schema_check_answers_exactly_like_validate_message() -> None:
    check = MessageCheck()
    slow = MessageCheck(fast=False)
    assert check.fast  # jsonschema_rs is installed with the test extras
    assert not slow.fast
    cases = 0
    for key, body in _bodies().items():
        assert check.problems(key, body) == [] == validate_message(key, body), key
        document = json.loads(body)
        for mutant in _mutants(document):
            mutated = json.dumps(mutant).encode()
            expected = validate_message(key, mutated)
            assert check.problems(key, mutated) == expected, (key, mutant)
            cases += 1
        kind = "soe" if kind_of(key) != "soe" else "meters"
        assert check.problems(kind, body) == validate_message(kind, body) != []
    for body in (b"not json", b"", b"\xff\xfe", b"[]", b"null", b"1e999"):
        meters = routing_key("meters", DIN)
        assert check.problems(meters, body) == validate_message(meters, body)
    assert check.problems("foo.bar", b"{}") == validate_message("foo.bar", b"{}") != []
    assert cases > 1500
