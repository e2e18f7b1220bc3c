"""What a ``v1r`` signature covers, and how it is made and checked (pure functions).

The signed bytes are a tag-length-value run naming the signature type (RSA, 7), the domain
(energy device, 7), the personalization (the gateway DIN, as in ``recipient.din``) and the
expiry (Unix seconds, big-endian u32), closed by the end tag ``ff``, followed by the
serialized ``MessageEnvelope`` exactly as carried in the routable message. RSASSA-PKCS1-v1_5
with SHA-512 over those bytes. The DIN and expiry make a signature valid for one gateway and
a few seconds only, so a captured message cannot be replayed elsewhere or later.
"""

from __future__ import annotations

import math

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "EXPIRES_AFTER",
    "expires_at_for",
    "sign_envelope",
    "signature_valid",
    "signed_bytes",
    "tlv_header",
]

#: Seconds a signature stays valid; Tesla-API and pypowerwall both use ceil(now) + 12.
EXPIRES_AFTER = 12

TAG_SIGNATURE_TYPE = 0x00
TAG_DOMAIN = 0x01
TAG_PERSONALIZATION = 0x02
TAG_EXPIRES_AT = 0x04
TAG_END = 0xFF
SIGNATURE_TYPE_RSA = 7
DOMAIN_ENERGY_DEVICE = 7


def expires_at_for(now: float) -> int:
    """The expiry a request signed at ``now`` (Unix seconds) carries."""
    return math.ceil(now) + EXPIRES_AFTER


def tlv_header(din: str, expires_at: int) -> bytes:
    """The TLV run (ending in ``ff``) that precedes the envelope in the signed bytes."""
    personalization = din.encode("utf-8")
    if not 0 < len(personalization) < 256:
        raise ValueError("the DIN must be 1 to 255 bytes long")
    if not 0 <= expires_at < 2**32:
        raise ValueError("expires_at must fit an unsigned 32-bit integer")
    return b"".join(
        (
            bytes((TAG_SIGNATURE_TYPE, 1, SIGNATURE_TYPE_RSA)),
            bytes((TAG_DOMAIN, 1, DOMAIN_ENERGY_DEVICE)),
            bytes((TAG_PERSONALIZATION, len(personalization))),
            personalization,
            bytes((TAG_EXPIRES_AT, 4)),
            expires_at.to_bytes(4, "big"),
            bytes((TAG_END,)),
        )
    )


def signed_bytes(din: str, expires_at: int, envelope: bytes) -> bytes:
    """Exactly the bytes the signature covers."""
    return tlv_header(din, expires_at) + envelope


def sign_envelope(key: rsa.RSAPrivateKey, din: str, expires_at: int, envelope: bytes) -> bytes:
    """The RSA PKCS#1 v1.5 / SHA-512 signature of ``envelope`` for ``din`` until ``expires_at``."""
    return key.sign(signed_bytes(din, expires_at, envelope), padding.PKCS1v15(), hashes.SHA512())


def signature_valid(
    key: rsa.RSAPublicKey, signature: bytes, din: str, expires_at: int, envelope: bytes
) -> bool:
    """True when ``signature`` is ``key``'s signature of ``envelope`` for ``din``/``expires_at``."""
    try:
        key.verify(
            signature, signed_bytes(din, expires_at, envelope), padding.PKCS1v15(), hashes.SHA512()
        )
    except InvalidSignature:
        return False
    return True
