"""``pwbus tariff`` uploading through the Tesla cloud client to the fake cloud (real sockets):
the tariff arrives whole and ``site_info`` shows it back; an expired token is refreshed (and
the new single-use refresh token kept); the cloud's error answers, a refused refresh and a
site that does not show the tariff end as one line; a tariff that fails the checks is never
sent; the fake flags (or, strict, refuses) a gapped schedule as the app would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from powerwall_bus.consumers.tariff import main as tariff_main
from powerwall_bus.consumers.tariff.command import TariffConfig
from powerwall_bus.consumers.tariff.main import run_tariff
from powerwall_bus.shared.errors import (
    CloudAuthError,
    CloudCommandRefused,
    CloudError,
    CloudForbidden,
    CloudRateLimited,
    CloudUnreachable,
    CloudWrongRegion,
    TariffError,
)
from powerwall_bus.shared.settings import CloudSettings, OctopusSettings
from powerwall_bus.shared.tesla_cloud.client import TeslaCloud
from powerwall_bus.shared.tesla_cloud.tokens import TOKEN_FILE, TokenStore, tokens_from_answer
from powerwall_bus.simulator.cloud import FakeCloud, FakeCloudRunner
from powerwall_bus.simulator.octopus import FakeOctopus, FakeOctopusRunner
from tests.test_tariff_command import ACCOUNT, KEY, NOW, TYPES

DIN = "1232100-00-E--TG0000000000TARIFF"
OWN_INVALID = Path(__file__).resolve().parent / "data" / "tariff"


@pytest.fixture
def octopus() -> Iterator[FakeOctopusRunner]:
    fake = FakeOctopus(api_key=KEY, account=ACCOUNT)
    fake.agreements = TYPES["half-hourly"][0]
    with FakeOctopusRunner(fake) as runner:
        yield runner


@pytest.fixture
def cloud() -> Iterator[FakeCloudRunner]:
    # No gateway behind it: the tariff endpoints never relay to one.
    with FakeCloudRunner(FakeCloud(gateway_url="https://127.0.0.1:9", din=DIN)) as runner:
        yield runner


def _config(octopus: FakeOctopusRunner, cloud: FakeCloudRunner, state: Path) -> TariffConfig:
    TokenStore(state / TOKEN_FILE).save(tokens_from_answer(cloud.fake.issue(), time.time()))
    return TariffConfig(
        octopus=OctopusSettings(api_key=KEY, account_number=ACCOUNT, url=octopus.url),
        cloud=CloudSettings(api_url=cloud.url, auth_url=cloud.token_url),
        state_dir=state,
    )


def test_upload_arrives_whole_and_is_read_back(
    octopus: FakeOctopusRunner,
    cloud: FakeCloudRunner,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _config(octopus, cloud, tmp_path)
    assert run_tariff(config, NOW) == 0
    built = tariff_main.make(config, NOW)
    stored = cloud.fake.tariff
    assert stored.tou_settings == built.request["tou_settings"]
    assert stored.tou_settings["optimization_strategy"] == "economics"
    assert stored.problems == []  # the fake's own coverage check agrees with ours
    requests = cloud.fake.counts.requests
    assert requests["time_of_use_settings"] == 1 and requests["site_info"] == 2
    out = capsys.readouterr().out
    assert f"uploaded to energy site {cloud.fake.site_id} and read back" in out
    assert "OFF_PEAK" in out and "23:30-05:30" in out
    # The same tariff again: the site shows it already, nothing is sent (Tesla counts calls).
    assert run_tariff(config, NOW) == 0
    assert cloud.fake.tariff.uploads == 1
    assert "already shows this tariff: nothing sent" in capsys.readouterr().out
    # Another strategy is a change.
    assert run_tariff(replace(config, strategy="balanced"), NOW) == 0
    assert cloud.fake.tariff.uploads == 2
    assert cloud.fake.tariff.tou_settings["optimization_strategy"] == "balanced"


def test_an_expired_token_is_refreshed_and_the_new_one_kept(
    octopus: FakeOctopusRunner, cloud: FakeCloudRunner, tmp_path: Path
) -> None:
    config = _config(octopus, cloud, tmp_path)
    before = json.loads((tmp_path / TOKEN_FILE).read_text(encoding="utf-8"))
    cloud.call(cloud.fake.expire_tokens)
    assert run_tariff(config, NOW) == 0
    after = json.loads((tmp_path / TOKEN_FILE).read_text(encoding="utf-8"))
    assert cloud.fake.counts.refreshes == 1
    assert after != before  # the spent refresh token was replaced on disk
    assert cloud.fake.tariff.uploads == 1


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("rate_limited", CloudRateLimited),
        ("missing_scopes", CloudForbidden),
        ("wrong_region", CloudWrongRegion),
        ("payment_required", CloudError),
        ("server_error", CloudUnreachable),
        ("app_error", CloudCommandRefused),
        ("invalid_token", CloudAuthError),
    ],
)
def test_the_clouds_error_answers_are_one_line(
    fault: str,
    error: type[CloudError],
    octopus: FakeOctopusRunner,
    cloud: FakeCloudRunner,
    tmp_path: Path,
) -> None:
    config = _config(octopus, cloud, tmp_path)
    cloud.call(cloud.fake.set_faults, {fault: -1})
    with pytest.raises(error) as caught:
        run_tariff(config, NOW)
    assert "\n" not in str(caught.value)
    assert cloud.fake.tariff.uploads == 0


def test_a_refused_refresh_says_log_in_again(
    octopus: FakeOctopusRunner, cloud: FakeCloudRunner, tmp_path: Path
) -> None:
    config = _config(octopus, cloud, tmp_path)
    cloud.call(cloud.fake.expire_tokens)
    cloud.call(cloud.fake.set_faults, {"refresh_invalid": 1})
    with pytest.raises(CloudAuthError, match="log in again"):
        run_tariff(config, NOW)
    assert cloud.fake.tariff.uploads == 0


def test_a_site_that_does_not_show_the_tariff_is_said(
    octopus: FakeOctopusRunner, cloud: FakeCloudRunner, tmp_path: Path
) -> None:
    config = _config(octopus, cloud, tmp_path)
    cloud.fake.tariff.lag = 2  # the next two site_info reads still show the old (no) tariff
    with pytest.raises(TariffError, match="does not show the new tariff yet"):
        run_tariff(config, NOW)
    assert cloud.fake.tariff.uploads == 1
    assert run_tariff(config, NOW) == 0  # running again is harmless: it is there now
    assert cloud.fake.tariff.uploads == 1


def test_a_tariff_failing_the_checks_is_never_sent(
    octopus: FakeOctopusRunner,
    cloud: FakeCloudRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _config(octopus, cloud, tmp_path)
    real = tariff_main.build

    def gapped(*args: Any, **kwargs: Any) -> Any:
        built = real(*args, **kwargs)
        content = built.request["tou_settings"]["tariff_content_v2"]
        content["seasons"]["Summer"]["tou_periods"]["ON_PEAK"]["periods"][0]["toHour"] = 22
        return built

    monkeypatch.setattr(tariff_main, "build", gapped)
    with pytest.raises(TariffError, match="fails its checks: buy: season Summer has no period"):
        run_tariff(config, NOW)
    assert cloud.fake.counts.requests["time_of_use_settings"] == 0


def _client(cloud: FakeCloudRunner, state: Path) -> TeslaCloud:
    TokenStore(state / TOKEN_FILE).save(tokens_from_answer(cloud.fake.issue(), time.time()))
    return TeslaCloud(
        api_url=cloud.url,
        auth_url=cloud.token_url,
        client_id="ownerapi",
        store=TokenStore(state / TOKEN_FILE),
    )


def test_the_fake_flags_a_gapped_schedule_or_strictly_refuses_it(
    cloud: FakeCloudRunner, tmp_path: Path
) -> None:
    body = json.loads(
        (OWN_INVALID / "time_of_use_settings.invalid_overlap.request.json").read_text("utf-8")
    )
    client = _client(cloud, tmp_path)
    path = tariff_main.TOU_PATH.format(site=cloud.fake.site_id)
    try:
        assert client.request("POST", path, body)["response"]["code"] == 201
        assert "time of use periods overlap" in cloud.fake.tariff.problems
        cloud.fake.tariff.strict = True
        with pytest.raises(CloudCommandRefused):
            client.request("POST", path, body)
    finally:
        client.close()
    assert cloud.fake.tariff.uploads == 1


def test_the_command_line_uploads(
    octopus: FakeOctopusRunner, cloud: FakeCloudRunner, tmp_path: Path
) -> None:
    config = _config(octopus, cloud, tmp_path)
    (tmp_path / "none.toml").write_text("", encoding="utf-8")
    env = {
        **os.environ,
        "PWBUS_OCTOPUS_API_KEY": KEY,
        "PWBUS_OCTOPUS_ACCOUNT": ACCOUNT,
        "PWBUS_OCTOPUS_URL": octopus.url,
        "PWBUS_CLOUD_API_URL": cloud.url,
        "PWBUS_CLOUD_AUTH_URL": cloud.token_url,
        "PWBUS_STATE_DIR": str(config.state_dir),
        "PWBUS_CONFIG": str(tmp_path / "none.toml"),
    }
    # The fake's agreements are dated 2026-01-15: build from that day.
    args = [sys.executable, "-m", "powerwall_bus", "tariff", "--date", "2026-01-15"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "read back: the site shows it" in done.stdout
    assert cloud.fake.tariff.uploads == 1
    wrong = subprocess.run(
        [*args, "--site", "42"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines() == [
        "pwbus tariff: the account has no energy site 42 with a gateway"
    ]


def test_config_replace_keeps_the_state_folder(tmp_path: Path) -> None:
    config = TariffConfig(
        octopus=OctopusSettings(account_number="A-1/2"), cloud=CloudSettings(), state_dir=tmp_path
    )
    assert replace(config, dry_run=True).token_file == tmp_path / "octopus-tokens-A-1_2.json"
