"""The screens of the LED display, as frames: pure functions of a View and the settings.

The same screens as Tesla-API's HAT script, with its defects fixed:

* production in W or kW (:func:`~powerwall_bus.consumers.display.format.power`), coloured
  by output from red at 0 W to hue 330 degrees at the array's capacity;
* the 256-pixel chart of home load (red), grid import (blue) and production (green up to
  the panels' rating, light green above): the ranges sorted by size, each painted from the
  end of the one before, filling column by column from the left, each column from the top.
  Its full scale is the array's capacity unless load, import or production is larger: then
  it RESCALES to the largest (Tesla-API raised ``ValueError`` when production exceeded it);
* the state of energy as the Tesla app shows it (``View.soe`` is already scaled), coloured
  from red at 0 % to green at 100 %;
* a stale screen that names why (``STALE 25s``, ``BROKER``, ``NO GATEWAY``, ``429 WAIT``...)
  instead of Tesla-API's bare ``Error``, then the last chart, dimmed and marked.

Text wider than the matrix scrolls left, back right, and again, one LED per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from powerwall_bus.consumers.display.format import power
from powerwall_bus.consumers.display.state import Freshness, View
from powerwall_bus.consumers.hat.font import Column, text_columns
from powerwall_bus.consumers.hat.frame import (
    BLACK,
    SIZE,
    Frame,
    Rgb,
    production_colour,
    soe_colour,
)
from powerwall_bus.consumers.hat.icons import FRAME_SECONDS, icon_frames
from powerwall_bus.shared.gateway.states import TROUBLE
from powerwall_bus.shared.settings import HatSettings

__all__ = [
    "GREEN",
    "LIGHT_GREEN",
    "LOAD_RED",
    "SITE_BLUE",
    "STALE_MARK",
    "TROUBLE_WORDS",
    "Step",
    "bar_chart",
    "bar_ranges",
    "chart_screen",
    "icon_screen",
    "production_screen",
    "reason",
    "reason_screen",
    "scroll_offsets",
    "scrolling_text",
    "soe_screen",
    "soe_text",
    "stale_chart_screen",
    "text_frame",
]

LOAD_RED: Rgb = (255, 0, 0)
SITE_BLUE: Rgb = (0, 0, 255)
GREEN: Rgb = (0, 255, 0)
LIGHT_GREEN: Rgb = (0, 150, 0)
#: The corner of a picture that is no longer live.
STALE_MARK: Rgb = (255, 0, 0)
#: How much the last chart is dimmed while the data is stale.
STALE_DIM = 0.25

#: Bar chart pixels: 16 x 16.
CHART_PIXELS = SIZE * SIZE
#: Text is drawn at twice the font's size: 14 LEDs tall, one dark row above and below.
TEXT_SCALE = 2
#: How long one pass of a weather icon's animation plays, at least.
ICON_SECONDS = 3.0

_REASON_COLOURS: dict[str, Rgb] = {
    "stale": (255, 140, 0),
    "waiting": (0, 90, 255),
}
#: Each trouble state of the poller (:data:`~powerwall_bus.shared.gateway.states.TROUBLE`)
#: in a few words that fit a scrolling screen.
TROUBLE_WORDS: dict[str, str] = {
    "unreachable": "NO GATEWAY",
    "cooldown": "429 WAIT",
    "site_controller_stopped": "GW STOPPED",
    "login_refused": "LOGIN REFUSED",
    "session_refused": "SESSION REFUSED",
    "login_capped": "LOGIN CAP",
    "stopped": "POLLER STOPPED",
}
#: The View carries the poller's state as its sentence; back to the state word.
_STATE_OF: dict[str, str] = {sentence: state for state, sentence in TROUBLE.items()}


@dataclass(frozen=True)
class Step:
    """One frame and how long it stays."""

    frame: Frame
    seconds: float


# --------------------------------------------------------------------------- text


def text_frame(columns: Sequence[Column], offset: int, colour: Rgb) -> Frame:
    """The 16 columns of a text from ``offset`` (negative: that many dark columns first),
    the text's rows centred vertically."""
    height = len(columns[0]) if columns else 0
    top = (SIZE - height) // 2

    def colour_at(x: int, y: int) -> Rgb:
        index = x + offset
        row = y - top
        lit = 0 <= index < len(columns) and 0 <= row < height and columns[index][row]
        return colour if lit else BLACK

    return Frame.from_function(colour_at)


