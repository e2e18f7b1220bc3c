"""``pwbus stack``: the whole bus on one machine without Docker, as supervised child processes.

Each component runs as ``python -m powerwall_bus <component>`` in a session of its own (so a
Ctrl-C in the terminal reaches only the stack, which forwards it), with its output lines
passed into our log under ``pwbus.stack.<component>``. The supervisor:

* starts the components in table order; with ``--simulate`` the simulator first, on a free
  port, and the others once it answers HTTPS (those that talk to the gateway pointed at it);
* logs ``started <component> pid <N>`` for every start (tests and people find pids there);
* restarts a component that exits on its own after 1 s, doubling to at most 30 s, back to
  1 s once a run lasted 60 s; exit status 2 (a configuration error) is not retried: the
  stack stops and exits 2, since the same settings would fail the same way again;
* on SIGTERM, SIGINT or SIGHUP sends SIGTERM to every component in reverse start order,
  waits up to 15 s for each, SIGKILLs stragglers (at once on a second signal), reaps them
  all and exits 0. On Linux the children also get SIGTERM should the stack itself die.

With ``--simulate`` the run gets a private temporary folder (the poller's state, the
simulator's certificate), removed at exit; the poller pins exactly that certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
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

_LOGGER = logging.getLogger("pwbus.stack")

SIMULATOR = "simulate"
CONFIG_ERROR_STATUS = 2  # what ``pwbus`` exits with on a configuration error

BACKOFF_FIRST = 1.0
BACKOFF_CAP = 30.0
HEALTHY_AFTER = 60.0  # a run this long resets the restart delay
STOP_TIMEOUT = 15.0  # per component, after SIGTERM
READY_TIMEOUT = 30.0  # for the simulator to answer HTTPS
_LINE_LIMIT = 1 << 20  # longest output line passed on, bytes


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
    ready_port: int | None = None  # answers HTTPS /api/status on 127.0.0.1 here when ready


@dataclass(frozen=True)
class StackPlan:
    """Everything ``run_stack`` needs, worked out before logging starts."""

    children: tuple[ChildSpec, ...]
    secrets: tuple[str, ...]
    summary: str
    scratch_dir: Path | None = None  # removed when the stack exits


# --------------------------------------------------------------------------- planning


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
        PWBUS_LOG_JSON="yes" if log.json else "no",
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
                ready_port=port if component.name == SIMULATOR else None,
            )
        )
    return StackPlan(tuple(children), tuple(found_secrets), summary, scratch)


def run_stack(plan: StackPlan) -> int:
    """Run the plan until a signal; the exit status (0, or 2 after a configuration error)."""
    _LOGGER.info("stack: %s; %s", ", ".join(c.name for c in plan.children), plan.summary)
    try:
        return Supervisor(plan.children).run_sync()
    finally:
        if plan.scratch_dir is not None:
            shutil.rmtree(plan.scratch_dir, ignore_errors=True)


# --------------------------------------------------------------------------- supervision


class Backoff:
    """Restart delays: 1 s doubling to 30 s, back to 1 s after a run of 60 s or more."""

    def __init__(
        self,
        first: float = BACKOFF_FIRST,
        cap: float = BACKOFF_CAP,
        healthy_after: float = HEALTHY_AFTER,
    ) -> None:
        self.first = first
        self.cap = cap
        self.healthy_after = healthy_after
        self._next = first

    def after_run(self, ran_for: float) -> float:
        """The delay before the next start, given how long the last run lasted."""
        if ran_for >= self.healthy_after:
            self._next = self.first
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay


def describe_exit(returncode: int | None) -> str:
    """``exit status 1``, ``killed by SIGKILL`` or ``could not start``."""
    if returncode is None:
        return "could not start"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


_TEXT_RECORD = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) +(.*)$"
)


def parse_child_line(text: str) -> tuple[int, str] | None:
    """A child's log record (text or JSON format) as (level, message); None for other lines."""
    match = _TEXT_RECORD.match(text)
    if match:
        return logging.getLevelNamesMapping()[match.group(1)], match.group(2)
    if text.startswith("{"):
        try:
            entry = json.loads(text)
        except ValueError:
            return None
        if isinstance(entry, dict) and isinstance(entry.get("level"), str):
            level = logging.getLevelNamesMapping().get(entry["level"], logging.INFO)
            message = f"{entry.get('logger', '?')}: {entry.get('message', '')}"
            if entry.get("exception"):
                message += f"\n{entry['exception']}"
            return level, message
    return None


