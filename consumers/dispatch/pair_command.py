"""``pwbus pair``: its command-line surface (light: cryptography and requests load in ``run``).

``pwbus pair init | register | list | remove FINGERPRINT|--key FILE | add-lan NEWKEY.pem``.
The signing key is ``tedapi_rsa_key.pem`` in the state folder (``gateway.state_dir``) unless
``--key-file`` names another; the cloud's tokens are ``tesla-cloud-tokens.json`` beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from powerwall_bus.shared.command import Command
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import (
    AmqpSettings,
    CloudSettings,
    GatewaySettings,
    Sources,
    load,
)

ACTIONS = ("init", "register", "list", "remove", "add-lan")
KEY_FILE = "tedapi_rsa_key.pem"  # shared.tedapi.keys.DEFAULT_KEY_FILE (not imported: light)


@dataclass(frozen=True)
class PairConfig:
    """Everything ``pwbus pair`` needs."""

    action: str
    cloud: CloudSettings
    amqp: AmqpSettings
    state_dir: Path
    key_file: Path
    target: str = ""  # remove: a fingerprint; add-lan: the new key's PEM file
    remove_key: Path | None = None
    description: str = "powerwall-bus"
    via: str = "cloud"
    din: str = ""


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=ACTIONS,
        help="init: make the key pair | register: pair it through the cloud (then toggle a "
        "Powerwall switch) | list | remove FINGERPRINT or --key FILE | add-lan NEWKEY.pem",
    )
    parser.add_argument(
        "target",
        nargs="?",
        default="",
        help="remove: the fingerprint (8+ hex "
        "digits); add-lan: the new key's PEM file (public or private)",
    )
    parser.add_argument(
        "--key-file",
        metavar="FILE",
        help=f"the private key that signs (default: {KEY_FILE} in the state folder)",
    )
    parser.add_argument("--key", metavar="FILE", help="remove: the key to remove, as a PEM file")
    parser.add_argument(
        "--description", default="powerwall-bus", help="the name the Tesla app shows for the key"
    )
    parser.add_argument(
        "--via",
        choices=("cloud", "lan"),
        default="cloud",
        help="add-lan: the road of the signed request: cloud (the device_command relay; the "
        "default) or lan (over the bus to the poller, which posts it to the gateway on your "
        "network; no cloud needed but for the DIN, see --din)",
    )
    parser.add_argument(
        "--din", default="", help="add-lan --via lan: the gateway's DIN (default: the cloud's site)"
    )
    parser.add_argument(
        "--site", dest="cloud.energy_site_id", metavar="ID", help="the energy_site_id to act on"
    )
    parser.add_argument(
        "--timeout",
        dest="cloud.pair_timeout",
        metavar="SECONDS",
        help="register: how long to wait for the switch toggle (600)",
    )


def _load(sources: Sources, args: argparse.Namespace) -> PairConfig:
    state_dir = load(GatewaySettings, "gateway", sources).state_dir
    assert state_dir is not None
    if args.action == "remove" and bool(args.target) == bool(args.key):
        raise ConfigError("pair.remove", "give the fingerprint or --key FILE (one of them)")
    if args.action == "add-lan" and not args.target:
        raise ConfigError("pair.add-lan", "give the new key's PEM file")
    if len(args.description) > 64 or any(ord(c) < 32 for c in args.description):
        raise ConfigError("pair.description", "at most 64 printable characters")
    return PairConfig(
        action=args.action,
        cloud=load(CloudSettings, "cloud", sources),
        amqp=load(AmqpSettings, "amqp", sources),
        state_dir=state_dir,
        key_file=Path(args.key_file) if args.key_file else state_dir / KEY_FILE,
        target=args.target,
        remove_key=Path(args.key) if args.key else None,
        description=args.description,
        via=args.via,
        din=args.din,
    )


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run_pair(config: PairConfig) -> int:
    """Carry out one ``pwbus pair`` action; the exit status."""
    from powerwall_bus.consumers.dispatch import pair
    from powerwall_bus.consumers.dispatch.channel import SignedChannel
    from powerwall_bus.consumers.dispatch.cloud import CloudChannel
    from powerwall_bus.shared.tedapi.keys import (
        fingerprint,
        load_private_key,
        load_public_key,
        public_der,
    )
    from powerwall_bus.shared.tesla_cloud.client import TeslaCloud

    if config.action == "init":
        path, print_ = pair.init_key(config.key_file.parent, config.key_file.name)
        _say(f"created {path} (mode 0600), key fingerprint {print_}")
        _say("next: pwbus pair register (needs the Tesla cloud tokens in the state folder)")
        return 0
    key = load_private_key(config.key_file)
    own = public_der(key)
    cloud = TeslaCloud.from_settings(config.cloud, config.state_dir)
    try:
        if config.action == "register":
            client = pair.register(
                cloud,
                key,
                config.description,
                timeout=config.cloud.pair_timeout,
                poll=config.cloud.pair_poll,
                say=_say,
            )
            _say(f"paired: {client.fingerprint} {client.state_name}")
            return 0
        if config.action == "list":
            for client in pair.list_keys(cloud):
                _say(pair.client_line(client, own))
            return 0
        if config.action == "remove":
            if config.remove_key is not None:
                target = public_der(load_public_key(config.remove_key))
            else:
                target = pair.find_key(pair.list_keys(cloud), config.target).public_key
            relay = CloudChannel(cloud, via="command")
            pair.remove_key(relay, key, relay.din, target, now=time.time())
            _say(f"removed {fingerprint(target)}")
            return 0
        new_key = public_der(load_public_key(Path(config.target)))
        channel: SignedChannel
        if config.via == "lan":
            from powerwall_bus.consumers.dispatch.lan import LanChannel

            din = config.din or cloud.site().din
            channel = LanChannel(config.amqp, din)
        else:
            channel = CloudChannel(cloud)
            din = cloud.site().din
        try:
            added = pair.add_lan_key(
                channel, key, din, new_key, config.description, now=time.time()
            )
        finally:
            if config.via == "lan":
                channel.close()
        _say(f"added: {added.fingerprint} {added.state_name}")
        return 0
    finally:
        cloud.close()


PAIR = Command(
    name="pair",
    help="pair the dispatcher's signing key with the gateway (init, register, list, remove, "
    "add-lan)",
    add_arguments=_arguments,
    load=_load,
    run=run_pair,
)
