"""The Octopus client against the fake Kraken GraphQL server, over a real socket.

Every error path the research note lists: tokens (login, persistence and file mode, a
restart reusing them, proactive refresh, KT-CT-1124 refresh-and-retry, KT-CT-1134/1135
falling back to the key, an unknown token), a refused key, rate limits (KT-CT-1199, the
5-a-minute limit, HTTP 429, a WAF's HTML 403), outages, KT-CT-4340, device discovery and
re-discovery, the legacy fallback, and several root fields in one document.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from powerwall_bus.shared.errors import (
    OctopusApiError,
    OctopusAuthError,
    OctopusDeviceError,
    OctopusRateLimited,
    OctopusUnreachable,
)
from powerwall_bus.shared.logsetup import redaction_filter
from powerwall_bus.shared.octopus.client import REFRESH_MARGIN, OctopusClient
from powerwall_bus.shared.octopus.documents import Device, pick_device
from powerwall_bus.shared.octopus.tokens import jwt_claims
from powerwall_bus.simulator.octopus import FakeOctopus, FakeOctopusRunner, default_devices

PLAN = [
    {
        "start": "2026-01-14T13:00:00+00:00",
        "end": "2026-01-14T14:00:00+00:00",
        "type": "SMART",
        "energyAddedKwh": "7.1",
    },
    {
        "start": "2026-01-14T15:07:06+00:00",
        "end": "2026-01-14T16:43:40+00:00",
        "type": "BOOST",
        "energyAddedKwh": "-12.5",
    },
]


class Clock:
    """One settable clock for the client and the fake (token lifetimes without sleeping)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> Iterator[FakeOctopusRunner]:
    octopus = FakeOctopus(clock=clock)
    octopus.set_plan([dict(item) for item in PLAN])
    with FakeOctopusRunner(octopus) as runner:
        yield runner


def _client(
    runner: FakeOctopusRunner, clock: Clock, tmp_path: Path, **kwargs: object
) -> OctopusClient:
    options: dict[str, object] = {
        "api_key": runner.fake.api_key,
        "account": runner.fake.account,
        "url": runner.url,
        "token_file": tmp_path / "state" / "octopus-tokens.json",
        "timeout": 5.0,
        "clock": clock,
    }
    options.update(kwargs)
    return OctopusClient(**options)  # type: ignore[arg-type]


def test_login_plan_and_tokens_saved_0600(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path
) -> None:
    client = _client(fake, clock, tmp_path)
    result = client.plan()
    assert result.source == "flex" and result.note is None
    assert result.device_state == "SMART_CONTROL_CAPABLE"
    assert result.plan.device_id == default_devices()[0]["id"]  # the car, never the meter
    assert [(d.kind, d.energy_kwh) for d in result.plan.dispatches] == [
        ("SMART", 7.1),
        ("BOOST", -12.5),
    ]
    assert result.plan.dispatches[1].start.isoformat() == "2026-01-14T15:07:06+00:00"
    token_file = tmp_path / "state" / "octopus-tokens.json"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(token_file.parent).st_mode) == 0o700
    saved = json.loads(token_file.read_text())
    assert fake.fake.api_key not in token_file.read_text()
    assert saved["access"] in fake.fake.access and saved["refresh"] in fake.fake.refresh
    claims = jwt_claims(saved["access"])
    assert claims["iss"] == "https://api.octopus.energy/v1/graphql/"
    assert saved["access_expires"] == claims["exp"] == clock.now + 3600
    assert fake.fake.counts.logins == {"api_key": 1}
    # One request per poll: the device and its plan are two root fields of one document.
    before = fake.fake.counts.http
    client.plan()
    assert fake.fake.counts.http == before + 1
    assert fake.fake.counts.fields["flexPlannedDispatches"] == 2


def test_a_restart_reuses_the_saved_tokens_but_never_another_keys(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path
) -> None:
    _client(fake, clock, tmp_path).plan()
    again = _client(fake, clock, tmp_path)
    assert again.plan().source == "flex"
    assert fake.fake.counts.logins == {"api_key": 1}  # no second login
    other = _client(fake, clock, tmp_path, api_key="sk_live_another_key_0000")
    with pytest.raises(OctopusAuthError):
        other.plan()  # the saved tokens belong to the first key: not used
    assert fake.fake.counts.logins == {"api_key": 2}


