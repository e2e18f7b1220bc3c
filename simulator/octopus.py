"""A fake Octopus Energy (Kraken) GraphQL server, over a real socket, for tests and demos.

It answers what ``pwbus octopus`` and the clients it is modelled on send, the way the real
API does (facts: docs/messages.md "octopus.plan" and the research note's checklist):

* ``POST /v1/graphql/`` with ``{"query", "variables"}`` (and ``GET ?query=&variables=``);
  several root fields in one document, aliases (``getTariff: account(...)``), variables and
  inline string arguments. Always HTTP 200 for GraphQL errors, with ``data.<field>: null``.
* ``obtainKrakenToken`` with ``APIKey``, ``refreshToken`` or ``email``/``password``: a
  decodable JWT (``sub, gty, email, tokenUse, iss, iat, exp, origIat``), the claims as
  ``payload``, a rotating ``refreshToken`` and ``refreshExpiresIn`` as an absolute time.
  A wrong key is KT-CT-1139; an expired refresh token KT-CT-1134, an unknown one KT-CT-1135.
* ``Authorization: <jwt>`` or ``JWT <jwt>``; none: KT-CT-1112; unknown: KT-CT-1111; expired:
  KT-CT-1124 (``/_octopus/tokens/expire`` ages every token issued so far).
* ``devices(accountNumber, deviceId?)`` (wrong account or device: KT-CT-4301),
  ``flexPlannedDispatches(deviceId)`` (5 a minute per user, then KT-CT-1199),
  ``plannedDispatches`` / ``completedDispatches(accountNumber)`` (the legacy shape).

* ``account(accountNumber)`` (aliased ``getTariff``): the account's current agreements in
  the shape Tesla-API's tariff query reads (``properties > electricityMeterPoints > meters >
  meterPoint > agreements > tariff``, ``__typename`` per tariff type); a wrong account is
  KT-CT-4301.
* REST ``GET /v1/products/{product}/electricity-tariffs/{tariff}/standard-unit-rates/`` and
  ``standing-charges/``: public, DRF pagination with absolute ``next`` URLs (``page_size``
  at most 1500), newest first, ``period_from`` inclusive / ``period_to`` exclusive; an
  unknown tariff is 404 ``{"detail": "Not found."}``.

The control API lives under ``/_octopus/`` (never a real path, never counted):
``GET counts``, ``POST reset``, ``POST plan`` (``{"dispatches": [...]}`` in the flex shape,
or ``{"response": <a flexPlannedDispatches answer>}``), ``POST devices``, ``POST faults``
(``{"set": {"NAME": times}, "clear": [...]}``, times -1: until cleared), ``POST
tokens/expire``, ``POST flex`` (``{"available": false}``: the field is gone), ``POST
agreements`` (``{"tariffs": [...]}``, the ``tariff`` objects), ``POST unit_rates``
(``{"tariff": CODE, "results": [...], "standing_charges": [...]}``, REST items). Faults:
``waf403`` (an HTML 403), ``http429``, ``http500``, ``rate_limit`` (KT-CT-1199 on every
request), ``no_plan`` (KT-CT-4340), ``refresh_expired`` / ``refresh_invalid`` (KT-CT-1134 /
1135 on a refresh), ``device_gone`` (KT-CT-4301 for the device).
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from powerwall_bus.simulator.counted_faults import CountedFaults
from powerwall_bus.simulator.fake_server import FakeServerRunner

_LOGGER = logging.getLogger(__name__)

ISSUER = "https://api.octopus.energy/v1/graphql/"
GRAPHQL_PATH = "/v1/graphql/"
CONTROL_PREFIX = "/_octopus/"
FLEX_PER_MINUTE = 5
WAF_PAGE = (
    "<!DOCTYPE html><html><head><title>403 Forbidden</title></head>"
    "<body><h1>Request blocked</h1><p>Too many requests from your address.</p></body></html>"
)
FAULTS = (
    "waf403",
    "http429",
    "http500",
    "rate_limit",
    "no_plan",
    "refresh_expired",
    "refresh_invalid",
    "device_gone",
)

_ERRORS: dict[str, tuple[str, str, str]] = {
    "KT-CT-1111": ("Unauthorized.", "AUTHORIZATION", "The viewer is not authorized."),
    "KT-CT-1112": (
        "'Authorization' header not provided.",
        "AUTHORIZATION",
        "You must provide the AUTHORIZATION header while executing the query/mutation.",
    ),
    "KT-CT-1124": ("Signature of the JWT has expired.", "APPLICATION", ""),
    "KT-CT-1134": ("Invalid data.", "VALIDATION", "The refresh token has expired."),
    "KT-CT-1135": ("Invalid data.", "VALIDATION", "Please make sure the refresh token is correct."),
    "KT-CT-1139": ("Authentication failed.", "AUTHORIZATION", "The credentials are not valid."),
    "KT-CT-1199": (
        "Too many requests.",
        "AUTHORIZATION",
        "There were too many requests. Please try again later.",
    ),
    "KT-CT-4301": (
        "Unable to find device for given account.",
        "NOT_FOUND",
        "We were unable to find a device for the given account.",
    ),
    "KT-CT-4340": (
        "Unable to fetch planned dispatches.",
        "APPLICATION",
        "Unable to fetch planned dispatches.",
    ),
}


class GraphQLFailure(Exception):
    """A Kraken error for one root field."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class RootField:
    """One root field of a document: ``alias: name(arguments) { ... }``."""

    alias: str
    name: str
    arguments: dict[str, Any]


