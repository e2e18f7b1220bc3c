"""``pwbus octopus``: its command-line surface (light: requests and pika load in ``run``)."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from powerwall_bus.shared.command import Command, exchange_flag
from powerwall_bus.shared.settings import (
    AmqpSettings,
    GatewaySettings,
    OctopusSettings,
    Sources,
    load,
)


@dataclass(frozen=True)
class OctopusConfig:
    """Everything ``pwbus octopus`` needs, read once at start."""

    octopus: OctopusSettings
    amqp: AmqpSettings
    state_dir: Path  # gateway.state_dir (PWBUS_STATE_DIR): where the tokens are kept

    @property
    def token_file(self) -> Path:
        """This account's saved tokens (mode 0600)."""
        word = re.sub(r"[^A-Za-z0-9_-]", "_", self.octopus.account_number)[:64]
        return self.state_dir / f"octopus-tokens-{word}.json"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--account",
        dest="octopus_energy.account_number",
        metavar="A-XXXXXXXX",
        help="the Octopus account number ($PWBUS_OCTOPUS_ACCOUNT); the API key comes only "
        "from $PWBUS_OCTOPUS_API_KEY or the config file (flags show in ps)",
    )
    parser.add_argument(
        "--device-id",
        dest="octopus_energy.device_id",
        metavar="ID",
        help="the car or charger to follow (default: the account's only one)",
    )
    parser.add_argument(
        "--url", dest="octopus_energy.url", metavar="URL", help="the Kraken GraphQL endpoint"
    )
    parser.add_argument(
        "--poll-interval",
        dest="octopus_energy.poll_interval",
        metavar="SECONDS",
        help="seconds between plan requests (120; at least 30)",
    )
    exchange_flag(parser)


def _load(sources: Sources, args: argparse.Namespace) -> OctopusConfig:
    octopus = load(OctopusSettings, "octopus_energy", sources)
    octopus.require_account()
    state_dir = load(GatewaySettings, "gateway", sources).state_dir
    assert state_dir is not None
    return OctopusConfig(
        octopus=octopus, amqp=load(AmqpSettings, "amqp", sources), state_dir=state_dir
    )


def _run(config: OctopusConfig) -> int:
    from powerwall_bus.producers.octopus.main import run_octopus

    return run_octopus(config)


OCTOPUS = Command(
    name="octopus",
    help="follow an Octopus account's planned dispatches and publish the plan",
    description="Poll Octopus Energy's planned dispatches for the account's car or charger "
    "(Intelligent Octopus Go) and publish the whole plan as octopus.<account>.plan on every "
    "change and periodically. Needs PWBUS_OCTOPUS_API_KEY and PWBUS_OCTOPUS_ACCOUNT.",
    add_arguments=_arguments,
    load=_load,
    run=_run,
)
