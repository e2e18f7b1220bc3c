"""How a component offers itself to the ``pwbus`` command: its arguments, its settings, its run.

Every component package has a small ``command`` module declaring one :class:`Command` per
subcommand. Those modules are light on purpose: they import ``argparse`` and the settings
declarations only, and import the component's own code (and with it aiohttp, pika,
mysql-connector, a GUI or LED library) inside ``run``. The ``pwbus`` dispatcher imports every
command module to build its parser, so a Raspberry Pi that only runs the LED display never
loads the web server or the database driver.

A command turns the parsed flags and the layered :class:`~powerwall_bus.shared.settings.Sources`
into ONE typed settings object (``load``), and ``run`` receives nothing else. The dispatcher
registers every secret found in that object with the log redaction filter before ``run``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import Sources

S = TypeVar("S")


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    """For commands whose every setting comes from the environment or the config file."""


@dataclass(frozen=True)
class Command(Generic[S]):
    """One ``pwbus`` subcommand.

    ``add_arguments`` declares its flags; a flag whose ``dest`` is a dotted setting key
    (``poller.meters_interval``) takes part in the settings layers (flag > environment >
    config file), any other ``dest`` is for ``load`` to read from ``args``. ``load`` raises
    :class:`~powerwall_bus.shared.errors.ConfigError` for a bad value; ``run`` returns the
    exit status.
    """

    name: str
    help: str
    load: Callable[[Sources, argparse.Namespace], S]
    run: Callable[[S], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    description: str | None = None
    raw_help: bool = False  # keep the description's and flags' line breaks in --help


def exchange_flag(parser: argparse.ArgumentParser) -> None:
    """``--exchange NAME``: the topic exchange (setting ``amqp.exchange``)."""
    parser.add_argument(
        "--exchange", dest="amqp.exchange", metavar="NAME", help="topic exchange (Tesla)"
    )


def stale_after_flag(
    parser: argparse.ArgumentParser,
    help: str = "say the data is stale after this long without a reading (10)",
) -> None:
    """``--stale-after SECONDS``: when a display calls its data stale (``display.stale_after``)."""
    parser.add_argument("--stale-after", dest="display.stale_after", metavar="SECONDS", help=help)


def gateway_flag(parser: argparse.ArgumentParser, help: str, metavar: str = "DIN_OR_NAME") -> None:
    """``--gateway``: which gateway the process is for (setting ``gateway.name``)."""
    parser.add_argument("--gateway", dest="gateway.name", metavar=metavar, help=help)


def setting_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given on the command line that name a setting (dotted ``dest``)."""
    return {key: value for key, value in vars(args).items() if "." in key and value is not None}


def password_from_env_or_prompt(
    sources: Sources,
    key: str,
    env_name: str,
    who: str,
    ask: Callable[[str], str] = getpass.getpass,
) -> str:
    """A password for an account a command creates: from ``env_name``, else asked twice at a
    terminal. Never a flag: flags show in ``ps`` and in the shell's history."""
    found = sources.lookup(key, (env_name,))
    if found is not None:
        password = str(found[0])
    elif not sys.stdin.isatty():
        raise ConfigError(key, f"set {env_name} (or run in a terminal to be asked)")
    else:
        password = ask(f"password for the {who} user: ")
        if not password or ask(f"password for the {who} user, again: ") != password:
            raise ConfigError(key, "the two entries were empty or differ")
    if any(ord(c) < 32 for c in password):
        raise ConfigError(key, "must not contain control characters")
    return password
