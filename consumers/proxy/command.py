"""``pwbus proxy``: the proxy's command-line surface (light: aiohttp is imported in ``run``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from powerwall_bus.shared.command import Command, exchange_flag, gateway_flag
from powerwall_bus.shared.settings import (
    AmqpSettings,
    GatewaySettings,
    ProxySettings,
    Sources,
    load,
)


@dataclass(frozen=True)
class ProxyConfig:
    """Everything ``pwbus proxy`` needs."""

    proxy: ProxySettings
    amqp: AmqpSettings
    follow: str = ""  # the gateway to serve: a DIN or a poller's name; "" = the only one


def _arguments(parser: argparse.ArgumentParser) -> None:
    gateway_flag(parser, "serve this gateway (default: the only one on the bus)")
    parser.add_argument("--port", dest="proxy.port", metavar="PORT", help="HTTP port (8675)")
    exchange_flag(parser)


def _load(sources: Sources, args: argparse.Namespace) -> ProxyConfig:
    return ProxyConfig(
        proxy=load(ProxySettings, "proxy", sources),
        amqp=load(AmqpSettings, "amqp", sources),
        follow=load(GatewaySettings, "gateway", sources).name,
    )


def _run(config: ProxyConfig) -> int:
    from powerwall_bus.consumers.proxy.main import run_proxy

    return run_proxy(config)


PROXY = Command(
    name="proxy",
    help="serve the pyPowerwall proxy's endpoints from the bus (port 8675)",
    add_arguments=_arguments,
    load=_load,
    run=_run,
)
