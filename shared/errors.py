"""The project's exception hierarchy.

Foreign exceptions (requests, urllib3, ssl, pika, mysql) are translated into these at one
boundary each, so callers decide what to do from the *kind* of failure, never from a
library's exception type or an error string. Every message is a single line that is safe
to log: no password, token or cookie ever appears in one.
"""

from __future__ import annotations


class PwbusError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(PwbusError):
    """A setting is missing or invalid; the message names the key and what is wrong."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"configuration: {key}: {problem}")


# --------------------------------------------------------------------------- gateway


class GatewayError(PwbusError):
    """Anything that went wrong talking to the Tesla Energy Gateway."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class GatewayUnreachable(GatewayError):
    """No HTTP answer: connection refused, DNS failure, reset, TLS failure or timeout."""


class GatewayTimeout(GatewayUnreachable):
    """The connect or read timeout expired."""


class TLSFingerprintMismatch(GatewayUnreachable):
    """The gateway's certificate does not match the pinned fingerprint.

    Treated as unreachable (we refuse to talk), but kept apart so it can be reported
    loudly: it means another device answers at the gateway's address.
    """


class GatewayAuthError(GatewayError):
    """The gateway refused our credentials or our session."""


class BadCredentials(GatewayAuthError):
    """Login answered 401 "bad credentials": the customer password is wrong."""


class DefaultPasswordNotSupported(GatewayAuthError):
    """Login answered "default password not supported": set a custom password on the gateway."""


class SessionRejected(GatewayAuthError):
    """A data call was refused (401/403) even straight after a fresh login.

    The path is *refused*: the client does not log in again for it (a login does not cure
    it) while other paths go on with the same session.
    """


class LoginCapReached(GatewayError):
    """A login is needed, but ``gateway.max_logins_per_hour`` were already made in the last
    hour (counted across restarts). Nothing was sent; no login before ``until`` (epoch s)."""

    def __init__(self, message: str, *, until: float, path: str | None = None) -> None:
        self.until = until
        super().__init__(message, path=path)


class RateLimited(GatewayError):
    """The gateway answered 429, or we are inside the cool-down that follows one.

    While ``cooldown_until`` (epoch seconds) lies in the future the client sends nothing.
    """

    def __init__(self, message: str, *, cooldown_until: float, path: str | None = None) -> None:
        self.cooldown_until = cooldown_until
        super().__init__(message, path=path)


class EndpointNotFound(GatewayError):
    """The endpoint answered 404 on this firmware (e.g. vitals from 23.44 on).

    Remembered by the client and never confused with an authentication failure.
    """


class SiteControllerStopped(GatewayError):
    """HTTP 502 with an empty body: the gateway's site controller ("sitemaster") is stopped."""


class UnexpectedResponse(GatewayError):
    """The gateway answered, but not in a shape we understand (the API may have changed)."""


