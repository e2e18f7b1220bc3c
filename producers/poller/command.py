"""``pwbus poller``: the poller's command-line surface (light: no I/O library imported here)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from powerwall_bus.shared.command import Command, exchange_flag, gateway_flag
from powerwall_bus.shared.settings import (
    AmqpSettings,
    GatewaySettings,
    PollerSettings,
    Sources,
    WriterSettings,
    load,
)


@dataclass(frozen=True)
class PollerConfig:
    """Everything ``pwbus poller`` needs, read once at start."""

    gateway: GatewaySettings
    amqp: AmqpSettings
    poller: PollerSettings
    #: The MySQL writer's queue settings when the poller declares its queue
    #: (``poller.declare_writer_queue``); None: it does not.
    writer: WriterSettings | None = None


def _arguments(parser: argparse.ArgumentParser) -> None:
    gateway_flag(
        parser,
        "this gateway's name; reads the config file's [gateways.NAME] table if it has one",
        metavar="NAME",
    )
    parser.add_argument(
        "--meters-interval",
        dest="poller.meters_interval",
        metavar="SECONDS",
        help="seconds between meter reads (2; 1 allowed)",
    )
    exchange_flag(parser)


def _load(sources: Sources, args: argparse.Namespace) -> PollerConfig:
    name = load(GatewaySettings, "gateway", sources).name
    if name in sources.gateway_names():
        sources = sources.for_gateway(name)
    poller = load(PollerSettings, "poller", sources)
    config = PollerConfig(
        gateway=load(GatewaySettings, "gateway", sources),
        amqp=load(AmqpSettings, "amqp", sources),
        poller=poller,
        writer=load(WriterSettings, "writer", sources) if poller.declare_writer_queue else None,
    )
    config.gateway.require_login()
    return config


def _run(config: PollerConfig) -> int:
    from powerwall_bus.producers.poller.main import run_poller

    return run_poller(config)


POLLER = Command(
    name="poller",
    help="read the gateway and publish to RabbitMQ",
    add_arguments=_arguments,
    load=_load,
    run=_run,
)
