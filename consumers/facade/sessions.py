"""The facade's own customer login: tokens, logout, and a cap on wrong passwords.

Pure (the clock is injected): the web routes ask :class:`Sessions` whether a login is
right and whether a token is a live session. The password is the facade's own, so a
client that holds it can read the bus's data and nothing else: it is never the gateway's.

A gateway answers too many logins with 429; so does the facade, but only for wrong
passwords (``max_failed`` a minute), so a guessing client stops while Home Assistant,
which logs in rarely and with the right password, is never held back. Sessions do not
expire by time (Home Assistant keeps its cookie for as long as it works); the oldest is
forgotten once :data:`MAX_SESSIONS` are open, so a client logging in in a loop cannot
grow memory.
"""

from __future__ import annotations

import collections
import hmac
import secrets
import time
from collections.abc import Callable
from enum import Enum

#: Open sessions kept at most; the oldest goes first.
MAX_SESSIONS = 256
#: The window of the wrong-password count, seconds.
WINDOW = 60.0

#: The only user a gateway's customer login accepts.
CUSTOMER = "customer"


class Login(Enum):
    """The outcome of one login attempt."""

    OK = "ok"
    REFUSED = "refused"  # wrong user or password: 401 bad credentials
    LIMITED = "limited"  # too many wrong passwords this minute: 429


class Sessions:
    """Checks logins against the facade's password and keeps the tokens it handed out."""

    def __init__(
        self, password: str, *, max_failed: int = 10, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._password = password.encode()
        self._max_failed = max_failed
        self._clock = clock
        self._tokens: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._failures: collections.deque[float] = collections.deque()
        self.logins = 0
        self.refused = 0

    def login(self, username: str | None, password: str | None) -> tuple[Login, str | None]:
        """(outcome, a new token when it is :attr:`Login.OK`)."""
        now = self._clock()
        while self._failures and self._failures[0] <= now - WINDOW:
            self._failures.popleft()
        if len(self._failures) >= self._max_failed:
            return Login.LIMITED, None
        given = (password or "").encode()
        # compare_digest on both, so neither the user nor the password leaks by timing
        right = hmac.compare_digest(given, self._password) & (username == CUSTOMER)
        if not right:
            self._failures.append(now)
            self.refused += 1
            return Login.REFUSED, None
        token = secrets.token_urlsafe(48)  # URL-safe: a cookie value that needs no quoting
        self._tokens[token] = None
        while len(self._tokens) > MAX_SESSIONS:
            self._tokens.popitem(last=False)
        self.logins += 1
        return Login.OK, token

    def valid(self, token: str | None) -> bool:
        """Whether ``token`` is a session this facade handed out and nobody ended."""
        return bool(token) and token in self._tokens

    def logout(self, token: str | None) -> None:
        """End a session (an unknown token is fine: logging out twice is not an error)."""
        if token:
            self._tokens.pop(token, None)

    def end_all(self) -> None:
        """End every session (a restart of the facade does the same): clients see their
        cookie refused and log in again."""
        self._tokens.clear()

    def __len__(self) -> int:
        return len(self._tokens)
