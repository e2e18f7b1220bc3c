"""The message contract: builders, JSON Schemas, parsers and docs/messages.md agree.

Pure tests: no broker, no gateway. Bodies come from the simulator's site model (the same
renderer the HTTPS simulator serves) and, for the conformance test, from real recordings in
../shared/fixtures/gateway.
"""

from __future__ import annotations

import ast
import base64
import importlib.resources
import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from powerwall_bus.producers.poller.error_policy import POLICIES
from powerwall_bus.producers.poller.health import Health
from powerwall_bus.producers.poller.reader import METERS_PATH, SOE_PATH, intervals_for
from powerwall_bus.shared import contract, schemas
from powerwall_bus.shared.contract import ANY_GATEWAY, routing_key_for
from powerwall_bus.shared.errors import MalformedMessage
from powerwall_bus.shared.gateway.client import STATUS_PATH, VITALS_PATH
from powerwall_bus.shared.gateway.vitals import decode_vitals
from powerwall_bus.shared.messages import (
    GATEWAY_HEADER,
    GATEWAY_NAME_HEADER,
    RUN_HEADER,
    SCHEMA_VERSION,
    SEQ_HEADER,
    Reading,
    kind_of,
    meter_stream_message,
    parse_envelope,
    parse_meter_stream,
    poller_status_message,
    reading_message,
)
from powerwall_bus.shared.schemas import (
    UnknownKind,
    schema_file_for,
    validate_message,
    validator_for,
)
from powerwall_bus.shared.settings import PollerSettings
from powerwall_bus.shared.topology import METER_STREAM, POLLER_STATUS, RESYNC
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.site import SiteOptions

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "messages.md"
SCHEMA_DIR = ROOT / "schema" / "messages"
GATEWAY_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "gateway"
ID_BASE = "https://powerwall-bus.invalid/schema/messages/"

READ_AT = 1_795_269_838.347  # 2026-11-21T14:03:58.347Z
DIN = "1232100-00-E--TG121832953V3E"


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def gateway() -> SimulatedGateway:
    return SimulatedGateway(SiteOptions(seed=5, powerwalls=3))


def _reading(gateway: SimulatedGateway, endpoint: str) -> Reading | None:
    """What the poller would read from ``endpoint``; None when the gateway answers no 200."""
    reply = gateway.get(endpoint)
    if reply.status != 200:
        return None
    if endpoint == VITALS_PATH:
        return Reading(endpoint, READ_AT, gateway.din, reply.body, decode_vitals(reply.body))
    return Reading(endpoint, READ_AT, gateway.din, json.loads(reply.body))


def _envelope(endpoint: str, payload: Any) -> bytes:
    return reading_message(Reading(endpoint, READ_AT, DIN, payload)).body


@pytest.fixture(scope="module")
def valid_bodies(gateway: SimulatedGateway) -> dict[str, bytes]:
    """Routing key -> a valid body, for the kinds the invalid-message tests mutate."""
    bodies = {}
    for endpoint in (METERS_PATH, SOE_PATH, "/api/system_status/grid_status", VITALS_PATH):
        reading = _reading(gateway, endpoint)
        assert reading is not None
        message = reading_message(reading)
        bodies[contract.routing_key(message.type, ANY_GATEWAY)] = message.body
    soe = json.loads(gateway.get(SOE_PATH).body)["percentage"]
    aggregates = json.loads(gateway.get(METERS_PATH).body)
    bodies[METER_STREAM] = meter_stream_message(READ_AT, soe, aggregates, DIN).body
    health = Health(intervals_for(PollerSettings()), READ_AT - 60)
    payload = health.payload(READ_AT, 0, {"queued": 0, "capacity": 10, "dropped": 0})
    bodies[POLLER_STATUS] = poller_status_message(READ_AT, DIN, payload).body
    return bodies


def _schema_enum(name: str, *path: str) -> set[str]:
    node: Any = schemas.schemas()[name]
    for step in path:
        node = node[step]
    return set(node["enum"])


# --------------------------------------------------------------------------- builders


