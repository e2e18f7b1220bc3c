"""What the window shows, worked out from a View: texts, colours and the bar, no Tk.

The Tk shell (:mod:`.window`) only copies a :class:`Screen` into its widgets, so everything
a person reads in the window (the numbers, the direction words, the banner that says the
numbers are not live, the colours of either theme) is decided here and tested without a
display. Numbers are written by the displays' one formatter (:mod:`..display.format`), so
the window, the console and the LED display agree to the watt.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from powerwall_bus.consumers.display.format import NO_VALUE, freshness_line, percent, power
from powerwall_bus.consumers.display.state import Freshness, Power, View

__all__ = ["THEMES", "TITLE", "Banner", "Palette", "Screen", "Tile", "screen"]

#: The window's title (what a window manager, or ``xdotool search --name``, finds).
TITLE = "Powerwall - pwbus"

#: Below these app levels the bar turns amber, then red (as a phone's battery does).
LOW_SOE = 20.0
VERY_LOW_SOE = 10.0

#: The Tesla app's names for the operation modes (the gateway's ``real_mode``).
_MODES = {
    "self_consumption": "self-powered",
    "autonomous": "time-based control",
    "backup": "backup only",
}


@dataclass(frozen=True)
class Palette:
    """One theme's colours (Tk colour strings)."""

    background: str
    surface: str  # the tiles and the battery panel
    border: str
    text: str
    muted: str  # labels, and every number that is not live
    solar: str
    home: str
    battery: str
    grid: str
    track: str  # the empty part of the battery bar
    low: str  # bar below LOW_SOE; off-grid (on-grid is in the battery's green)
    very_low: str  # bar below VERY_LOW_SOE
    stale: tuple[str, str]  # banner background, foreground
    trouble: tuple[str, str]
    waiting: tuple[str, str]


THEMES: dict[str, Palette] = {
    "light": Palette(
        background="#eef1f5",
        surface="#ffffff",
        border="#d5dbe3",
        text="#1b2230",
        muted="#6b7585",
        solar="#e09b00",
        home="#2f6fde",
        battery="#1e9e4a",
        grid="#6a5acd",
        track="#e3e7ed",
        low="#e08a00",
        very_low="#d23a2a",
        stale=("#ffd26e", "#3d2a00"),
        trouble=("#d23a2a", "#ffffff"),
        waiting=("#dfe4ea", "#1b2230"),
    ),
    "dark": Palette(
        background="#12161c",
        surface="#1c222b",
        border="#2c3440",
        text="#e9edf2",
        muted="#8d97a5",
        solar="#ffbf3c",
        home="#5b9bff",
        battery="#3ccf72",
        grid="#a99bff",
        track="#2c3440",
        low="#ffa733",
        very_low="#ff5e4d",
        stale=("#8a6100", "#fff3d6"),
        trouble=("#b3261e", "#ffffff"),
        waiting=("#2c3440", "#e9edf2"),
    ),
}


@dataclass(frozen=True)
class Tile:
    """One flow: its name, its size, its direction word and its colours."""

    key: str  # "solar", "home", "battery", "grid": the widget's name
    title: str
    value: str
    direction: str
    accent: str
    value_colour: str


@dataclass(frozen=True)
class Banner:
    """The line that says the numbers are not live (and why)."""

    text: str
    background: str
    foreground: str


@dataclass(frozen=True)
class Screen:
    """Everything the window shows at one moment."""

    tiles: tuple[Tile, ...]
    soe: str  # "51.3 %"
    soe_fraction: float  # 0..1, the bar's filled part
    soe_colour: str
    grid_status: str  # "on-grid", "off-grid", ...
    grid_colour: str
    gateway: str  # "gateway 1232100-..." or ""
    reading: str  # "reading of 14:03:22" (local time) or ""
    mode: str  # "mode: self-powered" or ""
    banner: Banner | None  # None while the numbers are live
    live: bool
    palette: Palette


def _direction(key: str, flow: Power) -> str:
    """The word under a flow's number: the state's own words, and plain ones for the two
    flows that only go one way."""
    if flow.size is None:
        return ""
    if key == "solar":
        return "producing" if round(flow.size) > 0 else "not producing"
    if key == "home":
        return "using"
    if flow.direction:
        return flow.direction
    return "idle"


def _reading_text(
    reading_time: float | None, zone: dt.tzinfo | None, now: dt.datetime | None
) -> str:
    """The reading's local time, with its date when it is not from today."""
    if reading_time is None:
        return ""
    when = dt.datetime.fromtimestamp(reading_time, zone).astimezone(zone)
    today = (now or dt.datetime.now(zone)).astimezone(zone).date()
    stamp = when.strftime("%H:%M:%S") if when.date() == today else f"{when:%Y-%m-%d %H:%M:%S}"
    return f"reading of {stamp}"


def _banner(view: View, palette: Palette) -> Banner | None:
    """The not-live line: waiting, stale (with the broker's absence) or the gateway's
    trouble; a choice the user has to make (several gateways) comes first."""
    if view.problem and view.freshness is not Freshness.LIVE:
        background, foreground = palette.trouble
        return Banner(view.problem, background, foreground)
    text = freshness_line(view)
    if not text:
        return None
    colours = {
        Freshness.WAITING: palette.waiting,
        Freshness.STALE: palette.stale,
        Freshness.TROUBLE: palette.trouble,
    }[view.freshness]
    return Banner(text, *colours)


def _soe_colour(soe: float | None, palette: Palette) -> str:
    if soe is not None and soe < VERY_LOW_SOE:
        return palette.very_low
    if soe is not None and soe < LOW_SOE:
        return palette.low
    return palette.battery


def screen(
    view: View,
    palette: Palette,
    *,
    zone: dt.tzinfo | None = None,
    now: dt.datetime | None = None,
) -> Screen:
    """What to show for ``view`` (``zone``: the reading time's zone, None: this host's)."""
    live = view.freshness is Freshness.LIVE
    value_colour = palette.text if live else palette.muted
    flows = (
        ("solar", "Solar", view.solar, palette.solar),
        ("home", "Home", view.home, palette.home),
        ("battery", "Powerwall", view.battery, palette.battery),
        ("grid", "Grid", view.grid, palette.grid),
    )
    tiles = tuple(
        Tile(key, title, power(flow.size), _direction(key, flow), accent, value_colour)
        for key, title, flow, accent in flows
    )
    grid = view.grid_status
    return Screen(
        tiles=tiles,
        soe=percent(view.soe),
        soe_fraction=0.0 if view.soe is None else min(1.0, max(0.0, view.soe / 100.0)),
        soe_colour=_soe_colour(view.soe, palette) if live else palette.muted,
        grid_status=grid or f"grid {NO_VALUE}",
        grid_colour=(
            palette.muted if not grid else palette.battery if grid == "on-grid" else palette.low
        ),
        gateway=f"gateway {view.gateway}" if view.gateway else "",
        reading=_reading_text(view.reading_time, zone, now),
        mode=f"mode: {_MODES.get(view.mode, view.mode.replace('_', ' '))}" if view.mode else "",
        banner=_banner(view, palette),
        live=live,
        palette=palette,
    )
