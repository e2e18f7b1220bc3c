"""Fault injection for the simulator: parsed from specs like ``latency=0.5`` or ``garbage@/api/x``.

A spec is ``NAME[=VALUE][@PATH[,PATH...]]``. ``@PATH`` limits a per-request fault (latency,
timeout, drop, garbage, http-error) to those paths. The set can be changed while the
server runs (control endpoint ``/_sim/faults`` or ``pwbus simctl``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from powerwall_bus.shared.errors import ConfigError

#: name -> (value type, description); "flag" faults take no value.
FAULTS: dict[str, tuple[str, str]] = {
    "rate-limit-logins": ("int", "answer 429 once more than N logins arrive within a minute"),
    "rate-limit-requests": ("int", "answer 429 once more than N requests arrive within a minute"),
    "rate-limit-seconds": ("float", "how long a triggered rate limit lasts (default 300 s)"),
    "stopped": ("flag", "site controller stopped: live endpoints answer 502 with no body"),
    "latency": ("float", "add this many seconds before every answer"),
    "timeout": ("float", "hold requests this many seconds without answering (default 60)"),
    "drop": ("flag", "close the connection without answering"),
    "garbage": ("flag", "answer 200 with a body that is not JSON"),
    "http-error": ("int", "answer every request with this HTTP status"),
    "retry-after": ("str", "send this Retry-After (seconds or an HTTP date) with http-error"),
    "islanded": ("flag", "grid outage: the site runs on its batteries"),
    "firmware": ("str", "report this firmware; 23.44 or later answers 404 for vitals"),
    "default-password": ("flag", "logins answer 401 'default password not supported'"),
}
PER_REQUEST = frozenset({"latency", "timeout", "drop", "garbage", "http-error"})


@dataclass(frozen=True)
class Fault:
    """One active fault."""

    name: str
    value: Any = True
    paths: frozenset[str] = field(default_factory=frozenset)

    def applies_to(self, path: str) -> bool:
        """True when this fault acts on a request for ``path``."""
        return not self.paths or path in self.paths

    def spec(self) -> str:
        """Back to the text form it was parsed from."""
        text = self.name if self.value is True else f"{self.name}={self.value}"
        return text + ("@" + ",".join(sorted(self.paths)) if self.paths else "")


def parse_fault(spec: str) -> Fault:
    """Parse one spec; raises ConfigError naming the problem."""
    text, _, where = spec.strip().partition("@")
    name, has_value, raw = text.partition("=")
    name = name.strip()
    if name not in FAULTS:
        raise ConfigError("simulator.faults", f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
    kind = FAULTS[name][0]
    value: Any = True
    if kind == "flag":
        if has_value and raw.strip().lower() not in ("1", "yes", "true", "on"):
            raise ConfigError("simulator.faults", f"{name} takes no value")
    elif kind == "str":
        if not raw.strip():
            raise ConfigError("simulator.faults", f"{name} needs a value, e.g. {name}=23.44.0")
        value = raw.strip()
    else:
        default = {"timeout": "60"}.get(name)
        try:
            value = (int if kind == "int" else float)(raw.strip() or default or "")
        except ValueError:
            raise ConfigError("simulator.faults", f"{name} needs a number, got {raw!r}") from None
        if value < 0:
            raise ConfigError("simulator.faults", f"{name} must not be negative")
    paths = frozenset(p.strip() for p in where.split(",") if p.strip())
    if paths and name not in PER_REQUEST:
        raise ConfigError("simulator.faults", f"{name} applies to the whole gateway, not @paths")
    return Fault(name, value, paths)


@dataclass(frozen=True)
class FaultSet:
    """The faults active now, by name (one of each)."""

    active: tuple[Fault, ...] = ()

    @classmethod
    def parse(cls, specs: list[str] | tuple[str, ...]) -> FaultSet:
        """Build a set from specs; a later spec of the same name wins."""
        by_name = {f.name: f for f in (parse_fault(s) for s in specs)}
        return cls(tuple(by_name.values()))

    def get(self, name: str) -> Fault | None:
        """The active fault of that name, if any."""
        return next((f for f in self.active if f.name == name), None)

    def value(self, name: str, default: Any = None) -> Any:
        """The value of an active fault, or ``default``."""
        fault = self.get(name)
        return default if fault is None else fault.value

    def with_specs(self, specs: list[str]) -> FaultSet:
        """This set plus the given specs."""
        return FaultSet.parse([f.spec() for f in self.active] + list(specs))

    def without(self, names: list[str]) -> FaultSet:
        """This set minus the named faults."""
        return replace(self, active=tuple(f for f in self.active if f.name not in names))

    def specs(self) -> list[str]:
        """Text forms of the active faults."""
        return [f.spec() for f in self.active]


def describe_faults() -> str:
    """Help text listing every fault."""
    return "\n".join(f"  {name:<20} {desc}" for name, (_, desc) in FAULTS.items())