class GatewayHTTPError(GatewayError):
    """Any other HTTP error status, with the status kept for the caller.

    ``retry_after`` is the gateway's ``Retry-After`` in seconds from when the answer came
    (a date is converted), or None when it sent none.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        path: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.retry_after = retry_after
        super().__init__(message, path=path)


class GatewayServerError(GatewayHTTPError):
    """HTTP 5xx (other than the site controller's empty 502): the gateway is busy or broken."""


# --------------------------------------------------------------------------- bus


class MalformedMessage(PwbusError):
    """A bus message that does not follow the contract (bad JSON, wrong types, missing field)."""


class BusUnavailable(PwbusError):
    """The broker cannot be reached, does not answer, or dropped the connection.

    Transient: the client keeps what it has and reconnects with a back-off. Whatever pika or
    the socket under it raises is this, unless it is a :class:`BrokerRefused`.
    """


class BrokerRefused(ConfigError):
    """The broker answered and refused us: the login, the virtual host or a permission.

    A configuration error, not an outage: retrying with the same settings would fail the
    same way forever, so the process ends (exit status 2) and the stack stops.
    """


# --------------------------------------------------------------------------- database


class DatabaseUnavailable(PwbusError):
    """The database cannot be reached or dropped the connection (down, restarting, timeout).

    Transient: the caller keeps what it has and tries again later.
    """


class DatabaseError(PwbusError):
    """The database answered, but refused what we asked (bad login, unknown database,
    a value it would not store, an SQL error). Retrying the same thing will not help."""


# --------------------------------------------------------------------------- signed TEDAPI


class TedapiError(PwbusError):
    """A signed TEDAPI ``v1r`` command could not be built, signed, sent or understood."""


class TedapiKeyError(TedapiError):
    """The RSA key file is missing, unreadable, not RSA or too small.

    The message names the file, never its content.
    """


class TedapiDecodeError(TedapiError):
    """Bytes that are not a ``RoutableMessage``/``MessageEnvelope`` we understand."""


class TedapiFault(TedapiError):
    """The gateway refused the signed message itself (``signed_message_status``).

    ``fault`` is the ``MessageFaultE`` number (3 unknown key, 5 invalid signature,
    12 wrong personalization (DIN), 17 time expired, ...), ``name`` its short name. The
    simulator raises it from verification too, so both sides speak the same numbers.
    """

    def __init__(self, fault: int, name: str) -> None:
        self.fault = fault
        self.name = name
        super().__init__(f"gateway refused the signed message: {name} (fault {fault})")


class TedapiKeyNotVerified(TedapiError):
    """The key is registered with the gateway but not yet verified (the switch toggle).

    The gateway answers "v1r: client authorization not verified" instead of an envelope.
    """


class TedapiRefused(TedapiError):
    """The gateway accepted the signature but refused the command (an ``error_response``).

    ``code`` is the ``google.rpc.Status`` code, ``detail`` the gateway's message.
    """

    def __init__(self, code: int, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"gateway refused the command: {detail or 'no message'} (code {code})")


class RelayError(PwbusError):
    """A signed command sent over the bus (``control.tedapi``) got no answer from the gateway."""


class RelayRefused(RelayError):
    """The poller answered, but did not pass the command on (or the gateway did not answer it).

    ``reason`` is the reply's refusal reason (``cooldown``, ``expired``, ``unreachable``...),
    ``retry_at`` (Unix seconds) when the poller says when to try again (a 429 cool-down).
    """

    def __init__(self, reason: str, detail: str, retry_at: float | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.retry_at = retry_at
        super().__init__(f"the poller did not relay the command: {reason} ({detail})")


class RelayUnavailable(RelayError):
    """No poller takes commands for the gateway (none bound its control key), or no answer
    came in time. Transient: try again later."""


# --------------------------------------------------------------------------- the LED display


class DeviceUnavailable(PwbusError):
    """The LED display cannot be driven: its library is not installed, SPI is off, the
    emulator's window cannot open, or the PNG folder cannot be written (exit status 1).
    Also ``pwbus gui``'s window that cannot open (no ``$DISPLAY``, the X server refuses)."""


# --------------------------------------------------------------------------- Octopus


class OctopusError(PwbusError):
    """Anything that went wrong talking to the Octopus Energy (Kraken) GraphQL API.

    ``code`` is Kraken's ``KT-CT-NNNN`` when the answer carried one. The client translates
    every failure (requests, HTTP statuses, GraphQL ``errors``) into one of these in one
    place, :mod:`powerwall_bus.shared.octopus.transport`::

        OctopusError
        +-- OctopusUnreachable      no answer, a timeout, HTTP 5xx: try again later
        +-- OctopusRateLimited      KT-CT-1199, HTTP 429, a WAF's HTML 403: wait ``until``
        +-- OctopusAuthError        the API key (or a fresh token) is refused
        |   +-- OctopusTokenExpired     KT-CT-1124/1120: refresh, retry once (internal)
        |   +-- OctopusRefreshRejected  KT-CT-1134/1135: log in with the key (internal)
        +-- OctopusDeviceError      no usable device, or KT-CT-4301: discover again
        +-- OctopusApiError         any other GraphQL error or an answer we cannot read
    """

    def __init__(self, message: str, *, code: str | None = None) -> None:
        self.code = code
        super().__init__(message)


class OctopusUnreachable(OctopusError):
    """No usable answer: connection refused, DNS, TLS, timeout, or an HTTP 5xx."""


class OctopusRateLimited(OctopusError):
    """Octopus asks us to slow down: nothing is sent before ``until`` (epoch seconds).

    A 403 that is not GraphQL (an HTML block page from the CDN in front of the API) is
    rate limiting too, never a refused key: treating it as one would make users rotate a
    key that is fine.
    """

    def __init__(self, message: str, *, until: float, code: str | None = None) -> None:
        self.until = until
        super().__init__(message, code=code)


class OctopusAuthError(OctopusError):
    """The API key was refused, or a fresh token was refused: a configuration problem."""


class OctopusTokenExpired(OctopusAuthError):
    """The access token expired (KT-CT-1124, KT-CT-1120); the client refreshes and retries."""


class OctopusRefreshRejected(OctopusAuthError):
    """The refresh token expired or is unknown (KT-CT-1134/1135); the client uses the key."""


class OctopusDeviceError(OctopusError):
    """No smart-flex device to ask about (none, several, or KT-CT-4301 for the one we had)."""


class OctopusApiError(OctopusError):
    """Octopus answered with an error we do not handle, or in a shape we cannot read.

    ``unknown_field`` is True when the API says it has no such query (GraphQL validation):
    the client then falls back to the legacy ``plannedDispatches``.
    """

    def __init__(
        self, message: str, *, code: str | None = None, unknown_field: bool = False
    ) -> None:
        self.unknown_field = unknown_field
        super().__init__(message, code=code)


# --------------------------------------------------------------------------- Tesla cloud


class CloudError(PwbusError):
    """Anything that went wrong talking to Tesla's cloud (Owner API or Fleet API).

    ``status`` is the HTTP status when there was an answer, ``error`` Tesla's short ``error``
    string (never a token). The client translates every failure into one of these in one
    place, :mod:`powerwall_bus.shared.tesla_cloud.transport`::

        CloudError
        +-- CloudUnreachable      no answer, a timeout, HTTP 5xx: try again later
        +-- CloudRateLimited      HTTP 429: nothing is sent before ``until``
        +-- CloudAuthError        401 invalid token, a refused refresh, no tokens: log in again
        |   +-- CloudTokenExpired     401 token expired: refresh, retry once (internal)
        +-- CloudForbidden        402 payment required, 403 missing scopes: the account's setup
        +-- CloudWrongRegion      421: the account lives at another Fleet API base URL
        +-- CloudNotFound         404, or no (single) energy site to act on
        +-- CloudCommandRefused   400/4xx, or HTTP 200 with an application error code
    """

    def __init__(self, message: str, *, status: int | None = None, error: str = "") -> None:
        self.status = status
        self.error = error
        super().__init__(message)


class CloudUnreachable(CloudError):
    """No usable answer: connection refused, DNS, TLS, timeout, or an HTTP 5xx."""


class CloudRateLimited(CloudError):
    """HTTP 429: nothing is sent before ``until`` (epoch seconds, from Retry-After)."""

    def __init__(self, message: str, *, until: float, status: int | None = 429) -> None:
        self.until = until
        super().__init__(message, status=status, error="rate limited")


class CloudAuthError(CloudError):
    """The tokens are missing, invalid, or the refresh token was refused: log in again.

    An expired access token is not this: the client refreshes it and retries once by itself.
    """


class CloudTokenExpired(CloudAuthError):
    """401 ``token expired``: the client refreshes the access token and retries once
    (internal; callers see it only when the retry is refused the same way)."""


class CloudLoginRefused(CloudAuthError):
    """``pwbus cloud login`` will not trade this callback for tokens: not a callback URL of
    our request, a ``state`` that is not ours (a forged or stale login), another issuer, or
    Tesla's own ``error`` in it. The user's input is wrong, so the command exits 2."""


class CloudTokenInvalid(CloudAuthError):
    """A token that fails verification: not a JWT, another issuer or audience, expired,
    or a signature that none of the issuer's keys made."""


class CloudForbidden(CloudError):
    """402 (the Fleet API application has no billing set up) or 403 (the token lacks a
    scope, e.g. ``energy_cmds``): fixed in the Tesla developer or account settings."""


class CloudWrongRegion(CloudError):
    """421: the account is served by another region's Fleet API; ``base_url`` names it when
    Tesla's answer did."""

    def __init__(self, message: str, *, base_url: str = "", status: int | None = 421) -> None:
        self.base_url = base_url
        super().__init__(message, status=status, error="wrong region")


class CloudNotFound(CloudError):
    """404, or the account has no energy site to act on (or several and none was chosen)."""


class CloudCommandRefused(CloudError):
    """Tesla took the request and refused it: 400/4xx, or HTTP 200 with ``response.code``
    400 or more (the application's own failure inside a success status)."""


class PairingFailed(PwbusError):
    """``pwbus pair``: the key was not verified in time (no switch toggle, or the gateway's
    window closed), or the key to act on is unknown or ambiguous."""


# --------------------------------------------------------------------------- tariff


class TariffError(PwbusError):
    """An Octopus tariff cannot become a valid Tesla tariff (its rates miss the day, its
    type needs hours Octopus does not publish, the result fails the checks, the site does
    not show it after the upload); the message says which and what to do."""
