"""A fake Tesla cloud (Owner API and Fleet API) over a real socket, in front of the simulator.

It answers what :mod:`powerwall_bus.shared.tesla_cloud` sends, the way the facts say the real
cloud does (research note §4, §5.3, §6 and §7), and relays signed messages to a running
gateway simulator over HTTPS, so a Max Backup sent through the cloud holds the simulated
battery exactly like one sent over the LAN:

* ``POST /oauth2/v3/token`` (form, ``grant_type=refresh_token``): single-use refresh tokens
  (a used one answers 401 ``login_required``), a new pair with ``expires_in`` every time.
* The login (``pwbus cloud login``): ``GET /oauth2/v3/authorize`` (authorization code +
  PKCE S256) logs the fake user in at once and answers 302 to ``redirect_uri`` with ``code``,
  ``state`` and ``issuer``, as Tesla's callback does; ``grant_type=authorization_code`` trades
  a code (single-use, 5 minutes, only with the verifier of its challenge and the same
  ``redirect_uri``) for a pair whose access token is an RS256 JWT (``iss`` the fake's
  ``/oauth2/v3``, ``aud`` its base URL and ``/oauth2/v3/userinfo``, ``exp``, ``scp``), and its
  refreshes stay JWTs; ``GET /oauth2/v3/discovery/keys`` is the JWKS of the signing key.
* ``sites``: more energy sites listed by ``products`` (only ``site_id`` answers the rest).
* Bearer tokens: none or unknown answers 401 ``invalid bearer token``, an expired one 401
  ``token expired (401)``; reads need the ``energy_device_data`` scope, writes
  ``energy_cmds`` (403 ``Unauthorized missing scopes``).
* ``GET /api/1/users/region``, ``/api/1/products`` (the site and a car), ``.../site_info``.
* ``POST .../backup`` with the reserve rules of recent firmware, chosen by ``backup_rule``:
  ``accept`` (0-100), ``clamp80`` (above 80 becomes 80, silently, even 100) or ``reject81_99``
  (81-99 refused, 100 taken); ``POST .../operation``.
* ``POST .../command``: ``grpc_command`` ``add_authorized_client_request`` registers a key
  with the gateway as pending (``/_sim/toggle``, the Powerwall switch, verifies the keys
  registered within ``pair_window`` seconds; later ones list as
  ``PENDING_VERIFICATION_TIMEOUT``), ``list_authorized_clients_request`` lists the gateway's
  keys; ``grpc_signed_command`` relays a signed message.
* ``POST .../time_of_use_settings``: the tariff, shown back by ``site_info``
  (:mod:`~powerwall_bus.simulator.cloud_tariff`).
* ``POST .../device_command``: the Owner API relay. The signed ``RoutableMessage`` is
  checked with :func:`~powerwall_bus.shared.tedapi.responder.verify_signed` against the
  gateway's keys (a refused one never reaches the gateway) and then posted to the gateway's
  ``/tedapi/v1r``; the answer is the reply envelope (see
  :mod:`powerwall_bus.shared.tesla_cloud.relay` for the shapes).

Control under ``/_sim/`` (never counted): ``GET counts``, ``GET state``, ``POST reset``,
``POST faults`` (``{"set": {NAME: times}, "clear": [...]}``, times -1: until cleared),
``POST tokens`` (issue a pair, ``{"scopes": [...]}`` optional), ``POST tokens/expire``,
``POST backup_rule`` (``{"rule": ...}``), ``POST toggle``. Faults answer the error bodies of
the facts file: ``token_expired`` 401, ``invalid_token`` 401, ``payment_required`` 402,
``missing_scopes`` 403, ``wrong_region`` 421, ``rate_limited`` 429 (with ``Retry-After``),
``offline`` 408, ``server_error`` 500, ``app_error`` (HTTP 200, ``response.code`` 400),
``refresh_invalid`` (the token endpoint refuses the refresh token).
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from powerwall_bus.shared.errors import TedapiDecodeError, TedapiError, TedapiFault, TedapiKeyError
from powerwall_bus.shared.tedapi import responder
from powerwall_bus.shared.tedapi.cloud import routable_message_from_body
from powerwall_bus.shared.tedapi.commands import NOT_VERIFIED_TEXT
from powerwall_bus.shared.tedapi.keys import fingerprint, public_key_from_der, public_pem
from powerwall_bus.shared.tesla_cloud.relay import relay_answer
from powerwall_bus.simulator.cloud_tariff import TariffStore
from powerwall_bus.simulator.counted_faults import CountedFaults
from powerwall_bus.simulator.fake_server import FakeServerRunner

_LOGGER = logging.getLogger(__name__)

CONTROL_PREFIX = "/_sim/"
TOKEN_PATH = "/oauth2/v3/token"
AUTHORIZE_PATH = "/oauth2/v3/authorize"
JWKS_PATH = "/oauth2/v3/discovery/keys"
CODE_TTL = 300.0  # an authorization code works once, within 5 minutes
JWT_KID = "fake-cloud-1"
DEFAULT_SCOPES = ("openid", "offline_access", "energy_device_data", "energy_cmds")
BACKUP_RULES = ("accept", "clamp80", "reject81_99")
OPERATION_MODES = ("self_consumption", "autonomous", "backup")
PAIR_WINDOW = 540.0  # about 9 minutes to toggle the switch (facts §5.3)
STATE_PENDING, STATE_TIMEOUT, STATE_VERIFIED = 1, 2, 3

#: fault -> (HTTP status, Tesla's ``error`` string): the facts file's error bodies.
FAULTS: dict[str, tuple[int, str]] = {
    "token_expired": (401, "token expired (401)"),
    "invalid_token": (401, "invalid bearer token"),
    "payment_required": (402, "payment required"),
    "missing_scopes": (403, "Unauthorized missing scopes"),
    "wrong_region": (421, "user out of region, use base URL: {base}"),
    "rate_limited": (429, "rate limited"),
    "offline": (408, "device offline"),
    "server_error": (500, "internal server error"),
    "app_error": (200, ""),
    "refresh_invalid": (401, "login_required"),
}


def _error(status: int, error: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"response": None, "error": error, "error_description": ""}
    return web.json_response(body, status=status, headers=headers)


@dataclass
class CloudCounts:
    """What reached the fake (control calls excluded)."""

    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    refreshes: int = 0
    relayed: int = 0
    refused: collections.Counter[str] = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "total": sum(self.requests.values()),
            "refreshes": self.refreshes,
            "relayed": self.relayed,
            "refused": dict(self.refused),
        }


@dataclass
class Grant:
    """One issued token: when it expires and what it may do."""

    expires: float
    scopes: tuple[str, ...]
    base: str = ""  # the fake's base URL when its access tokens are JWTs (a login's grants)


@dataclass
class AuthorizationCode:
    """A code the authorize endpoint handed out, and what its exchange must present."""

    challenge: str
    redirect_uri: str
    client_id: str
    scopes: tuple[str, ...]
    expires: float


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class FakeCloud:
    """The fake's state and its aiohttp application; ``gateway_url`` is the simulator's
    HTTPS base URL (its self-signed certificate is accepted: both are local fakes)."""

    def __init__(
        self,
        *,
        gateway_url: str,
        din: str,
        site_id: int = 1234567890123,
        client_id: str = "ownerapi",
        token_ttl: float = 28800.0,
        refresh_ttl: float = 90 * 86400.0,
        region: str = "eu",
        pair_window: float = PAIR_WINDOW,
        retry_after: int = 2,
        clock: Callable[[], float] = time.time,
        sites: tuple[tuple[int, str, str], ...] = (),
    ) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.din = din
        self.site_id = site_id
        self.client_id = client_id
        self.token_ttl = token_ttl
        self.refresh_ttl = refresh_ttl
        self.region = region
        self.pair_window = pair_window
        self.retry_after = retry_after
        self._clock = clock
        self.access: dict[str, Grant] = {}
        self.refresh: dict[str, Grant] = {}
        self.faults = CountedFaults(FAULTS)
        self.counts = CloudCounts()
        self.backup_rule = "accept"
        self.reserve = 20
        self.mode = "autonomous"
        self.registered: dict[bytes, float] = {}  # key -> when the cloud registered it
        #: Every reserve or mode written: (time, field, value), the Fleet API road's trace.
        self.history: list[tuple[float, str, object]] = []
        self._http: aiohttp.ClientSession | None = None
        self.tariff = TariffStore()  # time_of_use_settings (simulator/cloud_tariff.py)
        self.sites = sites  # more (site_id, DIN, name) for products
        self.codes: dict[str, AuthorizationCode] = {}
        self._jwt_key: rsa.RSAPrivateKey | None = None

    # ------------------------------------------------------------------ control

    @property
    def jwt_key(self) -> rsa.RSAPrivateKey:
        """The key that signs the login's JWTs (made on first use)."""
        if self._jwt_key is None:
            self._jwt_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._jwt_key

    def jwks(self) -> dict[str, Any]:
        """The JWKS document of :attr:`jwt_key`."""
        numbers = self.jwt_key.public_key().public_numbers()

        def number(value: int) -> str:
            return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))

        key = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": JWT_KID}
        return {"keys": [{**key, "n": number(numbers.n), "e": number(numbers.e)}]}

    def mint_jwt(self, claims: dict[str, Any], kid: str = JWT_KID) -> str:
        """An RS256 JWT of ``claims`` signed by :attr:`jwt_key`."""
        header = {"alg": "RS256", "typ": "JWT", "kid": kid}
        signed = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = self.jwt_key.sign(signed.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{_b64url(signature)}"

    def _access_jwt(self, base: str, scopes: tuple[str, ...], now: float) -> str:
        claims = {
            "iss": f"{base}/oauth2/v3",
            "aud": [f"{base}/", f"{base}/oauth2/v3/userinfo"],
            "sub": "00000000-0000-0000-0000-00000000fa6e",
            "scp": list(scopes),
            "iat": int(now),
            "exp": int(now + self.token_ttl),
            "jti": secrets.token_urlsafe(12),  # two tokens minted in one second still differ
        }
        return self.mint_jwt(claims)

    def issue(self, scopes: tuple[str, ...] = DEFAULT_SCOPES, *, base: str = "") -> dict[str, Any]:
        """A new token pair, as the token endpoint answers it (tests and demos log in here).
        With ``base`` (the fake's URL) the access token is a signed JWT, as after a login."""
        now = self._clock()
        if base:
            access = self._access_jwt(base, tuple(scopes), now)
        else:
            access = "fake." + secrets.token_urlsafe(32)
        refresh = "EU_" + secrets.token_urlsafe(32)
        self.access[access] = Grant(now + self.token_ttl, tuple(scopes), base)
        self.refresh[refresh] = Grant(now + self.refresh_ttl, tuple(scopes), base)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "id_token": "fake.id.token",
            "expires_in": int(self.token_ttl),
            "token_type": "Bearer",
        }

    def expire_tokens(self) -> None:
        """Every access token issued so far is now expired."""
        now = self._clock()
        for grant in self.access.values():
            grant.expires = min(grant.expires, now - 1)

    def set_faults(self, faults: dict[str, int], clear: list[str] | None = None) -> None:
        """Arm faults (name -> how many answers; -1 until cleared) and clear others."""
        self.faults.arm(faults, clear or ())

    def reset(self) -> None:
        """Counts and faults back to nothing; tokens, keys, reserve and mode stay."""
        self.counts = CloudCounts()
        self.faults.clear()

    # ------------------------------------------------------------------ the gateway

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=False), timeout=aiohttp.ClientTimeout(total=10)
            )
        return self._http

    async def close(self) -> None:
        """Close the connections to the gateway."""
        if self._http is not None:
            await self._http.close()

    async def _gateway_keys(self) -> list[dict[str, Any]]:
        url = self.gateway_url + "/_sim/pair?detail=1"
        async with self._session().get(url) as response:
            response.raise_for_status()
            document = await response.json()
        return list(document["paired"])

    async def _gateway_pair(self, der: bytes, description: str, *, verified: bool) -> None:
        payload = {
            "public_key": public_pem(public_key_from_der(der)),
            "verified": verified,
            "description": description,
        }
        async with self._session().post(self.gateway_url + "/_sim/pair", json=payload) as response:
            response.raise_for_status()

    async def _gateway_v1r(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/octet-stream"}
        url = self.gateway_url + "/tedapi/v1r"
        async with self._session().post(url, data=body, headers=headers) as response:
            response.raise_for_status()
            return await response.read()

    async def _keys(self) -> list[tuple[bytes, dict[str, Any]]]:
        return [(base64.b64decode(k["public_key"]), k) for k in await self._gateway_keys()]

    def _state(self, der: bytes, verified: bool) -> int:
        if verified:
            return STATE_VERIFIED
        registered = self.registered.get(der)
        if registered is not None and self._clock() - registered > self.pair_window:
            return STATE_TIMEOUT
        return STATE_PENDING

    async def toggle(self) -> list[str]:
        """A Powerwall switch toggled at the house: pending keys still in their window are
        verified. Returns their fingerprints."""
        verified = []
        for der, key in await self._keys():
            if not key["verified"] and self._state(der, False) == STATE_PENDING:
                await self._gateway_pair(der, str(key.get("description") or ""), verified=True)
                self.registered.pop(der, None)
                verified.append(fingerprint(der))
        _LOGGER.info("switch toggled: %d key(s) verified", len(verified))
        return verified

    # ------------------------------------------------------------------ HTTP

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._middleware], client_max_size=256 * 1024)
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_get(AUTHORIZE_PATH, self._authorize)
        app.router.add_get(JWKS_PATH, self._jwks)
        app.router.add_get("/api/1/users/region", self._region)
        app.router.add_get("/api/1/products", self._products)
        site = "/api/1/energy_sites/{site_id}/"
        app.router.add_get(site + "site_info", self._site_info)
        app.router.add_post(site + "backup", self._backup)
        app.router.add_post(site + "operation", self._operation)
        app.router.add_post(site + "command", self._command)
        app.router.add_post(site + "device_command", self._device_command)
        app.router.add_post(site + "time_of_use_settings", self.tariff.handle)
        app.router.add_get(CONTROL_PREFIX + "counts", self._control_counts)
        app.router.add_get(CONTROL_PREFIX + "state", self._control_state)
        app.router.add_post(CONTROL_PREFIX + "reset", self._control_reset)
        app.router.add_post(CONTROL_PREFIX + "faults", self.faults.handle_control)
        app.router.add_post(CONTROL_PREFIX + "tokens", self._control_tokens)
        app.router.add_post(CONTROL_PREFIX + "tokens/expire", self._control_expire)
        app.router.add_post(CONTROL_PREFIX + "backup_rule", self._control_backup_rule)
        app.router.add_post(CONTROL_PREFIX + "toggle", self._control_toggle)
        app.on_cleanup.append(lambda _app: self.close())
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await handler(request)
        route = request.match_info.route.resource
        name = route.canonical.rsplit("/", 1)[-1] if route is not None else request.path
        self.counts.requests[name] += 1
        response = await self._checked(request, handler)
        self.counts.statuses[response.status] += 1
        return response

    async def _checked(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in (TOKEN_PATH, AUTHORIZE_PATH, JWKS_PATH):
            return await handler(request)
        for name in ("rate_limited", "server_error", "offline", "wrong_region", "payment_required"):
            if self.faults.fire(name):
                return self._fault(request, name)
        header = request.headers.get("Authorization", "")
        grant = self.access.get(header[7:].strip()) if header.startswith("Bearer ") else None
        if grant is None or self.faults.fire("invalid_token"):
            return _error(401, FAULTS["invalid_token"][1])
        if self._clock() >= grant.expires or self.faults.fire("token_expired"):
            return _error(401, FAULTS["token_expired"][1])
        needed = "energy_device_data" if request.method == "GET" else "energy_cmds"
        if needed not in grant.scopes or self.faults.fire("missing_scopes"):
            return _error(403, FAULTS["missing_scopes"][1])
        site_id = request.match_info.get("site_id")
        if site_id is not None and site_id != str(self.site_id):
            return _error(404, "not_found")
        if self.faults.fire("app_error"):
            message = "fake: application-level failure returned with HTTP 200"
            return web.json_response({"response": {"code": 400, "message": message}})
        return await handler(request)

    def _fault(self, request: web.Request, name: str) -> web.Response:
        status, error = FAULTS[name]
        headers = {"Retry-After": str(self.retry_after)} if status == 429 else None
        base = f"{request.scheme}://{request.host}"
        return _error(status, error.format(base=base), headers)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") == "authorization_code":
            return self._code_exchange(request, {k: str(v) for k, v in form.items()})
        if form.get("grant_type") != "refresh_token":
            return _error(400, "unsupported_grant_type")
        if form.get("client_id") != self.client_id:
            return _error(401, "invalid_client")
        self.counts.refreshes += 1
        grant = self.refresh.pop(str(form.get("refresh_token") or ""), None)  # single-use
        if self.faults.fire("refresh_invalid") or grant is None or self._clock() >= grant.expires:
            return _error(401, FAULTS["refresh_invalid"][1])
        return web.json_response(self.issue(grant.scopes, base=grant.base))

    async def _authorize(self, request: web.Request) -> web.Response:
        """The user logs in (at once: a fake) and the browser goes to ``redirect_uri``."""
        query = request.query
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or not redirect_uri:
            return _error(400, "invalid_client")
        challenge = query.get("code_challenge", "")
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            return _error(400, "invalid_request")
        if len(challenge) != 43:  # base64url of a SHA-256, unpadded
            return _error(400, "invalid_request")
        code = secrets.token_urlsafe(24)
        scopes = tuple(query.get("scope", "").split()) or DEFAULT_SCOPES
        scopes = tuple(dict.fromkeys((*scopes, "energy_device_data", "energy_cmds")))
        self.codes[code] = AuthorizationCode(
            challenge, redirect_uri, self.client_id, scopes, self._clock() + CODE_TTL
        )
        base = f"{request.scheme}://{request.host}"
        back = {"code": code, "state": query.get("state", ""), "issuer": f"{base}/oauth2/v3"}
        separator = "&" if "?" in redirect_uri else "?"
        raise web.HTTPFound(redirect_uri + separator + urlencode(back))

    def _code_exchange(self, request: web.Request, form: dict[str, str]) -> web.Response:
        found = self.codes.pop(form.get("code", ""), None)  # single-use
        if found is None or self._clock() >= found.expires:
            return _error(400, "invalid_grant")
        if form.get("client_id") != found.client_id:
            return _error(401, "invalid_client")
        verifier = form.get("code_verifier", "").encode("ascii", "replace")
        if _b64url(hashlib.sha256(verifier).digest()) != found.challenge:
            return _error(400, "invalid_grant")  # PKCE: not the verifier of the challenge
        if form.get("redirect_uri") != found.redirect_uri:
            return _error(400, "invalid_grant")
        base = f"{request.scheme}://{request.host}"
        return web.json_response(self.issue(found.scopes, base=base))

    async def _jwks(self, request: web.Request) -> web.Response:
        return web.json_response(self.jwks())

    async def _region(self, request: web.Request) -> web.Response:
        base = f"{request.scheme}://{request.host}"
        return web.json_response({"response": {"region": self.region, "fleet_api_base_url": base}})

    async def _products(self, request: web.Request) -> web.Response:
        site = {
            "energy_site_id": self.site_id,
            "resource_type": "battery",
            "site_name": "Home",
            "id": "STE20250101-00001",
            "gateway_id": self.din,
            "asset_site_id": "00000000-0000-0000-0000-0000000000a1",
            "battery_type": "ac_powerwall",
            "backup_capable": True,
            "components": {"battery": True, "solar": True, "grid": True},
        }
        car = {"id": 100021, "vehicle_id": 99021, "vin": "5YJ3FAKE000000001", "display_name": "Car"}
        more = [
            {**site, "energy_site_id": site_id, "gateway_id": din, "site_name": name}
            for site_id, din, name in self.sites
        ]
        entries = [car, site, *more]
        return web.json_response({"response": entries, "count": len(entries)})

    async def _site_info(self, request: web.Request) -> web.Response:
        response = {
            "id": "STE20250101-00001",
            "site_name": "Home",
            "backup_reserve_percent": self.reserve,
            "default_real_mode": self.mode,
            "installation_time_zone": "Europe/London",
            "components": {
                "battery": True,
                "gateway": "teg",
                "gateways": [{"din": self.din, "is_active": True}],
            },
        }
        response.update(self.tariff.shown())
        return web.json_response({"response": response})

    async def _backup(self, request: web.Request) -> web.Response:
        payload = await _json(request)
        value = payload.get("backup_reserve_percent") if payload else None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
            return _error(400, "invalid_field")
        if self.backup_rule == "reject81_99" and 81 <= value <= 99:
            return _error(400, "backup reserve must be 80 % or less, or 100 %")
        if self.backup_rule == "clamp80" and value > 80:
            value = 80  # the firmware cap: the request "succeeds" and the value returns to 80
        self.reserve = value
        self.history.append((self._clock(), "backup_reserve_percent", value))
        return web.json_response({"response": {"code": 201, "message": "Updated"}})

    async def _operation(self, request: web.Request) -> web.Response:
        payload = await _json(request)
        mode = payload.get("default_real_mode") if payload else None
        if mode not in OPERATION_MODES:
            return _error(400, "invalid_field")
        self.mode = str(mode)
        self.history.append((self._clock(), "default_real_mode", self.mode))
        return web.json_response({"response": {"code": 201, "message": "Updated"}})

    async def _command(self, request: web.Request) -> web.Response:
        payload = await _json(request)
        kind = payload.get("command_type") if payload else None
        if kind == "grpc_signed_command":
            return await self._relay(payload)
        properties = payload.get("command_properties") if payload else None
        message = properties.get("message") if isinstance(properties, dict) else None
        if kind != "grpc_command" or not isinstance(message, dict):
            return _error(400, "invalid_command")
        authorization = message.get("authorization")
        if not isinstance(authorization, dict):
            return _error(400, "invalid_command")
        if "list_authorized_clients_request" in authorization:
            return await self._list()
        add = authorization.get("add_authorized_client_request")
        if isinstance(add, dict):
            return await self._add(add)
        return _error(400, "invalid_command")

    async def _list(self) -> web.Response:
        clients = [
            {
                "type": 1,
                "description": key.get("description", ""),
                "key_type": 1,
                "public_key": key["public_key"],
                "roles": [1],
                "state": self._state(der, bool(key["verified"])),
                "added_time": {"seconds": int(float(key.get("added") or 0))},
            }
            for der, key in await self._keys()
        ]
        answer = {"ListAuthorizedClientsResponse": {"clients": clients}}
        return web.json_response(_grpc_answer(answer))

    async def _add(self, request: dict[str, Any]) -> web.Response:
        try:
            der = base64.b64decode(str(request.get("public_key") or ""), validate=True)
            public_key_from_der(der)
        except (binascii.Error, ValueError, TedapiKeyError):
            return _error(400, "invalid_field")
        if request.get("key_type") != 1:
            return _error(400, "invalid_field")
        description = str(request.get("description") or "")[:64]
        known = {key_der: key for key_der, key in await self._keys()}
        if der not in known or not known[der]["verified"]:
            await self._gateway_pair(der, description, verified=False)
            self.registered[der] = self._clock()
            _LOGGER.info("key %s registered, pending the switch toggle", fingerprint(der))
        client = {"public_key": request["public_key"], "description": description, "state": 1}
        return web.json_response(_grpc_answer({"AddAuthorizedClientResponse": {"client": client}}))

    async def _device_command(self, request: web.Request) -> web.Response:
        payload = await _json(request)
        data = payload.get("data") if payload else None
        if not isinstance(data, dict) or data.get("target_id") != self.din:
            return _error(400, "invalid_field")
        return await self._relay(payload)

    async def _relay(self, payload: dict[str, Any] | None) -> web.Response:
        try:
            body = routable_message_from_body(payload)
        except TedapiDecodeError:
            return _error(400, "invalid_request")
        keys = await self._keys()
        verified = {der for der, key in keys if key["verified"]}
        pending = {der for der, key in keys if not key["verified"]}
        try:
            responder.verify_signed(body, self.din, verified, self._clock(), pending=pending)
        except TedapiFault as fault:
            self.counts.refused[fault.name] += 1
            return web.json_response(
                {
                    "response": {
                        "message_envelope_as_bytes": None,
                        "signed_message_fault": fault.fault,
                    }
                }
            )
        except responder.NotVerified:
            self.counts.refused["NOT_VERIFIED"] += 1
            text = base64.b64encode(NOT_VERIFIED_TEXT).decode("ascii")
            return web.json_response({"response": {"message_envelope_as_bytes": text}})
        reply = await self._gateway_v1r(body)
        self.counts.relayed += 1
        try:
            return web.json_response(relay_answer(reply))
        except TedapiError:
            return _error(540, "device unexpected response")

    # ------------------------------------------------------------------ control handlers

    async def _control_counts(self, request: web.Request) -> web.Response:
        return web.json_response(self.counts.as_dict())

    async def _control_state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "backup_reserve_percent": self.reserve,
                "default_real_mode": self.mode,
                "din": self.din,
            }
        )

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _control_tokens(self, request: web.Request) -> web.Response:
        payload = await _json(request) or {}
        scopes = tuple(payload.get("scopes") or DEFAULT_SCOPES)
        return web.json_response(self.issue(scopes))

    async def _control_expire(self, request: web.Request) -> web.Response:
        self.expire_tokens()
        return web.json_response({"ok": True})

    async def _control_backup_rule(self, request: web.Request) -> web.Response:
        payload = await _json(request) or {}
        rule = payload.get("rule")
        if rule not in BACKUP_RULES:
            return web.json_response(
                {"error": f"rule is one of {', '.join(BACKUP_RULES)}"}, status=400
            )
        self.backup_rule = str(rule)
        return web.json_response({"rule": self.backup_rule})

    async def _control_toggle(self, request: web.Request) -> web.Response:
        return web.json_response({"verified": await self.toggle()})


def _grpc_answer(message: dict[str, Any]) -> dict[str, Any]:
    """A ``grpc_command`` answer, shaped as clients read energy-device answers."""
    return {"response": {"message": {"Payload": {"Authorization": {"Message": message}}}}}


async def _json(request: web.Request) -> dict[str, Any] | None:
    try:
        payload = await request.json()
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


class FakeCloudRunner(FakeServerRunner):
    """Runs a :class:`FakeCloud` on 127.0.0.1 in a background thread (tests), or on the
    caller's loop (``pwbus simulate --cloud-port``)."""

    thread_name = "fake-cloud"
    fake: FakeCloud

    @property
    def url(self) -> str:
        """The API base URL (``cloud.api_url``)."""
        return self.base_url

    @property
    def token_url(self) -> str:
        """The token endpoint (``cloud.auth_url``)."""
        return self.url + TOKEN_PATH

    @property
    def control(self) -> str:
        """The control API's base URL."""
        return self.url + CONTROL_PREFIX
