"""Reading settings: command-line flags over environment over a config file.

:class:`Sources` gathers the three layers once; :func:`load` builds one section from them,
converting every raw value to its field's type and running its check, so a bad value fails
with one line naming the key, where the value came from and what was expected. The value
itself is never shown, for any key: a password pasted into the wrong variable (``PW_TIMEOUT``
is a number field) must not be printed back.
The config file is TOML, or a Tesla-API ``credentials.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings.sections import SECTIONS

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "n", ""})


#: The config file's tables of named gateways: ``[gateways.NAME]`` holds ``[gateway]`` keys.
GATEWAYS_TABLE = "gateways"
_GATEWAY_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Sources:
    """The layers settings come from, highest priority first.

    Flags, then (for a process given the name of a ``[gateways.NAME]`` table, see
    :meth:`for_gateway`) that table, then the environment, then the config file. A named
    table beats the environment because it is specific: with two gateways in one file, a
    ``PW_HOST`` left in the environment must not send both pollers to the same one.
    """

    flags: Mapping[str, Any] = field(default_factory=dict)  # dotted key -> value
    env: Mapping[str, str] = field(default_factory=dict)
    file: Mapping[str, Any] = field(default_factory=dict)  # dotted key -> value
    file_name: str = ""
    named: Mapping[str, Any] = field(default_factory=dict)  # dotted key -> value
    named_origin: str = ""

    @classmethod
    def gather(
        cls,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        config_file: str | Path | None = None,
    ) -> Sources:
        """Collect the layers; the config file is ``config_file`` or ``$PWBUS_CONFIG``."""
        env = dict(os.environ if env is None else env)
        path = config_file or env.get("PWBUS_CONFIG") or None
        file_values = read_config_file(Path(path)) if path else {}
        clean_flags = {k: v for k, v in (flags or {}).items() if v is not None}
        return cls(clean_flags, env, file_values, str(path or ""))

    def lookup(self, key: str, env_names: tuple[str, ...]) -> tuple[Any, str] | None:
        """The raw value for a key and a description of where it came from."""
        if key in self.flags:
            return self.flags[key], "command line"
        if key in self.named:
            return self.named[key], self.named_origin
        for name in env_names:
            if name in self.env and self.env[name] != "":
                return self.env[name], f"environment {name}"
        if key in self.file:
            return self.file[key], f"config file {self.file_name}"
        return None

    def gateway_names(self) -> list[str]:
        """The names of the config file's ``[gateways.NAME]`` tables, in file order."""
        prefix = GATEWAYS_TABLE + "."
        names = [key[len(prefix) :].split(".", 1)[0] for key in self.file if key.startswith(prefix)]
        return list(dict.fromkeys(names))

    def for_gateway(self, name: str) -> Sources:
        """These layers with ``[gateways.NAME]`` as the ``gateway`` section (and its name)."""
        if name not in self.gateway_names():
            known = ", ".join(self.gateway_names()) or "none"
            raise ConfigError(
                "gateway.name", f"no [gateways.{name}] table in the config file (known: {known})"
            )
        prefix = f"{GATEWAYS_TABLE}.{name}."
        named = {
            "gateway." + key[len(prefix) :]: value
            for key, value in self.file.items()
            if key.startswith(prefix)
        }
        named["gateway.name"] = name
        origin = f"config file {self.file_name} [gateways.{name}]"
        return dataclasses.replace(self, named=named, named_origin=origin)


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML file, or a Tesla-API style ``credentials.json``, into dotted keys."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        # By content, not by name: a Tesla-API credentials file is JSON whatever it is called
        # (a TOML document can never start with "{").
        if raw.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
            data = json.loads(raw.decode("utf-8-sig"))
            strict = False  # a foreign layout: keys we do not know are someone else's
        else:
            data = tomllib.loads(raw.decode("utf-8"))
            strict = True
    except (ValueError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError("config", f"{path} is not valid: {reason}") from None
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold an object/table at the top level")
    flat: dict[str, Any] = {}
    for section, values in data.items():
        if section == GATEWAYS_TABLE and strict:
            flat.update(_named_gateways(values, path))
            continue
        if section not in SECTIONS:
            if strict:
                raise ConfigError(section, f"unknown section in {path}")
            continue
        if not isinstance(values, dict):
            raise ConfigError(section, f"must be a table in {path}")
        known = {f.name for f in dataclasses.fields(SECTIONS[section])}
        for name, value in values.items():
            if name not in known:
                if strict:
                    raise ConfigError(f"{section}.{name}", f"unknown key in {path}")
                continue
            flat[f"{section}.{name}"] = value
    return flat


def _named_gateways(tables: Any, path: Path) -> dict[str, Any]:
    """``[gateways.NAME]`` tables, each checked like ``[gateway]``, as dotted keys."""
    if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
        raise ConfigError(GATEWAYS_TABLE, f"must hold [gateways.NAME] tables in {path}")
    known = {f.name for f in dataclasses.fields(SECTIONS["gateway"])} - {"name"}
    flat: dict[str, Any] = {}
    for name, values in tables.items():
        if not _GATEWAY_NAME.fullmatch(name):
            raise ConfigError(
                f"{GATEWAYS_TABLE}.{name}", "a gateway name is letters, digits, '-' and '_'"
            )
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{GATEWAYS_TABLE}.{name}.{key}", f"unknown key in {path}")
            flat[f"{GATEWAYS_TABLE}.{name}.{key}"] = value
    return flat


def load(cls: type[T], section: str, sources: Sources) -> T:
    """Build one settings section from the layers, converting and checking every value."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = f"{section}.{f.name}"
        found = sources.lookup(key, f.metadata.get("env", ()))
        if found is None:
            continue
        raw, origin = found
        value = _convert(raw, hints[f.name], key, origin)
        check = f.metadata.get("check")
        problem = check(value) if check and value is not None else None
        if problem:  # never the value: a password pasted into the wrong variable is one
            raise ConfigError(key, f"{problem} (from {origin})")
        values[f.name] = value
    return cls(**values)


def _convert(raw: Any, hint: Any, key: str, origin: str) -> Any:
    target = _unwrap_optional(hint)
    try:
        if target is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if target is int:
            if isinstance(raw, bool):
                raise ValueError
            return int(str(raw).strip()) if not isinstance(raw, int) else raw
        if target is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if target is Path:
            return Path(str(raw)).expanduser()
        if typing.get_origin(target) is tuple:
            if isinstance(raw, list | tuple):
                return tuple(str(item) for item in raw)
            return tuple(part.strip() for part in str(raw).split(",") if part.strip())
        if not isinstance(raw, str | int | float):
            raise ValueError
        return str(raw)
    except ValueError:
        kind = {bool: "yes or no", int: "a whole number", float: "a number"}.get(target, "text")
        raise ConfigError(key, f"expected {kind} (from {origin})") from None


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint
