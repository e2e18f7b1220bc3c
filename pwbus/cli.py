"""``pwbus``: one command, one subcommand per component, dispatched from a table.

Each component offers its subcommands as :class:`~powerwall_bus.shared.command.Command`
objects in a light ``command`` module (arguments, one typed settings object, ``run``). This
module only knows where they are (:data:`COMMANDS`): it builds the parser from them, reads
the settings layers (flags over environment over the config file) once, configures logging
once with every secret of the command's settings registered for redaction, and runs it.
A component's libraries are imported by its ``run`` alone, so ``pwbus config`` or the LED
display never load aiohttp or mysql-connector.

Every known failure ends as one line on stderr, ``pwbus <command>: <what is wrong>``, and a
non-zero exit status (2 for configuration, 1 for anything else): never a traceback, never
a secret.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from powerwall_bus import __version__
from powerwall_bus.shared.command import Command, setting_flags
from powerwall_bus.shared.errors import ConfigError, PwbusError
from powerwall_bus.shared.logsetup import configure_logging
from powerwall_bus.shared.settings import (
    SECTIONS,
    LogSettings,
    Sources,
    describe,
    example_config,
    load,
    secret_values,
)

_LOGGER = logging.getLogger("pwbus")

#: Every subcommand, in the order ``pwbus --help`` lists them: (module, attribute). The
#: modules are imported to build the parser; each is light and imports its component's
#: code only when the command runs.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("powerwall_bus.stack.command", "STACK"),
    ("powerwall_bus.producers.poller.command", "POLLER"),
    ("powerwall_bus.producers.octopus.command", "OCTOPUS"),
    ("powerwall_bus.consumers.proxy.command", "PROXY"),
    ("powerwall_bus.consumers.facade.command", "FACADE"),
    ("powerwall_bus.consumers.mysql.command", "MYSQL"),
    ("powerwall_bus.consumers.mysql.command", "DB"),
    ("powerwall_bus.consumers.mysql.command", "REPORT"),
    ("powerwall_bus.consumers.console.command", "CONSOLE"),
    ("powerwall_bus.consumers.hat.command", "HAT"),
    ("powerwall_bus.consumers.dispatch.command", "DISPATCH"),
    ("powerwall_bus.consumers.dispatch.pair_command", "PAIR"),
    ("powerwall_bus.consumers.dispatch.tedapi_command", "TEDAPI"),
    ("powerwall_bus.consumers.tariff.command", "TARIFF"),
    ("powerwall_bus.consumers.gui.command", "GUI"),
    ("powerwall_bus.simulator.command", "SIMULATE"),
    ("powerwall_bus.simulator.command", "SIMCTL"),
    ("powerwall_bus.broker_users", "BROKER"),
    ("powerwall_bus.cloud_command", "CLOUD"),
    ("powerwall_bus.docs", "DOCS"),
    ("powerwall_bus.cli", "CONFIG"),
)


# --------------------------------------------------------------------------- pwbus config


@dataclass(frozen=True)
class ConfigRequest:
    """``pwbus config``: the example file, or the effective settings of some sections."""

    example: bool
    sections: dict[str, Any]


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--example",
        action="store_true",
        help="print a commented example config file with every option",
    )
    parser.add_argument(
        "sections",
        nargs="*",
        metavar="SECTION",
        help=f"sections to show (default: all): {' '.join(SECTIONS)}",
    )


def _config_load(sources: Sources, args: argparse.Namespace) -> ConfigRequest:
    names = args.sections or list(SECTIONS)
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise ConfigError(unknown[0], f"unknown section; known: {', '.join(SECTIONS)}")
    if args.example:
        return ConfigRequest(True, {})
    return ConfigRequest(False, {name: load(SECTIONS[name], name, sources) for name in names})


def _config_run(request: ConfigRequest) -> int:
    if request.example:
        sys.stdout.write(example_config())
    else:
        sys.stdout.write("\n".join(describe(request.sections)) + "\n")
    return 0


CONFIG = Command(
    name="config",
    help="print the effective settings (secrets masked)",
    add_arguments=_config_arguments,
    load=_config_load,
    run=_config_run,
)


# --------------------------------------------------------------------------- dispatch


def commands() -> list[Command[Any]]:
    """The :data:`COMMANDS` table, imported."""
    return [getattr(importlib.import_module(module), name) for module, name in COMMANDS]


def build_parser(table: Sequence[Command[Any]]) -> argparse.ArgumentParser:
    """The ``pwbus`` parser: global options, then one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="pwbus",
        description="Tesla Powerwall gateway data for many programs, through RabbitMQ.",
    )
    parser.add_argument("--version", action="version", version=f"pwbus {__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file, or a Tesla-API credentials.json ($PWBUS_CONFIG)",
    )
    parser.add_argument(
        "--log-level",
        dest="log.level",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR ($PWBUS_LOG_LEVEL)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in table:
        sub = subparsers.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            formatter_class=(
                argparse.RawTextHelpFormatter if command.raw_help else argparse.HelpFormatter
            ),
        )
        command.add_arguments(sub)
        _readable_placeholders(sub)
    return parser


def _readable_placeholders(parser: argparse.ArgumentParser) -> None:
    """``--port PORT``, not ``--port SIMULATOR.PORT``, for flags named after a setting key."""
    for action in parser._actions:  # argparse offers no public way to walk them
        if action.metavar is None and action.option_strings and "." in action.dest:
            action.metavar = action.dest.rsplit(".", 1)[1].upper()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pwbus`` console script."""
    table = {command.name: command for command in commands()}
    args = build_parser(list(table.values())).parse_args(argv)
    name = args.command
    try:
        sources = Sources.gather(flags=setting_flags(args), config_file=args.config)
        log = load(LogSettings, "log", sources)
        settings = table[name].load(sources, args)
        configure_logging(log.level, json_lines=log.json, secrets=secret_values(settings))
        return table[name].run(settings)
    except ConfigError as exc:
        sys.stderr.write(f"pwbus {name}: {exc}\n")
        return 2
    except PwbusError as exc:
        sys.stderr.write(f"pwbus {name}: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
