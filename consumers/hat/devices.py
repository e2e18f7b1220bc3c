"""Where frames go: the real Unicorn HAT HD, its emulator window, PNG files, or a test fake.

Every backend takes a whole :class:`~powerwall_bus.consumers.hat.frame.Frame` in the
viewer's coordinates and a brightness; the libraries are imported by :func:`open_device`
only for the backend chosen, so a Pi never needs pygame and a laptop never needs spidev.
Both the Pimoroni library and the emulator count ``x`` from the right edge as the viewer
sees it (the emulator turns its picture by 180 degrees to match the HAT), so viewer column
``x`` is their ``15 - x``; any other mounting is the ``hat.rotation`` setting.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from powerwall_bus.consumers.hat.command import BACKENDS
from powerwall_bus.consumers.hat.frame import SIZE, Frame
from powerwall_bus.shared.errors import DeviceUnavailable

__all__ = ["BACKENDS", "Device", "FakeDevice", "PngDevice", "UnicornDevice", "open_device"]

_LOGGER = logging.getLogger(__name__)

#: Pixels per LED in the PNG copy made for people.
UPSCALE = 16
#: The PNG backend stops writing new files after this many distinct frames.
MAX_PNG_FRAMES = 20_000


class Device(Protocol):
    """A 16x16 display."""

    def show(self, frame: Frame, brightness: float) -> None:
        """Light the LEDs as ``frame`` says, at ``brightness`` (0-1)."""

    def off(self) -> None:
        """Turn every LED off (and let go of the device)."""


class FakeDevice:
    """Keeps what it was asked to show, for tests."""

    def __init__(self) -> None:
        self.shown: list[tuple[Frame, float]] = []
        self.offs = 0

    def show(self, frame: Frame, brightness: float) -> None:
        self.shown.append((frame, brightness))

    def off(self) -> None:
        self.offs += 1


class UnicornDevice:
    """The Pimoroni ``unicornhathd`` module, or the emulator's object of the same calls.

    The real library dims in hardware (``brightness``); the emulator ignores brightness, so
    for it the colours are scaled here.
    """

    def __init__(self, module: Any, *, dim_colours: bool) -> None:
        self._module = module
        self._dim_colours = dim_colours
        module.rotation(0)
        self._brightness: float | None = None

    def show(self, frame: Frame, brightness: float) -> None:
        module = self._module
        if self._dim_colours:
            frame = frame.scaled(brightness)
        elif brightness != self._brightness:
            module.brightness(brightness)
            self._brightness = brightness
        for y in range(SIZE):
            for x in range(SIZE):
                red, green, blue = frame.pixel(x, y)
                module.set_pixel(SIZE - 1 - x, y, red, green, blue)
        try:
            module.show()
        except OSError as exc:  # spidev: no /dev/spidev0.0, or no permission on it
            raise DeviceUnavailable(
                f"cannot reach the HAT over SPI ({exc.strerror or exc}): enable SPI with "
                "raspi-config and run as a member of the spi and gpio groups"
            ) from None

    def off(self) -> None:
        self._module.off()


class PngDevice:
    """Writes each distinct frame once, as a 16x16 PNG and an LED-like enlarged copy, and
    appends every change of picture to ``shown.log`` (time, file, brightness)."""

    def __init__(self, directory: Path) -> None:
        from PIL import Image, ImageDraw

        self._image, self._draw = Image, ImageDraw
        self._directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._names: dict[str, str] = {}
        self._log = (directory / "shown.log").open("a", encoding="utf-8")
        self._full = False

    def _name(self, frame: Frame) -> str | None:
        key = hashlib.sha1(bytes(c for pixel in frame.pixels for c in pixel)).hexdigest()
        if key in self._names:
            return self._names[key]
        if len(self._names) >= MAX_PNG_FRAMES:
            if not self._full:
                _LOGGER.warning("%d distinct frames written: writing no more", MAX_PNG_FRAMES)
                self._full = True
            return None
        name = f"frame-{len(self._names) + 1:05d}"
        self.write(frame, self._directory / f"{name}.png")
        self.write_enlarged(frame, self._directory / f"{name}-x{UPSCALE}.png")
        self._names[key] = name
        return name

    def write(self, frame: Frame, path: Path) -> None:
        """The frame as a 16x16 PNG, one pixel per LED."""
        image = self._image.new("RGB", (SIZE, SIZE))
        image.putdata(list(frame.pixels))
        image.save(path)

    def write_enlarged(self, frame: Frame, path: Path) -> None:
        """The frame as people see the HAT: round LEDs on black."""
        self.enlarged(frame).save(path)

    def enlarged(self, frame: Frame, scale: int = UPSCALE) -> Any:
        """A PIL image of the frame, ``scale`` pixels per LED, drawn as dots."""
        image = self._image.new("RGB", (SIZE * scale, SIZE * scale))
        draw = self._draw.Draw(image)
        inset = max(1, scale // 8)
        for y in range(SIZE):
            for x in range(SIZE):
                box = (x * scale + inset, y * scale + inset)
                end = ((x + 1) * scale - inset - 1, (y + 1) * scale - inset - 1)
                draw.ellipse([box, end], fill=frame.pixel(x, y))
        return image

    def show(self, frame: Frame, brightness: float) -> None:
        name = self._name(frame)
        if name is not None:
            self._log.write(f"{time.time():.3f} {name} {brightness:.2f}\n")
            self._log.flush()

    def off(self) -> None:
        """The LEDs cleared: a black frame is the last one shown."""
        self.show(Frame.blank(), 0.0)
        self._log.close()


def open_device(backend: str, output: Path | None) -> Device:
    """The device for ``--backend``, its library imported now; DeviceUnavailable (one
    line) when the library or the hardware or the window is missing."""
    if backend == "png":
        if output is None:
            raise DeviceUnavailable("--backend png needs --output DIR")
        try:
            return PngDevice(output)
        except ImportError:
            raise DeviceUnavailable(
                "--backend png needs Pillow: pip install 'powerwall-bus[png]'"
            ) from None
        except OSError as exc:
            raise DeviceUnavailable(f"cannot write to {output}: {exc.strerror or exc}") from None
    if backend == "sim":
        try:
            from unicorn_hat_sim import unicornhathd as emulator
        except ImportError:
            raise DeviceUnavailable(
                "--backend sim needs unicorn-hat-sim: pip install 'powerwall-bus[hat-sim]'"
            ) from None
        except Exception as exc:  # pygame.error: no display to open the window on
            raise DeviceUnavailable(f"the emulator window cannot open: {exc}") from None
        return UnicornDevice(emulator, dim_colours=True)
    if backend == "unicornhathd":
        try:
            import unicornhathd
        except ImportError as exc:
            raise DeviceUnavailable(
                f"--backend unicornhathd needs Pimoroni's library ({exc}): "
                "pip install 'powerwall-bus[hat]' on the Raspberry Pi"
            ) from None
        return UnicornDevice(unicornhathd, dim_colours=False)
    raise DeviceUnavailable(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
