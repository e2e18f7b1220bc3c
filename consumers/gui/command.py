"""``pwbus gui``: its command-line surface (light: tkinter and pika load in ``run``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from powerwall_bus.shared.command import Command, exchange_flag, gateway_flag, stale_after_flag
from powerwall_bus.shared.settings import (
    AmqpSettings,
    DisplaySettings,
    GatewaySettings,
    GuiSettings,
    Sources,
    load,
)


@dataclass(frozen=True)
class GuiConfig:
    """Everything ``pwbus gui`` needs."""

    gui: GuiSettings
    display: DisplaySettings
    amqp: AmqpSettings
    gateway: GatewaySettings  # only its name: the gateway to follow

    @property
    def follow(self) -> str:
        """The gateway to show: a DIN or a poller's name; "" = the only one on the bus."""
        return self.gateway.name


def _arguments(parser: argparse.ArgumentParser) -> None:
    gateway_flag(parser, "show this gateway (default: the only one on the bus)")
    parser.add_argument(
        "--fullscreen",
        dest="gui.fullscreen",
        action="store_true",
        default=None,
        help="fill the whole screen, for a kiosk display (Escape leaves full screen)",
    )
    parser.add_argument(
        "--font-scale",
        dest="gui.font_scale",
        metavar="FACTOR",
        help="multiply every font size by this, 0.5 to 4 (1)",
    )
    parser.add_argument(
        "--theme", dest="gui.theme", metavar="light|dark", help="colours: light or dark (light)"
    )
    stale_after_flag(parser)
    exchange_flag(parser)


def _load(sources: Sources, args: argparse.Namespace) -> GuiConfig:
    return GuiConfig(
        gui=load(GuiSettings, "gui", sources),
        display=load(DisplaySettings, "display", sources),
        amqp=load(AmqpSettings, "amqp", sources),
        gateway=load(GatewaySettings, "gateway", sources),
    )


def _run(config: GuiConfig) -> int:
    from powerwall_bus.consumers.gui.main import run_gui

    return run_gui(config)


GUI = Command(
    name="gui",
    help="a window with the flows, the battery level and the grid, from the bus",
    add_arguments=_arguments,
    load=_load,
    run=_run,
)
