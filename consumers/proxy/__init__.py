"""``pwbus proxy``: the pyPowerwall proxy's endpoints, served from the bus."""
