"""``pwbus tariff``: read the Octopus tariff, build and check the Tesla one, show or upload it.

The checks run before anything is shown as ready and before any upload: a tariff that fails
them is never sent (Tesla answers 200 to a gapped schedule and the app then complains). After
the upload the site is read back: its ``tariff_content_v2`` must be the one sent, else the
command says so and exits 1 (the cloud may apply it late; running it again is harmless).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from powerwall_bus.consumers.tariff.build import Built, build
from powerwall_bus.consumers.tariff.check import validate_request
from powerwall_bus.consumers.tariff.command import TariffConfig
from powerwall_bus.consumers.tariff.octopus import (
    AGREEMENTS_QUERY,
    OctopusRates,
    parse_windows,
    rest_base,
    tariffs_from_account,
)
from powerwall_bus.consumers.tariff.rates import LONDON, OctopusTariff
from powerwall_bus.consumers.tariff.show import table
from powerwall_bus.shared.errors import TariffError
from powerwall_bus.shared.octopus.transport import error_for

__all__ = ["TOU_PATH", "make", "read_tariffs", "run_tariff", "upload"]

_LOGGER = logging.getLogger(__name__)
TOU_PATH = "/api/1/energy_sites/{site}/time_of_use_settings"


def read_tariffs(config: TariffConfig, now: datetime) -> tuple[OctopusTariff, OctopusTariff | None]:
    """The import and export tariffs: the account's agreements, or REST rates by code."""
    today = now.astimezone(LONDON).date()
    if config.tariff:
        rates = OctopusRates(rest_base(config.octopus.url), timeout=config.octopus.timeout)
        around = config.day or today
        start = datetime.combine(around - timedelta(days=2), datetime.min.time(), LONDON)
        end = start + timedelta(days=5)
        try:
            buy = rates.tariff(config.tariff, is_export=False, start=start, end=end, now=now)
            sell = None
            if config.export_tariff:
                sell = rates.tariff(
                    config.export_tariff, is_export=True, start=start, end=end, now=now
                )
        except ValueError as exc:
            raise TariffError(str(exc)) from None
        finally:
            rates.close()
        return buy, sell
    from powerwall_bus.shared.octopus.client import OctopusClient

    client = OctopusClient(
        api_key=config.octopus.api_key,
        account=config.octopus.account_number,
        url=config.octopus.url,
        token_file=config.token_file,
        timeout=config.octopus.timeout,
    )
    try:
        data, errors = client.call(
            AGREEMENTS_QUERY, {"accountNumber": config.octopus.account_number}
        )
    finally:
        client.close()
    if errors:
        raise error_for(errors[0], now.timestamp())
    try:
        return tariffs_from_account(data, parse_windows(config.windows), today)
    except ValueError as exc:
        raise TariffError(str(exc)) from None


def make(config: TariffConfig, now: datetime) -> Built:
    """Read, build and check; a tariff that fails a check is a :class:`TariffError`."""
    buy, sell = read_tariffs(config, now)
    try:
        built = build(
            buy,
            sell,
            today=now.astimezone(LONDON).date(),
            day=config.day,
            sell_from=config.sell,
            strategy=config.strategy,
        )
    except ValueError as exc:
        raise TariffError(str(exc)) from None
    problems = validate_request(built.request)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TariffError(f"the built tariff fails its checks: {problems[0]}{more}")
    return built


def _shows(info: dict[str, Any], settings: dict[str, Any]) -> bool:
    strategy = (info.get("tou_settings") or {}).get("optimization_strategy")
    return bool(
        info.get("tariff_content_v2") == settings["tariff_content_v2"]
        and strategy == settings["optimization_strategy"]
    )


def upload(cloud: Any, built: Built) -> bool:
    """POST the tariff unless the site already shows it, then read ``site_info`` back.

    True when it was sent. Tesla counts every call, and its plans have limited tariff
    changes per site (research note §3.3), so an unchanged tariff is not sent again.
    """
    site = cloud.site()
    sent = built.request["tou_settings"]
    if _shows(cloud.site_info(), sent):
        _LOGGER.info("energy site %s already has tariff %s", site.site_id, built.buy.code)
        return False
    cloud.request("POST", TOU_PATH.format(site=site.site_id), built.request)
    _LOGGER.info("tariff %s sent to energy site %s", built.buy.code, site.site_id)
    info = cloud.site_info()
    if info.get("tariff_content_v2") != sent["tariff_content_v2"]:
        raise TariffError(
            f"energy site {site.site_id} does not show the new tariff yet (the cloud may "
            "apply it late); check the Tesla app, or run pwbus tariff again later"
        )
    if not _shows(info, sent):
        strategy = (info.get("tou_settings") or {}).get("optimization_strategy")
        raise TariffError(
            f"energy site {site.site_id} took the tariff but its optimization_strategy is "
            f"{strategy!r}, not {sent['optimization_strategy']!r}"
        )
    return True


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run_tariff(config: TariffConfig, now: datetime | None = None) -> int:
    """``pwbus tariff``: the exit status (failures are raised as one-line errors)."""
    built = make(config, now or datetime.now(UTC))
    if config.dry_run:
        _say(json.dumps(built.request, indent=2))
        _say(table(built))
        _say("checks: passed; nothing uploaded (--dry-run)")
        return 0
    from powerwall_bus.shared.tesla_cloud.client import TeslaCloud

    cloud = TeslaCloud.from_settings(config.cloud, config.state_dir)
    try:
        sent = upload(cloud, built)
    finally:
        cloud.close()
    _say(table(built))
    site = cloud.site().site_id
    if sent:
        _say(f"uploaded to energy site {site} and read back: the site shows it")
    else:
        _say(f"energy site {site} already shows this tariff: nothing sent")
    return 0
