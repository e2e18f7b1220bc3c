"""Planning a stack: which components run, with which command line and environment.

Pure apart from reading the settings and, with ``--simulate``, making the run's private
temporary folder (the poller's state and the simulator's certificate) and picking a free
port. Everything is worked out before any process starts, so a bad setting fails the
whole stack with one line and exit status 2 before anything runs.

Children always log JSON lines (``PWBUS_LOG_JSON=yes``): the supervisor relays their
records into its own log, in whatever format the user chose, without reading log text.
"""

from __future__ import annotations

import hashlib
import secrets
import socket
import ssl
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import (
    AmqpSettings,
    GatewaySettings,
    LogSettings,
    MysqlSettings,
    Sources,
    load,
    secret_values,
)

SIMULATOR = "simulate"


@dataclass(frozen=True)
class Component:
    """One row of the component table: what to run and what it needs."""

    name: str
    argv: tuple[str, ...]  # the ``pwbus`` arguments
    needs_gateway: bool = False  # with --simulate: pointed at the simulator
    env: Mapping[str, str] = field(default_factory=dict)  # added to the inherited environment


#: Every component the stack knows, in start order. A new consumer is one line here, e.g.
#: ``Component("proxy", ("proxy",))`` or ``Component("mysql", ("mysql",))``.
COMPONENTS: tuple[Component, ...] = (
    Component(SIMULATOR, ("simulate", "--host", "127.0.0.1")),
    Component("poller", ("poller",), needs_gateway=True),
    Component("proxy", ("proxy",)),
    Component("mysql", ("mysql",)),
)
KNOWN = {component.name: component for component in COMPONENTS}


@dataclass(frozen=True)
class ChildSpec:
    """One child process as the supervisor runs it."""

    name: str
    argv: tuple[str, ...]  # the complete command line
    env: Mapping[str, str]
    ready_url: str | None = None  # answers HTTPS GET here when the child is ready


@dataclass(frozen=True)
class StackPlan:
    """Everything ``run_stack`` needs, worked out before logging starts."""

    children: tuple[ChildSpec, ...]
    secrets: tuple[str, ...] = field(repr=False, metadata={"secret": True})
    summary: str
    scratch_dir: Path | None = None  # removed when the stack exits


def select_components(names: str | None, *, simulate: bool) -> list[Component]:
    """The table rows to run, in start order; raises ConfigError for an unknown name."""
    if names is None:
        wanted = {c.name for c in COMPONENTS if c.name != SIMULATOR}
    else:
        wanted = {part.strip() for part in names.split(",") if part.strip()}
        unknown = sorted(wanted - set(KNOWN))
        if unknown:
            raise ConfigError(
                "stack.components",
                f"unknown component {', '.join(map(repr, unknown))}; known: {', '.join(KNOWN)}",
            )
        if not wanted:
            raise ConfigError("stack.components", f"names no component; known: {', '.join(KNOWN)}")
    if simulate:
        wanted.add(SIMULATOR)
    return [c for c in COMPONENTS if c.name in wanted]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _certificate_fingerprint(cert_file: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(cert_file.read_text())
    return hashlib.sha256(der).hexdigest()


def plan_stack(
    components: str | None,
    *,
    simulate: bool,
    sources: Sources,
    log: LogSettings,
    config_file: str | None = None,
) -> StackPlan:
    """Check the selection and the settings, and build every child's command and environment."""
    selected = select_components(components, simulate=simulate)
    simulate = any(c.name == SIMULATOR for c in selected)  # naming it counts as --simulate
    amqp = load(AmqpSettings, "amqp", sources)
    mysql = load(MysqlSettings, "mysql", sources)
    # The database URL as a whole is a secret; registering it would mask the safe URL too.
    found_secrets = secret_values(amqp) + ([mysql.password] if mysql.password else [])

    base_env = dict(sources.env)
    base_env.update(
        PYTHONUNBUFFERED="1",
        PWBUS_LOG_LEVEL=log.level,
        PWBUS_LOG_JSON="yes",  # structured records, relayed by the supervisor
    )
    if config_file:
        base_env["PWBUS_CONFIG"] = str(Path(config_file).expanduser().resolve())

    command = (sys.executable, "-m", "powerwall_bus")
    summary = f"broker {amqp.safe_url} (exchange {amqp.exchange!r}), database {mysql.safe_url}"
    scratch: Path | None = None
    sim_env: dict[str, str] = {}
    gateway_env: dict[str, str] = {}
    port = 0
    if simulate:
        from powerwall_bus.shared.certs import make_self_signed

        gateway = load(GatewaySettings, "gateway", sources)
        password = gateway.password or secrets.token_urlsafe(12)
        found_secrets.append(password)
        port = free_port()
        scratch = Path(tempfile.mkdtemp(prefix="pwbus-stack-"))
        cert, key = make_self_signed(scratch / "simulator-tls")
        address = f"127.0.0.1:{port}"
        sim_env = {
            "PWBUS_SIM_PASSWORD": password,
            "PWBUS_SIM_CERT": str(cert),
            "PWBUS_SIM_KEY": str(key),
        }
        state_dir = scratch / "state"
        state_dir.mkdir(mode=0o700)
        # The PWBUS_GATEWAY_* names come first in the lookup, so they beat a real gateway's
        # settings in the environment; PW_* are set too for anyone reading those.
        gateway_env = {
            "PW_HOST": address,
            "PWBUS_GATEWAY_HOST": address,
            "PW_PASSWORD": password,
            "PWBUS_GATEWAY_PASSWORD": password,
            "PWBUS_STATE_DIR": str(state_dir),
            "PWBUS_GATEWAY_SESSION_FILE": str(state_dir / "gateway-session.json"),
            "PWBUS_GATEWAY_TLS_FINGERPRINT": _certificate_fingerprint(cert),
        }
        summary += f"; simulated gateway https://{address}, state in {state_dir}"

    children = []
    for component in selected:
        env = {**base_env, **component.env}
        argv = command + component.argv
        if component.name == SIMULATOR:
            env.update(sim_env)
            argv += ("--port", str(port))
        elif component.needs_gateway:
            env.update(gateway_env)
        children.append(
            ChildSpec(
                component.name,
                argv,
                env,
                ready_url=f"https://127.0.0.1:{port}/api/status"
                if component.name == SIMULATOR
                else None,
            )
        )
    return StackPlan(tuple(children), tuple(found_secrets), summary, scratch)
