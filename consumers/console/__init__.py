"""``pwbus console``: the display state as lines of text on a terminal or a pipe."""