_TOKEN = re.compile(
    r'\s*("(?:[^"\\]|\\.)*"|\$?[A-Za-z_][A-Za-z0-9_]*|-?\d+(?:\.\d+)?|[{}():,!\[\]=@.])'
)


def _tokens(text: str) -> list[str]:
    text = re.sub(r"#[^\n]*", "", text)
    found, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            if text[position:].strip() == "":
                break
            raise ValueError(f"cannot parse the document near {text[position : position + 20]!r}")
        found.append(match.group(1))
        position = match.end()
    return found


def _value(tokens: list[str], i: int, variables: dict[str, Any]) -> tuple[Any, int]:
    token = tokens[i]
    if token.startswith("$"):
        return variables.get(token[1:]), i + 1
    if token.startswith('"'):
        return json.loads(token), i + 1
    if token == "{":
        obj: dict[str, Any] = {}
        i += 1
        while tokens[i] != "}":
            name = tokens[i]
            value, i = _value(tokens, i + 2, variables)  # skip the ':'
            obj[name] = value
            if tokens[i] == ",":
                i += 1
        return obj, i + 1
    if token == "[":
        items = []
        i += 1
        while tokens[i] != "]":
            value, i = _value(tokens, i, variables)
            items.append(value)
            if tokens[i] == ",":
                i += 1
        return items, i + 1
    if token in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[token], i + 1
    if re.fullmatch(r"-?\d+(?:\.\d+)?", token):
        return json.loads(token), i + 1
    return token, i + 1  # an enum value


def _skip_block(tokens: list[str], i: int, opening: str, closing: str) -> int:
    depth = 0
    while i < len(tokens):
        if tokens[i] == opening:
            depth += 1
        elif tokens[i] == closing:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced document")


def parse_document(text: str, variables: dict[str, Any]) -> tuple[str, list[RootField]]:
    """The operation type (query or mutation) and the root fields of a document."""
    tokens = _tokens(text)
    if not tokens:
        raise ValueError("empty document")
    operation = "query"
    i = 0
    if tokens[0] in ("query", "mutation", "subscription"):
        operation = tokens[0]
        i = 1
        while tokens[i] != "{":
            i = _skip_block(tokens, i, "(", ")") if tokens[i] == "(" else i + 1
    if tokens[i] != "{":
        raise ValueError("expected a selection set")
    i += 1
    fields = []
    while tokens[i] != "}":
        name = tokens[i]
        alias = name
        i += 1
        if tokens[i] == ":":
            name = tokens[i + 1]
            i += 2
        arguments: dict[str, Any] = {}
        if tokens[i] == "(":
            i += 1
            while tokens[i] != ")":
                argument = tokens[i]
                value, i = _value(tokens, i + 2, variables)
                arguments[argument] = value
                if tokens[i] == ",":
                    i += 1
            i += 1
        if tokens[i] == "{":
            i = _skip_block(tokens, i, "{", "}")
        fields.append(RootField(alias, name, arguments))
        if tokens[i] == ",":
            i += 1
    return operation, fields


