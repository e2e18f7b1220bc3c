"""Conformance: every Octopus GraphQL sample we have is read the way the facts say.

Parametrized over the in-repo samples (``tests/data/octopus``) and, when the team folder
exists beside the checkout, its samples (``../shared/fixtures/octopus/graphql``): plans
(flex and legacy) become valid, UTC, time-ordered ``octopus.plan`` messages; the fake
server serves each flex sample back to the client unchanged; every error sample maps to
the error class its code means; the devices samples pick a non-meter device; the token
sample's expiry is read from its payload.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from powerwall_bus.shared.errors import (
    OctopusApiError,
    OctopusAuthError,
    OctopusDeviceError,
    OctopusError,
    OctopusRateLimited,
    OctopusRefreshRejected,
    OctopusTokenExpired,
)
from powerwall_bus.shared.messages import RunSequence
from powerwall_bus.shared.octopus.client import OctopusClient
from powerwall_bus.shared.octopus.documents import (
    devices_from,
    flex_plan,
    legacy_plan,
    pick_device,
)
from powerwall_bus.shared.octopus.message import PlanMessage, parse_plan_message, plan_message
from powerwall_bus.shared.octopus.plan import DispatchPlan
from powerwall_bus.shared.octopus.tokens import access_expiry, jwt_claims
from powerwall_bus.shared.octopus.transport import GraphQLError, error_for
from powerwall_bus.shared.schemas import validate_message
from powerwall_bus.simulator.octopus import FakeOctopus, FakeOctopusRunner
from tests.conftest import SHARED_FIXTURES

OWN = Path(__file__).resolve().parent / "data" / "octopus"
SHARED = SHARED_FIXTURES / "octopus" / "graphql"
FETCHED = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)


def _samples(pattern: str) -> list[Path]:
    own = sorted(OWN.glob(pattern))
    shared = sorted(SHARED.glob(pattern)) if SHARED.is_dir() else []
    return own + shared


def _ids(paths: list[Path]) -> list[str]:
    return [f"{'own' if path.is_relative_to(OWN) else 'shared'}/{path.name}" for path in paths]


FLEX = _samples("flex_planned_dispatches.*.response.json")
LEGACY = _samples("planned_dispatches.legacy*.response.json")
ERRORS = _samples("error.*.json")
DEVICES = _samples("devices*.response.json")
TOKENS = _samples("obtain_kraken_token.response.json")

EXPECTED: dict[str | None, type[OctopusError]] = {
    "KT-CT-1111": OctopusAuthError,
    "KT-CT-1112": OctopusAuthError,
    "KT-CT-1139": OctopusAuthError,
    "KT-CT-1120": OctopusTokenExpired,
    "KT-CT-1124": OctopusTokenExpired,
    "KT-CT-1134": OctopusRefreshRejected,
    "KT-CT-1135": OctopusRefreshRejected,
    "KT-CT-1199": OctopusRateLimited,
    "KT-CT-4301": OctopusDeviceError,
    "KT-CT-4340": OctopusApiError,  # the client makes it an empty plan, never raises it
    None: OctopusApiError,
}


def _load(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _check_plan(plan: DispatchPlan, count: int) -> None:
    assert len(plan.dispatches) == count
    assert list(plan.dispatches) == sorted(plan.dispatches)
    for dispatch in plan.dispatches:
        assert dispatch.start.utcoffset() is not None and dispatch.start.tzinfo is UTC
        assert dispatch.end > dispatch.start
    assert DispatchPlan.from_payload(plan.to_payload()) == plan
    message = PlanMessage(
        account="A-SAMPLE01", time=FETCHED, state="ok", since=FETCHED, plan=plan, source="flex"
    )
    outgoing = plan_message(message, RunSequence("sample-run"))
    assert validate_message(outgoing.routing_key, outgoing.body) == []
    assert parse_plan_message(outgoing.body).plan == plan


def test_there_are_samples_of_every_sort() -> None:
    for found in (FLEX, LEGACY, ERRORS, DEVICES, TOKENS):
        assert any(path.is_relative_to(OWN) for path in found)


@pytest.mark.parametrize("path", FLEX, ids=_ids(FLEX))
def test_flex_samples_become_valid_plans(path: Path) -> None:
    items = _load(path)["data"]["flexPlannedDispatches"]
    plan = flex_plan("device-1", items, FETCHED)
    _check_plan(plan, len(items or []))
    for item in items or []:
        start = datetime.fromisoformat(item["start"].replace("Z", "+00:00"))
        match = [d for d in plan.dispatches if d.start == start]
        assert match and match[0].kind == item["type"]
        energy = item["energyAddedKwh"]
        assert match[0].energy_kwh == (None if energy is None else float(energy))  # sign kept


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOctopusRunner]:
    with FakeOctopusRunner(FakeOctopus(flex_per_minute=10_000)) as runner:
        yield runner


@pytest.mark.parametrize("path", FLEX, ids=_ids(FLEX))
def test_the_fake_serves_each_flex_sample_as_octopus_would(
    path: Path, fake: FakeOctopusRunner, tmp_path: Path
) -> None:
    response = _load(path)
    fake.call(fake.fake.set_plan, list(response["data"]["flexPlannedDispatches"] or []))
    client = OctopusClient(api_key=fake.fake.api_key, account=fake.fake.account, url=fake.url)
    try:
        result = client.plan()
    finally:
        client.close()
    expected = flex_plan(result.plan.device_id, response["data"]["flexPlannedDispatches"], FETCHED)
    assert result.plan.dispatches == expected.dispatches


@pytest.mark.parametrize("path", LEGACY, ids=_ids(LEGACY))
def test_legacy_samples_become_plans_with_smart_and_boost(path: Path) -> None:
    items = _load(path)["data"]["plannedDispatches"]
    plan = legacy_plan("", items, FETCHED)
    _check_plan(plan, len(items))
    kinds = {None: "SMART", "smart-charge": "SMART", "bump-charge": "BOOST"}
    for item in items:
        start = datetime.fromisoformat(item["start"])
        (dispatch,) = [d for d in plan.dispatches if d.start == start]
        assert dispatch.kind == kinds[item["meta"]["source"]]
        assert dispatch.energy_kwh == -float(item["delta"])  # import is negative


@pytest.mark.parametrize("path", ERRORS, ids=_ids(ERRORS))
def test_error_samples_map_to_their_class(path: Path) -> None:
    body = _load(path)
    (raw,) = body["errors"]
    error = GraphQLError.from_json(raw)
    translated = error_for(error, 1000.0)
    assert type(translated) is EXPECTED[error.code], error
    assert translated.code == error.code
    assert "\n" not in str(translated) and error.message in str(translated)
    if error.code is None:
        assert error.unknown_field and isinstance(translated, OctopusApiError)
        assert translated.unknown_field
    else:
        assert error.field == raw["path"][0]
    if isinstance(translated, OctopusRateLimited):
        assert translated.until == 1000.0


@pytest.mark.parametrize("path", DEVICES, ids=_ids(DEVICES))
def test_devices_samples_pick_a_flex_device(path: Path) -> None:
    devices = devices_from(_load(path)["data"]["devices"])
    chosen = pick_device(devices)
    assert chosen.device_type != "ELECTRICITY_METERS"
    live = [d for d in devices if d.device_type != "ELECTRICITY_METERS" and d.live]
    assert chosen in live or not live


@pytest.mark.parametrize("path", TOKENS, ids=_ids(TOKENS))
def test_token_samples_expire_when_their_payload_says(path: Path) -> None:
    answer = _load(path)["data"]["obtainKrakenToken"]
    assert access_expiry(answer["token"], answer["payload"], 0.0) == answer["payload"]["exp"]
    claims = jwt_claims(answer["token"])
    assert claims["exp"] == answer["payload"]["exp"]
    assert access_expiry(answer["token"], json.dumps(answer["payload"]), 0.0) == claims["exp"]
    assert answer["refreshExpiresIn"] > claims["exp"]  # absolute epoch, not a duration


def test_a_refusal_and_unknown_state_never_pass_as_a_plan() -> None:
    message = PlanMessage(
        account="A-SAMPLE01", time=FETCHED, state="refused", since=FETCHED, plan=None
    )
    body = plan_message(message, RunSequence("r")).body
    assert validate_message("octopus.A-SAMPLE01.plan", body) == []
    parsed = parse_plan_message(body)
    assert parsed.plan is None and parsed.state == "refused"
    broken = json.loads(body)
    broken["payload"]["state"] = "fine"
    assert validate_message("octopus.plan", json.dumps(broken).encode())


def test_the_documented_example_is_a_valid_message() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "messages.md").read_text()
    (example,) = re.findall(
        r"<!-- octopus example: (\S+) -->\n```json\n(.*?)```", doc, flags=re.DOTALL
    )
    key, text = example
    assert validate_message(key, text.encode()) == []
    parsed = parse_plan_message(text.encode())
    assert parsed.plan is not None and len(parsed.plan.dispatches) == 2
    assert f"octopus.{parsed.account}.plan" == key
