"""The gateway client: the only code in the project that speaks HTTP to the gateway.

It is deliberately conservative, because the gateway punishes eager clients:

* one kept-alive HTTPS connection, explicit connect and read timeouts, one request at a time;
* the login session is saved and reused after a restart, so restarts do not log in again;
* a 401/403 on a data call gets exactly one fresh login and one retry, then a clear failure,
  and the path is *refused*: its next 401/403 within the hour fails at once, with no login
  (a path the account may not read must not cost a login per poll); the other paths go on
  with the same session;
* a failed login is not repeated for a cool-down (a wrong password retried every poll is
  how users get locked out), and that cool-down survives a restart;
* at most ``gateway.max_logins_per_hour`` login attempts in any hour, whatever the caller
  does, counted in the saved session so a crash loop of restarts cannot exceed it either;
* a 429 starts a cool-down (default 5 minutes) during which *nothing* is sent, persisted
  across restarts;
* a 404 is remembered per firmware and never treated as an authentication failure;
* ``/api/devices/vitals`` is not requested at all on firmware 23.44 and later.

Every failure leaves as one of the typed errors of :mod:`shared.errors`; requests' own
exceptions never escape.
"""

from __future__ import annotations

import hashlib
import http.cookies
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from powerwall_bus.shared.errors import (
    BadCredentials,
    DefaultPasswordNotSupported,
    EndpointNotFound,
    GatewayAuthError,
    GatewayError,
    GatewayHTTPError,
    GatewayServerError,
    GatewayTimeout,
    GatewayUnreachable,
    LoginCapReached,
    RateLimited,
    SessionRejected,
    SiteControllerStopped,
    TLSFingerprintMismatch,
    UnexpectedResponse,
)
from powerwall_bus.shared.gateway.payloads import parse_firmware, vitals_supported
from powerwall_bus.shared.gateway.session_store import SessionStore
from powerwall_bus.shared.gateway.transport import fetch_fingerprint, new_session
from powerwall_bus.shared.gateway.vitals import decode_vitals
from powerwall_bus.shared.http import retry_after
from powerwall_bus.shared.logsetup import redaction_filter
from powerwall_bus.shared.settings import GatewaySettings

_LOGGER = logging.getLogger(__name__)

LOGIN_PATH = "/api/login/Basic"
LOGOUT_PATH = "/api/logout"
STATUS_PATH = "/api/status"
VITALS_PATH = "/api/devices/vitals"
#: Signed TEDAPI (Max Backup) commands: a protobuf POST that needs no login.
TEDAPI_PATH = "/tedapi/v1r"
# Paths the gateway answers without a session.
OPEN_PATHS = frozenset({STATUS_PATH, "/api/customer/registration"})
#: The window of ``gateway.max_logins_per_hour``, seconds.
LOGIN_WINDOW = 3600.0
#: A refused path gets one more login to cure it after this long (the session may have
#: expired meanwhile), seconds; until then its 401/403 fails at once.
REFUSED_RELOGIN_AFTER = 3600.0
#: A Retry-After longer than this is not believed (a clock gone wrong), seconds.
MAX_RETRY_AFTER = 3600.0
#: Refused logins restored from the saved session, by the class name saved there.
_LOGIN_ERRORS: dict[str, type[GatewayAuthError]] = {
    cls.__name__: cls for cls in (GatewayAuthError, BadCredentials, DefaultPasswordNotSupported)
}


