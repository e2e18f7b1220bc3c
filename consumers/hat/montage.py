"""A picture of typical LED frames for the README: ``python -m
powerwall_bus.consumers.hat.montage docs/images/hat-frames.png`` (needs Pillow).

The frames are the renderers' own, from a made-up sunny afternoon, so the picture shows
exactly what the display draws: production, the chart, the battery level, a rescaled chart,
the stale screen and two weather icons.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from powerwall_bus.consumers.display.state import Freshness, Power, View
from powerwall_bus.consumers.hat.font import Column, text_columns
from powerwall_bus.consumers.hat.frame import (
    BLACK,
    SIZE,
    Frame,
    Rgb,
    production_colour,
    soe_colour,
)
from powerwall_bus.consumers.hat.icons import icon_frames
from powerwall_bus.consumers.hat.render import (
    chart_screen,
    production_screen,
    reason_screen,
    soe_screen,
    stale_chart_screen,
)
from powerwall_bus.shared.settings import HatSettings

__all__ = ["example_frames", "example_strips", "main", "montage"]

#: Pixels per LED in the picture.
SCALE = 10
_GAP = 12
_CAPTION = 16


def _view(solar: float, load: float, grid: float, soe: float, **changes: Any) -> View:
    fields: dict[str, Any] = {
        "solar": Power(solar, solar),
        "home": Power(load, load),
        "battery": Power(load - solar - grid, abs(load - solar - grid)),
        "grid": Power(grid, abs(grid)),
        "soe": soe,
        "grid_status": "on-grid",
        "mode": "self_consumption",
        "reading_time": 1_795_000_000.0,
        "gateway": "example",
        "freshness": Freshness.LIVE,
        "age": 1.0,
        "trouble": None,
        "bus_connected": True,
    }
    fields.update(changes)
    return View(**fields)


def _first(steps: Sequence[Any]) -> Frame:
    """The first frame of a screen: scrolling text starts at its beginning."""
    return steps[0].frame


def example_frames() -> list[tuple[str, Frame]]:
    """Captioned frames of a sunny afternoon with 21 panels of 384 W (8064 W)."""
    hat = HatSettings()
    sunny = _view(3910.0, 1546.0, 620.0, 76.0)
    stale = _view(3910.0, 1546.0, 620.0, 76.0, freshness=Freshness.STALE, age=25.0)
    bright = _view(9800.0, 2100.0, 0.0, 100.0)
    return [
        ("3.91 kW solar", _first(production_screen(sunny, hat))),
        ("the chart", chart_screen(sunny, hat)[0].frame),
        ("battery 76 %", _first(soe_screen(sunny, hat))),
        ("9.8 kW: rescaled", chart_screen(bright, hat)[0].frame),
        ("STALE 25s", _first(reason_screen(stale, hat))),
        ("last chart, stale", stale_chart_screen(stale, hat)[0].frame),
        ("partly cloudy", icon_frames("partly-cloudy-day")[0]),
        ("rain", icon_frames("rain")[2]),
    ]


def example_strips() -> list[tuple[str, list[Column], Rgb]]:
    """Whole texts as they scroll by: (caption, columns, colour)."""
    hat = HatSettings()
    return [
        ("production scrolls by", text_columns("3.91 kW"), production_colour(3910.0, hat.capacity)),
        ("the battery as the app shows it", text_columns("39.37%"), soe_colour(39.37)),
    ]


def _dots(draw: Any, left: int, top: int, width: int, colour_at: Any) -> None:
    """LEDs as dots: ``width`` columns of 16, ``colour_at(x, y)`` each."""
    draw.rectangle([left, top, left + width * SCALE - 1, top + SIZE * SCALE - 1], fill=BLACK)
    for y in range(SIZE):
        for x in range(width):
            box = (left + x * SCALE + 1, top + y * SCALE + 1)
            end = (left + (x + 1) * SCALE - 2, top + (y + 1) * SCALE - 2)
            draw.ellipse([box, end], fill=colour_at(x, y))


def _strip_colours(text: Sequence[Column], colour: Rgb) -> Any:
    """colour_at(x, y) of a whole text after one dark column, its rows placed as on the
    display (centred)."""
    height = len(text[0])
    top = (SIZE - height) // 2

    def colour_at(x: int, y: int) -> Rgb:
        column, row = x - 1, y - top
        lit = 0 <= column < len(text) and 0 <= row < height and text[column][row]
        return colour if lit else BLACK

    return colour_at


def montage(
    frames: Sequence[tuple[str, Frame]],
    strips: Sequence[tuple[str, list[Column], Rgb]] = (),
    columns: int = 4,
) -> Any:
    """One PIL image: the frames as LED dots on black, captioned, ``columns`` a row; then
    each strip (a whole text) on a row of its own."""
    from PIL import Image, ImageDraw, ImageFont

    tile = SIZE * SCALE
    rows = (len(frames) + columns - 1) // columns + len(strips)
    width = columns * tile + (columns + 1) * _GAP
    height = rows * (tile + _CAPTION) + (rows + 1) * _GAP
    image = Image.new("RGB", (width, height), (24, 24, 28))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()  # Pillow's own bundled font: no system path
    for index, (caption, frame) in enumerate(frames):
        left = _GAP + (index % columns) * (tile + _GAP)
        top = _GAP + (index // columns) * (tile + _CAPTION + _GAP)
        _dots(draw, left, top, SIZE, frame.pixel)
        draw.text((left, top + tile + 3), caption, fill=(220, 220, 220), font=font)
    first_strip_row = (len(frames) + columns - 1) // columns
    for index, (caption, text, colour) in enumerate(strips):
        top = _GAP + (first_strip_row + index) * (tile + _CAPTION + _GAP)
        shown = min(len(text) + 2, (width - 2 * _GAP) // SCALE)  # a dark column each side
        _dots(draw, _GAP, top, shown, _strip_colours(text, colour))
        draw.text((_GAP, top + tile + 3), caption, fill=(220, 220, 220), font=font)
    return image


def main(argv: Sequence[str] | None = None) -> int:
    """Write the montage to the path given (default docs/images/hat-frames.png)."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0] if args else "docs/images/hat-frames.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    montage(example_frames(), example_strips()).save(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
