"""A private X server for window tests (Debian's Xvfb), and what a window manager would do.

:class:`Xvfb` starts ``Xvfb :N`` without TCP on a free display number (a random one, the
next when the server says it is taken) and waits until it accepts clients (it writes its
number to ``-displayfd`` then) and its socket exists. :func:`find_window` finds a top-level
window by its title (xdotool) and :func:`close_window` sends it ``WM_DELETE_WINDOW``, which
is exactly what a window manager's close button sends (no window manager runs under Xvfb).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
import select
import subprocess
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageGrab

from tests.support.waiting import wait_until

SOCKETS = Path("/tmp/.X11-unix")


class Xvfb:
    """``with Xvfb() as x: x.display``: an X server of ``size`` pixels, stopped afterwards."""

    def __init__(self, size: tuple[int, int] = (1280, 900)) -> None:
        self.size = size
        self.display = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._pipe: int | None = None
        # Its messages go to a file, which says why a start failed.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)

    def __enter__(self) -> Xvfb:
        for number in random.sample(range(100, 1000), 20):
            if self._start(number):
                self.display = f":{number}"
                return self
        self._log.seek(0)
        raise RuntimeError(f"Xvfb did not start: {self._log.read()[-500:]!r}")

    def _start(self, number: int) -> bool:
        """Start ``Xvfb :number``; True once it accepts clients. The X server fails at once
        when the number is in use (also by another network namespace's server: the abstract
        socket is shared), and says it is ready by writing its number to ``-displayfd``."""
        read_end, write_end = os.pipe()
        width, height = self.size
        self._process = subprocess.Popen(
            [
                "Xvfb",
                f":{number}",
                "-displayfd",
                str(write_end),
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                f"{width}x{height}x24",
            ],
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        os.close(write_end)
        # The pipe stays open while the server runs: Xvfb writes its number to it again
        # later, and a closed pipe is a fatal error for it.
        self._pipe = read_end
        ready, _, _ = select.select([read_end], [], [], 20)
        said = os.read(read_end, 32).decode().strip() if ready else ""
        alive = said == str(number) and self._process.poll() is None
        if alive and wait_until((SOCKETS / f"X{number}").exists, 10):
            return True
        self._stop()
        return False

    def __exit__(self, *exc: object) -> None:
        self._stop()
        self._log.close()

    def _stop(self) -> None:
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    @property
    def alive(self) -> bool:
        """The server still runs."""
        return self._process is not None and self._process.poll() is None

    def env(self) -> dict[str, str]:
        """This process's environment pointed at this server."""
        return {**os.environ, "DISPLAY": self.display}

    def grab(self, box: tuple[int, int, int, int]) -> Image.Image:
        """The pixels of ``box`` (left, top, right, bottom) on the screen."""
        return ImageGrab.grab(bbox=box, xdisplay=self.display)


def find_window(display: str, title: str, timeout: float = 15) -> int | None:
    """The id of the top-level window called ``title``, once it is mapped."""

    def search() -> int | None:
        found = subprocess.run(
            ["xdotool", "search", "--onlyvisible", "--name", f"^{title}$"],
            env={**os.environ, "DISPLAY": display},
            capture_output=True,
            text=True,
        )
        ids = found.stdout.split()
        return int(ids[0]) if ids else None

    return wait_until(search, timeout, step=0.1)


class _ClientMessage(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("message_type", ctypes.c_ulong),
        ("format", ctypes.c_int),
        ("data", ctypes.c_long * 5),
    ]


class _Event(ctypes.Union):
    _fields_ = [("client", _ClientMessage), ("pad", ctypes.c_long * 24)]


_CLIENT_MESSAGE = 33  # X.h ClientMessage


def close_window(display: str, window: int) -> None:
    """Send ``WM_DELETE_WINDOW`` to ``window``, as a window manager's close button does."""
    x11 = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [
        ctypes.c_void_p,
        ctypes.c_ulong,
        ctypes.c_int,
        ctypes.c_long,
        ctypes.POINTER(_Event),
    ]
    x11.XFlush.argtypes = x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    connection = x11.XOpenDisplay(display.encode())
    if not connection:
        raise RuntimeError(f"cannot open {display}")
    try:
        event = _Event()
        message = event.client
        message.type = _CLIENT_MESSAGE
        message.window = window
        message.message_type = x11.XInternAtom(connection, b"WM_PROTOCOLS", 0)
        message.format = 32
        message.data[0] = x11.XInternAtom(connection, b"WM_DELETE_WINDOW", 0)
        message.data[1] = 0  # CurrentTime
        if not x11.XSendEvent(connection, window, 0, 0, ctypes.byref(event)):
            raise RuntimeError("XSendEvent failed")
        x11.XFlush(connection)
    finally:
        x11.XCloseDisplay(connection)


def wait_for_exit(child: subprocess.Popen[str], timeout: float) -> int | None:
    """The child's exit status, or None when it is still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return child.poll()
