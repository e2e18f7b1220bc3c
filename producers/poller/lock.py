"""One poller per gateway: an exclusive, non-blocking ``flock`` on a file holding our pid.

The kernel releases the lock when the process ends, however it ends (SIGKILL and power cuts
included), so a stale lock file never blocks a restart. A second poller for the same
gateway and state folder fails at once with one line naming the pid that holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from powerwall_bus.shared.errors import ConfigError


class AlreadyRunning(ConfigError):
    """Another process holds the lock (exit status 2: starting again cannot help)."""


class FolderLock:
    """An exclusive lock on ``path``; :meth:`acquire` raises AlreadyRunning if it is held."""

    def __init__(self, path: Path, *, what: str, key: str = "gateway.state_dir") -> None:
        self.path = path
        self.what = what
        self.key = key
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(
                self.key,
                f"another poller (pid {holder}) is running for {self.what} "
                f"(it holds {self.path}); stop it first",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