class GatewayClient:
    """A polite, typed client for one gateway. Thread-safe; requests are serialised."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        clock: Callable[[], float] = time.time,
        store: SessionStore | None = None,
    ) -> None:
        settings.require_login()
        self._settings = settings
        self._clock = clock
        self._origin = settings.base_url
        self._store = store or SessionStore(settings.session_file)
        self._saved = self._store.load(self._origin)
        self._lock = threading.RLock()
        self._http: requests.Session | None = None
        self._missing: set[str] = set()
        self._refused: dict[str, float] = {}  # path -> when it was refused after a fresh login
        self._login_key = _credentials_key(settings)
        self._login_blocked_until = 0.0
        self._login_error: GatewayAuthError | None = None
        self._capped_logged = False
        self._restore_login_block()
        self.firmware: str | None = None
        self.din: str | None = None
        self.logins = 0  # logins this process made: a figure worth watching
        redaction_filter().add(
            [settings.password, self._saved.token, *self._saved.cookies.values()]
        )
        if self._saved.has_credentials:
            _LOGGER.info("reusing the saved gateway session for %s", self._origin)

    # ------------------------------------------------------------------ public API

    @property
    def cooldown_remaining(self) -> float:
        """Seconds left in the 429 cool-down (0 when none)."""
        return max(0.0, self._saved.cooldown_until - self._clock())

    @property
    def login_blocked_until(self) -> float:
        """Epoch seconds before which no login will be sent (0 when a login could go now):
        a refused login's back-off, or the end of the hourly login cap."""
        now = self._clock()
        blocked = self._login_blocked_until if self._login_error is not None else 0.0
        attempts = self._recent_logins(now)
        if len(attempts) >= self._settings.max_logins_per_hour:
            blocked = max(blocked, attempts[-self._settings.max_logins_per_hour] + LOGIN_WINDOW)
        return blocked if blocked > now else 0.0

    @property
    def logins_last_hour(self) -> int:
        """Login attempts in the last hour, this process's and earlier ones'."""
        return len(self._recent_logins(self._clock()))

    @property
    def refused_paths(self) -> frozenset[str]:
        """Paths refused (401/403) even after a fresh login."""
        return frozenset(self._refused)

    @property
    def missing_endpoints(self) -> frozenset[str]:
        """Paths that answered 404 on the current firmware."""
        return frozenset(self._missing)

    def forget_missing(self) -> None:
        """Ask again for endpoints that answered 404 (call when the firmware changes)."""
        self._missing.clear()

    def login(self) -> None:
        """Log in now and save the session (normally done on demand)."""
        with self._lock:
            self._login()

    def get_json(self, path: str) -> Any:
        """GET ``path`` and return its parsed JSON body."""
        response = self._get(path)
        return self._parse_json(path, response)

    def get_bytes(self, path: str) -> bytes:
        """GET ``path`` and return its raw body."""
        return self._get(path).content

    def get_status(self) -> dict[str, Any]:
        """GET /api/status (no login needed) and remember the firmware and DIN."""
        status = self.get_json(STATUS_PATH)
        if not isinstance(status, dict) or not isinstance(status.get("version"), str):
            raise UnexpectedResponse("/api/status has no version string", path=STATUS_PATH)
        self._note_identity(status)
        return status

    def get_vitals(self) -> dict[str, dict[str, object]]:
        """GET /api/devices/vitals, decoded to pyPowerwall's dict; never asked on >= 23.44."""
        return self.read_vitals()[1]

    def read_vitals(self) -> tuple[bytes, dict[str, dict[str, object]]]:
        """The raw protobuf body of /api/devices/vitals and its decoded dict."""
        if self.firmware is None:
            self.get_status()
        if self.firmware is not None and not vitals_supported(self.firmware):
            self._missing.add(VITALS_PATH)
            raise EndpointNotFound(
                f"{VITALS_PATH} does not exist on firmware {self.firmware}", path=VITALS_PATH
            )
        raw = self.get_bytes(VITALS_PATH)
        return raw, decode_vitals(raw)

    def post_tedapi(self, body: bytes) -> bytes:
        """POST a signed ``RoutableMessage`` to /tedapi/v1r; the gateway's answer body.

        No login and no session cookie: the RSA signature is the credential (a gateway
        answers a refused signature with HTTP 200 and a fault inside, which the caller
        reads). Like every request it is not sent during a 429 cool-down (RateLimited), and
        a 429 it gets starts one; other failures are the usual typed errors.
        """
        with self._lock:
            self._refuse_during_cooldown(TEDAPI_PATH)
            response = self._send(
                "POST",
                TEDAPI_PATH,
                authenticated=False,
                data=body,
                content_type="application/octet-stream",
            )
            self._raise_for_status(TEDAPI_PATH, response)
            return bytes(response.content)

    def logout(self) -> None:
        """End the session on the gateway and forget it locally."""
        with self._lock:
            if self._saved.has_credentials and not self.cooldown_remaining:
                try:
                    self._send("GET", LOGOUT_PATH, authenticated=True)
                except GatewayError as exc:
                    _LOGGER.debug("logout failed: %s", exc)
            self._saved.cookies, self._saved.token = {}, ""
            self._store.save(self._origin, self._saved)

    def close(self) -> None:
        """Close the kept-alive connection (the saved session stays valid)."""
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _get(self, path: str) -> requests.Response:
        with self._lock:
            self._refuse_during_cooldown(path)
            if path in self._missing:
                raise EndpointNotFound(f"{path} answered 404 on this firmware", path=path)
            authenticated = path not in OPEN_PATHS
            if authenticated and not self._saved.has_credentials:
                self._login()
            response = self._send("GET", path, authenticated=authenticated)
            if response.status_code in (401, 403) and authenticated:
                refused_at = self._refused.get(path)
                if refused_at is not None and self._clock() - refused_at < REFUSED_RELOGIN_AFTER:
                    # A login did not cure this path: another one would only cost a login.
                    raise SessionRejected(
                        f"{path}: HTTP {response.status_code}, refused even after a fresh login "
                        "(not logging in again for this path)",
                        path=path,
                    )
                _LOGGER.info(
                    "gateway refused our session on %s (HTTP %s): logging in again",
                    path,
                    response.status_code,
                )
                self._login()
                response = self._send("GET", path, authenticated=True)
                if response.status_code in (401, 403):
                    if path not in self._refused:
                        _LOGGER.debug(
                            "%s is refused (HTTP %s) even after a fresh login: no more logins "
                            "for it; the other paths go on with this session",
                            path,
                            response.status_code,
                        )
                    self._refused[path] = self._clock()
                    raise SessionRejected(
                        f"{path}: HTTP {response.status_code} even after a fresh login "
                        "(does the customer account lack access?)",
                        path=path,
                    )
            self._raise_for_status(path, response)
            if self._refused.pop(path, None) is not None:
                _LOGGER.debug("%s is no longer refused", path)
            return response

    def _login(self) -> None:
        now = self._clock()
        if self._login_error is not None and now < self._login_blocked_until:
            # Repeating a refused login is what locks users out: fail fast instead.
            raise type(self._login_error)(
                f"{self._login_error} (not retrying for another "
                f"{self._login_blocked_until - now:.0f} s)",
                path=LOGIN_PATH,
            )
        self._refuse_during_cooldown(LOGIN_PATH)
        self._refuse_over_login_cap(now)
        body = {
            "username": "customer",
            "password": self._settings.password,
            "email": self._settings.email,
            "clientInfo": {"timezone": self._settings.timezone},
        }
        # Counted before it is sent, so a crash in the middle cannot lose the count.
        self._saved.login_attempts = [*self._recent_logins(now), now]
        self._store.save(self._origin, self._saved)
        try:
            response = self._send("POST", LOGIN_PATH, authenticated=False, json_body=body)
        except GatewayUnreachable:
            # No answer, so the gateway counted nothing: an outage must not use up the cap.
            if now in self._saved.login_attempts:
                self._saved.login_attempts.remove(now)
                self._store.save(self._origin, self._saved)
            raise
        self.logins += 1
        if response.status_code in (401, 403):
            error = self._login_failure(response)
            self._login_error = error
            self._login_blocked_until = now + self._settings.rate_limit_cooldown
            self._saved.login_blocked_until = self._login_blocked_until
            self._saved.login_error = type(error).__name__
            self._saved.login_error_message = str(error)
            self._saved.login_key = self._login_key
            self._store.save(self._origin, self._saved)
            raise error
        self._raise_for_status(LOGIN_PATH, response)
        cookies = _set_cookies(response)
        token = ""
        try:
            payload = response.json()
            if isinstance(payload, dict) and isinstance(payload.get("token"), str):
                token = payload["token"]
        except ValueError:
            pass
        token = token or cookies.get("AuthCookie", "")
        if self._settings.auth_mode == "cookie" and "AuthCookie" not in cookies:
            raise UnexpectedResponse("login answered 200 without an AuthCookie", path=LOGIN_PATH)
        if not token and not cookies:
            raise UnexpectedResponse("login answered 200 without a token", path=LOGIN_PATH)
        redaction_filter().add([token, *cookies.values()])
        self._login_error = None
        self._saved.login_blocked_until = 0.0
        self._saved.login_error = self._saved.login_error_message = self._saved.login_key = ""
        self._saved.cookies = {
            k: v for k, v in cookies.items() if k in ("AuthCookie", "UserRecord")
        }
        self._saved.token = token
        self._saved.login_time = self._clock()
        self._store.save(self._origin, self._saved)
        _LOGGER.info("logged in to the gateway at %s", self._origin)

    def _recent_logins(self, now: float) -> list[float]:
        """Login attempts within the last hour, oldest first."""
        return sorted(t for t in self._saved.login_attempts if now - LOGIN_WINDOW < t <= now)

    def _refuse_over_login_cap(self, now: float) -> None:
        attempts = self._recent_logins(now)
        cap = self._settings.max_logins_per_hour
        if len(attempts) < cap:
            self._capped_logged = False
            return
        until = attempts[-cap] + LOGIN_WINDOW
        if not self._capped_logged:
            self._capped_logged = True
            _LOGGER.warning(
                "login cap reached: %d gateway logins in the last hour "
                "(gateway.max_logins_per_hour); no login before %s",
                len(attempts),
                time.strftime("%H:%M:%S", time.localtime(until)),
            )
        raise LoginCapReached(
            f"login not sent: {len(attempts)} logins in the last hour reached the cap of {cap} "
            f"(next possible in {until - now:.0f} s)",
            until=until,
            path=LOGIN_PATH,
        )

    def _restore_login_block(self) -> None:
        """A refused login's back-off, saved by an earlier process, still holds (unless the
        credentials changed since: a corrected password may log in at once)."""
        saved = self._saved
        remaining = saved.login_blocked_until - self._clock()
        cls = _LOGIN_ERRORS.get(saved.login_error)
        if remaining <= 0 or cls is None or saved.login_key != self._login_key:
            return
        self._login_error = cls(
            saved.login_error_message or "gateway login refused", path=LOGIN_PATH
        )
        self._login_blocked_until = saved.login_blocked_until
        _LOGGER.warning(
            "the last gateway login was refused (%s): not logging in for another %.0f s",
            saved.login_error,
            remaining,
        )

    def _login_failure(self, response: requests.Response) -> GatewayAuthError:
        detail = _error_detail(response)
        lowered = detail.lower()
        if "default password" in lowered:
            return DefaultPasswordNotSupported(
                "gateway login refused: the default password is not supported on this firmware; "
                "set a customer password in the gateway's web page",
                path=LOGIN_PATH,
            )
        if "bad credentials" in lowered or "invalid credentials" in lowered:
            return BadCredentials(
                "gateway login refused: bad credentials (check PW_PASSWORD)", path=LOGIN_PATH
            )
        return GatewayAuthError(
            f"gateway login refused: HTTP {response.status_code} {detail}".rstrip(),
            path=LOGIN_PATH,
        )

    def _send(
        self,
        method: str,
        path: str,
        *,
        authenticated: bool,
        json_body: dict[str, Any] | None = None,
        data: bytes | None = None,
        content_type: str | None = None,
    ) -> requests.Response:
        headers: dict[str, str] = {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        if authenticated:
            if self._settings.auth_mode == "token" and self._saved.token:
                headers["Authorization"] = f"Bearer {self._saved.token}"
            elif self._saved.cookies:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self._saved.cookies.items())
        http = self._session()
        try:
            response = http.request(
                method,
                self._origin + path,
                headers=headers,
                json=json_body,
                data=data,
                timeout=(self._settings.connect_timeout, self._settings.read_timeout),
                allow_redirects=False,
            )
            _ = response.content  # read the body inside the timeout handling
        except requests.exceptions.SSLError as exc:
            if "fingerprint" in str(exc).lower():
                raise TLSFingerprintMismatch(
                    f"the certificate at {self._origin} does not match the pinned fingerprint",
                    path=path,
                ) from None
            raise GatewayUnreachable(f"TLS failure talking to {self._origin}", path=path) from None
        except (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout) as exc:
            kind = "connect" if isinstance(exc, requests.exceptions.ConnectTimeout) else "read"
            raise GatewayTimeout(f"{path}: {kind} timeout from {self._origin}", path=path) from None
        except requests.exceptions.RequestException as exc:
            raise GatewayUnreachable(
                f"{path}: cannot reach {self._origin} ({_root_cause(exc)})", path=path
            ) from None
        finally:
            http.cookies.clear()  # cookies live in SavedSession, never in requests' jar
        return response

    def _session(self) -> requests.Session:
        if self._http is None:
            self._http = new_session(self._pinned_fingerprint())
        return self._http

    def _pinned_fingerprint(self) -> str:
        wanted = self._settings.tls_fingerprint
        if wanted != "tofu":
            return wanted
        if not self._saved.fingerprint:
            try:
                fingerprint = fetch_fingerprint(
                    self._settings.host, self._settings.port, self._settings.connect_timeout
                )
            except OSError as exc:
                raise GatewayUnreachable(
                    f"cannot reach {self._origin} to learn its certificate ({_root_cause(exc)})"
                ) from None
            self._saved.fingerprint = fingerprint
            self._store.save(self._origin, self._saved)
            _LOGGER.warning("pinned the gateway certificate on first use: sha256 %s", fingerprint)
        return self._saved.fingerprint

    def _refuse_during_cooldown(self, path: str) -> None:
        remaining = self.cooldown_remaining
        if remaining > 0:
            raise RateLimited(
                f"{path}: not sent, gateway rate-limit cool-down has {remaining:.0f} s left",
                cooldown_until=self._saved.cooldown_until,
                path=path,
            )

    def _raise_for_status(self, path: str, response: requests.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        if status == 429:
            cooldown = self._settings.rate_limit_cooldown
            wait = self._retry_after(response)
            if wait is not None:
                cooldown = max(cooldown, wait)
            self._saved.cooldown_until = self._clock() + cooldown
            self._store.save(self._origin, self._saved)
            _LOGGER.warning(
                "gateway rate limit (HTTP 429) on %s: sending nothing for %.0f s", path, cooldown
            )
            raise RateLimited(
                f"{path}: gateway rate limit reached (HTTP 429); cool-down {cooldown:.0f} s",
                cooldown_until=self._saved.cooldown_until,
                path=path,
            )
        if status == 404:
            if path not in self._missing:
                _LOGGER.info("%s answered 404: not asking again on this firmware", path)
            self._missing.add(path)
            raise EndpointNotFound(f"{path} answered 404 on this firmware", path=path)
        if status == 502 and not response.content.strip():
            raise SiteControllerStopped(
                f"{path}: HTTP 502 with an empty body (the site controller is stopped)", path=path
            )
        if status in (401, 403):
            raise GatewayAuthError(f"{path}: HTTP {status} {_error_detail(response)}", path=path)
        wait = self._retry_after(response)
        cls = GatewayServerError if status >= 500 else GatewayHTTPError
        detail = f"{path}: HTTP {status} {_error_detail(response)}".rstrip()
        if wait is not None:
            detail += f" (Retry-After {wait:.0f} s)"
        raise cls(detail, status=status, path=path, retry_after=wait)

    def _retry_after(self, response: requests.Response) -> float | None:
        """The answer's ``Retry-After`` in seconds, at most :data:`MAX_RETRY_AFTER`."""
        return retry_after(response.headers.get("Retry-After"), self._clock(), cap=MAX_RETRY_AFTER)

    def _parse_json(self, path: str, response: requests.Response) -> Any:
        try:
            return json.loads(response.content, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError):
            raise UnexpectedResponse(
                f"{path}: the body is not JSON ({len(response.content)} bytes, "
                f"content-type {response.headers.get('Content-Type', 'none')!r})",
                path=path,
            ) from None

    def _note_identity(self, status: dict[str, Any]) -> None:
        firmware = parse_firmware(status["version"]).release
        if self.firmware is not None and firmware != self.firmware:
            _LOGGER.warning("gateway firmware changed from %s to %s", self.firmware, firmware)
            self.forget_missing()
        self.firmware = firmware
        din = status.get("din")
        self.din = din if isinstance(din, str) else self.din


def _credentials_key(settings: GatewaySettings) -> str:
    """A short tag telling whether the credentials changed since a login was refused.

    Eight hex digits of a salted hash: enough to notice a corrected password, far too few
    to recover one (and it sits in the 0600 session file next to the session cookie).
    """
    text = f"pwbus-login-key\0{settings.base_url}\0{settings.email}\0{settings.password}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON; a body with them is garbage we must not pass on."""
    raise ValueError(f"{name} is not valid JSON")


def _set_cookies(response: requests.Response) -> dict[str, str]:
    """Cookies from the Set-Cookie headers, parsed without a cookie jar's domain rules."""
    cookies: dict[str, str] = {}
    headers = response.raw.headers.getlist("Set-Cookie") if response.raw is not None else []
    for header in headers:
        jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
        try:
            jar.load(header)
        except http.cookies.CookieError:
            continue
        for name, morsel in jar.items():
            cookies[name] = morsel.value
    return cookies


def _error_detail(response: requests.Response) -> str:
    """The gateway's ``error`` text from its JSON error body, if any (never secrets)."""
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return ""
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("error", "message") if body.get(k)]
        return ": ".join(parts)[:200]
    return ""


def _root_cause(exc: BaseException) -> str:
    """A short reason from the innermost exception (connection refused, reset, ...)."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        nxt = seen.__cause__ or seen.__context__
        if nxt is None or nxt is seen:
            break
        seen = nxt
    text = str(seen) or type(seen).__name__
    for marker in (
        "Connection refused",
        "Connection reset",
        "Name or service not known",
        "No route to host",
        "Remote end closed",
        "timed out",
    ):
        if marker.lower() in str(exc).lower() or marker.lower() in text.lower():
            return marker.lower()
    return type(seen).__name__