def test_every_polled_endpoint_of_the_simulator_builds_a_valid_message(
    gateway: SimulatedGateway,
) -> None:
    used: set[str] = set()
    published = 0
    for endpoint in intervals_for(PollerSettings()):
        reading = _reading(gateway, endpoint)
        if reading is None:  # 404: the poller drops the endpoint and publishes nothing
            assert gateway.get(endpoint).status == 404, endpoint
            continue
        message = reading_message(reading)
        assert message.routing_key == routing_key_for(endpoint, gateway.din)
        assert message.routing_key == f"powerwall.{gateway.din}.{message.type}"
        assert message.type == kind_of(message.routing_key)
        assert validate_message(message.routing_key, message.body) == [], endpoint
        assert validate_message(message.type, message.body) == [], endpoint  # resync answers
        envelope = parse_envelope(message.body)
        assert (envelope.kind, envelope.endpoint, envelope.gateway) == (
            message.type,
            endpoint,
            gateway.din,
        )
        used.add(schema_file_for(message.routing_key))
        published += 1
    assert published >= 20
    assert used == {
        "meters.json",
        "soe.json",
        "grid-status.json",
        "vitals.json",
        "api.json",
        "api-status.json",
        "api-system-status.json",
    }


def test_vitals_carry_the_raw_protobuf_and_the_decoded_devices(gateway: SimulatedGateway) -> None:
    reading = _reading(gateway, VITALS_PATH)
    assert reading is not None and isinstance(reading.payload, bytes)
    message = reading_message(reading)
    document = json.loads(message.body)
    assert document["payload_encoding"] == "base64"
    assert base64.b64decode(document["payload"]) == reading.payload
    assert len(document["decoded"]) >= 10  # gateway, 3 x (THC, POD, PINV), solar, meters
    assert validate_message(message.routing_key, message.body) == []
    assert parse_envelope(message.body).payload == reading.payload


def test_meter_stream_message_validates_and_has_exactly_three_keys(
    gateway: SimulatedGateway,
) -> None:
    soe = json.loads(gateway.get(SOE_PATH).body)["percentage"]
    aggregates = json.loads(gateway.get(METERS_PATH).body)
    message = meter_stream_message(READ_AT, soe, aggregates, gateway.din)
    assert message.routing_key == METER_STREAM == message.type
    assert set(json.loads(message.body)) == {"timestamp", "state_of_energy", "readings"}
    assert validate_message(METER_STREAM, message.body) == []
    parsed = parse_meter_stream(message.body)
    assert (parsed.timestamp, parsed.state_of_energy, parsed.readings) == (
        READ_AT,
        soe,
        aggregates,
    )


