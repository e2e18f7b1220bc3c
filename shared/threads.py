"""Background threads that never die quietly.

A thread that ends with an exception must not leave its process half alive (a poller that
reads the gateway but can no longer publish, a proxy serving data that stopped updating):
the process has to end, non-zero, so a supervisor restarts it. :func:`guarded` wraps a
thread's target so whatever it ends with reaches a handler; :class:`ThreadFailures` is the
handler a main thread uses: it keeps the first error, wakes the main thread, and after the
component stopped turns the error into the exit status:

* a :class:`~powerwall_bus.shared.errors.ConfigError` (the broker refused our login) or
  another :class:`~powerwall_bus.shared.errors.PwbusError` is raised again in the main
  thread, where ``pwbus`` prints its one line and exits 2 (or 1);
* any other exception is a bug or something unforeseen: the guard logged one ERROR line
  naming it and where it happened (the traceback goes to DEBUG); the status is 1.

A thread started without a handler of its own (a :class:`~powerwall_bus.shared.bus.
BusSubscriber` given no ``on_fatal``) uses the process's: :func:`end_process` unless the main
thread installed another with :func:`fatal_errors_to`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import NoReturn

from powerwall_bus.shared.errors import ConfigError, PwbusError

_LOGGER = logging.getLogger(__name__)

#: Exit statuses, as ``pwbus`` uses them: 2 for a configuration error, 1 for anything else.
CONFIG_ERROR_STATUS = 2
FAILURE_STATUS = 1

FatalHandler = Callable[[BaseException], None]


def where(exc: BaseException) -> str:
    """``file.py:123 in function`` of the innermost frame of ``exc``'s traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown place"
    last = frames[-1]
    return f"{os.path.basename(last.filename)}:{last.lineno} in {last.name}"


def report_crash(thread_name: str, exc: BaseException, logger: logging.Logger = _LOGGER) -> None:
    """The one ERROR line for a thread that died of an unexpected exception."""
    text = " ".join(str(exc).split())[:200]
    logger.error(
        "thread %s died: %s%s (%s); the process exits so a supervisor restarts it",
        thread_name,
        type(exc).__name__,
        f": {text}" if text else "",
        where(exc),
    )
    logger.debug("traceback of thread %s", thread_name, exc_info=exc)


def exit_status(exc: BaseException) -> int:
    """2 for a configuration error, else 1."""
    return CONFIG_ERROR_STATUS if isinstance(exc, ConfigError) else FAILURE_STATUS


def guarded(target: Callable[[], None], name: str, on_fatal: FatalHandler) -> Callable[[], None]:
    """``target`` for ``threading.Thread``: an exception it ends with goes to ``on_fatal``."""

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            if not isinstance(exc, PwbusError):
                report_crash(name, exc)
            on_fatal(exc)

    return run


class ThreadFailures:
    """The first fatal error of a process's background threads, kept for the main thread."""

    def __init__(self, wake: Callable[[], object] | None = None) -> None:
        self.error: BaseException | None = None
        self._wake = wake or (lambda: None)
        self._lock = threading.Lock()
        self.failed = threading.Event()

    def wake_with(self, wake: Callable[[], object]) -> None:
        """Call ``wake`` (from the failing thread) when a thread fails: stop the main loop."""
        self._wake = wake

    def __call__(self, exc: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = exc
        self.failed.set()
        with contextlib.suppress(RuntimeError):  # the main loop already closed: it is ending
            self._wake()

    def exit_status(self) -> int:
        """After the component stopped: 0 when no thread failed, 1 after a crash; raises the
        PwbusError a thread ended with (``pwbus`` prints it and exits 2 or 1)."""
        if self.error is None:
            return 0
        if isinstance(self.error, PwbusError):
            raise self.error
        return FAILURE_STATUS


def end_process(exc: BaseException) -> NoReturn:
    """Last resort from a thread nobody listens to: one line, then exit 2 or 1 at once."""
    if isinstance(exc, PwbusError):
        _LOGGER.error("%s", exc)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing to flush
            stream.flush()
    os._exit(exit_status(exc))


_handler: FatalHandler = end_process


def fatal(exc: BaseException) -> None:
    """Hand a background thread's fatal error to the process's handler."""
    _handler(exc)


@contextlib.contextmanager
def fatal_errors_to(handler: FatalHandler) -> Iterator[None]:
    """While in the block, threads without a handler of their own report to ``handler``."""
    global _handler
    previous, _handler = _handler, handler
    try:
        yield
    finally:
        _handler = previous