def test_proactive_refresh_five_minutes_before_expiry(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path
) -> None:
    client = _client(fake, clock, tmp_path)
    client.plan()
    clock.now += 3600 - REFRESH_MARGIN - 10  # 5 min 10 s left: still used
    client.plan()
    assert fake.fake.counts.logins == {"api_key": 1}
    clock.now += 20  # under 5 min left: renewed before use, never an expired-token error
    client.plan()
    assert fake.fake.counts.logins == {"api_key": 1, "refresh": 1}
    assert "KT-CT-1124" not in fake.fake.counts.errors
    saved = json.loads((tmp_path / "state" / "octopus-tokens.json").read_text())
    assert saved["access"] == client._tokens.access and saved["refresh"] in fake.fake.refresh


def test_expired_token_is_refreshed_and_the_query_sent_again_once(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path
) -> None:
    client = _client(fake, clock, tmp_path)
    client.plan()
    fake.call(fake.fake.expire_tokens)
    assert client.plan().source == "flex"
    assert fake.fake.counts.errors["KT-CT-1124"] >= 1
    assert fake.fake.counts.logins == {"api_key": 1, "refresh": 1}


@pytest.mark.parametrize("fault", ["refresh_expired", "refresh_invalid"])
def test_a_refused_refresh_token_falls_back_to_the_key(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path, fault: str
) -> None:
    client = _client(fake, clock, tmp_path)
    client.plan()
    fake.call(fake.fake.set_faults, {fault: 1})
    fake.call(fake.fake.expire_tokens)
    assert client.plan().source == "flex"
    code = "KT-CT-1134" if fault == "refresh_expired" else "KT-CT-1135"
    assert fake.fake.counts.errors[code] == 1
    assert fake.fake.counts.logins == {"api_key": 2, "refresh": 1}


def test_a_refresh_token_past_its_expiry_is_not_even_tried(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path
) -> None:
    client = _client(fake, clock, tmp_path)
    client.plan()
    clock.now += 8 * 86400  # refreshExpiresIn (absolute) is 7 days after the login
    client.plan()
    assert fake.fake.counts.logins == {"api_key": 2}


def test_an_unknown_token_is_dropped_and_the_key_logs_in_once(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path
) -> None:
    client = _client(fake, clock, tmp_path)
    client.plan()
    fake.fake.access.clear()  # e.g. revoked: KT-CT-1111
    fake.fake.refresh.clear()
    assert client.plan().source == "flex"
    assert fake.fake.counts.errors["KT-CT-1111"] >= 1
    assert fake.fake.counts.logins == {"api_key": 2}


def test_a_bad_key_is_one_clear_error_without_the_key(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path
) -> None:
    key = "sk_live_WRONGWRONGWRONG0000"
    client = _client(fake, clock, tmp_path, api_key=key)
    with pytest.raises(OctopusAuthError) as caught:
        client.plan()
    text = str(caught.value)
    assert "\n" not in text and key not in text
    assert "KT-CT-1139" in text and "PWBUS_OCTOPUS_API_KEY" in text
    assert not (tmp_path / "state" / "octopus-tokens.json").exists()


def test_a_waf_403_is_a_rate_limit_not_a_bad_key(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path
) -> None:
    client = _client(fake, clock, tmp_path)
    fake.call(fake.fake.set_faults, {"waf403": 1})
    with pytest.raises(OctopusRateLimited) as caught:
        client.plan()  # the login itself met the block page
    assert not isinstance(caught.value, OctopusAuthError)
    assert "403" in str(caught.value) and caught.value.until >= clock.now
    assert client.plan().source == "flex"  # the same key works once the edge lets us in


def test_kt_ct_1199_and_the_five_a_minute_limit_are_rate_limits(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path
) -> None:
    client = _client(fake, clock, tmp_path)
    fake.call(fake.fake.set_faults, {"rate_limit": 1})
    with pytest.raises(OctopusRateLimited) as caught:
        client.plan()  # on obtainKrakenToken, errorType AUTHORIZATION: still a rate limit
    assert caught.value.code == "KT-CT-1199"
    for _ in range(5):
        client.plan()
    with pytest.raises(OctopusRateLimited):
        client.plan()  # the sixth flexPlannedDispatches within a minute
    clock.now += 61
    assert client.plan().source == "flex"


