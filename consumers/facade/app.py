"""The facade's routes: a gateway's login, logout, 403s and GETs, answered from the bus.

What a client sees, and why:

- ``POST /api/login/Basic`` (JSON as the web app and ``tesla-powerwall`` send it, or a form
  as pyPowerwall sends it): the user ``customer`` with the facade's password gets the
  gateway's login body and the ``AuthCookie`` (= the body's ``token``) and ``UserRecord``
  cookies; a wrong one 401 "bad credentials", and past ``facade.max_failed_logins`` wrong
  ones a minute, the gateway's 429.
- Later requests carry the cookie or ``Authorization: Bearer <token>``; without a live
  session, the gateway's 403 ("Unable to GET to resource" / "User does not have adequate
  access rights"), which both client libraries take as "log in again".
- ``GET /api/logout``: 204, the session ends and both cookies are expired.
- A GET of a path the poller publishes: its latest body, as the gateway sent it (raw state
  of energy, the vitals protobuf...). While the poller reports the gateway's site
  controller stopped for that path: 502 with no body, as the gateway answers. A path the
  gateway answered 404 (the poller says ``missing``), or one the poller does not read: 404.
  A path the poller reads but of which nothing arrived yet, or whose latest body is older
  than three of the poller's reads of it (and than ``facade.health_max_age``): 502 with no
  body, so a client shows "unavailable" and retries rather than showing old numbers as new.
- Writes (any method but GET/HEAD: ``POST /api/operation``, islanding, the site name...) and
  the site-controller actions (``/api/sitemaster/run``, ``/stop``, ``/api/config/completed``)
  answer the 403 a gateway gives a customer. Nothing ever reaches the gateway.
- ``GET /health``: the proxy's /health rules (:mod:`.health`), without a login.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import parse_qs

from aiohttp import web

from powerwall_bus.consumers.facade.health import health_document
from powerwall_bus.consumers.facade.sessions import Login, Sessions
from powerwall_bus.consumers.facade.state import FacadeState
from powerwall_bus.shared import contract

__all__ = ["ACTIONS", "OPEN_PATHS", "SESSIONS", "SETTINGS_MAX_AGE", "STATE", "create_app"]

_LOGGER = logging.getLogger(__name__)

#: The facade's objects, under typed keys.
STATE = web.AppKey("state", FacadeState)
SESSIONS = web.AppKey("sessions", Sessions)
SETTINGS_MAX_AGE = web.AppKey("health_max_age", float)

#: Answered without a login, as the gateway does.
OPEN_PATHS = frozenset({"/api/status", "/api/customer/registration"})
#: GETs that act on the site controller: refused to a customer like the writes.
ACTIONS = frozenset({"/api/sitemaster/run", "/api/sitemaster/stop", "/api/config/completed"})
#: The paths the poller reads by default (besides those a user adds, which arrive on the bus).
POLLED = frozenset(e.path for e in contract.ENDPOINTS if e.poll is not None)

#: A body older than this many of the poller's reads of its path (and than
#: ``facade.health_max_age``) is not served: the gateway is not answering the poller.
STALE_READS = 3
_COMMON_HEADERS = {"Cache-Control": "no-cache, no-store", "X-Content-Type-Options": "nosniff"}
_MAX_LOGIN_BODY = 8192
_DENIED = "User does not have adequate access rights"


def _error(status: int, error: str, message: str) -> web.Response:
    """The gateway's error body: ``{"code", "error", "message"}``."""
    body = json.dumps({"code": status, "error": error, "message": message})
    return web.Response(
        status=status, text=body, content_type="application/json", headers=_COMMON_HEADERS
    )


def forbidden(method: str) -> web.Response:
    """The gateway's 403: no valid session, or an action a customer may not take."""
    return _error(403, f"Unable to {method} to resource", _DENIED)


def _no_body(status: int, reason: str) -> web.Response:
    """An empty answer like the gateway's 502; the reason only in a header of ours."""
    return web.Response(status=status, headers={**_COMMON_HEADERS, "X-Pwbus-Problem": reason})


def _token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[7:].strip()
    return request.cookies.get("AuthCookie")


