"""``pwbus console``: its command-line surface (light: pika and requests load in ``run``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from powerwall_bus.shared.command import Command, exchange_flag, gateway_flag, stale_after_flag
from powerwall_bus.shared.settings import (
    AmqpSettings,
    DisplaySettings,
    GatewaySettings,
    Sources,
    load,
)


@dataclass(frozen=True)
class ConsoleConfig:
    """Everything ``pwbus console`` needs."""

    display: DisplaySettings
    amqp: AmqpSettings
    gateway: GatewaySettings  # the gateway to follow (its name), and to read with --direct
    once: bool = False
    json: bool = False
    direct: bool = False

    @property
    def follow(self) -> str:
        """The gateway to show: a DIN or a poller's name; "" = the only one on the bus."""
        return self.gateway.name


def _arguments(parser: argparse.ArgumentParser) -> None:
    gateway_flag(parser, "show this gateway (default: the only one on the bus)")
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per reading (solar, home, battery, grid W; soe %%; grid "
        "status; time; gateway)",
    )
    parser.add_argument(
        "--direct",
        action="store_true",
        help="read the gateway itself (PW_HOST, PW_PASSWORD) instead of the bus, for a setup "
        "without a broker: this ADDS A GATEWAY CLIENT next to any poller (every 5 s)",
    )
    stale_after_flag(parser)
    exchange_flag(parser)


def _load(sources: Sources, args: argparse.Namespace) -> ConsoleConfig:
    gateway = load(GatewaySettings, "gateway", sources)
    if args.direct:
        gateway.require_login()
    return ConsoleConfig(
        display=load(DisplaySettings, "display", sources),
        amqp=load(AmqpSettings, "amqp", sources),
        gateway=gateway,
        once=args.once,
        json=args.json,
        direct=args.direct,
    )


def _run(config: ConsoleConfig) -> int:
    from powerwall_bus.consumers.console.main import run_console

    return run_console(config)


CONSOLE = Command(
    name="console",
    help="the meters, then the battery level every second, from the bus",
    add_arguments=_arguments,
    load=_load,
    run=_run,
)
