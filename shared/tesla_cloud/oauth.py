"""Tesla's OAuth login (authorization code + PKCE), as a pure core and one exchange call.

The flow ``pwbus cloud login`` walks the user through, and why each step is checked:

1. :func:`start` makes a random ``code_verifier`` and ``state``; :func:`authorize_url` puts
   the verifier's S256 challenge and the state in the URL the user opens in a browser.
2. Tesla redirects to ``redirect_uri`` (``tesla://auth/callback`` for the Owner API client,
   which no browser opens: the user copies the address). :func:`read_callback` takes that
   pasted URL apart and refuses it unless it is a callback to our ``redirect_uri`` carrying
   our ``state`` (else it is someone else's login, or an old one) and, when it names one
   (``issuer``, or ``iss`` per RFC 9207), our issuer (else a mix-up with another server).
3. :func:`exchange` trades the code and the verifier (which only we know) for tokens at the
   token endpoint; the verifier makes a stolen code useless.

Nothing here logs or raises a token, a code or a verifier.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from powerwall_bus.shared.errors import CloudAuthError, CloudCommandRefused, CloudLoginRefused
from powerwall_bus.shared.tesla_cloud.tokens import CloudTokens, tokens_from_answer
from powerwall_bus.shared.tesla_cloud.transport import CloudTransport

__all__ = [
    "FLEET_SCOPES",
    "OWNER_REDIRECT_URI",
    "OWNER_SCOPES",
    "Login",
    "authorize_url",
    "code_challenge",
    "exchange",
    "issuer_for",
    "read_callback",
    "start",
]

OWNER_REDIRECT_URI = "tesla://auth/callback"
#: The Owner API client's scopes (``offline_access``: a refresh token).
OWNER_SCOPES = "openid email offline_access"
#: A Fleet API application's: reads and writes of energy sites.
FLEET_SCOPES = "openid offline_access energy_device_data energy_cmds"


@dataclass(frozen=True)
class Login:
    """One login attempt: the secrets that must come back (state) or go out (verifier)."""

    verifier: str
    state: str


def start() -> Login:
    """A fresh verifier (43 URL-safe characters: 32 random bytes) and state."""
    return Login(secrets.token_urlsafe(32), secrets.token_urlsafe(16))


def code_challenge(verifier: str) -> str:
    """The S256 challenge of ``verifier`` (RFC 7636: base64url of its SHA-256, no padding)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def issuer_for(token_url: str) -> str:
    """The issuer whose token endpoint is ``token_url`` (``.../oauth2/v3/token`` ->
    ``.../oauth2/v3``)."""
    return token_url.rstrip("/").removesuffix("/token")


def authorize_url(
    authorize_endpoint: str, client_id: str, redirect_uri: str, scope: str, login: Login
) -> str:
    """The URL the user opens to log in."""
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": login.state,
        "code_challenge": code_challenge(login.verifier),
        "code_challenge_method": "S256",
    }
    return f"{authorize_endpoint}?{urlencode(query)}"


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise CloudLoginRefused(f"the callback URL names {name} more than once")
    return values[0]


def read_callback(url: str, redirect_uri: str, login: Login, issuer: str) -> str:
    """The authorization code in the pasted callback ``url``; :class:`CloudLoginRefused`
    (one line, never the URL itself: it holds the code) when it is not ours."""
    text = url.strip()
    parts = urlsplit(text)
    expected = urlsplit(redirect_uri)
    if not text or (parts.scheme, parts.netloc, parts.path) != (
        expected.scheme,
        expected.netloc,
        expected.path,
    ):
        raise CloudLoginRefused(
            f"that is not the callback URL: it should start with {redirect_uri}?"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    error = _one(query, "error")
    if error is not None:
        said = " ".join(error.split())[:80]
        raise CloudLoginRefused(f"Tesla refused the login ({said}); start again")
    state = _one(query, "state")
    if state is None or not secrets.compare_digest(state, login.state):
        raise CloudLoginRefused(
            "the callback's state is not this login's (an old or someone else's login); "
            "start again and paste the URL of this login"
        )
    for name in ("issuer", "iss"):
        named = _one(query, name)
        if named is not None and named.rstrip("/") != issuer.rstrip("/"):
            raise CloudLoginRefused(f"the callback comes from another issuer ({named[:80]})")
    code = _one(query, "code")
    if not code:
        raise CloudLoginRefused("the callback URL holds no code")
    return code


def exchange(
    transport: CloudTransport,
    token_url: str,
    client_id: str,
    redirect_uri: str,
    code: str,
    login: Login,
    now: float,
    audience: str = "",
) -> CloudTokens:
    """Trade ``code`` for tokens at ``token_url`` (``audience``: the Fleet API base URL)."""
    form = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "code": code,
        "code_verifier": login.verifier,
        "redirect_uri": redirect_uri,
    }
    if audience:
        form["audience"] = audience
    try:
        answer: Any = transport.call("POST", token_url, form=form, what="Tesla's token endpoint")
    except (CloudAuthError, CloudCommandRefused) as exc:
        raise CloudLoginRefused(
            f"Tesla refused the code ({exc.error or exc.status}); codes work once and for "
            "minutes only: start again"
        ) from None
    return tokens_from_answer(answer, now)
