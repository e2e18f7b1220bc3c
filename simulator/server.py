"""The simulated gateway's HTTPS server: sessions, faults, request counts, replay.

The pure model (:mod:`simulator.endpoints`) decides *what* a gateway would answer; this
shell decides *whether and how* it answers: login and session checks, 429 rate limits,
latency, hung and dropped connections, garbage bodies, and it counts every request that
reaches it so tests can prove exactly how often a client called the gateway.

Control endpoints live under ``/_sim/`` (never a real gateway path) and are not counted:
``GET /_sim/counts``, ``POST /_sim/reset``, ``GET|POST /_sim/faults``,
``POST /_sim/sessions/expire``, ``GET /_sim/snapshot``, ``GET|POST /_sim/pair`` and
``POST /_sim/unpair`` (the keys accepted for signed TEDAPI).

``POST /tedapi/v1r`` (signed TEDAPI: Max Backup) needs no login: the RSA signature is the
credential (:mod:`simulator.tedapi`).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import random
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from powerwall_bus.shared.errors import ConfigError, TedapiKeyError
from powerwall_bus.shared.max_backup import BackupEvent
from powerwall_bus.simulator.endpoints import Reply, SimulatedGateway
from powerwall_bus.simulator.fake_server import FakeServerRunner
from powerwall_bus.simulator.faults import FaultSet
from powerwall_bus.simulator.replay import FixtureReplay
from powerwall_bus.simulator.tedapi import SignedCommands

_LOGGER = logging.getLogger(__name__)

CONTROL_PREFIX = "/_sim/"
OPEN_PATHS = frozenset({"/api/status", "/api/customer/registration"})
_COMMON_HEADERS = {"Cache-Control": "no-cache, no-store", "X-Content-Type-Options": "nosniff"}
_RATE_WINDOW = 60.0


def _error(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = json.dumps({"code": status, "error": error, "message": message})
    return web.Response(
        status=status,
        text=body,
        content_type="application/json",
        headers={**_COMMON_HEADERS, **(headers or {})},
    )


def forbidden(method: str) -> web.Response:
    """The gateway's 403: a request without a valid session, or a write by a customer."""
    return _error(
        403, f"Unable to {method} to resource", "User does not have adequate access rights"
    )


@dataclass
class Counters:
    """Requests that reached the simulated gateway."""

    by_path: collections.Counter[str] = field(default_factory=collections.Counter)
    #: 200 answers with the real body, not held past the client's patience by a ``timeout``
    #: fault: the readings a poller can have received (what a lossless pipeline stores).
    served: collections.Counter[str] = field(default_factory=collections.Counter)
    logins: int = 0
    login_failures: int = 0
    first: float = 0.0
    #: Requests being answered now, and the most at once: a polite client never has two.
    in_flight: int = 0
    max_in_flight: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "requests": dict(self.by_path),
            "served": dict(self.served),
            "total": sum(self.by_path.values()),
            "logins": self.logins,
            "login_failures": self.login_failures,
            "max_in_flight": self.max_in_flight,
        }


