"""The contract's table (shared/contract.py) and everything derived from it agree.

Unit tests of the table itself (unique paths, kinds and keys; schema files that exist; keys
that round-trip; cadences that name real settings), then the consumers of it: the poller's
schedule, the writer's bindings, the schema lookup, docs/messages.md, and the proxy, whose
routes, ``/openapi.json`` and the table are held against each other both from the routing
tables and over real HTTP.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from powerwall_bus.consumers.mysql.queues import bindings
from powerwall_bus.consumers.mysql.rows import STORED_KINDS
from powerwall_bus.consumers.proxy import render
from powerwall_bus.consumers.proxy.app import ROUTED_PREFIXES, routed_paths
from powerwall_bus.consumers.proxy.openapi import openapi_document
from powerwall_bus.producers.poller.reader import intervals_for
from powerwall_bus.shared import contract
from powerwall_bus.shared.contract import ENDPOINTS, KINDS, Encoding, Proxy
from powerwall_bus.shared.gateway.client import VITALS_PATH
from powerwall_bus.shared.messages import Reading, parse_envelope, reading_message
from powerwall_bus.shared.schemas import schema_file_for, schemas
from powerwall_bus.shared.settings import PollerSettings, WriterSettings
from powerwall_bus.shared.topology import ALL_POWERWALL, METER_STREAM, POLLER_STATUS, RESYNC
from tests.support.proxy_runner import GATEWAY, ProxyRunner

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIR = ROOT / "schema" / "messages"
DOC = ROOT / "docs" / "messages.md"


def _in_contract(key: str) -> bool:
    """Whether ``powerwall.*.#`` matches ``key``."""
    return key.startswith("powerwall.") and contract.gateway_of(key) is not None


# --------------------------------------------------------------------------- the table


def test_paths_kinds_and_routing_keys_are_unique() -> None:
    for column in (
        [e.path for e in ENDPOINTS],
        [e.kind for e in ENDPOINTS],
        [e.routing_key(GATEWAY) for e in ENDPOINTS],
        [k.name for k in KINDS],
        [contract.routing_key(k.name, GATEWAY) for k in KINDS],
    ):
        assert len(column) == len(set(column)), column


def test_every_endpoint_kind_is_declared_and_follows_the_rule() -> None:
    for endpoint in ENDPOINTS:
        assert endpoint.path.startswith("/api/") and endpoint.path == endpoint.path.rstrip("/")
        declared = contract.kind(endpoint.kind)
        assert declared is not None and declared.envelope, endpoint
        if endpoint.kind.startswith("api."):
            # The rule a path added with PWBUS_POLL_SLOW_ENDPOINTS gets its kind by.
            assert endpoint.kind == contract.api_kind(endpoint.path), endpoint
        else:
            assert declared.name == endpoint.kind, endpoint  # a dedicated kind has its row
        assert contract.kind_for_path(endpoint.path) == endpoint.kind
        assert contract.kind_for_path(endpoint.path + "/?x=1") == endpoint.kind


def test_paths_outside_the_table_get_the_api_family() -> None:
    assert contract.kind_for_path("/api/site_info/new.thing/") == "api.site_info.new_thing"
    assert contract.routing_key_for("/api/x/y", GATEWAY) == f"powerwall.{GATEWAY}.api.x.y"
    assert contract.schema_file("api.x.y") == "api.json"
    assert contract.kind("api.") is None and contract.kind("api") is None
    assert contract.kind("nothing") is None


def test_every_schema_file_exists_and_every_one_is_used() -> None:
    files = {path.name for path in SCHEMA_DIR.glob("*.json")}
    used = {k.schema for k in KINDS if k.schema is not None}
    assert used <= files
    assert files - used == {"envelope.json"}  # the common envelope, $ref'd by the others
    assert set(schemas()) == files
    for endpoint in ENDPOINTS:
        assert endpoint.schema in files, endpoint
    assert {k.name for k in KINDS if k.schema is None} == {contract.RESYNC}