def test_http_429_carries_retry_after_and_5xx_or_no_server_is_unreachable(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path
) -> None:
    client = _client(fake, clock, tmp_path)
    client.plan()
    fake.call(fake.fake.set_faults, {"http429": 1})
    with pytest.raises(OctopusRateLimited) as caught:
        client.plan()
    assert caught.value.until == clock.now + 2
    fake.call(fake.fake.set_faults, {"http500": 1})
    with pytest.raises(OctopusUnreachable):
        client.plan()
    url = fake.url
    fake.stop()
    with pytest.raises(OctopusUnreachable):
        _client(fake, clock, tmp_path / "x", url=url).plan()


def test_kt_ct_4340_is_an_empty_plan_not_a_failure(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path
) -> None:
    client = _client(fake, clock, tmp_path)
    fake.call(fake.fake.set_faults, {"no_plan": 1})
    result = client.plan()
    assert result.plan.dispatches == () and result.note == "KT-CT-4340"
    assert len(client.plan().plan.dispatches) == 2 and client.plan().note is None


def test_a_device_registered_again_is_found_again(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(fake, clock, tmp_path)
    first = client.plan().plan.device_id
    devices = default_devices()
    devices[0]["id"] = "00000000-0002-4000-8020-00000000a002"  # a new registration
    fake.fake.devices = devices
    with caplog.at_level(logging.INFO):
        result = client.plan()  # KT-CT-4301 for the old id: discover, ask again
    assert result.plan.device_id == devices[0]["id"] != first
    assert fake.fake.counts.errors["KT-CT-4301"] == 2  # both root fields of the one request
    assert any("device id changed" in r.getMessage() for r in caplog.records)
    fake.call(fake.fake.set_faults, {"device_gone": 1})  # gone once, back at once
    assert client.plan().plan.device_id == devices[0]["id"]


def test_a_configured_device_must_be_on_the_account(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path
) -> None:
    meter = default_devices()[1]["id"]
    with pytest.raises(OctopusDeviceError) as caught:
        _client(fake, clock, tmp_path, device_id=meter).plan()  # a meter is no flex device
    assert caught.value.code == "KT-CT-4301"
    with pytest.raises(OctopusDeviceError):
        _client(fake, clock, tmp_path, account="A-OTHER001").plan()  # not our account


def test_pick_device_rules() -> None:
    car = Device("car", "ELECTRIC_VEHICLES", True)
    meter = Device("meter", "ELECTRICITY_METERS", True)
    old = Device("old", "ELECTRIC_VEHICLES", False)
    charger = Device("charger", "ELECTRIC_VEHICLES", True)
    assert pick_device([meter, car]) is car
    assert pick_device([meter, old, car]) is car  # the live one
    assert pick_device([old]) is old  # the only one, even if not live
    assert pick_device([car, charger], "charger") is charger
    with pytest.raises(OctopusDeviceError, match="no smart-flex device"):
        pick_device([meter])
    with pytest.raises(OctopusDeviceError, match="car, charger"):
        pick_device([car, charger])
    with pytest.raises(OctopusDeviceError, match="not a smart-flex device"):
        pick_device([car, meter], "meter")


def test_legacy_planned_dispatches_only_when_flex_is_gone(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(fake, clock, tmp_path)
    assert client.plan().source == "flex"
    assert fake.fake.counts.fields["plannedDispatches"] == 0
    fake.call(lambda: setattr(fake.fake, "flex_available", False))
    with caplog.at_level(logging.WARNING):
        result = client.plan()
    assert result.source == "legacy"
    assert [(d.kind, d.energy_kwh) for d in result.plan.dispatches] == [
        ("SMART", 7.1),  # smart-charge, -delta
        ("BOOST", -12.5),  # bump-charge
    ]
    assert sum("deprecated plannedDispatches" in r.getMessage() for r in caplog.records) == 1
    flex_asked = fake.fake.counts.fields["flexPlannedDispatches"]
    client.plan()  # stays on the legacy query for a while: no failed flex request each poll
    assert fake.fake.counts.fields["flexPlannedDispatches"] == flex_asked
    clock.now += 3601
    fake.call(lambda: setattr(fake.fake, "flex_available", True))
    assert client.plan().source == "flex"


def test_several_root_fields_aliases_get_and_both_authorization_styles(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path
) -> None:
    client = _client(fake, clock, tmp_path)
    client.plan()
    token = client._tokens.access
    account, device = fake.fake.account, default_devices()[0]["id"]
    document = (
        "query Both($deviceId: String!) {\n"
        f'  mine: devices(accountNumber: "{account}") {{ id deviceType }}\n'
        "  plan: flexPlannedDispatches(deviceId: $deviceId) { start end type }\n"
        "}"
    )
    http = requests.Session()
    http.trust_env = False
    for header in (token, f"JWT {token}"):
        body = http.post(
            fake.url,
            json={"query": document, "variables": {"deviceId": device}},
            headers={"Authorization": header},
            timeout=5,
        ).json()
        assert "errors" not in body
        assert [d["id"] for d in body["data"]["mine"]] == [d["id"] for d in default_devices()]
        assert [d["start"] for d in body["data"]["plan"]] == [d["start"] for d in PLAN]
    assert fake.fake.counts.authorization_styles["JWT"] == 1
    got = http.get(
        fake.url,
        params={"query": document, "variables": json.dumps({"deviceId": device})},
        headers={"Authorization": token},
        timeout=5,
    )
    assert got.status_code == 200 and len(got.json()["data"]["plan"]) == 2
    missing = http.post(fake.url, json={"query": document, "variables": {}}, timeout=5)
    assert missing.status_code == 200  # GraphQL errors always come with HTTP 200
    codes = {e["extensions"]["errorCode"] for e in missing.json()["errors"]}
    assert codes == {"KT-CT-1112"}
    assert missing.json()["data"] == {"mine": None, "plan": None}


def test_tokens_are_redacted_and_never_logged(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        client = _client(fake, clock, tmp_path)
        client.plan()
        fake.call(fake.fake.expire_tokens)
        fake.call(fake.fake.set_faults, {"refresh_invalid": 1})
        client.plan()
        with pytest.raises(OctopusAuthError):
            _client(fake, clock, tmp_path / "bad", api_key="sk_live_BADBADBADBAD0000").plan()
    secrets = [client._tokens.access, client._tokens.refresh, fake.fake.api_key]
    secrets += list(fake.fake.access) + list(fake.fake.refresh)
    text = caplog.text + " ".join(str(r.args) for r in caplog.records)
    assert caplog.records and not any(secret in text for secret in secrets)
    assert redaction_filter().scrub(f"x {client._tokens.access} y") == "x *** y"
    assert redaction_filter().scrub(client._tokens.refresh) == "***"


def test_garbage_answers_are_api_errors(
    fake: FakeOctopusRunner, clock: Clock, tmp_path: Path
) -> None:
    client = _client(fake, clock, tmp_path)
    client.plan()
    fake.fake.dispatches = [{"start": "yesterday", "end": "2026-01-14T14:00:00+00:00"}]
    with pytest.raises(OctopusApiError, match="unreadable"):
        client.plan()
    not_graphql = _client(fake, clock, tmp_path / "y", url=fake.control + "counts")
    with pytest.raises(OctopusApiError):
        not_graphql.plan()  # HTTP 405 with no GraphQL body


def test_the_fake_also_logs_in_with_email_and_password(clock: Clock) -> None:
    fake = FakeOctopus(password="pa55-w0rd", clock=clock)
    with FakeOctopusRunner(fake) as runner:
        http = requests.Session()
        http.trust_env = False
        mutation = (
            "mutation L($input: ObtainJSONWebTokenInput!) "
            "{ obtainKrakenToken(input: $input) { token payload refreshToken refreshExpiresIn } }"
        )
        for password, ok in (("pa55-w0rd", True), ("wrong", False)):
            credential = {"email": fake.email, "password": password}
            body = http.post(
                runner.url, json={"query": mutation, "variables": {"input": credential}}, timeout=5
            ).json()
            answer = body["data"]["obtainKrakenToken"]
            if ok:
                assert answer["payload"]["gty"] == "EMAIL"
                assert answer["refreshExpiresIn"] == clock.now + 7 * 86400
                assert jwt_claims(answer["token"])["exp"] == clock.now + 3600
            else:
                assert answer is None
                assert body["errors"][0]["extensions"]["errorCode"] == "KT-CT-1139"
    assert fake.counts.logins == {"email": 2}
