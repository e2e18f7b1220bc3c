"""The display's own 16x16 weather icons, drawn here as text, a few frames each.

Made for this project and released with it under its MIT licence. Every icon is a base
picture (rows of palette characters, ``.`` dark) and its animation: a few overlays of lit
points, or a layer that slides by one LED per frame. The names are the ones the weather
mapping gives (:mod:`~powerwall_bus.consumers.hat.weather`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from powerwall_bus.consumers.hat.frame import SIZE, Frame, Rgb

__all__ = ["FRAME_SECONDS", "ICONS", "Icon", "icon_frames"]

#: How long each frame of an icon's animation shows (as Tesla-API's icon strips).
FRAME_SECONDS = 0.1

PALETTE: dict[str, Rgb] = {
    "Y": (255, 200, 0),  # sun
    "O": (255, 110, 0),  # sun's rim
    "W": (200, 200, 200),  # cloud
    "G": (90, 90, 100),  # dark cloud, fog
    "B": (0, 90, 255),  # rain
    "C": (170, 220, 255),  # snow
    "M": (230, 230, 160),  # moon
    "S": (255, 255, 210),  # star
    "R": (255, 0, 0),  # error
}

_CLOUD = (
    "................",
    "................",
    "......WWWW......",
    ".....WWWWWW.....",
    "...WWWWWWWWWWW..",
    "..WWWWWWWWWWWWW.",
    ".WWWWWWWWWWWWWWW",
    ".WWWWWWWWWWWWWWW",
    "..GGGGGGGGGGGGG.",
) + ("................",) * 7

_SUN = (
    "................",
    "................",
    "................",
    "................",
    "......OOOO......",
    ".....OYYYYO.....",
    "....OYYYYYYO....",
    "....OYYYYYYO....",
    "....OYYYYYYO....",
    "....OYYYYYYO....",
    ".....OYYYYO.....",
    "......OOOO......",
    "................",
    "................",
    "................",
    "................",
)

_MOON = (
    "................",
    ".....MMMMM......",
    "...MMMMM........",
    "..MMMM..........",
    ".MMMM...........",
    ".MMM............",
    ".MMM............",
    ".MMM............",
    ".MMM............",
    ".MMMM...........",
    "..MMMM..........",
    "...MMMMM........",
    ".....MMMMM......",
    "................",
    "................",
    "................",
)

_PARTLY_DAY = (
    "................",
    "................",
    "....OOO.........",
    "...OYYYO........",
    "..OYYYYYO.......",
    "..OYYYYYO.......",
    "..OYYYYWWW......",
    "...OYYWWWWW.....",
    "....WWWWWWWWWW..",
    "...WWWWWWWWWWWW.",
    "..WWWWWWWWWWWWWW",
    "..WWWWWWWWWWWWWW",
    "...GGGGGGGGGGGG.",
    "................",
    "................",
    "................",
)

_PARTLY_NIGHT = (
    "................",
    "...MMMM.........",
    "..MMM...........",
    ".MMM............",
    ".MM.............",
    ".MM.............",
    ".MMM...WWW......",
    "..MMMMWWWWW.....",
    "....WWWWWWWWWW..",
    "...WWWWWWWWWWWW.",
    "..WWWWWWWWWWWWWW",
    "..WWWWWWWWWWWWWW",
    "...GGGGGGGGGGGG.",
    "................",
    "................",
    "................",
)

_CLOUDY = (
    "................",
    "................",
    "..........GGG...",
    ".........GGGGG..",
    "......WWWGGGGGG.",
    ".....WWWWWGGGGGG",
    "...WWWWWWWWWGGGG",
    "..WWWWWWWWWWWGGG",
    ".WWWWWWWWWWWWWG.",
    ".WWWWWWWWWWWWWW.",
    "..GGGGGGGGGGGG..",
) + ("................",) * 5

_FOG = (
    "................",
    "................",
    "................",
    "..GGGGGGGGGG....",
    "................",
    "....GGGGGGGGGGG.",
    "................",
    ".GGGGGGGGG......",
    "................",
    "...GGGGGGGGGGG..",
    "................",
    "..GGGGGGGGG.....",
    "................",
    "....GGGGGGGGGG..",
    "................",
    "................",
)

_WIND = (
    "................",
    "................",
    "..........WWW...",
    ".............W..",
    ".............W..",
    ".WWWWWWWWWWWW...",
    "................",
    ".WWWWWWWWWWWWWW.",
    "................",
    ".WWWWWWWWWWW....",
    "............W...",
    "............W...",
    ".........WWW....",
    "................",
    "................",
    "................",
)

_ERROR = (
    "................",
    "................",
    "................",
    "...R........R...",
    "....R......R....",
    ".....R....R.....",
    "......R..R......",
    ".......RR.......",
    ".......RR.......",
    "......R..R......",
    ".....R....R.....",
    "....R......R....",
    "...R........R...",
    "................",
    "................",
    "................",
)

_RAIN_DROPS = (
    "..B....B....B...",
    "..B....B....B...",
    "....B....B....B.",
    "....B....B....B.",
    "..B....B....B...",
    "..B....B....B...",
)

_SNOW_FLAKES = (
    "..C.....C.....C.",
    "................",
    ".....C.....C....",
    "................",
    "..C.....C.....C.",
    "................",
)

Points = tuple[tuple[int, int, str], ...]


@dataclass(frozen=True)
class Icon:
    """A weather icon: its frames, each shown :data:`FRAME_SECONDS`."""

    name: str
    frames: tuple[Frame, ...]


def _with_points(rows: Sequence[str], points: Points) -> tuple[str, ...]:
    grid = [list(row) for row in rows]
    for x, y, char in points:
        grid[y][x] = char
    return tuple("".join(row) for row in grid)


def _below_cloud(cloud: Sequence[str], layer: Sequence[str], shift: int) -> tuple[str, ...]:
    """The cloud with ``layer`` under it (rows 10-15), slid ``shift`` rows down, wrapping."""
    count = len(layer)
    slid = [layer[(row - shift) % count] for row in range(count)]
    return tuple(cloud[:10]) + tuple(slid)


def _slid_right(rows: Sequence[str], shift: int) -> tuple[str, ...]:
    return tuple(row[-shift:] + row[:-shift] if shift else row for row in rows)


def _grey(rows: Sequence[str]) -> tuple[str, ...]:
    return tuple(row.replace("W", "G") for row in rows)


def _drawn() -> dict[str, list[tuple[str, ...]]]:
    straight: Points = ((7, 0, "Y"), (8, 0, "Y"), (7, 1, "Y"), (8, 1, "Y"), (0, 7, "Y"))
    straight += ((1, 7, "Y"), (0, 8, "Y"), (1, 8, "Y"), (14, 7, "Y"), (15, 7, "Y"))
    straight += ((14, 8, "Y"), (15, 8, "Y"), (7, 14, "Y"), (8, 14, "Y"), (7, 15, "Y"))
    straight += ((8, 15, "Y"),)
    diagonal: Points = ((2, 2, "Y"), (3, 3, "Y"), (13, 2, "Y"), (12, 3, "Y"), (2, 13, "Y"))
    diagonal += ((3, 12, "Y"), (13, 13, "Y"), (12, 12, "Y"))
    stars_a: Points = ((12, 3, "S"), (9, 7, "S"), (13, 10, "S"))
    stars_b: Points = ((11, 2, "S"), (14, 6, "S"), (9, 11, "S"))
    small_rays_a: Points = ((5, 0, "Y"), (0, 5, "Y"), (10, 3, "Y"))
    small_rays_b: Points = ((1, 1, "Y"), (9, 1, "Y"), (1, 9, "Y"))
    night_stars_a: Points = ((12, 2, "S"), (9, 4, "S"))
    night_stars_b: Points = ((14, 4, "S"), (11, 1, "S"))
    gust = [((x + step * 2) % SIZE, 14, "W") for step in range(8) for x in (0, 1, 2)]
    return {
        "clear-day": [_with_points(_SUN, straight), _with_points(_SUN, diagonal)],
        "clear-night": [_with_points(_MOON, stars_a), _with_points(_MOON, stars_b)],
        "partly-cloudy-day": [
            _with_points(_PARTLY_DAY, small_rays_a),
            _with_points(_PARTLY_DAY, small_rays_b),
        ],
        "partly-cloudy-night": [
            _with_points(_PARTLY_NIGHT, night_stars_a),
            _with_points(_PARTLY_NIGHT, night_stars_b),
        ],
        "cloudy": [_CLOUDY],
        "fog": [_slid_right(_FOG, shift) for shift in range(SIZE)],
        "rain": [_below_cloud(_grey(_CLOUD), _RAIN_DROPS, shift) for shift in range(6)],
        "snow": [_below_cloud(_CLOUD, _SNOW_FLAKES, shift) for shift in range(6)],
        "wind": [
            _with_points(_WIND, tuple(point for point in gust[i * 3 : i * 3 + 3])) for i in range(8)
        ],
        "error": [_ERROR, ("................",) * SIZE],
    }


#: Every icon by name.
ICONS: dict[str, Icon] = {
    name: Icon(name, tuple(Frame.from_rows(rows, PALETTE) for rows in frames))
    for name, frames in _drawn().items()
}


def icon_frames(name: str) -> tuple[Frame, ...]:
    """The frames of the icon ``name`` (``error`` for a name not drawn)."""
    return (ICONS.get(name) or ICONS["error"]).frames