def _text(node: ast.expr | None) -> str | None:
    """The value of a string literal, else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _poller_source_states() -> tuple[set[str], set[str]]:
    """Endpoint and gateway states the poller can set: its error table, plus the states
    its health code writes literally (read from the source)."""
    endpoint_states = {"pending"}  # EndpointHealth's default
    gateway_states = {"starting"}  # Health's default
    for policy in POLICIES.values():
        endpoint_states.add(policy.endpoint_state)
        if policy.gateway_state is not None:
            gateway_states.add(policy.gateway_state)
    found = {"state": endpoint_states, "gateway_state": gateway_states}
    for path in (ROOT / "producers" / "poller").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "_set":
                args: list[ast.expr | None] = [*node.args, None, None, None]
                field_name, value = _text(args[1]), _text(args[2])  # self._set(obj, "state", "ok")
                if field_name in found and value is not None:
                    found[field_name].add(value)
            if isinstance(node, ast.Assign) and (value := _text(node.value)) is not None:
                for target in node.targets:
                    if getattr(target, "attr", None) == "gateway_state":
                        gateway_states.add(value)
    return endpoint_states, gateway_states


def test_every_state_the_poller_sets_is_in_the_poller_status_schema() -> None:
    endpoint_states, gateway_states = _poller_source_states()
    assert {"ok", "missing", "failing", "cooldown", "stopped"} <= endpoint_states  # scan works
    assert {"ok", "cooldown", "unreachable", "login_refused", "stopped"} <= gateway_states
    in_payload = ("properties", "payload", "properties")
    assert gateway_states <= _schema_enum("poller-status.json", *in_payload, "gateway_state")
    assert endpoint_states <= _schema_enum(
        "poller-status.json", "$defs", "endpoint", "properties", "state"
    )


def test_poller_status_messages_validate_in_every_state() -> None:
    intervals = intervals_for(PollerSettings())
    fresh = Health(intervals, READ_AT - 5)
    buffer = {"queued": 3, "capacity": 5000, "dropped": 0}
    bodies = [poller_status_message(READ_AT, "unknown", fresh.payload(READ_AT, 0, buffer)).body]

    busy = Health(intervals, READ_AT - 3600)
    busy.identity(DIN, "23.12.10 8f14e45f")
    busy.broker(True)
    for latency in (0.01, 0.02, 0.5):
        busy.published(latency)
    busy.success(METERS_PATH, READ_AT - 1)
    endpoint_states, gateway_states = _poller_source_states()
    endpoints = [e for e in intervals if e != METERS_PATH]
    for endpoint, state in zip(endpoints, sorted(endpoint_states), strict=False):
        busy.failure(endpoint, READ_AT - 2, "HTTP503", "the gateway said 503", state)
    busy.cooldown(READ_AT + 300)
    for gateway_state in sorted(gateway_states):
        busy.gateway_state = gateway_state
        payload = busy.payload(READ_AT, 2, {"queued": 0, "capacity": 5000, "dropped": 7})
        bodies.append(poller_status_message(READ_AT, DIN, payload).body)

    for body in bodies:
        assert validate_message(POLLER_STATUS, body) == []
        envelope = parse_envelope(body)
        assert envelope.endpoint is None and envelope.kind == "poller.status"
    last = json.loads(bodies[-1])["payload"]
    assert last["cooldown_until"].endswith("Z") and last["publish_latency_ms"]["samples"] == 3


# --------------------------------------------------------------------------- real recordings

_CONFORMANCE = [
    (METERS_PATH, ["*/api_meters_aggregates*.json"]),
    (SOE_PATH, ["*/api_system_status_soe__*.json"]),
    ("/api/system_status/grid_status", ["*/api_system_status_grid_status__*.json"]),
    ("/api/system_status", ["*/api_system_status__*.json"]),
    (STATUS_PATH, ["*/api_status__*.json"]),
]


@pytest.mark.conformance
@pytest.mark.parametrize(("endpoint", "patterns"), _CONFORMANCE)
def test_recorded_gateway_bodies_validate(endpoint: str, patterns: list[str]) -> None:
    if not GATEWAY_FIXTURES.is_dir():
        pytest.skip("../shared/fixtures/gateway is not beside this checkout")
    files = sorted(
        path
        for pattern in patterns
        for path in GATEWAY_FIXTURES.glob(pattern)
        if "fragment" not in path.name  # a hand-cut excerpt, not a whole body
    )
    assert files, f"no recordings for {endpoint}"
    problems = {}
    for path in files:
        payload = json.loads(path.read_text(encoding="utf-8"))
        body = _envelope(endpoint, payload)
        errors = validate_message(routing_key_for(endpoint, DIN), body)
        if errors:
            problems[path.name] = errors
        parse_envelope(body)
        if endpoint == METERS_PATH:
            stream = meter_stream_message(READ_AT, 42.4, payload, DIN)
            assert validate_message(METER_STREAM, stream.body) == [], path.name
    assert problems == {}


@pytest.mark.conformance
def test_recorded_vitals_dicts_validate_as_decoded() -> None:
    files = sorted(GATEWAY_FIXTURES.glob("*/api_devices_vitals__decoded*.json"))
    if not files:
        pytest.skip("../shared/fixtures/gateway is not beside this checkout")
    for path in files:
        decoded = json.loads(path.read_text(encoding="utf-8"))
        # The raw protobuf was not recorded; any bytes stand in for it.
        reading = Reading(VITALS_PATH, READ_AT, DIN, b"\x0a\x00", decoded)
        message = reading_message(reading)
        assert validate_message(message.routing_key, message.body) == [], path.name


# --------------------------------------------------------------------------- invalid messages


def _edit(body: bytes, change: Callable[[dict[str, Any]], None]) -> bytes:
    document = json.loads(body)
    change(document)
    return json.dumps(document).encode()


def _walk(document: dict[str, Any], path: str | tuple[str, ...]) -> tuple[Any, str]:
    """The parent node and the last key of ``path`` ("a/b/c", or a tuple when keys hold "/")."""
    *parents, last = path.split("/") if isinstance(path, str) else path
    node: Any = document
    for step in parents:
        node = node[step]
    return node, last


def _set(path: str | tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        node, last = _walk(document, path)
        node[last] = value

    return change


def _drop(path: str | tuple[str, ...]) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        node, last = _walk(document, path)
        del node[last]

    return change


_INVALID = [
    pytest.param(
        "powerwall.*.meters",
        _drop("payload/site/instant_power"),
        "payload/site: 'instant_power' is a required property",
        id="missing-meter-field",
    ),
    pytest.param(
        "powerwall.*.meters", _drop("payload/solar"), "'solar' is a required", id="missing-meter"
    ),
    pytest.param(
        "powerwall.*.meters",
        _set("payload/battery/energy_imported", "18623618"),
        "payload/battery/energy_imported: '18623618' is not of type 'number'",
        id="meter-counter-as-string",
    ),
    pytest.param(
        "powerwall.*.soe",
        _set("payload/percentage", "51.4"),
        "payload/percentage: '51.4' is not of type 'number'",
        id="soe-as-string",
    ),
    pytest.param(
        "powerwall.*.soe",
        _set("payload/percentage", 140),
        "payload/percentage: 140 is greater than the maximum of 100",
        id="soe-above-100",
    ),
    pytest.param(
        "powerwall.*.grid_status",
        _set("payload/grid_status", "GridUp"),
        "payload/grid_status: 'GridUp' is not one of",
        id="unknown-grid-state",
    ),
    pytest.param(
        "powerwall.*.grid_status",
        _set("payload/grid_services_active", "false"),
        "payload/grid_services_active: 'false' is not of type 'boolean'",
        id="grid-services-as-string",
    ),
    pytest.param(
        "powerwall.*.soe", _drop("gateway"), "'gateway' is a required property", id="no-gateway"
    ),
    pytest.param(
        "powerwall.*.soe", _drop("payload"), "'payload' is a required property", id="no-payload"
    ),
    pytest.param(
        "powerwall.*.soe",
        _set("time", "2026-11-21 14:03:58.347Z"),
        "time: '2026-11-21 14:03:58.347Z' does not match",
        id="time-with-space",
    ),
    pytest.param(
        "powerwall.*.soe",
        _set("time", "2026-11-21T15:03:58.347+01:00"),
        "time: '2026-11-21T15:03:58.347+01:00' does not match",
        id="time-not-utc",
    ),
    pytest.param(
        "powerwall.*.soe",
        _set("time", 1795269838.347),
        "time: 1795269838.347 is not of type",
        id="time-as-epoch",
    ),
    pytest.param("powerwall.*.soe", _set("version", 2), "version: 1 was expected", id="version-2"),
    pytest.param(
        "powerwall.*.soe", _set("version", "1"), "version: '1' is not of type", id="v-str"
    ),
    pytest.param(
        "powerwall.*.soe", _set("kind", "meters"), "kind: 'soe' was expected", id="wrong-kind"
    ),
    pytest.param(
        "powerwall.*.soe",
        _set("endpoint", "/api/meters/aggregates"),
        "endpoint: '/api/system_status/soe' was expected",
        id="wrong-endpoint",
    ),
    pytest.param(
        "powerwall.*.soe",
        _set("received", "2026-11-21T14:03:58.400Z"),
        "Additional properties are not allowed ('received' was unexpected)",
        id="extra-envelope-key",
    ),
    pytest.param(
        "powerwall.*.soe",
        _set("payload_encoding", "gzip"),
        "payload_encoding: 'base64' was expected",
        id="unknown-encoding",
    ),
    pytest.param(
        "powerwall.*.vitals",
        _drop("payload_encoding"),
        "'payload_encoding' is a required property",
        id="vitals-without-encoding",
    ),
    pytest.param(
        "powerwall.*.vitals",
        _set("payload", "not base64!"),
        "payload: 'not base64!' does not match",
        id="vitals-bad-base64",
    ),
    pytest.param(
        "powerwall.*.vitals",
        _set("decoded", ["TEPOD--1081100-13-V--T23G9285777"]),
        "decoded: ['TEPOD--1081100-13-V--T23G9285777'] is not of type 'object'",
        id="vitals-decoded-list",
    ),
    pytest.param(
        METER_STREAM,
        _set("gateway", DIN),
        "Additional properties are not allowed ('gateway' was unexpected)",
        id="meterstream-extra-key",
    ),
    pytest.param(
        METER_STREAM,
        _drop("state_of_energy"),
        "'state_of_energy' is a required property",
        id="meterstream-no-soe",
    ),
    pytest.param(
        METER_STREAM,
        _set("timestamp", "2026-11-21T14:03:58.347Z"),
        "timestamp: '2026-11-21T14:03:58.347Z' is not of type 'number'",
        id="meterstream-iso-timestamp",
    ),
    pytest.param(
        METER_STREAM,
        _drop("readings/load/energy_imported"),
        "readings/load: 'energy_imported' is a required property",
        id="meterstream-readings-incomplete",
    ),
    pytest.param(
        POLLER_STATUS,
        _set("endpoint", "/api/status"),
        "endpoint: '/api/status' is not of type 'null'",
        id="status-with-endpoint",
    ),
    pytest.param(
        POLLER_STATUS,
        _set(("payload", "endpoints", STATUS_PATH, "state"), "sleeping"),
        "'sleeping' is not one of",
        id="status-unknown-endpoint-state",
    ),
    pytest.param(
        POLLER_STATUS,
        _drop("payload/buffer"),
        "payload: 'buffer' is a required property",
        id="status-no-buffer",
    ),
    pytest.param(
        POLLER_STATUS,
        _set("payload/logins", 1.5),
        "payload/logins: 1.5 is not of type 'integer'",
        id="status-float-logins",
    ),
]


@pytest.mark.parametrize(("routing_key", "change", "expected"), _INVALID)
def test_invalid_messages_are_rejected_with_a_useful_error(
    valid_bodies: dict[str, bytes],
    routing_key: str,
    change: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    body = valid_bodies[routing_key]
    assert validate_message(routing_key, body) == []
    errors = validate_message(routing_key, _edit(body, change))
    assert errors, "the broken message was accepted"
    assert any(expected in error for error in errors), errors
    assert all("\n" not in error and len(error) <= 300 for error in errors)


def test_api_kind_must_match_the_routing_key() -> None:
    body = _envelope("/api/operation", {"real_mode": "self_consumption"})
    assert validate_message("powerwall.*.api.operation", body) == []
    errors = validate_message("powerwall.*.api.sitemaster", body)
    assert errors == [
        "kind: 'api.operation' does not match the routing key's kind 'api.sitemaster'"
    ]


def test_specific_api_schemas_refine_the_generic_one() -> None:
    status = _envelope(STATUS_PATH, {"din": DIN, "version": 23.12})
    assert validate_message("powerwall.*.api.status", status) == [
        "payload/version: 23.12 is not of type 'string'"
    ]
    blocks = _envelope("/api/system_status", {"nominal_full_pack_energy": 13500})
    errors = validate_message("powerwall.*.api.system_status", blocks)
    assert any("'battery_blocks' is a required property" in e for e in errors), errors
    disabled_pack: dict[str, Any] = {
        "nominal_full_pack_energy": 13500,
        "nominal_energy_remaining": None,
        "battery_blocks": [{"PackageSerialNumber": "TG1", "p_out": None, "energy_charged": None}],
    }
    body = _envelope("/api/system_status", disabled_pack)
    assert validate_message("powerwall.*.api.system_status", body) == []
    anything: list[Any] = [None, [], "TIMEOUT!", {"anything": [1, 2]}]
    for payload in anything:
        body = _envelope("/api/meters/solar", payload)
        assert validate_message("powerwall.*.api.meters.solar", body) == []


def test_not_json_and_unknown_kinds_are_errors_not_exceptions() -> None:
    assert validate_message("powerwall.*.soe", b"{not json")[0].startswith("(body): not JSON")
    assert validate_message("powerwall.*.soe", b"\xff\xfe")[0].startswith("(body): not JSON")
    assert validate_message("powerwall.*.soe", b"[]") == ["(body): [] is not of type 'object'"]
    assert validate_message(RESYNC, b"{}") == ["no schema for message kind 'control.resync'"]
    assert validate_message("Weather", b"{}") == ["no schema for message kind 'Weather'"]


def test_long_errors_are_cut_to_one_short_line() -> None:
    body = _envelope("/api/system_status/soe", {"percentage": ["x" * 50] * 40})
    errors = validate_message("powerwall.*.soe", body)
    assert len(errors) == 1
    assert errors[0].startswith("payload/percentage: [") and errors[0].endswith("...")
    assert len(errors[0]) == 300


_MALFORMED_ENVELOPES = [
    pytest.param(b"{not json", id="not-json"),
    pytest.param(b"\xff\xfe\x00", id="not-utf8"),
    pytest.param(b'["version", 1]', id="array"),
    pytest.param(b'"soe"', id="string"),
    pytest.param(
        b'{"kind":"soe","time":"2026-11-21T14:03:58.347Z","gateway":"x","endpoint":null,'
        b'"payload":{}}',
        id="no-version",
    ),
    pytest.param(
        b'{"version":"1","kind":"soe","time":"2026-11-21T14:03:58.347Z","gateway":"x",'
        b'"endpoint":null,"payload":{}}',
        id="version-string",
    ),
    pytest.param(
        b'{"version":true,"kind":"soe","time":"2026-11-21T14:03:58.347Z","gateway":"x",'
        b'"endpoint":null,"payload":{}}',
        id="version-bool",
    ),
    pytest.param(
        b'{"version":2,"kind":"soe","time":"2026-11-21T14:03:58.347Z","gateway":"x",'
        b'"endpoint":null,"payload":{}}',
        id="version-newer",
    ),
    pytest.param(
        b'{"version":1,"time":"2026-11-21T14:03:58.347Z","gateway":"x","endpoint":null,'
        b'"payload":{}}',
        id="no-kind",
    ),
    pytest.param(
        b'{"version":1,"kind":"soe","gateway":"x","endpoint":null,"payload":{}}', id="no-time"
    ),
    pytest.param(
        b'{"version":1,"kind":"soe","time":"yesterday","gateway":"x","endpoint":null,"payload":{}}',
        id="time-not-iso",
    ),
    pytest.param(
        b'{"version":1,"kind":"soe","time":"2026-11-21T14:03:58.347","gateway":"x",'
        b'"endpoint":null,"payload":{}}',
        id="time-without-zone",
    ),
    pytest.param(
        b'{"version":1,"kind":"soe","time":"2026-11-21T14:03:58.347Z","gateway":7,'
        b'"endpoint":null,"payload":{}}',
        id="gateway-number",
    ),
    pytest.param(
        b'{"version":1,"kind":"soe","time":"2026-11-21T14:03:58.347Z","gateway":"x",'
        b'"endpoint":5,"payload":{}}',
        id="endpoint-number",
    ),
    pytest.param(
        b'{"version":1,"kind":"soe","time":"2026-11-21T14:03:58.347Z","gateway":"x",'
        b'"endpoint":null}',
        id="no-payload",
    ),
    pytest.param(
        b'{"version":1,"kind":"vitals","time":"2026-11-21T14:03:58.347Z","gateway":"x",'
        b'"endpoint":"/api/devices/vitals","payload":{"a":1},"payload_encoding":"base64"}',
        id="base64-payload-not-string",
    ),
    pytest.param(
        b'{"version":1,"kind":"vitals","time":"2026-11-21T14:03:58.347Z","gateway":"x",'
        b'"endpoint":"/api/devices/vitals","payload":"not base64!","payload_encoding":"base64"}',
        id="base64-payload-invalid",
    ),
]


@pytest.mark.parametrize("body", _MALFORMED_ENVELOPES)
def test_parse_envelope_raises_malformed_message(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_envelope(body)
    # The schema is at least as strict as the parser.
    document_kind = "vitals" if b'"vitals"' in body else "soe"
    assert validate_message(document_kind, body) != []


_MALFORMED_STREAMS = [
    pytest.param(b"", id="empty"),
    pytest.param(b"{'timestamp': 1}", id="python-repr"),
    pytest.param(b"[1795269838.3, 51.4, {}]", id="array"),
    pytest.param(b'{"state_of_energy":51.4,"readings":{}}', id="no-timestamp"),
    pytest.param(b'{"timestamp":"1795269838.3","state_of_energy":51.4,"readings":{}}', id="ts-str"),
    pytest.param(b'{"timestamp":1795269838.3,"readings":{}}', id="no-soe"),
    pytest.param(b'{"timestamp":1795269838.3,"state_of_energy":true,"readings":{}}', id="soe-bool"),
    pytest.param(b'{"timestamp":1795269838.3,"state_of_energy":51.4}', id="no-readings"),
    pytest.param(b'{"timestamp":1795269838.3,"state_of_energy":51.4,"readings":[]}', id="list"),
]


@pytest.mark.parametrize("body", _MALFORMED_STREAMS)
def test_parse_meter_stream_raises_malformed_message(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_meter_stream(body)
    assert validate_message(METER_STREAM, body) != []


# --------------------------------------------------------------------------- schema files


def test_every_schema_file_loads_and_has_a_unique_id() -> None:
    files = sorted(SCHEMA_DIR.glob("*.json"))
    assert len(files) >= 10
    ids = []
    for path in files:
        schema = json.loads(path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", path.name
        assert schema["$id"] == ID_BASE + path.name
        ids.append(schema["$id"])
    assert len(ids) == len(set(ids))
    assert set(schemas.schemas()) == {path.name for path in files}


def test_every_kind_maps_to_its_schema_and_validators_are_cached() -> None:
    expected = {
        METER_STREAM: "meter-stream.json",
        "meters": "meters.json",
        "powerwall.*.meters": "meters.json",
        "soe": "soe.json",
        "grid_status": "grid-status.json",
        "vitals": "vitals.json",
        "poller.status": "poller-status.json",
        "powerwall.*.poller.status": "poller-status.json",
        "api.status": "api-status.json",
        "api.system_status": "api-system-status.json",
        "powerwall.*.api.system_status": "api-system-status.json",
        "api.meters": "api.json",
        "api.system_status.grid_faults": "api.json",
        "powerwall.*.api.anything.new": "api.json",
        "octopus.plan": "octopus-plan.json",
        "octopus.*.plan": "octopus-plan.json",
        "control.tedapi": "control-tedapi.json",
        "control.*.tedapi": "control-tedapi.json",
        "control.tedapi.reply": "control-tedapi-reply.json",
        "dispatch.result": "dispatch-result.json",
        "dispatch.*.result": "dispatch-result.json",
    }
    assert {kind: schema_file_for(kind) for kind in expected} == expected
    assert validator_for("api.operation") is validator_for("powerwall.*.api.sitemaster")
    assert validator_for("api.status") is not validator_for("api.operation")
    mapped = {schema_file_for(kind) for kind in expected} | {"envelope.json"}
    assert mapped == set(schemas.schemas())  # no schema file is unreachable
    for kind in ("api", "api.", "resync", "meterstream", "powerwall.status", ""):
        with pytest.raises(UnknownKind):
            validator_for(kind)


def test_schemas_ship_as_package_data() -> None:
    packaged = importlib.resources.files("powerwall_bus.schema") / "messages"
    names = {entry.name for entry in packaged.iterdir() if entry.name.endswith(".json")}
    assert names == {path.name for path in SCHEMA_DIR.glob("*.json")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = project["tool"]["setuptools"]
    assert setuptools["package-dir"]["powerwall_bus.schema"] == "schema"
    assert "powerwall_bus.schema.messages" in setuptools["packages"]
    assert "*.json" in setuptools["package-data"]["powerwall_bus.schema.messages"]
    assert any(dep.startswith("jsonschema") for dep in project["project"]["dependencies"])


def test_schema_version_in_code_matches_the_envelope_schema() -> None:
    envelope = schemas.schemas()["envelope.json"]
    assert envelope["properties"]["version"]["const"] == SCHEMA_VERSION
    assert envelope["additionalProperties"] is False
    assert schemas.schemas()["meter-stream.json"]["additionalProperties"] is False


# --------------------------------------------------------------------------- docs/messages.md


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_doc_names_every_routing_key_the_poller_can_produce(doc: str) -> None:
    keys = {routing_key_for(path, ANY_GATEWAY) for path in intervals_for(PollerSettings())}
    keys |= {METER_STREAM, POLLER_STATUS, RESYNC}
    assert len(keys) >= 25
    missing = sorted(key for key in keys if f"`{key}`" not in doc)
    assert missing == []


def test_doc_names_every_schema_file(doc: str) -> None:
    missing = sorted(p.name for p in SCHEMA_DIR.glob("*.json") if f"`{p.name}`" not in doc)
    assert missing == []


def test_doc_table_maps_each_routing_key_to_the_schema_the_code_uses(doc: str) -> None:
    rows = re.findall(r"^\| `([\w.*]+)` \|.*\| `([\w-]+\.json)` \|$", doc, flags=re.MULTILINE)
    assert len(rows) >= 25
    for routing_key, schema_file in rows:
        assert schema_file_for(routing_key) == schema_file, routing_key


def test_doc_examples_are_valid_messages(doc: str) -> None:
    examples = re.findall(r"<!-- example: (\S+) -->\n```json\n(.*?)```", doc, flags=re.DOTALL)
    assert {key for key, _ in examples} >= {
        METER_STREAM,
        "powerwall.*.meters",
        "powerwall.*.soe",
        "powerwall.*.grid_status",
        "powerwall.*.vitals",
        POLLER_STATUS,
        "powerwall.*.api.status",
    }
    for routing_key, text in examples:
        body = text.encode()
        assert validate_message(routing_key, body) == [], routing_key
        if routing_key == METER_STREAM:
            parse_meter_stream(body)
        else:
            assert parse_envelope(body).kind == kind_of(routing_key)


def test_doc_consumer_example_is_python_that_uses_resync_and_deduplicates(doc: str) -> None:
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.DOTALL)
    assert len(blocks) == 1
    code = blocks[0]
    compile(code, "docs/messages.md", "exec")
    assert f'"{RESYNC}"' in code and "reply_to=queue" in code
    assert "message_id" in code and 'exchange_type="topic", durable=True' in code


def test_doc_states_the_amqp_properties_the_publisher_sets(doc: str) -> None:
    from powerwall_bus.producers.poller.publisher import properties_for

    message = reading_message(Reading(SOE_PATH, READ_AT, DIN, {"percentage": 50.0}))
    properties = properties_for(message, "corr-1", "pwbus-poller")
    names = ("content_type", "delivery_mode", "message_id", "timestamp", "app_id", "type")
    for name in (*names, "user_id"):
        assert getattr(properties, name) is not None
        assert f"`{name}`" in doc, name
    assert f"`{properties.content_type}`" in doc and f"`{properties.app_id}`" in doc
    assert properties.headers == {
        "schema_version": SCHEMA_VERSION,
        GATEWAY_HEADER: DIN,
        RUN_HEADER: message.run,
        SEQ_HEADER: message.seq,
    }
    assert (
        '`{"schema_version": 1, "x-pwbus-gateway": "<DIN>", "x-pwbus-run": "<run>", '
        '"x-pwbus-seq": <seq>}`' in doc
    )
    assert f"`{GATEWAY_HEADER}`" in doc and f"`{GATEWAY_NAME_HEADER}`" in doc
    assert "`correlation_id`" in doc
