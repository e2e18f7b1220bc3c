"""Tesla OAuth tokens: what we hold, when the access token expires, and the 0600 file.

Tesla's refresh tokens are single-use: every refresh answers a new one and the old one stops
working. The new pair is therefore written to disk *before* it is used, atomically (a
temporary file renamed over the old one), mode 0600 in a 0700 folder; a crash between the
refresh and the write would otherwise lock the user out until they log in again.

The file may be the project's own record or Tesla's token answer saved as it came
(``access_token``, ``refresh_token``, ``expires_in``): a user who got tokens elsewhere can
drop them in. A file with only a ``refresh_token`` is fine too: the first call refreshes.
Every token is registered with the log redaction filter the moment it is known, and none
is ever part of an exception message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from powerwall_bus.shared.errors import CloudAuthError
from powerwall_bus.shared.logsetup import redaction_filter

__all__ = ["TOKEN_FILE", "CloudTokens", "TokenStore", "tokens_from_answer"]

_LOGGER = logging.getLogger(__name__)

#: The token file's name in the state folder.
TOKEN_FILE = "tesla-cloud-tokens.json"
#: When an answer gives no ``expires_in``: Tesla's access tokens live 8 hours.
DEFAULT_LIFETIME = 28800.0


@dataclass
class CloudTokens:
    """An access token with its expiry (epoch s) and the refresh token that replaces it."""

    access: str = ""
    refresh: str = ""
    expires_at: float = 0.0

    def access_valid(self, now: float, margin: float) -> bool:
        """True while the access token has more than ``margin`` seconds left."""
        return bool(self.access) and now + margin < self.expires_at

    def redact(self) -> None:
        """Register both tokens with the process's log redaction filter."""
        redaction_filter().add(t for t in (self.access, self.refresh) if t)


def tokens_from_answer(answer: Any, now: float) -> CloudTokens:
    """The tokens of a token endpoint answer (or a saved copy of one).

    Raises :class:`CloudAuthError` when it holds no refresh token (without it the next
    expiry would need a new login).
    """
    if not isinstance(answer, dict):
        raise CloudAuthError("the token answer is not a JSON object")
    refresh = answer.get("refresh_token")
    access = answer.get("access_token") or ""
    if not isinstance(refresh, str) or not refresh or not isinstance(access, str):
        raise CloudAuthError("the token answer has no refresh_token")
    lifetime = answer.get("expires_in")
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = DEFAULT_LIFETIME
    tokens = CloudTokens(access=access, refresh=refresh, expires_at=now + float(lifetime))
    tokens.redact()
    return tokens


class TokenStore:
    """The cloud tokens in one JSON file (mode 0600), written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, now: float) -> CloudTokens:
        """The saved tokens; raises :class:`CloudAuthError` (naming the file, never its
        content) when there are none or they cannot be read."""
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CloudAuthError(
                f"no Tesla cloud tokens in {self.path}; log in first (a refresh token is enough)"
            ) from None
        except (OSError, ValueError) as exc:
            raise CloudAuthError(
                f"cannot read the Tesla cloud tokens in {self.path} ({type(exc).__name__})"
            ) from None
        if isinstance(record, dict) and "refresh" in record:
            try:
                tokens = CloudTokens(
                    access=str(record.get("access") or ""),
                    refresh=str(record["refresh"]),
                    expires_at=float(record.get("expires_at") or 0.0),
                )
            except (TypeError, ValueError):
                raise CloudAuthError(f"the token file {self.path} is malformed") from None
            if not tokens.refresh:
                raise CloudAuthError(f"the token file {self.path} holds no refresh token")
            tokens.redact()
            return tokens
        try:
            # Tesla's own answer saved as is: its expires_in counts from when it was saved.
            saved = self.path.stat().st_mtime
        except OSError:
            saved = now
        try:
            return tokens_from_answer(record, saved)
        except CloudAuthError:
            raise CloudAuthError(f"the token file {self.path} holds no refresh token") from None

    def save(self, tokens: CloudTokens) -> None:
        """Store ``tokens`` (0600, atomic). Raises :class:`CloudAuthError` when it cannot:
        the refresh token just used is spent, so losing the new one must be loud."""
        tmp = ""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".tesla-cloud-", dir=self.path.parent)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(asdict(tokens), handle, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as exc:
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise CloudAuthError(
                f"could not save the refreshed Tesla cloud tokens to {self.path}: {exc.strerror}"
            ) from None
        _LOGGER.debug("saved the Tesla cloud tokens to %s", self.path)

    def clear(self) -> bool:
        """Delete the token file (log out); False when there was none."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