# --------------------------------------------------------------------------- the fake


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def default_devices() -> list[dict[str, Any]]:
    """A car and the smart meter, as ``devices`` lists them."""
    return [
        {
            "id": str(uuid.UUID(int=0xA001)),
            "name": "Car",
            "deviceType": "ELECTRIC_VEHICLES",
            "provider": "TESLA",
            "status": {
                "current": "LIVE",
                "currentState": "SMART_CONTROL_CAPABLE",
                "isSuspended": False,
            },
            "__typename": "SmartFlexVehicle",
        },
        {
            "id": str(uuid.UUID(int=0xE001)),
            "name": None,
            "deviceType": "ELECTRICITY_METERS",
            "provider": "OCTOPUS_ENERGY",
            "status": {"current": "LIVE", "currentState": None, "isSuspended": False},
            "__typename": "SmartFlexDevice",
        },
    ]


def default_agreements() -> list[dict[str, Any]]:
    """A flexible import tariff and a fixed export one, as ``account`` lists them."""
    common = {"__typename": "StandardTariff"}
    return [
        {
            **common,
            "displayName": "Flexible Octopus",
            "tariffCode": "E-1R-VAR-22-11-01-C",
            "isExport": False,
            "standingCharge": 49.5,
            "unitRate": 24.5,
        },
        {
            **common,
            "displayName": "Outgoing Octopus",
            "tariffCode": "E-1R-OUTGOING-VAR-24-10-26-C",
            "isExport": True,
            "standingCharge": 0.0,
            "unitRate": 15.0,
        },
    ]


@dataclass
class Counts:
    """What reached the fake (control calls excluded)."""

    http: int = 0
    fields: collections.Counter[str] = field(default_factory=collections.Counter)
    logins: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    authorization_styles: collections.Counter[str] = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "http": self.http,
            "fields": dict(self.fields),
            "logins": dict(self.logins),
            "errors": dict(self.errors),
            "authorization": dict(self.authorization_styles),
        }


