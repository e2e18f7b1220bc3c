"""``pwbus facade`` without a broker: its login, its state, its answers over real HTTPS, its
certificate, its /health and its command line. The real clients over the real bus are in
tests/test_facade_clients.py."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web

from powerwall_bus.consumers.facade.app import create_app
from powerwall_bus.consumers.facade.command import FacadeConfig
from powerwall_bus.consumers.facade.main import TLS_FOLDER, tls_context
from powerwall_bus.consumers.facade.sessions import MAX_SESSIONS, WINDOW, Login, Sessions
from powerwall_bus.consumers.facade.state import FacadeState, gateway_json
from powerwall_bus.shared.acceptance import Policy
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.loop_thread import LoopThread
from powerwall_bus.shared.messages import (
    Reading,
    RunSequence,
    meter_stream_message,
    poller_status_message,
    reading_message,
)
from powerwall_bus.shared.settings import AmqpSettings, FacadeSettings
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.site import SiteOptions

POLLER_USER = "pwbus-poller"
PASSWORD = "facade-Pass-7"
AGGREGATES = "/api/meters/aggregates"
SOE = "/api/system_status/soe"
VITALS = "/api/devices/vitals"
DENIED = "User does not have adequate access rights"
GATEWAY = SimulatedGateway(SiteOptions(seed=8), clock=lambda: 1.76e9)
DIN = GATEWAY.din


def _policy() -> Policy:
    return Policy(poller_user=POLLER_USER, max_bytes=1_000_000, max_future=300, max_past=86400)


def _deliver(state: FacadeState, message: Any, user_id: str = POLLER_USER) -> bool:
    return state.deliver(message.type, message.body, user_id=user_id, headers=message.headers)


def _reading(path: str, run: RunSequence, payload: Any = None, din: str = DIN) -> Any:
    if payload is None:
        reply = GATEWAY.get(path)
        payload = (
            reply.body if reply.content_type.endswith("octet-stream") else json.loads(reply.body)
        )
    return reading_message(Reading(path, time.time(), din, payload), sequence=run)


def _status(
    run: RunSequence, endpoints: dict[str, str], state: str = "ok", interval: float = 2.0
) -> Any:
    document = {
        "gateway_state": state,
        "endpoints": {
            path: {"state": word, "interval": interval} for path, word in endpoints.items()
        },
    }
    return poller_status_message(time.time(), DIN, document, sequence=run)


# --------------------------------------------------------------------------- sessions


def test_login_checks_user_and_password_and_hands_out_tokens() -> None:
    sessions = Sessions(PASSWORD)
    outcome, token = sessions.login("customer", PASSWORD)
    assert outcome is Login.OK and token and sessions.valid(token)
    assert sessions.login("installer", PASSWORD) == (Login.REFUSED, None)
    assert sessions.login("customer", PASSWORD + "x") == (Login.REFUSED, None)
    assert sessions.login("customer", None) == (Login.REFUSED, None)
    assert not sessions.valid("made-up") and not sessions.valid(None)
    sessions.logout(token)
    assert not sessions.valid(token)
    sessions.logout(token)  # twice is fine
    second = sessions.login("customer", PASSWORD)[1]
    sessions.end_all()
    assert not sessions.valid(second) and len(sessions) == 0


def test_wrong_passwords_are_capped_per_minute_and_the_right_one_waits() -> None:
    now = [100.0]
    sessions = Sessions(PASSWORD, max_failed=3, clock=lambda: now[0])
    assert [sessions.login("customer", "guess")[0] for _ in range(3)] == [Login.REFUSED] * 3
    assert sessions.login("customer", PASSWORD) == (Login.LIMITED, None)
    now[0] += WINDOW + 0.1
    assert sessions.login("customer", PASSWORD)[0] is Login.OK
    assert (sessions.logins, sessions.refused) == (1, 3)


def test_the_oldest_session_goes_past_the_bound() -> None:
    sessions = Sessions(PASSWORD)
    tokens = [sessions.login("customer", PASSWORD)[1] for _ in range(MAX_SESSIONS + 1)]
    assert len(sessions) == MAX_SESSIONS
    assert not sessions.valid(tokens[0]) and sessions.valid(tokens[-1])


# --------------------------------------------------------------------------- state


def test_the_latest_copy_by_the_pollers_order_wins_not_the_latest_arrival() -> None:
    state = FacadeState(_policy())
    run = RunSequence()
    older = _reading(SOE, run, {"percentage": 41.5})
    newer = _reading(SOE, run, {"percentage": 42.5})
    assert _deliver(state, newer)
    assert not _deliver(state, older)  # a resync answer or a late redelivery
    body = state.body(SOE)
    assert body is not None and body.content == b'{"percentage":42.5}'
    assert body.content_type == "application/json"


def test_bodies_are_the_gateways_bytes_and_vitals_the_raw_protobuf() -> None:
    state = FacadeState(_policy())
    run = RunSequence()
    for path in (AGGREGATES, "/api/status", VITALS, "/api/system_status"):
        assert _deliver(state, _reading(path, run))
        body = state.body(path)
        assert body is not None and body.content == GATEWAY.get(path).body, path
    vitals = state.body(VITALS)
    assert vitals is not None and vitals.content_type == "application/octet-stream"
    assert gateway_json({"a": "<b>&"}) == b'{"a":"\\u003cb\\u003e\\u0026"}'  # as Go writes it


def test_only_the_followed_gateway_and_only_the_pollers_messages_are_taken() -> None:
    state = FacadeState(_policy(), follow=DIN)
    run = RunSequence()
    other = _reading(SOE, run, {"percentage": 10.0}, din="1232100-00-E--TG000000000OTH")
    assert not _deliver(state, other)
    assert not _deliver(state, _reading(SOE, run, {"percentage": 20.0}), user_id="intruder")
    assert state.body(SOE) is None
    assert state.refused.counts() == {"forged": 1}
    assert _deliver(state, _reading(SOE, run, {"percentage": 30.0}))
    assert state.gateways().document()["din"] == DIN


def test_a_meter_stream_fills_the_meters_and_the_state_of_energy() -> None:
    state = FacadeState(_policy())
    aggregates = json.loads(GATEWAY.get(AGGREGATES).body)
    message = meter_stream_message(time.time(), 55.25, aggregates, DIN, sequence=RunSequence())
    assert _deliver(state, message)
    soe, meters = state.body(SOE), state.body(AGGREGATES)
    assert soe is not None and soe.content == b'{"percentage":55.25}'
    assert meters is not None and meters.content == GATEWAY.get(AGGREGATES).body


def test_the_pollers_status_says_what_the_gateway_answers_per_path() -> None:
    state = FacadeState(_policy())
    run = RunSequence()
    assert _deliver(state, _status(run, {AGGREGATES: "stopped", VITALS: "missing"}))
    assert state.endpoint_state(AGGREGATES) == "stopped"
    assert state.endpoint_state(VITALS) == "missing"
    assert state.endpoint_state("/api/never") is None


# --------------------------------------------------------------------------- over HTTPS


class Served:
    """The facade application on 127.0.0.1 over TLS, fed by the test (no broker)."""

    def __init__(self, max_failed: int = 10) -> None:
        self.now = [1000.0]
        self.state = FacadeState(_policy(), clock=lambda: self.now[0])
        self.sessions = Sessions(PASSWORD, max_failed=max_failed)
        self.app = create_app(self.state, self.sessions, health_max_age=30.0)
        self.loop = LoopThread("facade-app").start()
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        self.port = 0
        self.run = RunSequence()

    async def _start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_context())
        await site.start()
        self.port = self._runner.addresses[0][1]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def feed(self, *paths: str) -> None:
        for path in paths:
            assert _deliver(self.state, _reading(path, self.run))

    def status(
        self, endpoints: dict[str, str], gateway_state: str = "ok", interval: float = 2.0
    ) -> None:
        assert _deliver(self.state, _status(self.run, endpoints, gateway_state, interval))

    def stop(self) -> None:
        self.loop.run(self._runner.cleanup())
        self.loop.stop()


@pytest.fixture
def served() -> Iterator[Served]:
    facade = Served()
    facade.loop.run(facade._start())
    yield facade
    facade.stop()


def _http() -> requests.Session:
    session = requests.Session()
    session.verify = False
    session.trust_env = False
    return session


def _login(http: requests.Session, url: str, password: str = PASSWORD) -> requests.Response:
    return http.post(
        f"{url}/api/login/Basic",
        json={"username": "customer", "password": password, "email": "me@home.invalid"},
        timeout=5,
    )


def test_login_answers_the_gateways_body_and_cookies(served: Served) -> None:
    served.feed(AGGREGATES)
    http = _http()
    answer = _login(http, served.url)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {
        "email",
        "firstname",
        "lastname",
        "roles",
        "token",
        "provider",
        "loginTime",
    }
    assert body["provider"] == "Basic" and body["roles"] == ["Home_Owner"]
    assert answer.cookies["AuthCookie"] == body["token"] and answer.cookies["UserRecord"]
    assert http.get(f"{served.url}{AGGREGATES}", timeout=5).content == GATEWAY.get(AGGREGATES).body
    bearer = _http().get(
        f"{served.url}{AGGREGATES}", headers={"Authorization": f"Bearer {body['token']}"}, timeout=5
    )
    assert bearer.status_code == 200
    form = _http().post(
        f"{served.url}/api/login/Basic",
        data={"username": "customer", "password": PASSWORD, "email": "x", "clientInfo": "tz"},
        timeout=5,
    )
    assert form.status_code == 200 and "AuthCookie" in form.cookies


def test_strangers_and_wrong_passwords_get_the_gateways_answers(served: Served) -> None:
    served.feed(AGGREGATES, "/api/status")
    http = _http()
    refused = http.get(f"{served.url}{AGGREGATES}", timeout=5)
    assert refused.status_code == 403
    assert refused.json() == {"code": 403, "error": "Unable to GET to resource", "message": DENIED}
    assert http.get(f"{served.url}/api/status", timeout=5).status_code == 200  # open, as there
    wrong = _login(http, served.url, "not-it")
    assert wrong.status_code == 401
    assert wrong.json() == {"code": 401, "error": "bad credentials", "message": "Login Error"}
    assert "AuthCookie" not in wrong.cookies
    garbled = http.post(
        f"{served.url}/api/login/Basic",
        data=b"\xff\xfe",
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert garbled.status_code == 400


def test_too_many_wrong_passwords_answer_429() -> None:
    facade = Served(max_failed=2)
    facade.loop.run(facade._start())
    try:
        http = _http()
        statuses = [_login(http, facade.url, "guess").status_code for _ in range(3)]
        assert statuses == [401, 401, 429]
        limited = _login(http, facade.url)  # even the right one, for the rest of the minute
        assert limited.json() == {
            "code": 429,
            "error": "Api Limit reached for this endpoint",
            "message": "API Limit Reached",
        }
    finally:
        facade.stop()


def test_logout_ends_the_session_and_expires_both_cookies(served: Served) -> None:
    served.feed(AGGREGATES)
    http = _http()
    _login(http, served.url)
    answer = http.get(f"{served.url}/api/logout", timeout=5)
    assert answer.status_code == 204
    set_cookie = answer.raw.headers.getlist("Set-Cookie")
    assert sorted(line.split("=", 1)[0] for line in set_cookie) == ["AuthCookie", "UserRecord"]
    assert all("Max-Age=0" in line for line in set_cookie)
    assert not http.cookies
    assert http.get(f"{served.url}{AGGREGATES}", timeout=5).status_code == 403
    assert len(served.sessions) == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/operation"),
        ("POST", "/api/v2/islanding/mode"),
        ("POST", "/api/site_info/site_name"),
        ("PUT", "/api/operation"),
        ("GET", "/api/sitemaster/run"),
        ("GET", "/api/sitemaster/stop"),
        ("GET", "/api/config/completed"),
    ],
)
def test_writes_and_actions_are_refused_as_to_a_customer(
    served: Served, method: str, path: str
) -> None:
    http = _http()
    _login(http, served.url)
    answer = http.request(method, f"{served.url}{path}", json={"real_mode": "backup"}, timeout=5)
    assert answer.status_code == 403
    assert answer.json() == {
        "code": 403,
        "error": f"Unable to {method} to resource",
        "message": DENIED,
    }


def test_paths_without_a_body_answer_like_the_gateway(served: Served) -> None:
    http = _http()
    _login(http, served.url)
    unknown = http.get(f"{served.url}/api/not/a/path", timeout=5)
    assert unknown.status_code == 404 and unknown.json()["code"] == 404
    pending = http.get(f"{served.url}{AGGREGATES}", timeout=5)  # read, not arrived yet
    assert (pending.status_code, pending.content) == (502, b"")
    served.feed(AGGREGATES, VITALS)
    assert http.get(f"{served.url}{AGGREGATES}", timeout=5).status_code == 200
    served.status({AGGREGATES: "stopped", VITALS: "missing"}, "site_controller_stopped")
    stopped = http.get(f"{served.url}{AGGREGATES}", timeout=5)
    assert (stopped.status_code, stopped.content) == (502, b"")  # as the stopped gateway
    assert http.get(f"{served.url}{VITALS}", timeout=5).status_code == 404  # firmware 23.44+
    served.status({AGGREGATES: "ok", VITALS: "ok"})
    assert http.get(f"{served.url}{AGGREGATES}", timeout=5).status_code == 200
    query = http.get(f"{served.url}{AGGREGATES}?foo=1", timeout=5)  # ignored, as there
    assert query.content == GATEWAY.get(AGGREGATES).body


def test_a_reading_the_poller_has_not_renewed_for_three_reads_is_not_served(
    served: Served,
) -> None:
    http = _http()
    _login(http, served.url)
    served.feed(AGGREGATES, "/api/status")
    served.status({AGGREGATES: "ok"}, interval=2.0)
    served.now[0] += 29.0  # within max(3 reads, health_max_age 30 s)
    assert http.get(f"{served.url}{AGGREGATES}", timeout=5).status_code == 200
    served.now[0] += 2.0
    stale = http.get(f"{served.url}{AGGREGATES}", timeout=5)
    assert (stale.status_code, stale.content) == (502, b"")
    assert stale.headers["X-Pwbus-Problem"] == "the latest reading is 31 s old"
    # a path whose cadence the poller did not say (or a slow one) is still served
    assert http.get(f"{served.url}/api/status", timeout=5).status_code == 200
    served.status({AGGREGATES: "ok", "/api/status": "ok"}, interval=300.0)
    assert http.get(f"{served.url}{AGGREGATES}", timeout=5).status_code == 200
    served.feed(AGGREGATES)  # a new reading: served again at any cadence
    served.status({AGGREGATES: "ok"}, interval=2.0)
    assert http.get(f"{served.url}{AGGREGATES}", timeout=5).status_code == 200


def test_health_follows_the_proxys_rules(served: Served) -> None:
    http = _http()  # no login needed
    first = http.get(f"{served.url}/health", timeout=5)
    assert first.status_code == 503
    assert first.json()["problems"] == [
        "not connected to the message bus",
        "no meter data received yet",
    ]
    served.state.bus_connected = True
    served.feed(AGGREGATES)
    healthy = http.get(f"{served.url}/health", timeout=5).json()
    assert healthy["status"] == "ok" and healthy["problems"] == []
    assert healthy["bus_connected"] is True and healthy["meters_age_seconds"] < 5
    served.status({}, "unreachable")
    trouble = http.get(f"{served.url}/health", timeout=5)
    assert trouble.status_code == 503
    assert trouble.json()["problems"] == ["the poller reports the gateway as unreachable"]


# --------------------------------------------------------------------------- certificate


def _config(tmp_path: Path, **facade: Any) -> FacadeConfig:
    return FacadeConfig(
        facade=FacadeSettings(password=PASSWORD, **facade),
        amqp=AmqpSettings(),
        state_dir=tmp_path / "state",
    )


def test_a_made_certificate_is_kept_so_its_fingerprint_stays(tmp_path: Path) -> None:
    context, first = tls_context(_config(tmp_path))
    _, again = tls_context(_config(tmp_path))
    assert first == again and len(first) == 64
    key = tmp_path / "state" / TLS_FOLDER / "key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # the fingerprint is the one a client sees
    with contextlib.closing(socket.socket()) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port)) as raw:
            accepted, _ = listener.accept()
            server_side = threading.Thread(
                target=lambda: context.wrap_socket(accepted, server_side=True), daemon=True
            )
            server_side.start()
            with client.wrap_socket(raw) as tls:
                der = tls.getpeercert(binary_form=True)
            server_side.join(5)
            accepted.close()
    assert der is not None and hashlib.sha256(der).hexdigest() == first


def test_given_certificate_files_are_used_and_bad_ones_are_a_config_error(
    tmp_path: Path,
) -> None:
    from powerwall_bus.shared.certs import make_self_signed
    from powerwall_bus.shared.errors import ConfigError

    cert, key = make_self_signed(tmp_path / "mine")
    _, print_ = tls_context(_config(tmp_path, cert_file=cert, key_file=key))
    assert not (tmp_path / "state" / TLS_FOLDER).exists()
    assert len(print_) == 64
    cert.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"facade\.cert_file"):
        tls_context(_config(tmp_path, cert_file=cert, key_file=key))
    with pytest.raises(ConfigError, match="go together"):
        FacadeSettings(password=PASSWORD, cert_file=cert)


def test_the_command_needs_the_facades_own_password() -> None:
    env = {"PATH": "/usr/bin:/bin", "PW_PASSWORD": "the-gateways"}
    ran = subprocess.run(
        [sys.executable, "-m", "powerwall_bus", "facade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 2
    assert "facade.password: is required" in ran.stderr and "the-gateways" not in ran.stderr