async def _login_fields(request: web.Request) -> dict[str, str] | None:
    """The login's fields from a JSON body (web app, tesla-powerwall) or a form (pyPowerwall)."""
    raw = await request.content.read(_MAX_LOGIN_BODY + 1)
    if len(raw) > _MAX_LOGIN_BODY:
        return None
    try:
        if request.content_type == "application/json":
            data = json.loads(raw)
            if not isinstance(data, dict):
                return None
            return {k: v for k, v in data.items() if isinstance(v, str)}
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}
    except (ValueError, UnicodeDecodeError):
        return None


async def _login(request: web.Request) -> web.Response:
    fields = await _login_fields(request)
    if fields is None:
        return _error(400, "could not parse the login request", "Login Error")
    outcome, token = request.app[SESSIONS].login(fields.get("username"), fields.get("password"))
    if outcome is Login.LIMITED:
        return _error(429, "Api Limit reached for this endpoint", "API Limit Reached")
    if outcome is Login.REFUSED or token is None:
        _LOGGER.warning("refused a login from %s: wrong user or password", request.remote)
        return _error(401, "bad credentials", "Login Error")
    profile = {
        "email": fields.get("email", ""),
        "firstname": "Tesla",
        "lastname": "Energy",
        "roles": ["Home_Owner"],
        "token": token,
        "provider": "Basic",
    }
    record = base64.urlsafe_b64encode(json.dumps(profile).encode()).decode().rstrip("=")
    login_time = time.strftime("%Y-%m-%dT%H:%M:%S.000000000-00:00", time.gmtime())
    response = web.Response(
        text=json.dumps({**profile, "loginTime": login_time}),
        content_type="application/json",
        headers=_COMMON_HEADERS,
    )
    response.set_cookie("AuthCookie", token, path="/", secure=True, httponly=True)
    response.set_cookie("UserRecord", record, path="/", secure=True)
    return response


async def _logout(request: web.Request) -> web.Response:
    request.app[SESSIONS].logout(_token(request))
    response = web.Response(status=204, headers=_COMMON_HEADERS)
    response.del_cookie("AuthCookie", path="/")
    response.del_cookie("UserRecord", path="/")
    return response


async def _health(request: web.Request) -> web.Response:
    app = request.app
    status, body = health_document(app[STATE], app[SESSIONS], app[SETTINGS_MAX_AGE])
    return web.json_response(body, status=status, headers=_COMMON_HEADERS)


async def _serve(request: web.Request) -> web.Response:
    """Every other request: refused writes, refused strangers, or the latest body."""
    path = request.path
    if request.method not in ("GET", "HEAD"):
        return forbidden(request.method)
    if path in ACTIONS:
        return forbidden("GET")
    if path not in OPEN_PATHS and not request.app[SESSIONS].valid(_token(request)):
        return forbidden("GET")
    state = request.app[STATE]
    polled = state.endpoint_state(path)  # the poller's word on what the gateway answers now
    if polled == "stopped":
        return _no_body(502, "the gateway's site controller is stopped")
    if polled == "missing":
        return _error(404, "endpoint not found", "Not Found")
    body = state.body(path)
    if body is not None:
        age = state.age(path)
        interval = state.endpoint_interval(path)
        if interval is not None and age is not None:
            limit = max(STALE_READS * interval, request.app[SETTINGS_MAX_AGE])
            if age > limit:  # the poller has missed several reads: no fresh data to give
                return _no_body(502, f"the latest reading is {age:.0f} s old")
        return web.Response(
            body=body.content, content_type=body.content_type, headers=_COMMON_HEADERS
        )
    if polled is None and path not in POLLED:
        return _error(404, "endpoint not found", "Not Found")
    return _no_body(502, "no reading of this path on the bus yet")


def create_app(
    state: FacadeState,
    sessions: Sessions,
    *,
    health_max_age: float = 30.0,
    cleanup: Callable[[web.Application], AsyncIterator[None]] | None = None,
) -> web.Application:
    """The application over ``state`` and ``sessions``; ``cleanup`` is a ``cleanup_ctx``
    entry (the bus subscription) that lives as long as the application."""
    app = web.Application(client_max_size=64 * 1024)
    app[STATE] = state
    app[SESSIONS] = sessions
    app[SETTINGS_MAX_AGE] = health_max_age
    if cleanup is not None:
        app.cleanup_ctx.append(cleanup)
    app.router.add_post("/api/login/Basic", _login)
    app.router.add_get("/api/logout", _logout)
    app.router.add_get("/health", _health)
    app.router.add_route("*", "/{tail:.*}", _serve)
    return app
