"""One picture of the 16x16 LED matrix, and the colours the display speaks in.

A :class:`Frame` is immutable and compares by value, so the shell can skip sending a frame
the device already shows and the PNG backend can write each distinct frame once. Its
coordinates are the viewer's: ``x`` to the right, ``y`` down, ``(0, 0)`` top left; turning
the picture for the way the HAT is mounted is :meth:`Frame.rotated`, done last.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "BLACK",
    "SIZE",
    "Frame",
    "Rgb",
    "hue_colour",
    "production_colour",
    "soe_colour",
]

#: The matrix is square: 16 by 16 LEDs.
SIZE = 16

Rgb = tuple[int, int, int]
BLACK: Rgb = (0, 0, 0)

#: Production's colour scale ends at this hue (degrees): red at 0 W, pink-magenta at full.
PRODUCTION_TOP_HUE = 330.0
#: The state of energy's scale ends at green (degrees): red at 0 %, green at 100 %.
SOE_TOP_HUE = 120.0


def hue_colour(degrees: float) -> Rgb:
    """The fully saturated, full value colour of a hue, rounded to whole LED levels."""
    red, green, blue = colorsys.hsv_to_rgb((degrees % 360.0) / 360.0, 1.0, 1.0)
    return (round(red * 255), round(green * 255), round(blue * 255))


def production_colour(watts: float, capacity: float) -> Rgb:
    """Red at 0 W up to hue 330 degrees at ``capacity``; beyond it stays at the top."""
    share = min(max(watts / capacity, 0.0), 1.0) if capacity > 0 else 0.0
    return hue_colour(share * PRODUCTION_TOP_HUE)


def soe_colour(percent: float) -> Rgb:
    """Red at 0 %, yellow at 50 %, green at 100 %."""
    share = min(max(percent / 100.0, 0.0), 1.0)
    return hue_colour(share * SOE_TOP_HUE)


@dataclass(frozen=True)
class Frame:
    """256 RGB pixels, row by row from the top left."""

    pixels: tuple[Rgb, ...]

    def __post_init__(self) -> None:
        if len(self.pixels) != SIZE * SIZE:
            raise ValueError(f"a frame has {SIZE * SIZE} pixels, not {len(self.pixels)}")

    @classmethod
    def blank(cls, colour: Rgb = BLACK) -> Frame:
        """Every pixel one colour."""
        return cls((colour,) * (SIZE * SIZE))

    @classmethod
    def from_function(cls, colour_at: Callable[[int, int], Rgb]) -> Frame:
        """A frame whose pixel ``(x, y)`` is ``colour_at(x, y)``."""
        return cls(tuple(colour_at(x, y) for y in range(SIZE) for x in range(SIZE)))

    @classmethod
    def from_rows(cls, rows: Sequence[str], palette: dict[str, Rgb]) -> Frame:
        """A frame drawn as 16 strings of 16 palette characters (unknown ones are black)."""
        if len(rows) != SIZE or any(len(row) != SIZE for row in rows):
            raise ValueError("a drawn frame needs 16 rows of 16 characters")
        return cls(tuple(palette.get(char, BLACK) for row in rows for char in row))

    def pixel(self, x: int, y: int) -> Rgb:
        """The colour at column ``x``, row ``y``."""
        return self.pixels[y * SIZE + x]

    def rows(self) -> list[list[Rgb]]:
        """The pixels as 16 rows of 16."""
        return [list(self.pixels[y * SIZE : (y + 1) * SIZE]) for y in range(SIZE)]

    def rotated(self, degrees: int) -> Frame:
        """The picture turned clockwise by 0, 90, 180 or 270 degrees."""
        turns = (degrees // 90) % 4
        rows = self.rows()
        for _ in range(turns):
            # Clockwise: the new row y, column x shows the old row SIZE-1-x, column y.
            rows = [[rows[SIZE - 1 - x][y] for x in range(SIZE)] for y in range(SIZE)]
        return Frame(tuple(pixel for row in rows for pixel in row))

    def scaled(self, factor: float) -> Frame:
        """Every channel multiplied by ``factor`` (a dimmed copy)."""
        return Frame(
            tuple(
                (round(r * factor), round(g * factor), round(b * factor)) for r, g, b in self.pixels
            )
        )

    def with_pixels(self, changes: Iterable[tuple[int, int, Rgb]]) -> Frame:
        """A copy with some pixels set: ``(x, y, colour)``."""
        pixels = list(self.pixels)
        for x, y, colour in changes:
            pixels[y * SIZE + x] = colour
        return Frame(tuple(pixels))
