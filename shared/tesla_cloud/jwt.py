"""Tesla's access tokens are JWTs: read their claims, check them, check their RS256 signature.

Only what the cloud tools need, with ``cryptography`` (already a dependency for the signed
TEDAPI keys) instead of a JWT library: the ``RS256`` algorithm, keys from the issuer's JWKS
(``/oauth2/v3/discovery/keys``), and the claims that say the token is for us and still good
(``iss``, ``aud``, ``exp``). A token whose header names another algorithm is refused: accepting
what the token says about itself (``none``, HMAC with a public key) is the classic JWT hole.

Import inside a command's ``run`` (``cryptography`` is heavy).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from powerwall_bus.shared.errors import CloudTokenInvalid

__all__ = ["Claims", "keys_from_jwks", "pem", "read", "verify"]

#: Allowed clock difference between us and the issuer, seconds.
LEEWAY = 60.0


@dataclass(frozen=True)
class Claims:
    """A token taken apart (nothing checked yet)."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signed: bytes  # base64url(header) "." base64url(payload), what the signature covers
    signature: bytes


def _b64(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise CloudTokenInvalid("the token is not a JWT (bad base64url)") from None


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64(part))
    except ValueError:
        raise CloudTokenInvalid(f"the token's {what} is not JSON") from None
    if not isinstance(value, dict):
        raise CloudTokenInvalid(f"the token's {what} is not a JSON object")
    return value


def read(token: str) -> Claims:
    """Split a compact JWT; :class:`CloudTokenInvalid` when it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        raise CloudTokenInvalid("the access token is not a JWT (Tesla's are)")
    header = _json_object(parts[0], "header")
    payload = _json_object(parts[1], "payload")
    return Claims(header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), _b64(parts[2]))


def _int(value: str) -> int:
    return int.from_bytes(_b64(value), "big")


def keys_from_jwks(jwks: Any) -> dict[str, rsa.RSAPublicKey]:
    """``kid`` -> RSA public key of every RSA signing key in a JWKS document."""
    entries = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(entries, list):
        raise CloudTokenInvalid("the JWKS document has no keys list")
    keys: dict[str, rsa.RSAPublicKey] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or entry.get("kty") != "RSA":
            continue
        if entry.get("use", "sig") != "sig":
            continue
        n, e = entry.get("n"), entry.get("e")
        if not isinstance(n, str) or not isinstance(e, str):
            raise CloudTokenInvalid(f"JWKS key {index} has no n/e")
        try:
            key = rsa.RSAPublicNumbers(_int(e), _int(n)).public_key()
        except ValueError:
            raise CloudTokenInvalid(f"JWKS key {index} is not a valid RSA key") from None
        keys[str(entry.get("kid") or f"key-{index}")] = key
    if not keys:
        raise CloudTokenInvalid("the JWKS document holds no RSA signing key")
    return keys


def pem(key: rsa.RSAPublicKey) -> str:
    """The key as PEM (SubjectPublicKeyInfo, ``-----BEGIN PUBLIC KEY-----``)."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _audiences(payload: Mapping[str, Any]) -> list[str]:
    aud = payload.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [a for a in aud if isinstance(a, str)]
    return []


def verify(
    token: str,
    *,
    issuer: str,
    audience: str,
    now: float,
    keys: Mapping[str, rsa.RSAPublicKey] | None = None,
) -> Claims:
    """Check ``token``'s issuer, audience and expiry, and with ``keys`` its RS256 signature.

    Raises :class:`CloudTokenInvalid` with one line saying which check failed (never the
    token). The signature is checked first when keys are given: claims of a forged token
    mean nothing.
    """
    claims = read(token)
    if keys is not None:
        if claims.header.get("alg") != "RS256":
            alg = claims.header.get("alg")
            raise CloudTokenInvalid(f"the token is signed with {alg!r}, not RS256")
        kid = claims.header.get("kid")
        candidates = [keys[kid]] if isinstance(kid, str) and kid in keys else []
        if not candidates:
            raise CloudTokenInvalid(f"no key of the issuer has the token's kid {kid!r}")
        try:
            candidates[0].verify(
                claims.signature, claims.signed, padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            raise CloudTokenInvalid("the token's signature is not the issuer's") from None
    payload = claims.payload
    if str(payload.get("iss", "")).rstrip("/") != issuer.rstrip("/"):
        named = str(payload.get("iss"))[:80]
        raise CloudTokenInvalid(f"the token's issuer is {named!r}, not {issuer!r}")
    wanted = audience.rstrip("/")
    if wanted not in (a.rstrip("/") for a in _audiences(payload)):
        raise CloudTokenInvalid(f"the token is not for {audience!r}")
    exp = payload.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise CloudTokenInvalid("the token has no expiry (exp)")
    if exp + LEEWAY < now:
        raise CloudTokenInvalid(
            f"the access token expired {(now - exp) / 60:.0f} min ago; run pwbus cloud refresh"
        )
    return claims