class FakeOctopus:
    """The fake's state and its aiohttp application."""

    def __init__(
        self,
        *,
        api_key: str = "sk_test_pwbus_fake_octopus",
        account: str = "A-FAKE0001",
        email: str = "user@example.invalid",
        password: str = "",
        token_ttl: float = 3600.0,
        refresh_ttl: float = 7 * 86400.0,
        flex_per_minute: int = FLEX_PER_MINUTE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_key = api_key
        self.account = account
        self.email = email
        self.password = password
        self.token_ttl = token_ttl
        self.refresh_ttl = refresh_ttl
        self.flex_per_minute = flex_per_minute
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self.access: dict[str, float] = {}  # token -> expiry
        self.refresh: dict[str, float] = {}  # refresh token -> expiry
        self.devices = default_devices()
        self.dispatches: list[dict[str, Any]] = []
        self.flex_available = True
        self.faults = CountedFaults(FAULTS)
        self.counts = Counts()
        self._flex_calls: collections.deque[float] = collections.deque()
        self.agreements: list[dict[str, Any]] = default_agreements()
        self.unit_rates: dict[str, list[dict[str, Any]]] = {}
        self.standing_charges: dict[str, list[dict[str, Any]]] = {}

    # ------------------------------------------------------------------ control

    def reset(self) -> None:
        """Counts and faults back to nothing; the plan, devices and tokens stay."""
        self.counts = Counts()
        self.faults.clear()
        self._flex_calls.clear()
        self.flex_available = True

    def set_plan(self, dispatches: list[dict[str, Any]]) -> None:
        """The device's planned dispatches, in the ``flexPlannedDispatches`` shape."""
        self.dispatches = sorted(dispatches, key=lambda d: str(d.get("start")))

    def set_faults(self, faults: dict[str, int], clear: list[str] | None = None) -> None:
        """Arm faults (name -> how many answers; -1 until cleared) and clear others."""
        self.faults.arm(faults, clear or ())

    def expire_tokens(self) -> None:
        """Every access token issued so far is now expired (as an hour passing would)."""
        now = self._clock()
        self.access = {token: min(expiry, now - 1) for token, expiry in self.access.items()}

    # ------------------------------------------------------------------ tokens

    def _mint(self, grant: str) -> dict[str, Any]:
        now = int(self._clock())
        claims = {
            "sub": "kraken|account-user:1234567",
            "gty": grant,
            "email": self.email,
            "tokenUse": "access",
            "iss": ISSUER,
            "iat": now,
            "exp": now + int(self.token_ttl),
            "origIat": now,
        }
        header = _b64(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = _b64(
            hmac.new(self._secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
        )
        token = f"{header}.{body}.{signature}"
        refresh = secrets.token_hex(32)
        self.access[token] = float(now + int(self.token_ttl))
        self.refresh[refresh] = now + self.refresh_ttl
        return {
            "token": token,
            "payload": claims,
            "refreshToken": refresh,
            "refreshExpiresIn": int(now + self.refresh_ttl),
        }

    def _obtain(self, arguments: dict[str, Any]) -> dict[str, Any]:
        credential = arguments.get("input")
        if not isinstance(credential, dict):
            raise GraphQLFailure("KT-CT-1139")
        if "APIKey" in credential:
            self.counts.logins["api_key"] += 1
            if not secrets.compare_digest(str(credential["APIKey"]), self.api_key):
                raise GraphQLFailure("KT-CT-1139")
            return self._mint("API-KEY")
        if "refreshToken" in credential:
            self.counts.logins["refresh"] += 1
            if self.faults.fire("refresh_expired"):
                raise GraphQLFailure("KT-CT-1134")
            if self.faults.fire("refresh_invalid"):
                raise GraphQLFailure("KT-CT-1135")
            expiry = self.refresh.pop(str(credential["refreshToken"]), None)  # rotates
            if expiry is None:
                raise GraphQLFailure("KT-CT-1135")
            if self._clock() >= expiry:
                raise GraphQLFailure("KT-CT-1134")
            return self._mint("REFRESH-TOKEN")
        if "email" in credential:
            self.counts.logins["email"] += 1
            if (
                credential.get("email") != self.email
                or not self.password
                or (credential.get("password") != self.password)
            ):
                raise GraphQLFailure("KT-CT-1139")
            return self._mint("EMAIL")
        raise GraphQLFailure("KT-CT-1139")

    def _authorise(self, header: str) -> str | None:
        """The Kraken code refusing this Authorization header; None when it is fine."""
        if not header:
            return "KT-CT-1112"
        token = header[4:].strip() if header.startswith("JWT ") else header.strip()
        expiry = self.access.get(token)
        if expiry is None:
            return "KT-CT-1111"
        if self._clock() >= expiry:
            return "KT-CT-1124"
        return None

    # ------------------------------------------------------------------ fields

    def _account(self, arguments: dict[str, Any]) -> None:
        if arguments.get("accountNumber") != self.account:
            raise GraphQLFailure("KT-CT-4301")

    def _device(self, device_id: Any) -> dict[str, Any]:
        if self.faults.fire("device_gone"):
            raise GraphQLFailure("KT-CT-4301")
        for device in self.devices:
            if device["id"] == device_id:
                return device
        raise GraphQLFailure("KT-CT-4301")

    def _devices(self, arguments: dict[str, Any]) -> Any:
        self._account(arguments)
        wanted = arguments.get("deviceId")
        if wanted is not None:
            return [self._device(wanted)]
        return list(self.devices)

    def _flex(self, arguments: dict[str, Any]) -> Any:
        now = self._clock()
        self._flex_calls.append(now)
        while self._flex_calls and self._flex_calls[0] <= now - 60.0:
            self._flex_calls.popleft()
        if len(self._flex_calls) > self.flex_per_minute:
            raise GraphQLFailure("KT-CT-1199")
        device = self._device(arguments.get("deviceId"))
        if device["deviceType"] == "ELECTRICITY_METERS":
            raise GraphQLFailure("KT-CT-4340")
        if self.faults.fire("no_plan"):
            raise GraphQLFailure("KT-CT-4340")
        return [dict(d) for d in self.dispatches]

    def _legacy(self, arguments: dict[str, Any]) -> Any:
        self._account(arguments)
        legacy = []
        for dispatch in self.dispatches:
            energy = dispatch.get("energyAddedKwh")
            source = {"SMART": "smart-charge", "BOOST": "bump-charge"}.get(
                str(dispatch.get("type"))
            )
            legacy.append(
                {
                    "start": dispatch["start"],
                    "end": dispatch["end"],
                    "delta": None if energy is None else f"{-float(energy):.2f}",
                    "meta": {"source": source, "location": "AT_HOME"},
                }
            )
        return legacy

    def _account_tariffs(self, arguments: dict[str, Any]) -> Any:
        self._account(arguments)
        points = [
            {"meters": [{"meterPoint": {"agreements": [{"tariff": dict(tariff)}]}}]}
            for tariff in self.agreements
        ]
        return {"properties": [{"electricityMeterPoints": points}]}

    def _resolve(self, root: RootField, header: str) -> Any:
        if root.name == "obtainKrakenToken":
            return self._obtain(root.arguments)
        refusal = self._authorise(header)
        if refusal is not None:
            raise GraphQLFailure(refusal)
        if root.name == "devices":
            return self._devices(root.arguments)
        if root.name == "flexPlannedDispatches":
            return self._flex(root.arguments)
        if root.name == "account":
            return self._account_tariffs(root.arguments)
        if root.name in ("plannedDispatches", "completedDispatches"):
            return self._legacy(root.arguments) if root.name == "plannedDispatches" else []
        raise KeyError(root.name)

    # ------------------------------------------------------------------ HTTP

    def app(self) -> web.Application:
        """The aiohttp application: the GraphQL endpoint and the control API."""
        app = web.Application(client_max_size=256 * 1024)
        app.router.add_route("*", GRAPHQL_PATH, self._graphql)
        app.router.add_get(CONTROL_PREFIX + "counts", self._control_counts)
        app.router.add_post(CONTROL_PREFIX + "reset", self._control_reset)
        app.router.add_post(CONTROL_PREFIX + "plan", self._control_plan)
        app.router.add_post(CONTROL_PREFIX + "devices", self._control_devices)
        app.router.add_post(CONTROL_PREFIX + "faults", self.faults.handle_control)
        app.router.add_post(CONTROL_PREFIX + "tokens/expire", self._control_expire)
        app.router.add_post(CONTROL_PREFIX + "flex", self._control_flex)
        app.router.add_post(CONTROL_PREFIX + "agreements", self._control_agreements)
        app.router.add_post(CONTROL_PREFIX + "unit_rates", self._control_unit_rates)
        rest = "/v1/products/{product}/electricity-tariffs/{tariff}/"
        app.router.add_get(rest + "standard-unit-rates/", self._rest_rates)
        app.router.add_get(rest + "standing-charges/", self._rest_rates)
        return app

    async def _graphql(self, request: web.Request) -> web.Response:
        self.counts.http += 1
        if self.faults.fire("waf403"):
            return web.Response(status=403, text=WAF_PAGE, content_type="text/html")
        if self.faults.fire("http429"):
            return web.Response(status=429, text="Too Many Requests", headers={"Retry-After": "2"})
        if self.faults.fire("http500"):
            return web.Response(status=500, text="Internal Server Error")
        try:
            query, variables = await self._request_document(request)
            operation, roots = parse_document(query, variables)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return web.json_response({"errors": [{"message": f"Syntax Error: {exc}"}]})
        if operation not in ("query", "mutation"):
            return web.json_response({"errors": [{"message": "unsupported operation"}]})
        unknown = [
            r for r in roots if r.name == "flexPlannedDispatches" and not self.flex_available
        ]
        if unknown:
            message = 'Cannot query field "flexPlannedDispatches" on type "Query".'
            return web.json_response({"errors": [{"message": message, "locations": []}]})
        if self.faults.fire("rate_limit"):
            return web.json_response(self._errors_only("KT-CT-1199", roots))
        header = request.headers.get("Authorization", "")
        if header:
            self.counts.authorization_styles["JWT" if header.startswith("JWT ") else "raw"] += 1
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for root in roots:
            self.counts.fields[root.name] += 1
            try:
                data[root.alias] = self._resolve(root, header)
            except GraphQLFailure as failure:
                data[root.alias] = None
                errors.append(self._error(failure.code, root.alias))
            except KeyError:
                message = f'Cannot query field "{root.name}" on type "Query".'
                return web.json_response({"errors": [{"message": message, "locations": []}]})
        body: dict[str, Any] = {"data": data}
        if errors:
            body["errors"] = errors
        return web.json_response(body)

    async def _request_document(self, request: web.Request) -> tuple[str, dict[str, Any]]:
        if request.method == "GET":
            query = request.query["query"]
            variables = json.loads(request.query.get("variables") or "{}")
        else:
            payload = await request.json()
            query, variables = payload["query"], payload.get("variables") or {}
        if not isinstance(query, str) or not isinstance(variables, dict):
            raise TypeError("query must be a string and variables an object")
        return query, variables

    def _error(self, code: str, alias: str | None) -> dict[str, Any]:
        self.counts.errors[code] += 1
        message, kind, description = _ERRORS[code]
        error: dict[str, Any] = {
            "message": message,
            "locations": [{"line": 2, "column": 3}],
            "extensions": {"errorType": kind, "errorCode": code, "errorDescription": description},
        }
        if alias is not None:
            error["path"] = [alias]
        return error

    def _errors_only(self, code: str, roots: list[RootField]) -> dict[str, Any]:
        alias = roots[0].alias if roots else None
        return {"errors": [self._error(code, alias)]}

    async def _control_counts(self, request: web.Request) -> web.Response:
        return web.json_response(self.counts.as_dict())

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _control_plan(self, request: web.Request) -> web.Response:
        payload = await request.json()
        if "response" in payload:
            dispatches = payload["response"]["data"]["flexPlannedDispatches"] or []
        else:
            dispatches = payload["dispatches"]
        self.set_plan(list(dispatches))
        return web.json_response({"dispatches": len(self.dispatches)})

    async def _control_devices(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.devices = list(payload["devices"])
        return web.json_response({"devices": len(self.devices)})

    async def _control_expire(self, request: web.Request) -> web.Response:
        self.expire_tokens()
        return web.json_response({"ok": True})

    async def _rest_rates(self, request: web.Request) -> web.Response:
        self.counts.http += 1
        tariff = request.match_info["tariff"]
        standing = request.path.endswith("standing-charges/")
        table = self.standing_charges if standing else self.unit_rates
        self.counts.fields["rest:" + request.path.rstrip("/").rsplit("/", 1)[-1]] += 1
        if tariff not in self.unit_rates:
            return web.json_response({"detail": "Not found."}, status=404)
        try:
            results, after, before = _rest_page(table.get(tariff, []), request.query, request.url)
        except (KeyError, ValueError) as exc:
            return web.json_response({"detail": f"Bad request: {exc}"}, status=400)
        count = len(table.get(tariff, []))
        return web.json_response(
            {"count": count, "next": after, "previous": before, "results": results}
        )

    async def _control_agreements(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.agreements = list(payload["tariffs"])
        return web.json_response({"tariffs": len(self.agreements)})

    async def _control_unit_rates(self, request: web.Request) -> web.Response:
        payload = await request.json()
        code = str(payload["tariff"])
        self.unit_rates[code] = list(payload["results"])
        self.standing_charges[code] = list(payload.get("standing_charges") or [])
        return web.json_response({"results": len(self.unit_rates[code])})

    async def _control_flex(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.flex_available = bool(payload.get("available", True))
        return web.json_response({"available": self.flex_available})


def _rest_instant(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _rest_page(
    items: list[dict[str, Any]], query: Any, url: Any
) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """One DRF page of ``items`` (filtered, newest first) and the absolute next/previous URLs."""
    start = _rest_instant(query["period_from"]) if "period_from" in query else None
    end = _rest_instant(query["period_to"]) if "period_to" in query and start is not None else None
    kept = []
    for item in items:
        begins = _rest_instant(item["valid_from"])
        ends = _rest_instant(item["valid_to"]) if item.get("valid_to") else None
        if start is not None and ends is not None and ends <= start:
            continue
        if end is not None and begins >= end:
            continue
        kept.append(item)
    kept.sort(key=lambda item: item["valid_from"], reverse=True)
    size = max(1, min(int(query.get("page_size", 100)), 1500))
    page = max(1, int(query.get("page", 1)))
    chunk = kept[(page - 1) * size : page * size]
    after = url.update_query({"page": page + 1}) if page * size < len(kept) else None
    before = url.update_query({"page": page - 1}) if page > 1 else None
    return chunk, None if after is None else str(after), None if before is None else str(before)


class FakeOctopusRunner(FakeServerRunner):
    """Runs a :class:`FakeOctopus` on 127.0.0.1 in a background thread (tests), or on the
    caller's loop (``pwbus simulate --octopus-port``)."""

    thread_name = "fake-octopus"
    fake: FakeOctopus

    @property
    def url(self) -> str:
        """The GraphQL URL a client is given."""
        return self.base_url + GRAPHQL_PATH

    @property
    def control(self) -> str:
        """The control API's base URL."""
        return self.base_url + CONTROL_PREFIX
