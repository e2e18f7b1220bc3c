"""The saved gateway session: one small JSON file, mode 0600, written atomically.

Keeping the login cookies across restarts is the single most effective protection against
gateway lock-outs: every login counts against the gateway's rate limit, and a process that
logs in at every start (systemd restart loops, container restarts) is how users get locked
out. The same file remembers an active 429 cool-down, a refused login's back-off (a wrong
password), the times of the recent login attempts (``gateway.max_logins_per_hour``) and a
pinned TLS fingerprint, so a restart (or a crash loop of them) honours them all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)


@dataclass
class SavedSession:
    """What we remember about one gateway origin (``https://host:port``)."""

    cookies: dict[str, str] = field(default_factory=dict)  # AuthCookie, UserRecord
    token: str = ""
    login_time: float = 0.0
    cooldown_until: float = 0.0
    fingerprint: str = ""  # SHA-256 of the certificate, when pinned on first use
    login_attempts: list[float] = field(default_factory=list)  # epoch s, the last hour's
    login_blocked_until: float = 0.0  # a refused login is not repeated before this
    login_error: str = ""  # the refused login's error class name (BadCredentials, ...)
    login_error_message: str = ""  # its one-line message (never a secret)
    login_key: str = ""  # which credentials were refused: the block ends when they change

    @property
    def has_credentials(self) -> bool:
        """True when the session can authenticate a request."""
        return bool(self.token or self.cookies.get("AuthCookie"))


class SessionStore:
    """Reads and writes :class:`SavedSession` records, one per gateway origin, in one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, origin: str) -> SavedSession:
        """The saved record for ``origin``; an empty one when absent or unreadable."""
        record = self._read_all().get(origin)
        if not isinstance(record, dict):
            return SavedSession()
        try:
            return SavedSession(
                cookies={str(k): str(v) for k, v in dict(record.get("cookies", {})).items()},
                token=str(record.get("token", "")),
                login_time=float(record.get("login_time", 0.0)),
                cooldown_until=float(record.get("cooldown_until", 0.0)),
                fingerprint=str(record.get("fingerprint", "")),
                login_attempts=[float(t) for t in list(record.get("login_attempts", []))],
                login_blocked_until=float(record.get("login_blocked_until", 0.0)),
                login_error=str(record.get("login_error", "")),
                login_error_message=str(record.get("login_error_message", "")),
                login_key=str(record.get("login_key", "")),
            )
        except (TypeError, ValueError):
            _LOGGER.warning("ignoring a malformed saved session in %s", self.path)
            return SavedSession()

    def save(self, origin: str, session: SavedSession) -> None:
        """Store ``session`` for ``origin``; the file is never readable by others."""
        records = self._read_all()
        records[origin] = asdict(session)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".session-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(records, handle, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            # Not fatal: we keep working, but the next restart will have to log in again.
            _LOGGER.warning("could not save the gateway session to %s: %s", self.path, exc.strerror)

    def _read_all(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            _LOGGER.warning(
                "ignoring unreadable session file %s: %s", self.path, type(exc).__name__
            )
            return {}
        return data if isinstance(data, dict) else {}
