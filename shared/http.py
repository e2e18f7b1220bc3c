"""HTTP pieces the clients share: reading ``Retry-After``, and one keep-alive session.

:func:`retry_after` serves all three clients (gateway, Octopus, Tesla cloud): the header may
hold seconds or an HTTP date, and a date without a zone or a value that is not a date is
no answer at all (the caller then uses its own back-off) rather than a guess.

:class:`CloudSession` is the requests session of the two cloud clients (Octopus's GraphQL
API, Tesla's cloud APIs): one keep-alive session, a default timeout, a count of requests
sent (tests and benchmarks read it), and requests' own exceptions translated into the
caller's "unreachable" error here, so that no requests exception ever leaves a transport.
The gateway client keeps its own session: it pins the gateway's certificate and keeps the
login cookie, which the clouds need neither of.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

import requests

__all__ = ["CloudSession", "retry_after"]


def retry_after(value: str | None, now: float, *, cap: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, counted from ``now`` (epoch seconds).

    None when the header is absent or unreadable; never negative; at most ``cap`` when given
    (a server asking us to wait a year is not obeyed to the letter).
    """
    text = (value or "").strip()
    if not text:
        return None
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT; a date without a zone is no date
            return None
        seconds = when.timestamp() - now
    seconds = max(seconds, 0.0)
    return seconds if cap is None else min(seconds, cap)


class CloudSession:
    """One keep-alive session to a cloud API; requests' failures become ``unreachable``."""

    def __init__(
        self,
        *,
        unreachable: Callable[[str], Exception],
        timeout: float = 20.0,
        user_agent: str = "powerwall-bus",
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``unreachable`` makes the caller's error for "no answer" from a one-line message."""
        self._unreachable = unreachable
        self._timeout = timeout
        self._clock = clock
        self._owns_session = session is None
        self._session = session or requests.Session()
        self._session.headers.update({"Accept": "application/json", "User-Agent": user_agent})
        self.requests = 0

    def close(self) -> None:
        """Close the session if we made it."""
        if self._owns_session:
            self._session.close()

    def send(
        self, method: str, url: str, *, what: str, timeout: float | None = None, **options: Any
    ) -> requests.Response:
        """One request (``options`` as requests takes them); any answer, whatever its status.

        No answer at all (refused, DNS, TLS, a timeout) raises ``unreachable``, saying which
        service (``what``) and the kind of failure, never the URL's query or a header.
        """
        patience = self._timeout if timeout is None else timeout
        self.requests += 1
        try:
            return self._session.request(method, url, timeout=patience, **options)
        except requests.Timeout:
            raise self._unreachable(f"{what} did not answer within {patience:g} s") from None
        except requests.RequestException as exc:
            raise self._unreachable(f"cannot reach {what} ({type(exc).__name__})") from None

    def now(self) -> float:
        """The injected clock's time (epoch seconds)."""
        return self._clock()