def test_every_kinds_routing_key_round_trips() -> None:
    for name in [k.name for k in KINDS] + [e.kind for e in ENDPOINTS]:
        for gateway in (GATEWAY, contract.ANY_GATEWAY, contract.UNKNOWN_GATEWAY):
            key = contract.routing_key(name, gateway)
            assert contract.kind_of(key) == name, name
            bare = name in (METER_STREAM, RESYNC)
            account = name in contract.ACCOUNT_KINDS  # scoped by an Octopus account
            assert contract.gateway_of(key) == (None if bare or account else gateway), key
            assert contract.account_of(key) == (gateway if account else None), key
            if contract.schema_file(name) is not None:
                assert schema_file_for(key) == schema_file_for(name) == contract.schema_file(name)
        assert contract.kind_of(name) == name, name  # a kind is its own kind
        assert contract.gateway_of(name) is None, name
    for declared in KINDS:
        key = contract.routing_key(declared.name, GATEWAY)
        # powerwall.# is exactly the envelope kinds: not Tesla-API's stream, not requests.
        assert _in_contract(key) == declared.envelope, declared
    assert (METER_STREAM, RESYNC, POLLER_STATUS, ALL_POWERWALL) == (
        "MeterStream",
        "control.resync",
        "powerwall.*.poller.status",
        "powerwall.*.#",
    )


@pytest.mark.parametrize(
    ("kind", "gateway", "key"),
    [
        ("meters", GATEWAY, f"powerwall.{GATEWAY}.meters"),
        ("api.site_info.site_name", GATEWAY, f"powerwall.{GATEWAY}.api.site_info.site_name"),
        ("poller.status", GATEWAY, f"powerwall.{GATEWAY}.poller.status"),
        ("meters", "", "powerwall.unknown.meters"),
        ("meters", "unknown", "powerwall.unknown.meters"),
        ("soe", "a.b*c#d e/f", "powerwall.a_b_c_d_e_f.soe"),  # one safe topic word
        ("meters", "*", "powerwall.*.meters"),  # a binding pattern
        ("#", GATEWAY, f"powerwall.{GATEWAY}.#"),
        ("#", "*", "powerwall.*.#"),
        ("MeterStream", GATEWAY, "MeterStream"),  # Tesla-API's key never changes
        ("control.resync", GATEWAY, "control.resync"),
        ("octopus.plan", "A-1234ABCD", "octopus.A-1234ABCD.plan"),  # an account, no gateway
        ("octopus.plan", "*", "octopus.*.plan"),
    ],
)
def test_routing_keys_carry_the_gateway_as_one_word(kind: str, gateway: str, key: str) -> None:
    assert contract.routing_key(kind, gateway) == key


@pytest.mark.parametrize(
    ("key", "kind", "gateway"),
    [
        (f"powerwall.{GATEWAY}.meters", "meters", GATEWAY),
        ("powerwall.x.api.site_info.site_name", "api.site_info.site_name", "x"),
        ("powerwall.*.poller.status", "poller.status", "*"),
        ("MeterStream", "MeterStream", None),
        ("control.resync", "control.resync", None),
        ("meters", "meters", None),  # a kind is its own kind
        ("powerwall.meters", "powerwall.meters", None),  # the old format: not a contract key
        ("powerwall..meters", "powerwall..meters", None),
        ("powerwall.x.", "powerwall.x.", None),
        ("octopus.A-1234ABCD.plan", "octopus.plan", None),
        ("octopus.plan", "octopus.plan", None),
        ("octopus.A-1.other", "octopus.A-1.other", None),  # not a kind of the table
    ],
)
def test_kind_and_gateway_of_a_routing_key(key: str, kind: str, gateway: str | None) -> None:
    assert (contract.kind_of(key), contract.gateway_of(key)) == (kind, gateway)


