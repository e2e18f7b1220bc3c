"""``pwbus hat``: the 16x16 Unicorn HAT HD LED display for a Raspberry Pi."""
