"""Kraken tokens: what we hold, when they expire, and the 0600 file they survive restarts in.

An access token lives 60 minutes, a refresh token about 7 days (``refreshExpiresIn`` is an
absolute Unix time despite its name, and the only authority: never assume a constant).
Keeping both across restarts means a crash loop does not log in with the API key every
few seconds (``obtainKrakenToken`` is rate limited too). The file sits in the state folder,
mode 0600 in a 0700 folder, and is tied to the API key by a short hash of it: change the key
and the old tokens are ignored. Tokens never go to the config file, and every token is
registered with the log redaction filter the moment it is known.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from powerwall_bus.shared.logsetup import redaction_filter

_LOGGER = logging.getLogger(__name__)

#: When a token carries no readable ``exp``: the documented lifetime of an access token.
ACCESS_LIFETIME = 3600.0


def key_id(api_key: str) -> str:
    """A short, one-way tag of the API key: which key the saved tokens belong to."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, read without checking its signature ({} when unreadable)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    padded = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def access_expiry(token: str, payload: Any, now: float) -> float:
    """When the access token expires (epoch s): the answer's ``payload.exp``, else the JWT's
    own ``exp``, else an hour from now. ``payload`` may come as an object or a JSON string."""
    if isinstance(payload, str):
        with contextlib.suppress(ValueError):
            payload = json.loads(payload)
    for claims in (payload, jwt_claims(token)):
        if isinstance(claims, dict):
            exp = claims.get("exp")
            if isinstance(exp, int | float) and not isinstance(exp, bool):
                return float(exp)
    return now + ACCESS_LIFETIME


@dataclass
class Tokens:
    """The access and refresh tokens of one API key, with their expiry times (epoch s)."""

    access: str = ""
    access_expires: float = 0.0
    refresh: str = ""
    refresh_expires: float = 0.0
    key: str = ""  # key_id() of the API key they were obtained with

    def access_valid(self, now: float, margin: float) -> bool:
        """True while the access token has more than ``margin`` seconds left."""
        return bool(self.access) and now + margin < self.access_expires

    def refresh_valid(self, now: float) -> bool:
        """True while the refresh token has not expired."""
        return bool(self.refresh) and now < self.refresh_expires

    def redact(self) -> None:
        """Register both tokens with the process's log redaction filter."""
        redaction_filter().add(t for t in (self.access, self.refresh) if t)


class TokenStore:
    """One account's tokens in one JSON file (mode 0600), written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, api_key: str) -> Tokens:
        """The saved tokens of ``api_key``; empty ones when absent, unreadable or another key's."""
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return Tokens(key=key_id(api_key))
        except (OSError, ValueError) as exc:
            _LOGGER.warning("ignoring unreadable token file %s: %s", self.path, type(exc).__name__)
            return Tokens(key=key_id(api_key))
        try:
            tokens = Tokens(
                access=str(record["access"]),
                access_expires=float(record["access_expires"]),
                refresh=str(record["refresh"]),
                refresh_expires=float(record["refresh_expires"]),
                key=str(record["key"]),
            )
        except (KeyError, TypeError, ValueError):
            _LOGGER.warning("ignoring a malformed token file %s", self.path)
            return Tokens(key=key_id(api_key))
        if tokens.key != key_id(api_key):
            return Tokens(key=key_id(api_key))  # another key's: never use them
        tokens.redact()
        return tokens

    def save(self, tokens: Tokens) -> None:
        """Store ``tokens``; the file is never readable by others. A failure costs a WARNING
        (the next start logs in with the key again), never the running process."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd, tmp = tempfile.mkstemp(prefix=".octopus-", dir=self.path.parent)
        except OSError as exc:
            _LOGGER.warning("could not save the Octopus tokens to %s: %s", self.path, exc.strerror)
            return
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(asdict(tokens), handle, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            _LOGGER.warning("could not save the Octopus tokens to %s: %s", self.path, exc.strerror)
