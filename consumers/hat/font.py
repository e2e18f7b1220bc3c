"""The display's own bitmap font: 5x7 glyphs drawn here, shown twice their size.

Made for this project and released with it under its MIT licence (no outside font file, so
no path that exists on one OS only). Each glyph is its rows of ``#`` (lit) and ``.`` (dark),
as wide as it needs to be; glyphs are set one dark column apart. Letters the display never
writes in lower case map to their capitals; anything unknown is drawn as ``?``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["GLYPHS", "HEIGHT", "Column", "glyph", "text_columns", "text_width"]

#: Rows of one glyph.
HEIGHT = 7

_DRAWN = """
0 .###. #...# #..## #.#.# ##..# #...# .###.
1 .#. ##. .#. .#. .#. .#. ###
2 .###. #...# ....# ...#. ..#.. .#... #####
3 ##### ...#. ..#.. ...#. ....# #...# .###.
4 ...#. ..##. .#.#. #..#. ##### ...#. ...#.
5 ##### #.... ####. ....# ....# #...# .###.
6 ..##. .#... #.... ####. #...# #...# .###.
7 ##### ....# ...#. ..#.. .#... .#... .#...
8 .###. #...# #...# .###. #...# #...# .###.
9 .###. #...# #...# .#### ....# ...#. .##..
% ##... ##..# ...#. ..#.. .#... #..## ...##
. . . . . . . #
: . # . . . # .
- ... ... ... ### ... ... ...
? .###. #...# ....# ...#. ..#.. ..... ..#..
k #... #... #..# #.#. ##.. #.#. #..#
s .... .... .### #... .##. ...# ###.
A .###. #...# #...# ##### #...# #...# #...#
B ####. #...# #...# ####. #...# #...# ####.
C .###. #...# #.... #.... #.... #...# .###.
D ###.. #..#. #...# #...# #...# #..#. ###..
E ##### #.... #.... ####. #.... #.... #####
F ##### #.... #.... ####. #.... #.... #....
G .###. #...# #.... #.### #...# #...# .####
H #...# #...# #...# ##### #...# #...# #...#
I ### .#. .#. .#. .#. .#. ###
J ..### ...#. ...#. ...#. ...#. #..#. .##..
K #...# #..#. #.#.. ##... #.#.. #..#. #...#
L #.... #.... #.... #.... #.... #.... #####
M #...# ##.## #.#.# #.#.# #...# #...# #...#
N #...# #...# ##..# #.#.# #..## #...# #...#
O .###. #...# #...# #...# #...# #...# .###.
P ####. #...# #...# ####. #.... #.... #....
Q .###. #...# #...# #...# #.#.# #..#. .##.#
R ####. #...# #...# ####. #.#.. #..#. #...#
S .#### #.... #.... .###. ....# ....# ####.
T ##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..
U #...# #...# #...# #...# #...# #...# .###.
V #...# #...# #...# #...# #...# .#.#. ..#..
W #...# #...# #...# #.#.# #.#.# #.#.# .#.#.
X #...# #...# .#.#. ..#.. .#.#. #...# #...#
Y #...# #...# .#.#. ..#.. ..#.. ..#.. ..#..
Z ##### ....# ...#. ..#.. .#... #.... #####
"""

#: A column of a glyph or a text, top row first.
Column = tuple[bool, ...]


def _parse(drawn: str) -> dict[str, tuple[str, ...]]:
    glyphs: dict[str, tuple[str, ...]] = {" ": ("..",) * HEIGHT}
    for line in drawn.strip().splitlines():
        char, *rows = line.split()
        if len(rows) != HEIGHT or len({len(row) for row in rows}) != 1:
            raise ValueError(f"glyph {char!r} is not {HEIGHT} rows of one width")
        glyphs[char] = tuple(rows)
    return glyphs


#: Every glyph as its rows (``#`` lit).
GLYPHS: dict[str, tuple[str, ...]] = _parse(_DRAWN)


def glyph(char: str) -> tuple[str, ...]:
    """The rows of ``char``'s glyph: its own, its capital's, or ``?``."""
    return GLYPHS.get(char) or GLYPHS.get(char.upper()) or GLYPHS["?"]


def _columns(rows: Sequence[str]) -> list[Column]:
    return [tuple(row[x] == "#" for row in rows) for x in range(len(rows[0]))]


def text_columns(text: str, scale: int = 2) -> list[Column]:
    """The text set in the font, one dark column between glyphs, each pixel ``scale`` x
    ``scale`` LEDs: a list of columns ``HEIGHT * scale`` tall."""
    columns: list[Column] = []
    for index, char in enumerate(text):
        if index:
            columns.append((False,) * HEIGHT)
        columns.extend(_columns(glyph(char)))
    return [
        tuple(lit for lit in column for _ in range(scale))
        for column in columns
        for _ in range(scale)
    ]


def text_width(text: str, scale: int = 2) -> int:
    """How many LED columns the text takes."""
    return len(text_columns(text, scale))
