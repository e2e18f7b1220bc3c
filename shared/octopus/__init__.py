"""Octopus Energy: the typed dispatch plan every component shares, and the Kraken client."""