def _parent_death_hook(parent: int) -> Callable[[], None] | None:
    """On Linux, a pre-exec hook asking the kernel to SIGTERM the child when we die."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    death_signal = int(signal.SIGTERM)

    def hook() -> None:
        prctl(pr_set_pdeathsig, death_signal)
        if os.getppid() != parent:  # we died between fork and prctl
            os._exit(1)

    return hook


@dataclass
class _Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None


class Supervisor:
    """Starts, watches, restarts and finally stops the children of one stack."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        stop_timeout: float = STOP_TIMEOUT,
        ready_timeout: float = READY_TIMEOUT,
    ) -> None:
        self._specs = tuple(specs)
        self._stop_timeout = stop_timeout
        self._ready_timeout = ready_timeout
        self._children: list[_Child] = []
        self._stop = asyncio.Event()
        self._kill_now = asyncio.Event()
        self._exit_status = 0

    def run_sync(self) -> int:
        """:meth:`run` on a new event loop."""
        return asyncio.run(self.run())

    async def run(self) -> int:
        """Run until a signal (exit status 0) or a configuration error in a child (2)."""
        loop = asyncio.get_running_loop()
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        for signum in handled:
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            for spec in self._specs:
                if self._stop.is_set():
                    break
                child = _Child(spec)
                self._children.append(child)
                child.task = asyncio.create_task(self._supervise(child), name=spec.name)
                if spec.ready_port is not None:
                    await self._wait_ready(spec)
            await self._stop.wait()
        finally:
            await self._shutdown()
            for signum in handled:
                loop.remove_signal_handler(signum)
        return self._exit_status

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self._stop.is_set():
            if not self._kill_now.is_set():
                _LOGGER.warning("received %s again: killing the components now", name)
                self._kill_now.set()
            return
        _LOGGER.info("received %s: stopping the stack", name)
        self._stop.set()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the stack is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    # ------------------------------------------------------------------ one child

    async def _spawn(self, spec: ChildSpec) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(spec.env),
            start_new_session=True,  # own process group: no terminal signals, killpg works
            preexec_fn=_parent_death_hook(os.getpid()),
            limit=_LINE_LIMIT,
        )

    async def _supervise(self, child: _Child) -> None:
        name = child.spec.name
        backoff = Backoff()
        while not self._stop.is_set():
            started = time.monotonic()
            returncode: int | None = None
            pid = 0
            try:
                process = await self._spawn(child.spec)
            except OSError as exc:
                _LOGGER.error("cannot start %s: %s", name, exc)
            else:
                child.process, pid = process, process.pid
                _LOGGER.info("started %s pid %d", name, pid)
                forwarders = [
                    asyncio.create_task(self._forward(name, process.stdout, logging.INFO)),
                    asyncio.create_task(self._forward(name, process.stderr, logging.WARNING)),
                ]
                if self._stop.is_set():  # the stack began stopping while this one started
                    await self._terminate(child)
                returncode = await process.wait()
                # The pipes reach EOF once the process is gone (unless it left a grandchild).
                _, pending = await asyncio.wait(forwarders, timeout=2.0)
                for task in pending:
                    task.cancel()
                if self._stop.is_set():
                    return
            ran = time.monotonic() - started
            if returncode == CONFIG_ERROR_STATUS:
                _LOGGER.error(
                    "%s (pid %d) exited with status 2, a configuration error: "
                    "not restarting it; stopping the stack",
                    name,
                    pid,
                )
                self._exit_status = CONFIG_ERROR_STATUS
                self._stop.set()
                return
            delay = backoff.after_run(ran)
            _LOGGER.warning(
                "%s (pid %d) exited unexpectedly (%s) after %.1f s; restarting in %g s",
                name,
                pid,
                describe_exit(returncode),
                ran,
                delay,
            )
            await self._pause(delay)

    async def _forward(self, name: str, stream: asyncio.StreamReader | None, floor: int) -> None:
        """Pass a child's output lines into our log, at the level of the child's record."""
        if stream is None:
            return
        logger = logging.getLogger(f"pwbus.stack.{name}")
        last_level = floor
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # longer than _LINE_LIMIT: asyncio dropped it
                logger.warning("(an output line longer than %d bytes was dropped)", _LINE_LIMIT)
                continue
            if not raw:
                return
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not text:
                continue
            record = parse_child_line(text)
            if record is not None:
                last_level, message = record
                logger.log(last_level, "%s", message)
            else:  # a traceback line, or a one-line error such as "pwbus poller: ..."
                logger.log(max(last_level, floor), "%s", text)

    async def _wait_ready(self, spec: ChildSpec) -> None:
        """Wait until the simulator answers ``GET /api/status`` over HTTPS."""
        assert spec.ready_port is not None
        deadline = time.monotonic() + self._ready_timeout
        while not self._stop.is_set():
            if await answers_https("127.0.0.1", spec.ready_port):
                _LOGGER.info("%s answers at https://127.0.0.1:%d", spec.name, spec.ready_port)
                return
            if time.monotonic() >= deadline:
                _LOGGER.warning(
                    "%s does not answer at https://127.0.0.1:%d after %g s; "
                    "starting the others anyway",
                    spec.name,
                    spec.ready_port,
                    self._ready_timeout,
                )
                return
            await self._pause(0.2)

    # ------------------------------------------------------------------ stopping

    @staticmethod
    def _signal_group(process: asyncio.subprocess.Process, signum: int) -> None:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signum)

    async def _terminate(self, child: _Child) -> None:
        """SIGTERM, wait up to the stop timeout (or a second signal), then SIGKILL; reap."""
        process = child.process
        if process is None or process.returncode is not None:
            return
        name = child.spec.name
        _LOGGER.info("stopping %s (pid %d)", name, process.pid)
        self._signal_group(process, signal.SIGTERM)
        exited = asyncio.ensure_future(process.wait())
        hurry = asyncio.ensure_future(self._kill_now.wait())
        await asyncio.wait(
            {exited, hurry}, timeout=self._stop_timeout, return_when=asyncio.FIRST_COMPLETED
        )
        hurry.cancel()
        if not exited.done():
            _LOGGER.warning("%s (pid %d) is still running: killing it", name, process.pid)
            self._signal_group(process, signal.SIGKILL)
        returncode = await exited
        _LOGGER.info("%s (pid %d) stopped (%s)", name, process.pid, describe_exit(returncode))

    async def _shutdown(self) -> None:
        self._stop.set()
        for child in reversed(self._children):
            await self._terminate(child)
        tasks = [child.task for child in self._children if child.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def answers_https(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when ``GET /api/status`` over TLS (certificate not verified) answers 200."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), timeout
        )
    except (OSError, TimeoutError):
        return False
    try:
        request = f"GET /api/status HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        return status_line.split()[1:2] == [b"200"]
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
