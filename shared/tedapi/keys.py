"""The RSA key pair that signs ``v1r`` commands: make it, keep it private, show its public half.

The gateway knows a paired client only by the exact bytes of its public key, DER PKCS#1
``RSAPublicKey`` (not SubjectPublicKeyInfo): that form is registered, carried in every
signature and used to remove a key, so :func:`public_der` is the one export everything
compares. The private key is an unencrypted PEM file created with mode 0600 and never
overwritten: losing the paired key means pairing again with a switch toggle at the house.
Nothing here logs key material; :func:`fingerprint` (SHA-256 of the DER, as pypowerwall
shows it) is what may appear in logs and messages.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from powerwall_bus.shared.errors import TedapiKeyError

__all__ = [
    "DEFAULT_KEY_FILE",
    "KEY_BITS",
    "fingerprint",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "public_b64",
    "public_der",
    "public_key_from_der",
    "public_key_from_pem",
    "public_pem",
    "write_private_key",
]

KEY_BITS = 4096  # what Tesla's app, Tesla-API, pypowerwall and Teslemetry all generate
MIN_BITS = 2048
DEFAULT_KEY_FILE = "tedapi_rsa_key.pem"


def generate_key(bits: int = KEY_BITS) -> rsa.RSAPrivateKey:
    """A fresh RSA key with public exponent 65537."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def write_private_key(key: rsa.RSAPrivateKey, folder: Path, name: str = DEFAULT_KEY_FILE) -> Path:
    """Write ``key`` as PEM to ``folder/name`` with mode 0600; refuse to replace a file.

    The file is created with its final mode (no window where others could read it) and the
    folder with 0700 when it does not exist yet.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / name
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise TedapiKeyError(f"{path} already exists; not replacing a paired key") from None
    except OSError as exc:
        raise TedapiKeyError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return path


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TedapiKeyError(f"cannot read {path}: {exc.strerror}") from None


def _checked(key: object, path: Path) -> rsa.RSAPrivateKey | rsa.RSAPublicKey:
    if not isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        raise TedapiKeyError(f"{path} does not hold an RSA key")
    if key.key_size < MIN_BITS:
        raise TedapiKeyError(f"{path} holds a {key.key_size}-bit key; at least {MIN_BITS} needed")
    return key


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    """The RSA private key of a PEM file (PKCS#1 or PKCS#8, unencrypted)."""
    data = _read(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise TedapiKeyError(f"{path} is not an unencrypted PEM private key") from None
    checked = _checked(key, path)
    assert isinstance(checked, rsa.RSAPrivateKey)
    return checked


def load_public_key(path: Path) -> rsa.RSAPublicKey:
    """The RSA public key of a PEM file: a public key (PKCS#1 or SPKI) or a private key's half."""
    data = _read(path)
    if b"PRIVATE KEY" in data:
        return load_private_key(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise TedapiKeyError(f"{path} is not a PEM public key") from None
    checked = _checked(key, path)
    assert isinstance(checked, rsa.RSAPublicKey)
    return checked


def _public(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> rsa.RSAPublicKey:
    return key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key


def public_der(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> bytes:
    """The public key as DER PKCS#1 ``RSAPublicKey`` (526 bytes for RSA-4096)."""
    return _public(key).public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)


def public_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """The public key as PKCS#1 PEM text ("BEGIN RSA PUBLIC KEY")."""
    pem = _public(key).public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    return pem.decode("ascii")


def public_b64(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """Base64 of :func:`public_der`, as the cloud registration call takes it."""
    return base64.b64encode(public_der(key)).decode("ascii")


def public_key_from_der(der: bytes) -> rsa.RSAPublicKey:
    """Parse DER PKCS#1 ``RSAPublicKey`` bytes (as carried in a signature)."""
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        raise TedapiKeyError("not a DER PKCS#1 RSA public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise TedapiKeyError("not a DER PKCS#1 RSA public key")
    return key


def fingerprint(der: bytes) -> str:
    """SHA-256 of the DER public key in hex: safe to log, names a key unambiguously."""
    return hashlib.sha256(der).hexdigest()


def public_key_from_pem(text: str) -> rsa.RSAPublicKey:
    """Parse a PEM public key (PKCS#1 or SPKI), as ``pwbus simctl pair`` sends it."""
    try:
        key = serialization.load_pem_public_key(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm):
        raise TedapiKeyError("not a PEM RSA public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise TedapiKeyError("not a PEM RSA public key")
    return key
