"""``pwbus gui``: the Tk window that shows the followed gateway's flows and battery."""
