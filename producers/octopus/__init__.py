"""``pwbus octopus``: the Octopus Energy dispatch plan, polled and published on the bus."""
