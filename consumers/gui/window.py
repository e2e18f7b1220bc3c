"""The Tk window: widgets laid out on a grid, filled from a :class:`~.layout.Screen`.

This module is the only one that imports tkinter (inside :class:`Window`, so importing it
costs nothing). It decides nothing about the data: :meth:`Window.show` copies texts and
colours the pure layout worked out. Rows and columns carry weights, so the tiles grow with
the window and the battery bar stretches across it; every font is a named Tk font scaled by
``gui.font_scale`` and by how much larger (or smaller) than its opening size the window is,
so a kiosk screen in ``--fullscreen`` reads from across the room.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from powerwall_bus.consumers.gui.layout import THEMES, TITLE, Palette, Screen
from powerwall_bus.shared.errors import DeviceUnavailable
from powerwall_bus.shared.settings import GuiSettings

if TYPE_CHECKING:
    import tkinter as tk

__all__ = ["Window"]

_LOGGER = logging.getLogger(__name__)

#: The window's size at font scale 1 when it opens (it can be made larger or smaller).
SIZE = (760, 560)
#: How far fonts follow the window's size (a share of the opening size, either way).
FIT = (0.6, 4.0)
#: Font sizes (points) at font scale 1: (role, size, bold).
_FONTS = (
    ("heading", 20, True),
    ("small", 11, False),
    ("tile_title", 12, True),
    ("value", 30, True),
    ("direction", 13, False),
    ("soe", 26, True),
    ("banner", 13, True),
)
_PAD = 14  # px between panels at scale 1
_BAR_HEIGHT = 28  # px at scale 1


class Window:
    """The ``pwbus gui`` window; :meth:`show` draws a screen, :meth:`texts` reads it back."""

    def __init__(self, settings: GuiSettings, *, screen_name: str | None = None) -> None:
        import tkinter as tk
        import tkinter.font as tkfont

        try:
            self.root = tk.Tk(screenName=screen_name, className="pwbus")
        except tk.TclError as exc:  # no $DISPLAY, or the X server refuses us
            raise DeviceUnavailable(f"cannot open a window: {exc}") from None
        self.palette: Palette = THEMES[settings.theme]
        self.scale = settings.font_scale
        self.closed = False
        self._shown: Screen | None = None
        self._fraction = 0.0
        self._bar_colour = self.palette.battery
        root = self.root
        root.title(TITLE)
        root.configure(background=self.palette.background)
        root.protocol("WM_DELETE_WINDOW", self.close)
        family = tkfont.nametofont("TkDefaultFont").actual("family")
        self.fonts = {
            role: tkfont.Font(
                root,
                family=family,
                size=round(size * self.scale),
                weight="bold" if bold else "normal",
            )
            for role, size, bold in _FONTS
        }
        self.labels: dict[str, tk.Label] = {}
        self._strips: dict[str, tk.Frame] = {}  # each tile's coloured edge
        self._build(tk)
        width, height = (round(side * self.scale) for side in SIZE)
        self._design = (width, height)
        self._fit = 1.0
        root.minsize(round(width * FIT[0]), round(height * FIT[0]))
        # A set geometry keeps the window's size when the fonts grow, so this cannot loop.
        root.bind("<Configure>", self._on_configure, add="+")
        if settings.fullscreen:
            root.geometry(f"{root.winfo_screenwidth()}x{root.winfo_screenheight()}+0+0")
            root.attributes("-fullscreen", True)
            root.bind("<Escape>", lambda _event: root.attributes("-fullscreen", False))
        else:
            root.geometry(f"{width}x{height}")

    # ------------------------------------------------------------------ building

    def _label(self, parent: Any, name: str, font: str, **options: Any) -> tk.Label:
        import tkinter as tk

        options.setdefault("background", parent.cget("background"))
        options.setdefault("foreground", self.palette.text)
        label = tk.Label(parent, text="", font=self.fonts[font], **options)
        self.labels[name] = label
        return label

    def _build(self, tk: Any) -> None:
        palette, pad = self.palette, round(_PAD * self.scale)
        root = self.root
        root.columnconfigure(0, weight=1)
        root.rowconfigure(2, weight=3)
        root.rowconfigure(3, weight=1)

        header = tk.Frame(root, background=palette.background)
        header.grid(row=0, column=0, sticky="ew", padx=pad, pady=(pad, 0))
        header.columnconfigure(1, weight=1)
        heading = tk.Label(
            header,
            text="Powerwall",
            font=self.fonts["heading"],
            background=palette.background,
            foreground=palette.text,
        )
        heading.grid(row=0, column=0, rowspan=2, sticky="w")
        self._label(header, "grid_status", "banner").grid(row=0, column=2, sticky="e")
        self._label(header, "gateway", "small", foreground=palette.muted).grid(
            row=1, column=2, sticky="e"
        )

        self.banner = self._label(root, "banner", "banner", pady=round(6 * self.scale))
        self.banner.grid(row=1, column=0, sticky="ew", padx=pad, pady=(pad, 0))
        self.banner.grid_remove()

        tiles = tk.Frame(root, background=palette.background)
        tiles.grid(row=2, column=0, sticky="nsew", padx=pad, pady=(pad, 0))
        for index, key in enumerate(("solar", "home", "battery", "grid")):
            row, column = divmod(index, 2)
            tiles.rowconfigure(row, weight=1, uniform="tile")
            tiles.columnconfigure(column, weight=1, uniform="tile")
            tile = tk.Frame(
                tiles,
                background=palette.surface,
                highlightthickness=1,
                highlightbackground=palette.border,
            )
            tile.grid(
                row=row,
                column=column,
                sticky="nsew",
                padx=(0 if column == 0 else pad // 2, pad // 2 if column == 0 else 0),
                pady=(0 if row == 0 else pad // 2, pad // 2 if row == 0 else 0),
            )
            strip = tk.Frame(tile, background=palette.surface, width=round(6 * self.scale))
            strip.grid(row=0, column=0, rowspan=5, sticky="ns")
            self._strips[key] = strip
            tile.columnconfigure(1, weight=1)
            tile.rowconfigure(0, weight=1)
            tile.rowconfigure(4, weight=1)
            for row, part, font, colour in (
                (1, "title", "tile_title", palette.muted),
                (2, "value", "value", palette.text),
                (3, "direction", "direction", palette.muted),
            ):
                label = self._label(tile, f"{key}.{part}", font, foreground=colour)
                label.grid(row=row, column=1, padx=pad, sticky="w")

        level = tk.Frame(
            root,
            background=palette.surface,
            highlightthickness=1,
            highlightbackground=palette.border,
        )
        level.grid(row=3, column=0, sticky="nsew", padx=pad, pady=(pad, 0))
        level.columnconfigure(1, weight=1)
        level.rowconfigure(0, weight=1)
        level.rowconfigure(1, weight=1)
        self._label(level, "soe.title", "tile_title", foreground=palette.muted).grid(
            row=0, column=0, sticky="sw", padx=pad, pady=(pad // 2, 0)
        )
        self.labels["soe.title"].configure(text="Powerwall level")
        self._label(level, "soe", "soe").grid(
            row=1, column=0, sticky="nw", padx=pad, pady=(0, pad // 2)
        )
        self.bar = tk.Canvas(
            level,
            height=round(_BAR_HEIGHT * self.scale),
            background=palette.surface,
            highlightthickness=0,
        )
        self.bar.grid(row=0, column=1, rowspan=2, sticky="ew", padx=(0, pad * 2))
        self.bar.bind("<Configure>", lambda _event: self._draw_bar())

        footer = tk.Frame(root, background=palette.background)
        footer.grid(row=4, column=0, sticky="ew", padx=pad, pady=pad)
        footer.columnconfigure(0, weight=1)
        self._label(footer, "reading", "small", foreground=palette.muted).grid(
            row=0, column=0, sticky="w"
        )
        self._label(footer, "mode", "small", foreground=palette.muted).grid(
            row=0, column=1, sticky="e"
        )

    # ------------------------------------------------------------------ drawing

    def show(self, screen: Screen) -> None:
        """Copy ``screen`` into the widgets (nothing is touched when it did not change)."""
        if screen == self._shown:
            return
        self._shown = screen
        set_text = self._set
        for tile in screen.tiles:
            set_text(f"{tile.key}.title", tile.title)
            set_text(f"{tile.key}.value", tile.value, foreground=tile.value_colour)
            set_text(f"{tile.key}.direction", tile.direction)
            self._strips[tile.key].configure(background=tile.accent)
        set_text("soe", screen.soe, foreground=screen.soe_colour)
        set_text("grid_status", screen.grid_status, foreground=screen.grid_colour)
        set_text("gateway", screen.gateway)
        set_text("reading", screen.reading)
        set_text("mode", screen.mode)
        if screen.banner is None:
            self.banner.grid_remove()
            set_text("banner", "")
        else:
            set_text(
                "banner",
                screen.banner.text,
                background=screen.banner.background,
                foreground=screen.banner.foreground,
            )
            self.banner.grid()
        self._fraction, self._bar_colour = screen.soe_fraction, screen.soe_colour
        self._draw_bar()

    def _on_configure(self, event: Any) -> None:
        """Fonts and the bar follow the window's size (only the window's own events)."""
        if event.widget is not self.root:
            return
        width, height = self._design
        fit = min(FIT[1], max(FIT[0], min(event.width / width, event.height / height)))
        if abs(fit - self._fit) < 0.05:
            return
        self._fit = fit
        for role, size, _bold in _FONTS:
            self.fonts[role].configure(size=round(size * self.scale * fit))
        self.bar.configure(height=round(_BAR_HEIGHT * self.scale * fit))
        self._draw_bar()

    def _set(self, name: str, text: str, **colours: str) -> None:
        self.labels[name].configure({"text": text, **colours})

    def _draw_bar(self) -> None:
        """The battery bar: a track across the panel, filled by the level's fraction."""
        bar = self.bar
        width, height = bar.winfo_width(), int(bar.cget("height"))
        bar.delete("all")
        bar.create_rectangle(0, 0, width, height, fill=self.palette.track, width=0)
        filled = round(width * self._fraction)
        if filled > 0:
            bar.create_rectangle(0, 0, filled, height, fill=self._bar_colour, width=0)

    # ------------------------------------------------------------------ reading back

    def texts(self) -> dict[str, str]:
        """What every label says now, read from the widgets themselves; the banner's text
        only while it is on the screen."""
        texts = {name: str(label.cget("text")) for name, label in self.labels.items()}
        if not self.banner.winfo_manager():
            texts["banner"] = ""
        return texts

    def bar_fill(self) -> float:
        """The filled share of the battery bar as drawn on the canvas (0..1)."""
        items = self.bar.find_all()
        width = self.bar.winfo_width()
        if len(items) < 2 or width <= 1:
            return 0.0
        x0, _, x1, _ = self.bar.coords(items[1])
        return (x1 - x0) / width

    # ------------------------------------------------------------------ ending

    def close(self) -> None:
        """The window's close button: end the Tk loop (and with it the process, status 0)."""
        if not self.closed:
            self.closed = True
            _LOGGER.info("window closed")
            self.root.destroy()
