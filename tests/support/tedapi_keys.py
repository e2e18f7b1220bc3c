"""RSA-4096 keys for the signed TEDAPI tests, made once per test run (about 0.5 s each)."""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives.asymmetric import rsa

from powerwall_bus.shared.tedapi.keys import generate_key

#: The DIN of the facts file's worked example (28 bytes).
EXAMPLE_DIN = "1232100-00-E--TG123456789012"


@functools.cache
def signing_key(name: str) -> rsa.RSAPrivateKey:
    """One key per ``name`` ("paired", "stranger", ...), the same object for the whole run."""
    return generate_key()
