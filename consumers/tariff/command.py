"""``pwbus tariff``: its command-line surface (light: requests loads in ``run``).

Reads the Octopus account's current import and export agreements (or, with ``--tariff``,
a tariff's published rates, no account needed), builds the Tesla tariff, checks it, and
either prints it (``--dry-run``) or uploads it through the Tesla cloud client and reads the
site back. The Octopus key and the Tesla tokens are the same as ``pwbus octopus`` and
``pwbus pair`` use (settings ``[octopus_energy]``, ``[cloud]``; tokens in the state folder).
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from powerwall_bus.shared.command import Command
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import (
    CloudSettings,
    GatewaySettings,
    OctopusSettings,
    Sources,
    load,
)

SELL_CHOICES = ("export", "cheapest-buy")  # build.SELL_CHOICES (not imported: light)
STRATEGIES = ("economics", "balanced")


@dataclass(frozen=True)
class TariffConfig:
    """Everything ``pwbus tariff`` needs."""

    octopus: OctopusSettings
    cloud: CloudSettings
    state_dir: Path
    dry_run: bool = False
    day: date | None = None
    tariff: str = ""  # REST: the import tariff code (no account query)
    export_tariff: str = ""  # REST: the export tariff code
    sell: str = "export"
    windows: tuple[str, ...] = ()
    strategy: str = "economics"

    @property
    def token_file(self) -> Path:
        """The Octopus tokens ``pwbus octopus`` keeps for this account (shared, 0600)."""
        word = re.sub(r"[^A-Za-z0-9_-]", "_", self.octopus.account_number)[:64]
        return self.state_dir / f"octopus-tokens-{word}.json"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the tariff (JSON and a table per period) after its checks; upload nothing",
    )
    parser.add_argument(
        "--date",
        metavar="YYYY-MM-DD",
        help="build from this local day's prices (default: today, or the latest day the "
        "rates cover)",
    )
    parser.add_argument(
        "--tariff",
        metavar="CODE",
        default="",
        help="read this import tariff's published rates (REST, e.g. E-1R-AGILE-24-10-01-C) "
        "instead of the account's agreements",
    )
    parser.add_argument(
        "--export-tariff",
        metavar="CODE",
        default="",
        help="with --tariff: the export tariff's code (without one, selling earns 0)",
    )
    parser.add_argument(
        "--sell",
        choices=SELL_CHOICES,
        default="export",
        help="sell prices: the real export rate (default), or the cheapest buy price for "
        "every period (the Powerwall then never exports battery energy for profit)",
    )
    parser.add_argument(
        "--window",
        action="append",
        default=[],
        metavar="NAME=HH:MM-HH:MM",
        help="a day-night or three-rate tariff's hours, UK local time: night=00:30-07:30, "
        "off_peak=13:00-16:00 (Octopus does not publish them)",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="economics",
        help="optimization_strategy sent with the tariff (economics lets Time-Based Control "
        "export)",
    )
    parser.add_argument(
        "--account",
        dest="octopus_energy.account_number",
        metavar="A-XXXXXXXX",
        help="the Octopus account number ($PWBUS_OCTOPUS_ACCOUNT)",
    )
    parser.add_argument(
        "--url", dest="octopus_energy.url", metavar="URL", help="the Kraken GraphQL endpoint"
    )
    parser.add_argument(
        "--site", dest="cloud.energy_site_id", metavar="ID", help="the energy_site_id to set"
    )


def _load(sources: Sources, args: argparse.Namespace) -> TariffConfig:
    octopus = load(OctopusSettings, "octopus_energy", sources)
    if not args.tariff:
        octopus.require_account()
    elif args.window:
        raise ConfigError("tariff.window", "--window is for the account's day-night tariffs")
    if args.export_tariff and not args.tariff:
        raise ConfigError("tariff.export_tariff", "goes with --tariff")
    day = None
    if args.date:
        try:
            day = date.fromisoformat(args.date)
        except ValueError:
            raise ConfigError("tariff.date", f"{args.date!r} is not YYYY-MM-DD") from None
    state_dir = load(GatewaySettings, "gateway", sources).state_dir
    assert state_dir is not None
    return TariffConfig(
        octopus=octopus,
        cloud=load(CloudSettings, "cloud", sources),
        state_dir=state_dir,
        dry_run=args.dry_run,
        day=day,
        tariff=args.tariff.strip(),
        export_tariff=args.export_tariff.strip(),
        sell=args.sell,
        windows=tuple(args.window),
        strategy=args.strategy,
    )


def _run(config: TariffConfig) -> int:
    from powerwall_bus.consumers.tariff.main import run_tariff

    return run_tariff(config)


TARIFF = Command(
    name="tariff",
    help="turn the Octopus tariff into the Powerwall's time-of-use tariff (--dry-run to look)",
    description="Read the Octopus account's current import and export tariffs (or a "
    "tariff's published rates with --tariff), build Tesla's tariff_content_v2 (at most four "
    "price bands, every day covered once, UK wall-clock times), check it, and print it "
    "(--dry-run) or upload it through the Tesla cloud and read the site back.",
    add_arguments=_arguments,
    load=_load,
    run=_run,
)