def test_protobuf_endpoints_are_the_ones_the_client_decodes() -> None:
    protobuf = {e.path for e in ENDPOINTS if e.encoding is Encoding.PROTOBUF}
    assert protobuf == {VITALS_PATH}
    assert contract.endpoint(VITALS_PATH).schema == "vitals.json"


def test_reading_messages_carry_the_tables_kind_and_key() -> None:
    for endpoint in ENDPOINTS:
        reading = Reading(endpoint.path, 1_795_269_838.347, GATEWAY, {"x": 1})
        message = reading_message(reading)
        expected = (endpoint.routing_key(GATEWAY), endpoint.kind)
        assert (message.routing_key, message.type) == expected
        assert parse_envelope(message.body).kind == endpoint.kind


# --------------------------------------------------------------------------- the poller


def test_cadences_name_poller_settings() -> None:
    fields = {f.name: f for f in dataclasses.fields(PollerSettings)}
    for endpoint in ENDPOINTS:
        if endpoint.poll is None:
            continue
        assert endpoint.poll in fields, endpoint
        if endpoint.poll != contract.LISTED:
            assert isinstance(fields[endpoint.poll].default, float), endpoint


def test_the_schedule_is_the_tables() -> None:
    settings = PollerSettings()
    assert settings.slow_endpoints == contract.DEFAULT_SLOW_ENDPOINTS
    schedule = intervals_for(settings)
    polled = [e for e in ENDPOINTS if e.poll is not None]
    assert list(schedule) == [e.path for e in polled]  # the table's order is the tie-break
    for endpoint in polled:
        field = contract.SLOW_INTERVAL if endpoint.poll == contract.LISTED else endpoint.poll
        assert field is not None
        assert schedule[endpoint.path] == getattr(settings, field), endpoint
    never = {e.path for e in ENDPOINTS if e.poll is None}
    assert never == {"/api/customer/registration"}
    # Unlisting every slow endpoint keeps the fixed cadences, /api/status included.
    fixed = intervals_for(PollerSettings(slow_endpoints=()))
    expected = [e.path for e in polled if e.poll != contract.LISTED]
    assert list(fixed) == expected and expected[0] == "/api/status"


# --------------------------------------------------------------------------- the writer


def test_writer_binds_the_keys_of_the_kinds_it_stores() -> None:
    for kind in STORED_KINDS:
        assert contract.kind(kind) is not None, kind
    with_stream = bindings(WriterSettings(meter_stream=True))
    without = bindings(WriterSettings(meter_stream=False))
    assert set(without) == {contract.routing_key(kind, "*") for kind in STORED_KINDS}
    assert all(key.startswith("powerwall.*.") for key in without)  # every gateway
    assert set(with_stream) == set(without) | {METER_STREAM}


# --------------------------------------------------------------------------- the docs


