"""``pwbus hat``: its command-line surface (light: pika, Pillow and the LED libraries load
in ``run``, and only the chosen backend's)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from powerwall_bus.shared.command import Command, exchange_flag, gateway_flag, stale_after_flag
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import (
    AmqpSettings,
    DisplaySettings,
    GatewaySettings,
    HatSettings,
    Sources,
    load,
)

#: The ``--backend`` choices (opened by :func:`powerwall_bus.consumers.hat.devices.open_device`).
BACKENDS = ("unicornhathd", "sim", "png")


@dataclass(frozen=True)
class HatConfig:
    """Everything ``pwbus hat`` needs."""

    hat: HatSettings
    display: DisplaySettings
    amqp: AmqpSettings
    gateway: GatewaySettings  # only its name: the gateway to follow

    @property
    def backend(self) -> str:
        """Which LEDs: ``unicornhathd``, ``sim`` or ``png`` (setting ``hat.backend``)."""
        return self.hat.backend

    @property
    def output(self) -> Path | None:
        """Where ``png`` writes its frames (setting ``hat.output``)."""
        return self.hat.output

    @property
    def follow(self) -> str:
        """The gateway to show: a DIN or a poller's name; "" = the only one on the bus."""
        return self.gateway.name


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        dest="hat.backend",
        metavar="|".join(BACKENDS),
        help="unicornhathd: the HAT on a Raspberry Pi (extra 'hat', the default); sim: the "
        "unicorn-hat-sim window (extra 'hat-sim'); png: each distinct frame as PNG files in "
        "--output (extra 'png')",
    )
    parser.add_argument(
        "--output", dest="hat.output", metavar="DIR", help="where --backend png writes its frames"
    )
    gateway_flag(parser, "show this gateway (default: the only one on the bus)")
    parser.add_argument("--brightness", dest="hat.brightness", help="LED brightness by day, 0-1")
    parser.add_argument(
        "--rotate", dest="hat.rotation", metavar="DEGREES", help="0, 90, 180 or 270"
    )
    parser.add_argument(
        "--weather",
        dest="hat.weather",
        action="store_const",
        const=True,
        help="show the Open-Meteo weather icon (needs hat.location)",
    )
    stale_after_flag(parser, "show the stale screen after this long without a reading (10)")
    exchange_flag(parser)


def _load(sources: Sources, args: argparse.Namespace) -> HatConfig:
    hat = load(HatSettings, "hat", sources)
    if hat.backend == "png" and hat.output is None:
        raise ConfigError("hat.output", "--backend png needs --output DIR (PWBUS_HAT_OUTPUT)")
    return HatConfig(
        hat=hat,
        display=load(DisplaySettings, "display", sources),
        amqp=load(AmqpSettings, "amqp", sources),
        gateway=load(GatewaySettings, "gateway", sources),
    )


def _run(config: HatConfig) -> int:
    from powerwall_bus.consumers.hat.main import run_hat

    return run_hat(config)


HAT = Command(
    name="hat",
    help="the Unicorn HAT HD (16x16 LEDs): production, the power chart, the battery level",
    add_arguments=_arguments,
    load=_load,
    run=_run,
)
