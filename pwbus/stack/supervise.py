"""Supervising a planned stack: start, watch, restart and finally stop the children.

* The children start in table order; one with a ``ready_url`` (the simulator) must answer
  an HTTPS GET there before the next starts (see :mod:`powerwall_bus.stack.ready`).
* ``started <component> pid <N>`` is logged for every start (tests and people find pids
  there).
* A component that exits on its own is restarted after 1 s, doubling to at most 30 s, back
  to 1 s once a run lasted 60 s. Exit status 2 (a configuration error) is not retried: the
  stack stops and exits 2, since the same settings would fail the same way again.
* On SIGTERM, SIGINT or SIGHUP every component gets SIGTERM in reverse start order, up to
  15 s each, then SIGKILL (at once on a second signal); all are reaped and the stack exits
  0. On Linux the children also get SIGTERM should the stack itself die.
* Each child's JSON log records are relayed under ``pwbus.stack.<component>`` (see
  :mod:`powerwall_bus.stack.relay`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from powerwall_bus.shared import retry
from powerwall_bus.shared.stack_record import StackRecord, clean_after_killed_stack, remove_record
from powerwall_bus.stack.plan import ChildSpec, StackPlan
from powerwall_bus.stack.ready import answers
from powerwall_bus.stack.relay import LINE_LIMIT, relay_output

_LOGGER = logging.getLogger("pwbus.stack")

CONFIG_ERROR_STATUS = 2  # what ``pwbus`` exits with on a configuration error

BACKOFF_FIRST = 1.0
BACKOFF_CAP = 30.0
HEALTHY_AFTER = 60.0  # a run this long resets the restart delay
STOP_TIMEOUT = 15.0  # per component, after SIGTERM
READY_TIMEOUT = 30.0  # for a child with a ready_url to answer


def run_stack(plan: StackPlan) -> int:
    """Run the plan until a signal; the exit status (0, or 2 after a configuration error)."""
    _LOGGER.info("stack: %s; %s", ", ".join(c.name for c in plan.children), plan.summary)
    for note in plan.notes:
        _LOGGER.warning("%s", note)
    if plan.state_dir is not None:
        leftover = clean_after_killed_stack(plan.state_dir)
        if leftover:
            _LOGGER.info("removed %s, left behind by a stack that was killed", leftover)
        scratch = str(plan.scratch_dir) if plan.scratch_dir else None
        record = StackRecord(os.getpid(), dict(plan.simulators), scratch, plan.page)
        try:
            record.write(plan.state_dir)
        except OSError as exc:  # only simctl's convenience is lost
            _LOGGER.info("cannot record the stack in %s: %s", plan.state_dir, exc.strerror)
    if plan.page:
        _LOGGER.info("the power-flow page will be at %s", plan.page)
    try:
        return Supervisor(plan.children).run_sync()
    finally:
        if plan.scratch_dir is not None:
            shutil.rmtree(plan.scratch_dir, ignore_errors=True)
        if plan.state_dir is not None:
            remove_record(plan.state_dir, os.getpid())


class Backoff(retry.Backoff):
    """Restart delays: 1 s doubling to 30 s, back to 1 s after a run of 60 s or more
    (:meth:`after_run`); the project's one back-off, without jitter."""

    def __init__(
        self,
        first: float = BACKOFF_FIRST,
        cap: float = BACKOFF_CAP,
        healthy_after: float = HEALTHY_AFTER,
    ) -> None:
        super().__init__(first=first, cap=cap, healthy_after=healthy_after, jitter=0.0)


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
                if spec.ready_url is not None:
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
            limit=LINE_LIMIT,
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
                    asyncio.create_task(relay_output(name, process.stdout, logging.INFO)),
                    asyncio.create_task(relay_output(name, process.stderr, logging.WARNING)),
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

    async def _wait_ready(self, spec: ChildSpec) -> None:
        """Wait until the child answers its ``ready_url`` (the simulator: /api/status)."""
        assert spec.ready_url is not None
        deadline = time.monotonic() + self._ready_timeout
        while not self._stop.is_set():
            if await answers(spec.ready_url):
                _LOGGER.info("%s answers at %s", spec.name, spec.ready_url.rsplit("/api/", 1)[0])
                return
            if time.monotonic() >= deadline:
                _LOGGER.warning(
                    "%s does not answer at %s after %g s; starting the others anyway",
                    spec.name,
                    spec.ready_url,
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
