"""A private X server (Debian's Xvfb) for the LED emulator's window test.

``Xvfb :N -displayfd FD`` writes ``N\\n`` to FD once it accepts clients; the read end is
kept open until the server stops, because Xvfb ends with "Cannot write display number"
when the pipe closes before it finished writing. A number in use makes it exit at once,
and the next random number is tried.
"""

from __future__ import annotations

import os
import random
import select
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

SOCKETS = Path("/tmp/.X11-unix")


class HatXvfb:
    """``with HatXvfb() as x: x.display``: an X server of ``size`` pixels, stopped after."""

    def __init__(self, size: tuple[int, int] = (640, 480)) -> None:
        self.size = size
        self.display = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._read_end: int | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)

    def __enter__(self) -> HatXvfb:
        for number in random.sample(range(1000, 2000), 20):
            if self._start(number):
                self.display = f":{number}"
                return self
        self._log.seek(0)
        raise RuntimeError(f"Xvfb did not start: {self._log.read()[-500:]!r}")

    def _start(self, number: int) -> bool:
        read_end, write_end = os.pipe()
        width, height = self.size
        self._process = subprocess.Popen(
            [
                *("Xvfb", f":{number}", "-displayfd", str(write_end), "-nolisten", "tcp"),
                *("-screen", "0", f"{width}x{height}x24"),
            ],
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        os.close(write_end)
        said = b""
        deadline = time.monotonic() + 20
        while not said.endswith(b"\n") and time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 0.5)
            if ready:
                chunk = os.read(read_end, 32)
                if not chunk:
                    break
                said += chunk
        self._read_end = read_end
        if said.strip() == str(number).encode() and self._process.poll() is None:
            deadline = time.monotonic() + 10
            while not (SOCKETS / f"X{number}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            if (SOCKETS / f"X{number}").exists():
                return True
        self._stop()
        return False

    def __exit__(self, *exc: object) -> None:
        self._stop()
        self._log.close()

    def _stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._read_end is not None:
            os.close(self._read_end)
            self._read_end = None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def grab(self, box: tuple[int, int, int, int]) -> Any:
        """The pixels of ``box`` (left, top, right, bottom) on the screen, as a PIL image."""
        from PIL import ImageGrab

        return ImageGrab.grab(bbox=box, xdisplay=self.display)