class GatewayServer:
    """The aiohttp application around a :class:`SimulatedGateway` or a fixture replay."""

    def __init__(
        self,
        gateway: SimulatedGateway,
        *,
        password: str,
        faults: FaultSet | None = None,
        session_ttl: float = 86400.0,
        replay: FixtureReplay | None = None,
        clock: Callable[[], float] = time.monotonic,
        paired_keys: Sequence[bytes] = (),
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.gateway = gateway
        self.signed = SignedCommands(gateway, paired_keys, wall_clock)
        self.replay = replay
        self._password = password
        self._session_ttl = session_ttl
        self._clock = clock
        self._sessions: dict[str, float] = {}  # token -> expiry (clock time)
        self._recent_logins: collections.deque[float] = collections.deque()
        self._recent_requests: collections.deque[float] = collections.deque()
        self._limited_until = 0.0
        self._garbage = random.Random(7)
        self.counters = Counters()
        self.faults = FaultSet()
        self.set_faults(faults or FaultSet())

    # ------------------------------------------------------------------ control

    def set_faults(self, faults: FaultSet) -> None:
        """Replace the active faults and apply the ones that change the model."""
        self.faults = faults
        self.gateway.set_sitemaster_running(faults.get("stopped") is None)
        self.gateway.set_grid_connected(faults.get("islanded") is None)
        firmware = faults.value("firmware")
        if firmware:
            self.gateway.set_firmware(str(firmware))
        if faults.get("rate-limit-logins") is None and faults.get("rate-limit-requests") is None:
            self._limited_until = 0.0
        _LOGGER.info("faults now: %s", ", ".join(faults.specs()) or "none")

    def reset_counts(self) -> None:
        """Zero the request counters."""
        self.counters = Counters()

    def set_password(self, password: str) -> None:
        """Change the customer password (as a user would on the gateway's page); sessions
        already open stay valid, like the gateway's."""
        self._password = password

    def expire_sessions(self) -> None:
        """Invalidate every session (as a gateway reboot or expiry would)."""
        self._sessions.clear()

    # ------------------------------------------------------------------ app

    def app(self) -> web.Application:
        """Build the aiohttp application."""
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024)
        app.router.add_get("/_sim/counts", self._control_counts)
        app.router.add_post("/_sim/reset", self._control_reset)
        app.router.add_get("/_sim/faults", self._control_faults)
        app.router.add_post("/_sim/faults", self._control_faults)
        app.router.add_post("/_sim/sessions/expire", self._control_expire)
        app.router.add_get("/_sim/snapshot", self._control_snapshot)
        app.router.add_get("/_sim/pair", self._control_pair)
        app.router.add_post("/_sim/pair", self._control_pair)
        app.router.add_post("/_sim/unpair", self._control_pair)
        app.router.add_post("/tedapi/v1r", self._tedapi)
        app.router.add_post("/api/login/Basic", self._login)
        app.router.add_get("/api/logout", self._logout)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        return app

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        path = request.path
        if path.startswith(CONTROL_PREFIX):
            return await handler(request)
        counters = self.counters
        counters.in_flight += 1
        counters.max_in_flight = max(counters.max_in_flight, counters.in_flight)
        try:
            return await self._answer(request, handler, path)
        finally:
            counters.in_flight -= 1

    async def _answer(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        path: str,
    ) -> web.StreamResponse:
        now = self._clock()
        self.counters.by_path[path] += 1
        faults = self.faults
        if self._rate_limited(now, path):
            return _error(429, "Api Limit reached for this endpoint", "API Limit Reached")
        latency = faults.get("latency")
        if latency is not None and latency.applies_to(path):
            await asyncio.sleep(float(latency.value))
        hold = faults.get("timeout")
        held = hold is not None and hold.applies_to(path)
        if held and hold is not None:
            await asyncio.sleep(float(hold.value))
        drop = faults.get("drop")
        if drop is not None and drop.applies_to(path):
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # nothing is written to a closed connection
        http_error = faults.get("http-error")
        if http_error is not None and http_error.applies_to(path):
            retry_after = faults.value("retry-after")
            extra = {"Retry-After": str(retry_after)} if retry_after is not None else None
            return _error(int(http_error.value), "injected error", "Simulated Fault", extra)
        response = await handler(request)
        garbage = faults.get("garbage")
        if garbage is not None and garbage.applies_to(path) and response.status == 200:
            noise = bytes(self._garbage.randrange(256) for _ in range(64))
            return web.Response(
                body=b"<html>\x00" + noise, content_type="application/json", headers=_COMMON_HEADERS
            )
        if response.status == 200 and not held:
            self.counters.served[path] += 1
        return response

    def _rate_limited(self, now: float, path: str) -> bool:
        if now < self._limited_until:
            return True
        limit = self.faults.value("rate-limit-requests")
        if limit is not None:
            self._recent_requests.append(now)
            while self._recent_requests and self._recent_requests[0] <= now - _RATE_WINDOW:
                self._recent_requests.popleft()
            if len(self._recent_requests) > int(limit):
                self._trip_rate_limit(now)
                return True
        return False

    def _trip_rate_limit(self, now: float) -> None:
        self._limited_until = now + float(self.faults.value("rate-limit-seconds", 300.0))
        _LOGGER.warning("rate limit tripped: answering 429 for %.0f s", self._limited_until - now)

    # ------------------------------------------------------------------ auth

    async def _login(self, request: web.Request) -> web.Response:
        now = self._clock()
        limit = self.faults.value("rate-limit-logins")
        if limit is not None:
            self._recent_logins.append(now)
            while self._recent_logins and self._recent_logins[0] <= now - _RATE_WINDOW:
                self._recent_logins.popleft()
            if len(self._recent_logins) > int(limit):
                self._trip_rate_limit(now)
                return _error(429, "Api Limit reached for this endpoint", "API Limit Reached")
        form = await _login_fields(request)
        if form is None:
            self.counters.login_failures += 1
            return _error(400, "could not parse the login request", "Login Error")
        if self.faults.get("default-password") is not None:
            self.counters.login_failures += 1
            return _error(401, "default password not supported", "Login Error")
        if form.get("username") != "customer" or form.get("password") != self._password:
            self.counters.login_failures += 1
            return _error(401, "bad credentials", "Login Error")
        self.counters.logins += 1
        # URL-safe without padding: cookie values that need no quoting, like the gateway's.
        token = secrets.token_urlsafe(64)
        self._sessions[token] = now + self._session_ttl
        profile = {
            "email": form.get("email", ""),
            "firstname": "Tesla",
            "lastname": "Energy",
            "roles": ["Home_Owner"],
            "token": token,
            "provider": "Basic",
        }
        record = base64.urlsafe_b64encode(json.dumps(profile).encode()).decode().rstrip("=")
        login_time = time.strftime("%Y-%m-%dT%H:%M:%S.000000000-00:00", time.gmtime())
        body = {**profile, "loginTime": login_time}
        response = web.Response(
            text=json.dumps(body), content_type="application/json", headers=_COMMON_HEADERS
        )
        response.set_cookie("AuthCookie", token, path="/", secure=True, httponly=True)
        response.set_cookie("UserRecord", record, path="/", secure=True)
        return response

    async def _logout(self, request: web.Request) -> web.Response:
        token = self._token(request)
        if token:
            self._sessions.pop(token, None)
        response = web.Response(status=204, headers=_COMMON_HEADERS)
        # Expire both cookies, so a client's cookie jar forgets the session too.
        response.del_cookie("AuthCookie", path="/")
        response.del_cookie("UserRecord", path="/")
        return response

    def _token(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return header[7:].strip()
        return request.cookies.get("AuthCookie")

    def _authorised(self, request: web.Request) -> bool:
        token = self._token(request)
        expiry = self._sessions.get(token or "")
        if expiry is None:
            return False
        if self._clock() >= expiry:
            del self._sessions[token or ""]
            return False
        return True

    # ------------------------------------------------------------------ data

    async def _serve(self, request: web.Request) -> web.Response:
        path = request.path
        if request.method not in ("GET", "HEAD"):
            # Writes are the installer's since firmware 1.50: a customer (or nobody) is refused.
            return forbidden(request.method)
        if path not in OPEN_PATHS and not self._authorised(request):
            return forbidden("GET")
        reply = self._lookup(path)
        headers = dict(_COMMON_HEADERS)
        if not reply.body and not reply.content_type:  # 502 site controller stopped, 202
            return web.Response(status=reply.status, headers=headers)
        content_type, _, charset = reply.content_type.partition("; charset=")
        return web.Response(
            status=reply.status,
            body=reply.body,
            content_type=content_type,
            charset=charset or None,
            headers=headers,
        )

    def _lookup(self, path: str) -> Reply:
        if self.replay is not None:
            recorded = self.replay.lookup(path)
            if recorded is None:
                body = json.dumps({"code": 404, "error": "not recorded", "message": "Not Found"})
                return Reply(404, body.encode())
            return Reply(recorded.status, recorded.body, recorded.content_type)
        return self.gateway.get(path)

    # ------------------------------------------------------------------ control handlers

    async def _control_counts(self, request: web.Request) -> web.Response:
        return web.json_response(self.counters.as_dict())

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset_counts()
        if request.query.get("faults") in ("1", "yes", "true"):
            self.set_faults(FaultSet())
        return web.json_response({"ok": True})

    async def _control_faults(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                payload = await request.json()
                if not isinstance(payload, dict):
                    raise ValueError
                faults = (
                    FaultSet.parse(list(payload["faults"])) if "faults" in payload else self.faults
                )
                faults = faults.with_specs(list(payload.get("set", [])))
                faults = faults.without(list(payload.get("clear", [])))
            except (ValueError, TypeError, KeyError):
                return web.json_response(
                    {"error": 'expected {"faults"|"set"|"clear": [specs]}'}, status=400
                )
            except ConfigError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            self.set_faults(faults)
        return web.json_response({"faults": self.faults.specs()})

    async def _control_expire(self, request: web.Request) -> web.Response:
        self.expire_sessions()
        return web.json_response({"ok": True})

    async def _control_snapshot(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "firmware": self.gateway.firmware,
                "din": self.gateway.din,
                "grid_connected": self.gateway.grid_connected,
                "sitemaster_running": self.gateway.sitemaster_running,
                "manual_backup": _event_json(self.gateway.manual_backup),
            }
        )

    async def _control_pair(self, request: web.Request) -> web.Response:
        """``POST /_sim/pair {"public_key": PEM, "verified": true, "description": ""}``,
        ``POST /_sim/unpair {"public_key": PEM}``; both answer (as ``GET /_sim/pair`` does)
        the paired keys' fingerprints; with ``?detail=1`` also each public key (base64 DER),
        description and pairing time (what a fake cloud relaying to this gateway lists)."""
        from powerwall_bus.shared.tedapi.keys import public_der, public_key_from_pem

        if request.method == "POST":
            try:
                payload = await request.json()
                der = public_der(public_key_from_pem(str(payload["public_key"])))
                verified = payload.get("verified", True)
                if not isinstance(verified, bool):
                    raise TypeError
            except (ValueError, TypeError, KeyError):
                return web.json_response(
                    {"error": 'expected {"public_key": PEM, "verified": true|false}'}, status=400
                )
            except TedapiKeyError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            if request.path.endswith("/unpair"):
                self.signed.unpair(der)
            else:
                description = str(payload.get("description") or "")
                self.signed.pair(der, verified=verified, description=description)
        detail = request.query.get("detail") in ("1", "yes", "true")
        return web.json_response(
            {"paired": [key.as_dict(detail=detail) for key in self.signed.paired()]}
        )

    async def _tedapi(self, request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(
            body=self.signed.handle(body),
            content_type="application/octet-stream",
            headers=_COMMON_HEADERS,
        )


def _event_json(event: BackupEvent | None) -> dict[str, str] | None:
    if event is None:
        return None
    return {"start": event.start.isoformat(), "end": event.end.isoformat()}


async def _login_fields(request: web.Request) -> dict[str, str] | None:
    """Login fields from a JSON body (the web app) or a form body (pyPowerwall)."""
    raw = await request.read()
    try:
        if request.content_type == "application/json":
            data = json.loads(raw)
            if not isinstance(data, dict):
                return None
            return {k: str(v) for k, v in data.items() if isinstance(v, str)}
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}
    except (ValueError, UnicodeDecodeError):
        return None


class SimulatorRunner(FakeServerRunner):
    """Runs a :class:`GatewayServer` over HTTPS, on its own loop in a background thread.

    Used by tests, benchmarks and the stack runner; ``pwbus simulate`` uses the same class
    in the foreground.
    """

    thread_name = "gateway-sim"
    fake: GatewayServer

    def __init__(
        self,
        server: GatewayServer,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(server, host, port, ssl_context)
        self._ticker: asyncio.Task[None] | None = None

    @property
    def server(self) -> GatewayServer:
        """The simulated gateway's HTTP side (its model is ``server.gateway``)."""
        return self.fake

    @property
    def url(self) -> str:
        """The base URL clients use."""
        return self.base_url

    @property
    def address(self) -> str:
        """``host:port``, as PW_HOST takes it."""
        return f"{self.host}:{self.port}"

    async def _started(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        """Advance the model every second, so a fast, idle simulation never has to catch up
        hours of simulated time inside one request."""
        while True:
            await asyncio.sleep(1.0)
            self.server.gateway.snapshot()

    async def _stopping(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