def test_docs_routing_key_table_is_the_table() -> None:
    rows = re.findall(
        r"^\| `([\w.*]+)` \| `([\w.]+)` \| `(/api/[\w/]+)`[^|]* \| ([\d.]+)"
        r" \| `([\w-]+\.json)` \|$",
        DOC.read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    defaults = intervals_for(PollerSettings())
    assert {path for _, _, path, _, _ in rows} == set(defaults)
    for key, kind, path, every, schema in rows:
        endpoint = contract.endpoint(path)
        expected = (endpoint.routing_key(contract.ANY_GATEWAY), endpoint.kind, endpoint.schema)
        assert (key, kind, schema) == expected
        assert float(every) == defaults[path], path


# --------------------------------------------------------------------------- the proxy


def _documented() -> dict[str, Any]:
    return openapi_document()["paths"]


def _concrete(template: str, operation: dict[str, Any]) -> list[str]:
    """Example paths of a documented path: each enum value of a templated parameter, or a
    value matching its pattern."""
    if "{" not in template:
        return [template]
    (parameter,) = operation["get"]["parameters"]
    schema = parameter["schema"]
    values = schema.get("enum") or ["status"]
    return [template.replace("{" + parameter["name"] + "}", str(value)) for value in values]


def _documented_concrete() -> list[str]:
    return [path for t, op in _documented().items() for path in _concrete(t, op)]


def _routed(path: str) -> bool:
    return path in routed_paths() or path.startswith(ROUTED_PREFIXES)


def test_every_table_path_the_proxy_answers_is_routed_and_documented() -> None:
    documented = _documented()
    for endpoint in ENDPOINTS:
        if endpoint.proxy is Proxy.NOT_SERVED:
            assert not _routed(endpoint.path), endpoint
            assert endpoint.path not in documented, endpoint
            continue
        assert endpoint.path in routed_paths(), endpoint
        assert endpoint.path in documented, endpoint
        own = endpoint.path in render.OWN_PATHS
        assert own == (endpoint.proxy is Proxy.OWN_ROUTE), endpoint
    assert contract.proxy_paths(Proxy.PASS_THROUGH) == render.PASS_THROUGH
    assert contract.proxy_paths(Proxy.REFUSED) == render.DISABLED


def test_every_documented_path_is_routed() -> None:
    for path in _documented_concrete():
        assert _routed(path), path


def test_nothing_is_routed_that_is_neither_in_the_table_nor_documented_as_the_proxys() -> None:
    documented = set(_documented_concrete())
    table = {e.path: e for e in ENDPOINTS}
    for path in routed_paths():
        assert path in documented, path
        if path.startswith("/api/"):
            assert path in table and table[path].proxy is not Proxy.NOT_SERVED, path
    for prefix in ROUTED_PREFIXES:
        assert not prefix.startswith("/api/"), prefix
        assert any(path.startswith(prefix) for path in documented), prefix


def test_the_allow_list_disagreement_is_resolved() -> None:
    # /api/system_status/grid_status is pyPowerwall's pass-through (allow-listed; its
    # explicit route returns the same gateway JSON): routed, documented and fed as one.
    endpoint = contract.endpoint("/api/system_status/grid_status")
    assert endpoint.proxy is Proxy.PASS_THROUGH
    assert endpoint.path in render.PASS_THROUGH and endpoint.path not in render.OWN_PATHS
    assert "read by the poller" in _documented()[endpoint.path]["get"]["summary"]


@pytest.fixture(scope="module")
def proxy() -> Iterator[ProxyRunner]:
    with ProxyRunner() as runner:
        yield runner


def _http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    return session


def test_the_served_document_is_the_checked_one(proxy: ProxyRunner) -> None:
    served = _http().get(f"{proxy.root}/openapi.json", timeout=5).json()
    assert served == json.loads(json.dumps(openapi_document()))


def test_every_documented_path_answers_over_http(proxy: ProxyRunner) -> None:
    http = _http()
    for path in _documented_concrete():
        method = http.head if path == "/events" else http.get  # GET would stream forever
        response = method(f"{proxy.root}{path}", timeout=5, allow_redirects=False)
        assert response.status_code != 404, path
        assert response.status_code < 500 or path == "/health", (path, response.status_code)


@pytest.mark.parametrize(
    "path",
    [
        *(e.path for e in ENDPOINTS if e.proxy is Proxy.NOT_SERVED),
        "/api/config",
        "/api/login/Basic",
        "/api/meters/aggregates/x",
        "/api/status/",
        "/api/",
        "/apis/status",
    ],
)
def test_paths_outside_the_table_are_404_over_http(proxy: ProxyRunner, path: str) -> None:
    assert _http().get(f"{proxy.root}{path}", timeout=5).status_code == 404


def test_pass_throughs_serve_the_kind_the_table_says(proxy: ProxyRunner) -> None:
    paths = sorted(contract.proxy_paths(Proxy.PASS_THROUGH))
    now = time.time()
    proxy.feed(
        *(
            parse_envelope(reading_message(Reading(path, now, GATEWAY, {"from": path})).body)
            for path in paths
        )
    )
    http = _http()
    for path in paths:
        assert http.get(f"{proxy.root}{path}", timeout=5).json() == {"from": path}, path
