"""``pwbus dispatch``: its command-line surface (light: pika and cryptography load in ``run``)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from powerwall_bus.consumers.dispatch.channel import SignedChannel
from powerwall_bus.shared.command import Command, exchange_flag
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import (
    AmqpSettings,
    CloudSettings,
    DispatchSettings,
    GatewaySettings,
    OctopusSettings,
    Sources,
    load,
)
from powerwall_bus.shared.tedapi.keys import DEFAULT_KEY_FILE


@dataclass(frozen=True)
class DispatchConfig:
    """Everything ``pwbus dispatch`` needs, read once at start."""

    dispatch: DispatchSettings
    amqp: AmqpSettings
    state_dir: Path  # gateway.state_dir (PWBUS_STATE_DIR): the key, the decision memory
    account: str = ""  # the Octopus account whose plan to follow; "" = the only one
    cloud: CloudSettings = field(default_factory=CloudSettings)  # the cloud road's account

    @property
    def key_file(self) -> Path:
        """The paired private key (``pwbus pair`` makes it; mode 0600)."""
        named = self.dispatch.key_file
        return Path(named).expanduser() if named else self.state_dir / DEFAULT_KEY_FILE

    def memory_file(self, din: str) -> Path:
        """What the decisions remember (our own hold), per gateway."""
        word = re.sub(r"[^A-Za-z0-9_-]", "_", din)[:100]
        return self.state_dir / f"dispatch-memory-{word}.json"


def _lan(config: DispatchConfig, din: str) -> SignedChannel:
    from powerwall_bus.consumers.dispatch.lan import LanChannel

    return LanChannel(config.amqp, din)


def _cloud(config: DispatchConfig, din: str) -> SignedChannel:
    from powerwall_bus.consumers.dispatch.cloud import open_cloud_channel

    return open_cloud_channel(config.cloud, config.state_dir, din)


def _fleet(config: DispatchConfig, din: str) -> SignedChannel:
    from powerwall_bus.consumers.dispatch.cloud import open_fleet_channel

    return open_fleet_channel(config.cloud, config.state_dir, din)


#: The roads a signed command can take to the gateway, by ``dispatch.channel`` name: one row
#: per road, each opening a :class:`SignedChannel` for the gateway's DIN.
CHANNELS: dict[str, Callable[[DispatchConfig, str], SignedChannel]] = {
    "lan": _lan,
    "cloud": _cloud,
    "fleet": _fleet,
}


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run",
        dest="dispatch.dry_run",
        action="store_true",
        default=None,
        help="decide and print what would be sent; send nothing, not even a read of the "
        "gateway (its Max Backup is taken to be none), publish nothing",
    )
    parser.add_argument(
        "--channel",
        dest="dispatch.channel",
        metavar="NAME",
        help=f"how commands reach the gateway: {', '.join(CHANNELS)} (lan)",
    )
    parser.add_argument(
        "--gateway-din",
        dest="dispatch.gateway",
        metavar="DIN",
        help="the gateway's DIN (default: the one poller on the bus says it)",
    )
    parser.add_argument(
        "--account",
        dest="dispatch.account",
        metavar="A-XXXXXXXX",
        help="the Octopus account whose plan to follow (default: octopus_energy's, else the "
        "only one on the bus)",
    )
    parser.add_argument(
        "--key-file",
        dest="dispatch.key_file",
        metavar="PEM",
        help="the paired private key (default: tedapi_rsa_key.pem in the state folder)",
    )
    parser.add_argument(
        "--interval",
        dest="dispatch.interval",
        metavar="SECONDS",
        help="decide at least this often (60); a new plan is acted on at once",
    )
    exchange_flag(parser)


def _load(sources: Sources, args: argparse.Namespace) -> DispatchConfig:
    dispatch = load(DispatchSettings, "dispatch", sources)
    if dispatch.channel not in CHANNELS:
        raise ConfigError("dispatch.channel", f"must be one of {', '.join(CHANNELS)}")
    state_dir = load(GatewaySettings, "gateway", sources).state_dir
    assert state_dir is not None
    account = dispatch.account or load(OctopusSettings, "octopus_energy", sources).account_number
    return DispatchConfig(
        dispatch=dispatch,
        amqp=load(AmqpSettings, "amqp", sources),
        state_dir=state_dir,
        account=account,
        cloud=load(CloudSettings, "cloud", sources),
    )


def _run(config: DispatchConfig) -> int:
    from powerwall_bus.consumers.dispatch.main import run_dispatch

    return run_dispatch(config)


DISPATCH = Command(
    name="dispatch",
    help="hold the Powerwall (Max Backup) through Octopus dispatches",
    description="Follow the Octopus plan on the bus (pwbus octopus) and keep the gateway's "
    "Max Backup on while a smart-charge dispatch runs, so the house battery is not drained "
    "into the car: decide from the plan and the gateway's own answer, send signed TEDAPI "
    "commands (over the LAN through the poller, or the cloud), read back, and publish "
    "dispatch.<DIN>.result. Rules: docs/dispatch-decisions.md.",
    load=_load,
    run=_run,
    add_arguments=_arguments,
)
