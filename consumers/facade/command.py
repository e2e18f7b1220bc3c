"""``pwbus facade``: the gateway look-alike's command-line surface (light: aiohttp is imported
in ``run``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from powerwall_bus.shared.command import Command, exchange_flag, gateway_flag
from powerwall_bus.shared.settings import (
    AmqpSettings,
    FacadeSettings,
    GatewaySettings,
    Sources,
    load,
)


@dataclass(frozen=True)
class FacadeConfig:
    """Everything ``pwbus facade`` needs."""

    facade: FacadeSettings
    amqp: AmqpSettings
    state_dir: Path  # where a certificate made by the facade is kept (gateway.state_dir)
    follow: str = ""  # the gateway to serve: a DIN or a poller's name; "" = the only one


def _arguments(parser: argparse.ArgumentParser) -> None:
    gateway_flag(parser, "serve this gateway (default: the only one on the bus)")
    parser.add_argument("--port", dest="facade.port", metavar="PORT", help="HTTPS port (443)")
    parser.add_argument(
        "--bind", dest="facade.bind_address", metavar="ADDRESS", help="address to listen on"
    )
    exchange_flag(parser)


def _load(sources: Sources, args: argparse.Namespace) -> FacadeConfig:
    facade = load(FacadeSettings, "facade", sources)
    facade.require_password()
    gateway = load(GatewaySettings, "gateway", sources)
    return FacadeConfig(
        facade=facade,
        amqp=load(AmqpSettings, "amqp", sources),
        state_dir=gateway.state_dir,
        follow=gateway.name,
    )


def _run(config: FacadeConfig) -> int:
    from powerwall_bus.consumers.facade.main import run_facade

    return run_facade(config)


FACADE = Command(
    name="facade",
    help="answer like the gateway (HTTPS, its login and GETs) from the bus, for Home "
    "Assistant's Powerwall integration and other gateway clients; read-only",
    add_arguments=_arguments,
    load=_load,
    run=_run,
)
