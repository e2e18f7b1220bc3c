"""How one option is declared, and how its values are checked and parsed.

A section of settings is a frozen dataclass whose fields are made with :func:`setting`: the
field carries its default, the environment names that set it, a one-line help text, whether
it is a secret and an optional check returning a problem text. The checks and parsers here
are shared by every section (ports, URLs, ``host:port``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from powerwall_bus.shared.errors import ConfigError


def setting(
    default: Any = dataclasses.MISSING,
    *,
    env: tuple[str, ...] = (),
    help: str = "",
    secret: bool = False,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """Declare one option: its default, environment names, help and an optional check.

    ``check`` returns a problem description (or None when the value is fine).
    """
    metadata = {"env": env, "help": _with_choices(help, check), "secret": secret, "check": check}
    if isinstance(default, list | dict | set):
        raise TypeError("use a tuple or None as the default of a setting")
    return field(default=default, metadata=metadata, repr=not secret)


def between(low: float, high: float, unit: str = "") -> Callable[[float], str | None]:
    """A check that the value lies in ``[low, high]`` (``unit`` names it in the message)."""
    suffix = f" {unit}" if unit else ""
    text = f"must be between {_number(low)} and {_number(high)}{suffix}"

    def check(value: float) -> str | None:
        return None if low <= value <= high else text

    return check


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def service_port(value: int) -> str | None:
    return None if 0 < value <= 65535 else "must be a TCP port number (1-65535)"


def positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def port_number(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be a TCP port number (0-65535)"


def one_of(*choices: str) -> Callable[[str], str | None]:
    """A check that the value is one of ``choices``; :func:`setting` lists them in the help."""

    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    check.choices = choices  # type: ignore[attr-defined]
    return check


def _with_choices(help: str, check: Callable[[Any], str | None] | None) -> str:
    """The help text, ending with every accepted value that it does not already name.

    So ``--help``, ``pwbus config --example`` and the README tables can never list fewer
    values than the check accepts.
    """
    choices: tuple[str, ...] = getattr(check, "choices", ())
    missing = [
        choice
        for choice in choices
        if not re.search(rf"(?<![\w-]){re.escape(choice)}(?![\w-])", help)
    ]
    if not missing:
        return help
    listed = ", ".join(choices)
    return f"{help}; one of: {listed}" if help else f"one of: {listed}"


def poll_interval(value: float) -> str | None:
    if value < 1.0:
        return "must be at least 1 second (the gateway is not a firehose)"
    return None if value <= 86400.0 else "must be at most 86400 seconds (a day)"


#: Kept for callers of the old name: a poll interval (1 s to a day).
at_least_one_second = poll_interval


@dataclass(frozen=True)
class UrlParts:
    """The pieces of a service URL, unquoted; None where the URL has none."""

    scheme: str
    host: str | None
    port: int | None
    user: str | None
    password: str | None
    path: str  # without its leading "/": the AMQP vhost or the database name


def parse_url(url: str, key: str, schemes: tuple[str, ...]) -> UrlParts:
    """Split a broker or database URL, with one-line errors naming ``key``."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ConfigError(key, "must start with " + " or ".join(f"{s}://" for s in schemes))
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(key, "has an invalid port") from None
    return UrlParts(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        path=unquote(parts.path[1:]),
    )


def split_host(host: str, default_port: int) -> tuple[str, int]:
    """Accept ``host``, ``host:port``, ``[v6]:port`` and ``https://host[:port][/]``."""
    text = host.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("https", "http"):
            raise ConfigError("gateway.host", "must be a host name, host:port or https:// URL")
        try:
            return parts.hostname or "", parts.port or default_port
        except ValueError:
            raise ConfigError("gateway.host", "has an invalid port") from None
    text = text.rstrip("/")
    if text.startswith("["):
        inside, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        return inside, parse_port(port_text, default_port)
    if text.count(":") == 1:
        name, port_text = text.split(":")
        return name, parse_port(port_text, default_port)
    return text, default_port


def parse_port(text: str, default: int) -> int:
    if not text:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError("gateway.host", "has an invalid port (expected 1-65535)")
    return int(text)
