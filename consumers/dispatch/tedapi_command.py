"""``pwbus tedapi demo [--send]``: its command-line surface (light: protobuf and cryptography
load in ``run``).

Without ``--send`` nothing leaves the machine: a throwaway key signs the message unless
``--key-file`` names one. With ``--send`` the message goes the way the dispatcher's LAN
road sends it (:class:`~powerwall_bus.consumers.dispatch.lan.LanChannel`: the bus, the
gateway's poller, the gateway), signed by the paired key in the state folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from powerwall_bus.shared.command import Command
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import AmqpSettings, GatewaySettings, Sources, load

KEY_FILE = "tedapi_rsa_key.pem"  # shared.tedapi.keys.DEFAULT_KEY_FILE (not imported: light)
EXAMPLE_DIN = "1232100-00-E--TG123456789012"  # docs/tedapi.md's worked example
KINDS = ("list", "schedule", "cancel")


@dataclass(frozen=True)
class DemoConfig:
    """Everything ``pwbus tedapi demo`` needs."""

    kind: str
    din: str
    key_file: Path | None  # None: a throwaway key
    send: bool
    minutes: int
    timeout: float
    amqp: AmqpSettings


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("demo",), help="demo: build, sign, verify and show")
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="list",
        help="the Max Backup call: list (default), schedule (starts now, --minutes) or cancel",
    )
    parser.add_argument("--minutes", type=int, default=30, help="schedule: its length (30)")
    parser.add_argument(
        "--din", default="", help=f"the gateway's DIN (default without --send: {EXAMPLE_DIN})"
    )
    parser.add_argument(
        "--key-file",
        metavar="FILE",
        help=f"the signing key (default: a throwaway key; with --send, {KEY_FILE} in the state "
        "folder)",
    )
    parser.add_argument(
        "--send",
        action="store_true",
        help="send it over the bus to the gateway's poller (needs --din and a paired key); "
        "schedule and cancel change the battery",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="--send: seconds to wait (10)")


def _load(sources: Sources, args: argparse.Namespace) -> DemoConfig:
    if args.send and not args.din:
        raise ConfigError("tedapi.din", "--send needs the gateway's --din")
    if not 1 <= args.minutes <= 24 * 60:
        raise ConfigError("tedapi.minutes", "1 to 1440")
    if not 0 < args.timeout <= 300:
        raise ConfigError("tedapi.timeout", "more than 0, at most 300 seconds")
    din = args.din or EXAMPLE_DIN
    if not 0 < len(din.encode()) < 256:
        raise ConfigError("tedapi.din", "1 to 255 bytes")
    key_file = Path(args.key_file) if args.key_file else None
    if key_file is None and args.send:
        state_dir = load(GatewaySettings, "gateway", sources).state_dir
        assert state_dir is not None
        key_file = state_dir / KEY_FILE
    return DemoConfig(
        kind=args.kind,
        din=din,
        key_file=key_file,
        send=args.send,
        minutes=args.minutes,
        timeout=args.timeout,
        amqp=load(AmqpSettings, "amqp", sources),
    )


def run_demo(config: DemoConfig) -> int:
    """Build, show and (``--send``) send one signed request; the exit status."""
    from powerwall_bus.consumers.dispatch import demo
    from powerwall_bus.shared.tedapi.commands import Kind
    from powerwall_bus.shared.tedapi.keys import generate_key, load_private_key

    key = load_private_key(config.key_file) if config.key_file else generate_key(2048)
    now = time.time()
    built = demo.build(Kind(config.kind), config.din, key, now, minutes=config.minutes)
    lines = demo.describe(built, now)
    if config.send:
        from powerwall_bus.consumers.dispatch.lan import LanChannel

        channel = LanChannel(config.amqp, config.din)
        try:
            lines += ["", *demo.send(channel, built, config.timeout)]
        finally:
            channel.close()
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


TEDAPI = Command(
    name="tedapi",
    help="show a signed TEDAPI v1r message field by field (demo), or send it (demo --send)",
    add_arguments=_arguments,
    load=_load,
    run=run_demo,
)
