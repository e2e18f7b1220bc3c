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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import (
    AmqpSettings,
    GatewaySettings,
    LogSettings,
    MysqlSettings,
    ProxySettings,
    Sources,
    load,
    secret_values,
)
from powerwall_bus.shared.settings.describe import to_toml

SIMULATOR = "simulate"


@dataclass(frozen=True)
class Component:
    """One row of the component table: what to run and what it needs."""

    name: str
    argv: tuple[str, ...]  # the ``pwbus`` arguments
    needs_gateway: bool = False  # with --simulate: pointed at the simulator
    env: Mapping[str, str] = field(default_factory=dict)  # added to the inherited environment
    per_gateway: bool = False  # one instance per [gateways.NAME] table, with --gateway NAME
    default: bool = True  # runs without --components; displays only when named


#: Every component the stack knows, in start order. A new consumer is one line here, e.g.
#: ``Component("proxy", ("proxy",))`` or ``Component("mysql", ("mysql",))``.
COMPONENTS: tuple[Component, ...] = (
    Component(SIMULATOR, ("simulate", "--host", "127.0.0.1"), per_gateway=True),
    Component("poller", ("poller",), needs_gateway=True, per_gateway=True),
    Component("proxy", ("proxy",), per_gateway=True),
    Component("mysql", ("mysql",)),
    # The displays follow one gateway (PWBUS_GATEWAY) and need a screen, a terminal or a HAT,
    # so they run only when named: `pwbus stack --simulate --components poller,proxy,gui`.
    Component("console", ("console",), default=False),
    Component("gui", ("gui",), default=False),
    Component("hat", ("hat",), default=False),
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
    state_dir: Path | None = None  # where the stack records itself (record.py)
    simulators: Mapping[str, str] = field(default_factory=dict)  # gateway name -> base URL
    page: str | None = None  # the proxy's page, said at start
    notes: tuple[str, ...] = ()  # one line each, said at start (e.g. the writer is off)


def select_components(names: str | None, *, simulate: bool) -> list[Component]:
    """The table rows to run, in start order; raises ConfigError for an unknown name."""
    if names is None:
        wanted = {c.name for c in COMPONENTS if c.default and c.name != SIMULATOR}
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


@dataclass(frozen=True)
class _SimulatedGateway:
    """One simulator of a ``--simulate`` run and how its poller reaches it."""

    port: int
    password: str
    fingerprint: str
    state_dir: Path
    cert: Path
    key: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def _simulated_gateway(scratch: Path, tag: str, password: str) -> _SimulatedGateway:
    from powerwall_bus.shared.certs import make_self_signed

    cert, key = make_self_signed(scratch / f"simulator-tls{tag}")
    state_dir = scratch / f"state{tag}"
    state_dir.mkdir(mode=0o700)
    return _SimulatedGateway(
        free_port(), password, _certificate_fingerprint(cert), state_dir, cert, key
    )


def simulated_din(name: str) -> str:
    """A stable, valid DIN for the simulated gateway of ``[gateways.NAME]``."""
    serial = hashlib.sha256(name.encode()).hexdigest()[:12].upper()
    return f"1232100-00-E--TG{serial}"


def _write_private_config(path: Path, flat: Mapping[str, object]) -> Path:
    path.touch(mode=0o600)  # it holds passwords
    path.write_text(to_toml(flat), encoding="utf-8")
    return path


def plan_stack(
    components: str | None,
    *,
    simulate: bool,
    sources: Sources,
    log: LogSettings,
    config_file: str | None = None,
    database_reachable: Callable[[MysqlSettings], bool] | None = None,
) -> StackPlan:
    """Check the selection and the settings, and build every child's command and environment.

    With ``[gateways.NAME]`` tables in the config file, the simulator, the poller and the
    proxy run once per table (``poller.NAME``, ``proxy.NAME`` on the proxy port + 0, 1, ...),
    each with ``--gateway NAME``; the writer stores them all. Without ``components`` and
    with no database answering (``database_reachable``, a TCP probe by default), the writer
    is left out and a note says how to turn it on.
    """
    database_reachable = database_reachable or tcp_reachable
    selected = select_components(components, simulate=simulate)
    simulate = any(c.name == SIMULATOR for c in selected)  # naming it counts as --simulate
    amqp = load(AmqpSettings, "amqp", sources)
    mysql = load(MysqlSettings, "mysql", sources)
    proxy = load(ProxySettings, "proxy", sources)
    proxy_port = proxy.port
    notes: list[str] = []
    writer_wanted = components is None and any(c.name == "mysql" for c in selected)
    if writer_wanted and not database_reachable(mysql):  # a first run without a database
        selected = [c for c in selected if c.name != "mysql"]
        notes.append(
            f"the history writer is off: no database answers at {mysql.safe_url}; "
            "set MYSQL_URL to your MySQL/MariaDB (see the README) and start again"
        )
    # The database URL as a whole is a secret; registering it would mask the safe URL too.
    found_secrets = secret_values(amqp) + ([mysql.password] if mysql.password else [])
    names = sources.gateway_names()
    for name in names:  # every table must hold a complete, valid gateway
        named = load(GatewaySettings, "gateway", sources.for_gateway(name))
        found_secrets += secret_values(named)

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
    simulated: dict[str, _SimulatedGateway] = {}
    if simulate:
        gateway = load(GatewaySettings, "gateway", sources)
        scratch = Path(tempfile.mkdtemp(prefix="pwbus-stack-"))
        for name in names or [""]:
            password = gateway.password if not name else ""
            password = password or secrets.token_urlsafe(12)
            found_secrets.append(password)
            simulated[name] = _simulated_gateway(scratch, f"-{name}" if name else "", password)
        states = ", ".join(str(sim.state_dir) for sim in simulated.values())
        addresses = ", ".join(f"https://{sim.address}" for sim in simulated.values())
        summary += f"; simulated gateway {addresses}, state in {states}"
        if names:  # the named tables point at the simulators, in a private copy of the file
            flat = dict(sources.file)
            for name, sim in simulated.items():
                flat.update(
                    {
                        f"gateways.{name}.host": sim.address,
                        f"gateways.{name}.password": sim.password,
                        f"gateways.{name}.tls_fingerprint": sim.fingerprint,
                        f"gateways.{name}.state_dir": str(sim.state_dir),
                    }
                )
            private = _write_private_config(scratch / "pwbus.toml", flat)
            base_env["PWBUS_CONFIG"] = str(private)

    children = []
    for component in selected:
        for index, name in enumerate(names if component.per_gateway and names else [""]):
            env = {**base_env, **component.env}
            argv = command + component.argv
            ready_url = None
            if name and component.name != SIMULATOR:
                argv += ("--gateway", name)
            if component.name == "proxy" and name:
                argv += ("--port", str(proxy_port + index))
            if component.name == SIMULATOR:
                sim = simulated[name]
                env.update(
                    PWBUS_SIM_PASSWORD=sim.password,
                    PWBUS_SIM_CERT=str(sim.cert),
                    PWBUS_SIM_KEY=str(sim.key),
                )
                argv += ("--port", str(sim.port))
                if name:
                    argv += ("--din", simulated_din(name), "--seed", str(index + 1))
                ready_url = f"https://{sim.address}/api/status"
            elif component.needs_gateway and simulate and not name:
                env.update(_gateway_env(simulated[""]))
            children.append(
                ChildSpec(
                    f"{component.name}.{name}" if name else component.name, argv, env, ready_url
                )
            )
    page = None
    if any(c.name == "proxy" for c in selected):
        scheme = "https" if proxy.https == "yes" else "http"
        page = f"{scheme}://localhost:{proxy_port}{proxy.base_url}"
    return StackPlan(
        tuple(children),
        tuple(found_secrets),
        summary,
        scratch,
        state_dir=load(GatewaySettings, "gateway", sources).state_dir,
        simulators={name: f"https://{sim.address}" for name, sim in simulated.items()},
        page=page,
        notes=tuple(notes),
    )


def tcp_reachable(mysql: MysqlSettings, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at the database's host and port."""
    try:
        with socket.create_connection((mysql.host, mysql.port), timeout=timeout):
            return True
    except OSError:
        return False


def _gateway_env(sim: _SimulatedGateway) -> dict[str, str]:
    """The poller's gateway settings for the one unnamed simulated gateway.

    The PWBUS_GATEWAY_* names come first in the lookup, so they beat a real gateway's
    settings in the environment; PW_* are set too for anyone reading those.
    """
    return {
        "PW_HOST": sim.address,
        "PWBUS_GATEWAY_HOST": sim.address,
        "PW_PASSWORD": sim.password,
        "PWBUS_GATEWAY_PASSWORD": sim.password,
        "PWBUS_STATE_DIR": str(sim.state_dir),
        "PWBUS_GATEWAY_SESSION_FILE": str(sim.state_dir / "gateway-session.json"),
        "PWBUS_GATEWAY_TLS_FINGERPRINT": sim.fingerprint,
    }