def scroll_offsets(width: int, delay: float, hold: float) -> list[int]:
    """Where the text starts at each step: centred and still when it fits; else left, back
    right and again (whole passes, ending where it began) for at least ``hold`` seconds."""
    travel = width - SIZE
    if travel <= 0:
        return [travel // 2]
    one_pass = [*range(travel + 1), *range(travel - 1, 0, -1)]
    passes = max(1, math.ceil((hold / delay - 1) / len(one_pass)))
    return one_pass * passes + [0]


def scrolling_text(text: str, colour: Rgb, delay: float, hold: float) -> list[Step]:
    """The steps showing ``text``: still for ``hold`` s when it fits, else scrolling."""
    columns = text_columns(text, TEXT_SCALE)
    offsets = scroll_offsets(len(columns), delay, hold)
    if len(offsets) == 1:
        return [Step(text_frame(columns, offsets[0], colour), hold)]
    return [Step(text_frame(columns, offset, colour), delay) for offset in offsets]


# --------------------------------------------------------------------------- live screens


def production_screen(view: View, hat: HatSettings) -> list[Step]:
    """Solar production as text coloured by output; nothing below 1 W (night)."""
    watts = view.solar.size
    if watts is None or watts < 1:
        return []
    colour = production_colour(watts, hat.capacity)
    return scrolling_text(power(watts), colour, hat.scroll_delay, hat.hold)


def bar_ranges(load: float, site: float, solar: float, hat: HatSettings) -> list[tuple[int, Rgb]]:
    """The chart's ranges as (end pixel, colour), smallest first: home load red, grid
    import blue, production green up to the rating and light green above it, on a scale of
    the capacity or, when something is larger, of the largest."""
    total = max(hat.capacity, load, site, solar)
    per_pixel = total / CHART_PIXELS
    wanted: list[tuple[float, Rgb]] = []
    if load > 0:
        wanted.append((load, LOAD_RED))
    if site > 0:
        wanted.append((site, SITE_BLUE))
    if solar > 0:
        wanted.append((min(solar, hat.rated), GREEN))
        if solar > hat.rated:
            wanted.append((solar, LIGHT_GREEN))
    ends = [(min(CHART_PIXELS, round(watts / per_pixel)), colour) for watts, colour in wanted]
    return sorted(ends, key=lambda end: end[0])


def bar_chart(load: float, site: float, solar: float, hat: HatSettings) -> Frame:
    """The 256-pixel chart: pixel k at column k // 16, row k % 16."""
    pixels = [BLACK] * CHART_PIXELS
    start = 0
    for end, colour in bar_ranges(load, site, solar, hat):
        for k in range(start, end):
            pixels[k] = colour
        start = max(start, end)
    return Frame.from_function(lambda x, y: pixels[x * SIZE + y])


def _chart_of(view: View, hat: HatSettings) -> Frame:
    return bar_chart(view.home.watts or 0.0, view.grid.watts or 0.0, view.solar.size or 0.0, hat)


def chart_screen(view: View, hat: HatSettings) -> list[Step]:
    """The chart, held still."""
    return [Step(_chart_of(view, hat), hat.hold)]


def soe_text(percent: float) -> str:
    """``25%`` for a whole number, else up to two decimals: ``25.37%``."""
    shown = max(0.0, round(percent, 2))
    return f"{shown:.0f}%" if shown.is_integer() else f"{shown:g}%"


def soe_screen(view: View, hat: HatSettings) -> list[Step]:
    """The battery level, as the Tesla app's, coloured by level; nothing before it is known."""
    if view.soe is None:
        return []
    return scrolling_text(soe_text(view.soe), soe_colour(view.soe), hat.scroll_delay, hat.hold)


def icon_screen(name: str | None) -> list[Step]:
    """A weather icon's animation, looped for :data:`ICON_SECONDS`; nothing without one."""
    if name is None:
        return []
    frames = icon_frames(name)
    loops = max(1, math.ceil(ICON_SECONDS / (FRAME_SECONDS * len(frames))))
    return [Step(frame, FRAME_SECONDS) for _ in range(loops) for frame in frames]


# --------------------------------------------------------------------------- not live


def reason(view: View) -> tuple[str, str]:
    """Why the data is not live, as (kind, short words for the screen)."""
    if view.problem:
        return "problem", "SET GATEWAY"
    if not view.bus_connected:  # what the poller said last is no news while we hear nothing
        return "broker", "BROKER"
    if view.freshness is Freshness.TROUBLE:
        state = _STATE_OF.get(view.trouble or "", "")
        return "trouble", TROUBLE_WORDS.get(state, "GATEWAY")
    if view.freshness is Freshness.WAITING:
        return "waiting", "WAITING"
    age = f" {view.age:.0f}s" if view.age is not None else ""
    return "stale", f"STALE{age}"


def reason_screen(view: View, hat: HatSettings) -> list[Step]:
    """The reason, scrolling: amber when just old, blue while waiting, red otherwise."""
    kind, words = reason(view)
    colour = _REASON_COLOURS.get(kind, (255, 0, 0))
    return scrolling_text(words, colour, hat.scroll_delay, hat.hold)


def stale_chart_screen(view: View, hat: HatSettings) -> list[Step]:
    """The last chart, dimmed, its top right corner red: the last picture, marked stale."""
    if view.reading_time is None:
        return []
    mark = [(x, y, STALE_MARK) for x in (SIZE - 2, SIZE - 1) for y in (0, 1)]
    return [Step(_chart_of(view, hat).scaled(STALE_DIM).with_pixels(mark), hat.hold)]
