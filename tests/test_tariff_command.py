"""``pwbus tariff`` against the fake Octopus over real sockets: the account's agreements of
every tariff type (GraphQL), a tariff's published rates (REST, paginated), --dry-run's JSON
and table, and one-line refusals for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from powerwall_bus.consumers.tariff.build import build
from powerwall_bus.consumers.tariff.command import TariffConfig
from powerwall_bus.consumers.tariff.main import make, run_tariff
from powerwall_bus.consumers.tariff.octopus import OctopusRates, rest_base
from powerwall_bus.shared.errors import OctopusApiError, OctopusAuthError, TariffError
from powerwall_bus.shared.settings import CloudSettings, OctopusSettings
from powerwall_bus.simulator.octopus import FakeOctopus, FakeOctopusRunner
from tests.conftest import SHARED_FIXTURES

KEY, ACCOUNT = "sk_test_tariff_key", "A-TARIFF01"
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
SHARED_ACCOUNT = SHARED_FIXTURES / "octopus" / "graphql" / "account_tariff.iog.response.json"


@pytest.fixture
def octopus() -> Iterator[FakeOctopusRunner]:
    with FakeOctopusRunner(FakeOctopus(api_key=KEY, account=ACCOUNT)) as runner:
        yield runner


def _config(runner: FakeOctopusRunner, state: Path, **kwargs: Any) -> TariffConfig:
    settings = OctopusSettings(api_key=KEY, account_number=ACCOUNT, url=runner.url)
    return TariffConfig(octopus=settings, cloud=CloudSettings(), state_dir=state, **kwargs)


def _common(typename: str, code: str, export: bool = False) -> dict[str, Any]:
    return {
        "__typename": typename,
        "displayName": code.title(),
        "tariffCode": code,
        "isExport": export,
        "standingCharge": 0.0 if export else 50.0,
    }


def _iog_rates(first: date, days: int) -> list[dict[str, Any]]:
    rates = []
    for n in range(days):
        day = first + timedelta(days=n)
        night = datetime(day.year, day.month, day.day, 23, 30, tzinfo=UTC) - timedelta(days=1)
        rates.append(
            {
                "value": 7.0,
                "validFrom": night.isoformat(),
                "validTo": (night + timedelta(hours=6)).isoformat(),
            }
        )
        rates.append(
            {
                "value": 29.2,
                "validFrom": (night + timedelta(hours=6)).isoformat(),
                "validTo": (night + timedelta(hours=24)).isoformat(),
            }
        )
    return rates


OUTGOING = {**_common("StandardTariff", "E-1R-OUTGOING-FIX-12M-19-05-13-C", True), "unitRate": 15.0}

TYPES: dict[str, tuple[list[dict[str, Any]], tuple[str, ...], dict[str, float]]] = {
    "standard": (
        [{**_common("StandardTariff", "E-1R-VAR-22-11-01-C"), "unitRate": 24.5}, OUTGOING],
        (),
        {"ALL": 0.245},
    ),
    "day-night": (
        [{**_common("DayNightTariff", "E-2R-VAR-22-11-01-C"), "dayRate": 30.0, "nightRate": 12.5}],
        ("night=00:30-07:30",),
        {"OFF_PEAK": 0.125, "ON_PEAK": 0.3},
    ),
    "three-rate": (
        [
            {
                **_common("ThreeRateTariff", "E-1R-COSY-22-12-08-C"),
                "dayRate": 28.0,
                "nightRate": 14.0,
                "offPeakRate": 20.0,
            },
            OUTGOING,
        ],
        ("night=04:00-07:00", "off_peak=13:00-16:00"),
        {"OFF_PEAK": 0.14, "PARTIAL_PEAK": 0.2, "ON_PEAK": 0.28},
    ),
    "half-hourly": (
        [
            {
                **_common("HalfHourlyTariff", "E-1R-INTELLI-VAR-24-10-29-C"),
                "unitRates": _iog_rates(NOW.date(), 2),
            },
            OUTGOING,
        ],
        (),
        {"OFF_PEAK": 0.07, "ON_PEAK": 0.292},
    ),
    # Four-rate Intelligent Go: the car's EV_DEVICE rates (a 13:00-14:00 smart charge at 7p)
    # sit beside the home's STANDARD ones and must not price the battery.
    "ev-four-rate": (
        [
            {
                **_common("HalfHourlyTariff", "E-1R-INTELLI-FLEX-26-01-01-C"),
                "unitRates": [
                    *({**rate, "rateType": "STANDARD"} for rate in _iog_rates(NOW.date(), 2)),
                    {
                        "value": 7.0,
                        "validFrom": "2026-01-15T13:00:00+00:00",
                        "validTo": "2026-01-15T14:00:00+00:00",
                        "rateType": "EV_DEVICE",
                    },
                ],
            },
            OUTGOING,
        ],
        (),
        {"OFF_PEAK": 0.07, "ON_PEAK": 0.292},
    ),
}


def _printed(text: str) -> tuple[dict[str, Any], str]:
    body, end = json.JSONDecoder().raw_decode(text)
    return body, text[end:]


@pytest.mark.parametrize("kind", list(TYPES))
def test_every_agreement_type_dry_runs(
    kind: str, octopus: FakeOctopusRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tariffs, windows, rates = TYPES[kind]
    octopus.call(setattr, octopus.fake, "agreements", tariffs)
    status = run_tariff(_config(octopus, tmp_path, dry_run=True, windows=windows), NOW)
    assert status == 0
    body, rest = _printed(capsys.readouterr().out)
    content = body["tou_settings"]["tariff_content_v2"]
    charges = content["energy_charges"]
    assert (charges["ALL"]["rates"] if "ALL" in rates else charges["Summer"]["rates"]) == rates
    assert content["code"] == tariffs[0]["tariffCode"]
    assert "checks: passed; nothing uploaded" in rest
    assert "buy: " in rest and "sell: " in rest
    if kind == "day-night":  # no export agreement: selling earns nothing
        assert content["sell_tariff"]["energy_charges"]["Summer"]["rates"] == {
            "OFF_PEAK": 0,
            "ON_PEAK": 0,
        }
        assert (
            content["seasons"]["Summer"]["tou_periods"]["OFF_PEAK"]["periods"][0]["fromHour"] == 0
        )
    if kind.startswith("ev"):
        periods = content["seasons"]["Summer"]["tou_periods"]["ON_PEAK"]["periods"]
        assert [(p["fromHour"], p["toHour"]) for p in periods] == [(5, 23)]
        assert "the car's own (EV_DEVICE) rates are left out" in rest
    assert octopus.fake.counts.fields["account"] == 1
    assert (tmp_path / f"octopus-tokens-{ACCOUNT}.json").exists()  # kept, as pwbus octopus does


@pytest.mark.conformance
def test_the_team_account_sample_or_ours_builds_intelligent_go(
    octopus: FakeOctopusRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if SHARED_ACCOUNT.exists():
        answer = json.loads(SHARED_ACCOUNT.read_text(encoding="utf-8"))
        points = answer["data"]["getTariff"]["properties"][0]["electricityMeterPoints"]
        tariffs = [p["meters"][0]["meterPoint"]["agreements"][0]["tariff"] for p in points]
    else:
        tariffs = TYPES["half-hourly"][0]
    octopus.call(setattr, octopus.fake, "agreements", tariffs)
    run_tariff(_config(octopus, tmp_path, dry_run=True), NOW)
    body, _ = _printed(capsys.readouterr().out)
    periods = body["tou_settings"]["tariff_content_v2"]["seasons"]["Summer"]["tou_periods"]
    assert periods["OFF_PEAK"]["periods"][0]["fromHour"] == 23
    assert periods["ON_PEAK"]["periods"][0]["toMinute"] == 30


def test_a_day_night_tariff_without_its_hours_is_refused_in_one_line(
    octopus: FakeOctopusRunner, tmp_path: Path
) -> None:
    octopus.call(setattr, octopus.fake, "agreements", TYPES["day-night"][0])
    with pytest.raises(TariffError, match=r"--window night=00:30-07:30") as caught:
        make(_config(octopus, tmp_path), NOW)
    assert "\n" not in str(caught.value)


def _rest_item(
    value: float, start: datetime, end: datetime | None, method: str = "DIRECT_DEBIT"
) -> dict[str, Any]:
    return {
        "value_exc_vat": round(value / 1.05, 4),
        "value_inc_vat": value,
        "valid_from": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "valid_to": end.strftime("%Y-%m-%dT%H:%M:%SZ") if end else None,
        "payment_method": method,
    }


AGILE = "E-1R-AGILE-24-10-01-C"


def _agile_items(first: datetime, count: int) -> list[dict[str, Any]]:
    items = []
    for n in range(count):
        start = first + timedelta(minutes=30 * n)
        items.append(_rest_item(round(5 + (n * 7.3) % 30, 2), start, start + timedelta(minutes=30)))
        items.append(_rest_item(99.0, start, start + timedelta(minutes=30), "NON_DIRECT_DEBIT"))
    return items


def test_rest_rates_follow_every_page(octopus: FakeOctopusRunner) -> None:
    first = datetime(2026, 1, 14, tzinfo=UTC)
    octopus.call(octopus.fake.unit_rates.__setitem__, AGILE, _agile_items(first, 144))
    rates = OctopusRates(rest_base(octopus.url), page_size=25)
    try:
        tariff = rates.tariff(
            AGILE, is_export=False, start=first, end=first + timedelta(days=3), now=NOW
        )
    finally:
        rates.close()
    assert rates.requests == 12 + 1  # 288 items in pages of 25, and the standing charges
    assert len(tariff.rates) == 144  # the non-direct-debit prices were dropped
    assert [r.start for r in tariff.rates] == sorted(r.start for r in tariff.rates)
    assert max(r.price for r in tariff.rates) < 99


def test_dry_run_from_a_published_tariff(
    octopus: FakeOctopusRunner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = datetime(2026, 1, 14, tzinfo=UTC)
    octopus.call(octopus.fake.unit_rates.__setitem__, AGILE, _agile_items(first, 144))
    config = _config(octopus, tmp_path, dry_run=True, tariff=AGILE, day=date(2026, 1, 15))
    assert run_tariff(config, NOW) == 0
    body, rest = _printed(capsys.readouterr().out)
    rates = body["tou_settings"]["tariff_content_v2"]["energy_charges"]["Summer"]["rates"]
    assert set(rates) == {"SUPER_OFF_PEAK", "OFF_PEAK", "PARTIAL_PEAK", "ON_PEAK"}
    assert "worst-case error" in rest
    assert octopus.fake.counts.fields["account"] == 0  # no account query needed


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"tariff": "E-1R-NOPE-C"}, OctopusApiError, "does not know tariff E-1R-NOPE-C"),
        ({"tariff": "GAS-1"}, TariffError, "is not an electricity tariff code"),
        ({"tariff": "E-2R-VAR-22-11-01-C"}, TariffError, "day-night"),
    ],
)
def test_bad_tariff_codes_are_one_line(
    change: dict[str, Any],
    error: type[Exception],
    message: str,
    octopus: FakeOctopusRunner,
    tmp_path: Path,
) -> None:
    with pytest.raises(error, match=message) as caught:
        make(_config(octopus, tmp_path, **change), NOW)
    assert "\n" not in str(caught.value)


def test_a_wrong_api_key_is_one_line(octopus: FakeOctopusRunner, tmp_path: Path) -> None:
    settings = OctopusSettings(api_key="sk_wrong", account_number=ACCOUNT, url=octopus.url)
    config = TariffConfig(octopus=settings, cloud=CloudSettings(), state_dir=tmp_path)
    with pytest.raises(OctopusAuthError, match="refused the API key"):
        make(config, NOW)


def _pwbus(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "powerwall_bus", "tariff", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_line(octopus: FakeOctopusRunner, tmp_path: Path) -> None:
    (tmp_path / "none.toml").write_text("", encoding="utf-8")
    env = {
        "PWBUS_OCTOPUS_API_KEY": KEY,
        "PWBUS_OCTOPUS_ACCOUNT": ACCOUNT,
        "PWBUS_OCTOPUS_URL": octopus.url,
        "PWBUS_STATE_DIR": str(tmp_path),
        "PWBUS_CONFIG": str(tmp_path / "none.toml"),
    }
    done = _pwbus(["--dry-run"], env)
    assert done.returncode == 0, done.stderr
    assert "Flexible Octopus" in done.stdout and "checks: passed" in done.stdout
    assert KEY not in done.stdout + done.stderr
    bad = _pwbus(["--dry-run", "--date", "15/01/2026"], env)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "pwbus tariff: configuration: tariff.date: '15/01/2026' is not YYYY-MM-DD"
    ]
    alone = _pwbus(["--dry-run", "--export-tariff", "E-1R-OUTGOING-C"], env)
    assert alone.returncode == 2
    assert alone.stderr.strip().splitlines() == [
        "pwbus tariff: configuration: tariff.export_tariff: goes with --tariff"
    ]
    gone = _pwbus(["--dry-run", "--tariff", "E-1R-NOPE-C"], env)
    assert gone.returncode == 1
    assert len(gone.stderr.strip().splitlines()) == 1
    assert "does not know tariff E-1R-NOPE-C" in gone.stderr


OWN = Path(__file__).resolve().parent / "data" / "tariff"
SHARED_REST = SHARED_FIXTURES / "octopus" / "rest"


def _rest_sets() -> list[list[Path]]:
    """Unit-rate samples, pages of one answer together."""
    own = [[path] for path in sorted(OWN.glob("standard_unit_rates.iog.*.response.json"))]
    shared: dict[str, list[Path]] = {}
    for path in sorted(SHARED_REST.glob("standard_unit_rates.iog.*.response.json")):
        shared.setdefault(path.name.split(".page")[0], []).append(path)
    return own + list(shared.values())


REST_SETS = _rest_sets()


@pytest.mark.conformance
@pytest.mark.parametrize(
    "paths",
    REST_SETS,
    ids=[
        f"{'own' if s[0].is_relative_to(OWN) else 'shared'}/{s[0].name.split('.page')[0]}"
        for s in REST_SETS
    ],
)
def test_rest_unit_rate_samples_build_the_intelligent_go_night(
    paths: list[Path], octopus: FakeOctopusRunner
) -> None:
    results = []
    for path in paths:
        results.extend(json.loads(path.read_text(encoding="utf-8"))["results"])
    code = "E-1R-INTELLI-VAR-24-10-29-C"
    octopus.call(octopus.fake.unit_rates.__setitem__, code, results)
    starts = sorted(datetime.fromisoformat(r["valid_from"].replace("Z", "+00:00")) for r in results)
    rates = OctopusRates(rest_base(octopus.url), page_size=2)
    try:
        tariff = rates.tariff(
            code,
            is_export=False,
            start=starts[0],
            end=starts[-1] + timedelta(days=1),
            now=starts[0],
        )
    finally:
        rates.close()
    built = build(tariff, None, today=date(2020, 1, 1))  # not covered: the latest whole day
    content = built.request["tou_settings"]["tariff_content_v2"]
    periods = content["seasons"]["Summer"]["tou_periods"]
    assert periods["OFF_PEAK"]["periods"][0] == {
        "fromDayOfWeek": 0,
        "toDayOfWeek": 6,
        "fromHour": 23,
        "fromMinute": 30,
        "toHour": 5,
        "toMinute": 30,
    }
    assert content["energy_charges"]["Summer"]["rates"] == {"OFF_PEAK": 0.07, "ON_PEAK": 0.292}
    assert rates.requests >= len(results) // 2  # every page was fetched
    if "dst_autumn" in paths[0].name:
        assert built.window.day == date(2026, 10, 25)
        assert any("50 half-hours" in note for note in built.notes)
