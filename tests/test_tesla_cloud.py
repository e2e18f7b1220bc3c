"""The Tesla cloud client against the fake cloud over real sockets: tokens, errors, samples.

Every error answer of the facts file is produced by the fake on demand and must arrive as
the one project error the transport's table names; the refresh token is single-use and the
file holding it is 0600; no token ever reaches a log line. The sample bodies of the team
folder (when present) and the project's own are read by the same functions.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from powerwall_bus.shared.errors import (
    CloudAuthError,
    CloudCommandRefused,
    CloudError,
    CloudForbidden,
    CloudNotFound,
    CloudRateLimited,
    CloudTokenExpired,
    CloudUnreachable,
    CloudWrongRegion,
    TedapiDecodeError,
)
from powerwall_bus.shared.tedapi import keys, schema
from powerwall_bus.shared.tesla_cloud.authorized import clients_from_answer
from powerwall_bus.shared.tesla_cloud.client import TeslaCloud, pick_site
from powerwall_bus.shared.tesla_cloud.relay import routable_from_answer
from powerwall_bus.shared.tesla_cloud.tokens import (
    TOKEN_FILE,
    CloudTokens,
    TokenStore,
    tokens_from_answer,
)
from powerwall_bus.shared.tesla_cloud.transport import error_for
from tests.conftest import SHARED_FIXTURES
from tests.support.fake_cloud import CloudSite, cloud_site
from tests.support.tedapi_keys import signing_key

OWN = Path(__file__).resolve().parent / "data" / "tesla_cloud"
SHARED = SHARED_FIXTURES / "tesla-cloud"


@pytest.fixture(scope="module")
def module_site() -> Iterator[CloudSite]:
    with cloud_site() as site:
        yield site


@pytest.fixture
def site(module_site: CloudSite) -> Iterator[CloudSite]:
    module_site.reset()
    yield module_site
    module_site.reset()


def _tokens(state_dir: Path) -> dict[str, Any]:
    document = json.loads((state_dir / TOKEN_FILE).read_text())
    assert isinstance(document, dict)
    return document


# --------------------------------------------------------------------------- tokens


def test_an_expired_access_token_is_refreshed_once_and_the_new_pair_saved_0600(
    site: CloudSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cloud = site.client(tmp_path)
    first = _tokens(tmp_path)
    # an access token that has run out (read again, as a restarted process would)
    TokenStore(tmp_path / TOKEN_FILE).save(CloudTokens(first["access"], first["refresh"], 0.0))
    cloud._tokens = None
    assert pick_site(cloud.products()).din == site.din
    second = _tokens(tmp_path)
    assert second["refresh"] != first["refresh"] and second["access"] != first["access"]
    assert second["expires_at"] > time.time() + 3600
    assert stat.S_IMODE((tmp_path / TOKEN_FILE).stat().st_mode) == 0o600
    assert site.control("counts")["refreshes"] == 1
    cloud.products()
    assert site.control("counts")["refreshes"] == 1  # still fresh: no second refresh
    # the old refresh token is spent (single-use)
    spent = requests.post(
        site.cloud.token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": "ownerapi",
            "refresh_token": first["refresh"],
        },
        timeout=5,
    )
    assert spent.status_code == 401 and spent.json()["error"] == "login_required"
    for secret in (first["access"], first["refresh"], second["access"], second["refresh"]):
        assert secret not in caplog.text
    assert "refreshed the Tesla cloud access token" in caplog.text


def test_a_restarted_client_uses_the_saved_tokens_without_refreshing(
    site: CloudSite, tmp_path: Path
) -> None:
    site.client(tmp_path).products()
    again = TeslaCloud(
        api_url=site.cloud.url,
        auth_url=site.cloud.token_url,
        client_id="ownerapi",
        store=TokenStore(tmp_path / TOKEN_FILE),
    )
    again.products()
    assert site.control("counts")["refreshes"] == 0


def test_tesla_answer_saved_as_is_works_as_a_token_file(site: CloudSite, tmp_path: Path) -> None:
    (tmp_path / TOKEN_FILE).write_text(json.dumps(site.control("tokens", {})))
    cloud = TeslaCloud(
        api_url=site.cloud.url,
        auth_url=site.cloud.token_url,
        client_id="ownerapi",
        store=TokenStore(tmp_path / TOKEN_FILE),
    )
    assert cloud.site().din == site.din


def test_token_expired_answer_refreshes_and_retries_once(site: CloudSite, tmp_path: Path) -> None:
    cloud = site.client(tmp_path)
    site.control("faults", {"set": {"token_expired": 1}})
    assert cloud.products()["count"] == 2
    counts = site.control("counts")
    assert counts["requests"]["products"] == 2 and counts["refreshes"] == 1


def test_token_expired_after_the_refresh_too_is_a_login_error(
    site: CloudSite, tmp_path: Path
) -> None:
    cloud = site.client(tmp_path)
    site.control("faults", {"set": {"token_expired": 2}})
    with pytest.raises(CloudAuthError, match="log in again") as caught:
        cloud.products()
    assert not isinstance(caught.value, CloudTokenExpired)
    assert site.control("counts")["refreshes"] == 1


def test_invalid_token_is_one_line_and_no_refresh(site: CloudSite, tmp_path: Path) -> None:
    cloud = site.client(tmp_path)
    site.control("faults", {"set": {"invalid_token": 1}})
    with pytest.raises(CloudAuthError) as caught:
        cloud.products()
    assert str(caught.value) == "Tesla refused the access token: invalid bearer token; log in again"
    assert site.control("counts")["refreshes"] == 0


def test_a_refused_refresh_token_says_log_in(site: CloudSite, tmp_path: Path) -> None:
    cloud = site.client(tmp_path)
    site.control("faults", {"set": {"refresh_invalid": 1}})
    with pytest.raises(CloudAuthError, match=r"refused the refresh token .*log in again"):
        cloud.refresh()


def test_no_token_file_is_a_clear_error(site: CloudSite, tmp_path: Path) -> None:
    cloud = TeslaCloud(
        api_url=site.cloud.url,
        auth_url=site.cloud.token_url,
        client_id="ownerapi",
        store=TokenStore(tmp_path / TOKEN_FILE),
    )
    with pytest.raises(CloudAuthError, match=r"no Tesla cloud tokens in .*log in first"):
        cloud.products()
    assert site.control("counts")["total"] == 0


# --------------------------------------------------------------------------- error answers


def test_429_waits_retry_after_and_sends_nothing_before(site: CloudSite, tmp_path: Path) -> None:
    cloud = site.client(tmp_path)
    site.control("faults", {"set": {"rate_limited": 1}})
    before = time.time()
    with pytest.raises(CloudRateLimited) as caught:
        cloud.products()
    assert before + 1.5 <= caught.value.until <= time.time() + 2.5  # Retry-After: 2
    with pytest.raises(CloudRateLimited, match="nothing is sent"):
        cloud.products()
    assert site.control("counts")["requests"]["products"] == 1
    cloud._quiet_until = 0.0  # the wait is over
    assert cloud.products()["count"] == 2


@pytest.mark.parametrize(
    ("fault", "error", "status"),
    [
        ("payment_required", CloudForbidden, 402),
        ("missing_scopes", CloudForbidden, 403),
        ("offline", CloudUnreachable, 408),
        ("server_error", CloudUnreachable, 500),
        ("app_error", CloudCommandRefused, 200),
    ],
)
def test_each_error_answer_is_its_error(
    site: CloudSite, tmp_path: Path, fault: str, error: type[CloudError], status: int
) -> None:
    cloud = site.client(tmp_path)
    site.control("faults", {"set": {fault: 1}})
    with pytest.raises(error) as caught:
        cloud.products()
    assert caught.value.status == status
    assert "\n" not in str(caught.value)


def test_421_names_the_right_base_url(site: CloudSite, tmp_path: Path) -> None:
    cloud = site.client(tmp_path)
    site.control("faults", {"set": {"wrong_region": 1}})
    with pytest.raises(CloudWrongRegion) as caught:
        cloud.products()
    assert caught.value.base_url == site.cloud.url
    assert f"set cloud.api_url to {site.cloud.url}" in str(caught.value)


def test_missing_write_scope_refuses_writes_only(site: CloudSite, tmp_path: Path) -> None:
    cloud = site.client(tmp_path)
    answer = site.control("tokens", {"scopes": ["openid", "offline_access", "energy_device_data"]})
    TokenStore(tmp_path / TOKEN_FILE).save(tokens_from_answer(answer, time.time()))
    cloud._tokens = None
    assert cloud.site_info()["backup_reserve_percent"] == 20
    with pytest.raises(CloudForbidden, match="energy_cmds"):
        cloud.set_backup_reserve(50)
    assert site.fake.reserve == 20


def test_backup_and_operation_read_back_in_site_info(site: CloudSite, tmp_path: Path) -> None:
    cloud = site.client(tmp_path)
    assert cloud.set_backup_reserve(35) == {"response": {"code": 201, "message": "Updated"}}
    cloud.set_operation_mode("self_consumption")
    info = cloud.site_info()
    assert (info["backup_reserve_percent"], info["default_real_mode"]) == (35, "self_consumption")
    assert info["components"]["gateways"][0]["din"] == site.din
    site.control("backup_rule", {"rule": "reject81_99"})
    with pytest.raises(CloudCommandRefused, match="HTTP 400"):
        cloud.set_backup_reserve(90)
    site.control("backup_rule", {"rule": "clamp80"})
    cloud.set_backup_reserve(100)
    assert cloud.site_info()["backup_reserve_percent"] == 80  # silently capped


def test_unreachable_cloud_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = TokenStore(tmp_path / TOKEN_FILE)
    store.save(CloudTokens("a-token-value", "a-refresh-value", time.time() + 3600))
    cloud = TeslaCloud(
        api_url=f"http://127.0.0.1:{port}",
        auth_url=f"http://127.0.0.1:{port}/oauth2/v3/token",
        client_id="ownerapi",
        store=store,
        timeout=2,
    )
    with pytest.raises(CloudUnreachable, match="cannot reach Tesla"):
        cloud.products()


def test_several_sites_need_a_choice() -> None:
    entry = {"resource_type": "battery", "site_name": "A"}
    products = {
        "response": [
            {**entry, "energy_site_id": 1, "gateway_id": "DIN-1"},
            {**entry, "energy_site_id": 2, "gateway_id": "DIN-2", "site_name": "B"},
            {"energy_site_id": 3, "resource_type": "solar"},  # no gateway: not ours to command
        ]
    }
    with pytest.raises(CloudNotFound, match=r"several energy sites .*1 \(A\), 2 \(B\)"):
        pick_site(products)
    assert pick_site(products, 2).din == "DIN-2"
    with pytest.raises(CloudNotFound, match="no energy site 3"):
        pick_site(products, 3)
    with pytest.raises(CloudNotFound, match="no energy site with a gateway"):
        pick_site({"response": []})


# --------------------------------------------------------------------------- samples


def _samples(pattern: str) -> list[Path]:
    own = sorted(OWN.glob(pattern))
    shared = sorted(SHARED.glob(pattern)) if SHARED.is_dir() else []
    return own + shared


def _ids(paths: list[Path]) -> list[str]:
    return [f"{'own' if path.is_relative_to(OWN) else 'shared'}/{path.name}" for path in paths]


ERRORS = _samples("error.*.json")
PRODUCTS = _samples("products.response.json")
TOKENS = _samples("oauth_token.response.json")
SUCCESSES = _samples("command_updated.response.json") + _samples("grid_import_export.empty*.json")
APP_ERRORS = _samples("command_http200_app_error.response.json")
EXPECTED: dict[int, type[CloudError]] = {
    401: CloudAuthError,
    402: CloudForbidden,
    403: CloudForbidden,
    408: CloudUnreachable,
    421: CloudWrongRegion,
    429: CloudRateLimited,
}


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_own_samples_of_every_sort() -> None:
    for found in (ERRORS, PRODUCTS, TOKENS, SUCCESSES, APP_ERRORS):
        assert any(path.is_relative_to(OWN) for path in found)


@pytest.mark.parametrize("path", ERRORS, ids=_ids(ERRORS))
def test_error_samples_map_to_their_error(path: Path) -> None:
    status = int(path.name.split(".")[1])
    error = error_for(status, _load(path), 1000.0, None)
    assert isinstance(error, EXPECTED[status])
    assert (status == 401 and "expired" in path.name) == isinstance(error, CloudTokenExpired)
    if isinstance(error, CloudWrongRegion):
        assert error.base_url.startswith("https://fleet-api.prd.")
    if isinstance(error, CloudRateLimited):
        assert error.until == 1060.0  # no Retry-After: a minute


@pytest.mark.parametrize("path", PRODUCTS, ids=_ids(PRODUCTS))
def test_product_samples_give_the_one_site(path: Path) -> None:
    document = _load(path)
    site = pick_site(document)
    entry = next(e for e in document["response"] if "gateway_id" in e)
    assert (site.site_id, site.din) == (entry["energy_site_id"], entry["gateway_id"])


@pytest.mark.parametrize("path", TOKENS, ids=_ids(TOKENS))
def test_token_samples_read(path: Path) -> None:
    document = _load(path)
    tokens = tokens_from_answer(document, 1000.0)
    assert tokens.refresh == document["refresh_token"]
    assert tokens.expires_at == 1000.0 + document["expires_in"]


@pytest.mark.parametrize("path", SUCCESSES, ids=_ids(SUCCESSES))
def test_success_samples_are_no_error(path: Path) -> None:
    assert error_for(200, _load(path), 0.0) is None


@pytest.mark.parametrize("path", APP_ERRORS, ids=_ids(APP_ERRORS))
def test_http_200_app_error_samples_are_refusals(path: Path) -> None:
    error = error_for(200, _load(path), 0.0)
    assert isinstance(error, CloudCommandRefused)
    assert f"code {_load(path)['response']['code']}" in str(error)


# --------------------------------------------------------------------------- small pieces


def test_region_names_the_base_url(site: CloudSite, tmp_path: Path) -> None:
    assert site.client(tmp_path).region() == {"region": "eu", "fleet_api_base_url": site.cloud.url}


def test_a_bad_token_file_names_the_file_never_its_content(tmp_path: Path) -> None:
    path = tmp_path / TOKEN_FILE
    path.write_text('{"refresh": "", "access": "secret-access-value"}')
    with pytest.raises(CloudAuthError) as caught:
        TokenStore(path).load(0.0)
    assert str(caught.value) == f"the token file {path} holds no refresh token"
    path.write_text("not json secret-access-value")
    with pytest.raises(CloudAuthError) as caught:
        TokenStore(path).load(0.0)
    assert "secret" not in str(caught.value) and str(path) in str(caught.value)


def test_a_token_file_that_cannot_be_written_is_loud(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(CloudAuthError, match="could not save the refreshed Tesla cloud tokens"):
        TokenStore(not_a_folder / TOKEN_FILE).save(CloudTokens("a", "refresh-value", 1.0))


def test_the_client_list_reader_takes_either_naming() -> None:
    der = keys.public_der(signing_key("paired"))
    encoded = base64.b64encode(der).decode()
    camel = {
        "response": {
            "message": {
                "Payload": {
                    "Authorization": {
                        "Message": {
                            "ListAuthorizedClientsResponse": {
                                "clients": [
                                    {
                                        "publicKey": encoded,
                                        "state": "AUTHORIZED_STATE_VERIFIED",
                                        "addedTime": "2026-01-14T12:00:00Z",
                                        "description": "a",
                                    },
                                    {"public_key": "not base64!", "state": 3},
                                ]
                            }
                        }
                    }
                }
            }
        }
    }
    snake = {
        "response": {
            "list_authorized_clients_response": {
                "clients": [
                    {"public_key": encoded, "state": 1, "added_time": {"seconds": 1768392000}}
                ]
            }
        }
    }
    (first,) = clients_from_answer(camel)
    assert (
        first.verified
        and first.public_key == der
        and first.added == datetime(2026, 1, 14, 12, tzinfo=UTC)
    )
    (second,) = clients_from_answer(snake)
    assert second.state_name == "PENDING_VERIFICATION" and second.added == first.added
    with pytest.raises(CloudCommandRefused, match="no list of authorized clients"):
        clients_from_answer({"response": {"code": 201}})


def test_relay_answers_read_back_or_are_refused() -> None:
    envelope = b"\x08\x02"
    answer = {"response": {"message_envelope_as_bytes": base64.b64encode(envelope).decode()}}
    message = schema.RoutableMessage()
    message.ParseFromString(routable_from_answer(answer))
    assert bytes(message.protobuf_message_as_bytes) == envelope
    fault = routable_from_answer(
        {"response": {"message_envelope_as_bytes": None, "signed_message_fault": 5}}
    )
    message.ParseFromString(fault)
    assert message.signed_message_status.signed_message_fault == 5
    bad_answers: list[dict[str, Any]] = [
        {},
        {"response": {}},
        {"response": {"message_envelope_as_bytes": "%%%"}},
    ]
    for bad in bad_answers:
        with pytest.raises(TedapiDecodeError):
            routable_from_answer(bad)
