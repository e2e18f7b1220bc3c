"""The simulator answers a customer (and nobody) as a real gateway does: 403 bodies, logout
that expires the cookies, the site-controller actions, and the Powerwall 3 profile."""

from __future__ import annotations

import pytest
import requests

from powerwall_bus.shared.certs import server_context
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.endpoints.routes import POWERWALL3_PATHS
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.conftest import SIM_PASSWORD

AGGREGATES = "/api/meters/aggregates"
DENIED = "User does not have adequate access rights"


def _http() -> requests.Session:
    session = requests.Session()
    session.verify = False
    session.trust_env = False
    return session


def _logged_in(url: str, password: str = SIM_PASSWORD) -> requests.Session:
    http = _http()
    answer = http.post(
        f"{url}/api/login/Basic",
        json={"username": "customer", "password": password, "email": "a@b.c"},
        timeout=5,
    )
    assert answer.status_code == 200
    return http  # the session keeps the AuthCookie/UserRecord cookies


def test_no_session_gets_the_gateways_403_body(sim) -> None:
    answer = _http().get(f"{sim.url}{AGGREGATES}", timeout=5)
    assert answer.status_code == 403
    assert answer.json() == {"code": 403, "error": "Unable to GET to resource", "message": DENIED}
    # an unknown path is refused the same way before a login (the gateway checks first)
    assert _http().get(f"{sim.url}/api/nothing/here", timeout=5).status_code == 403


def test_logout_expires_both_cookies(sim) -> None:
    http = _logged_in(sim.url)
    assert http.get(f"{sim.url}{AGGREGATES}", timeout=5).status_code == 200
    answer = http.get(f"{sim.url}/api/logout", timeout=5)
    assert answer.status_code == 204
    set_cookie = answer.raw.headers.getlist("Set-Cookie")
    assert sorted(line.split("=", 1)[0] for line in set_cookie) == ["AuthCookie", "UserRecord"]
    assert all("Max-Age=0" in line for line in set_cookie), set_cookie
    assert "AuthCookie" not in http.cookies and "UserRecord" not in http.cookies
    assert http.get(f"{sim.url}{AGGREGATES}", timeout=5).status_code == 403


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/operation", {"real_mode": "backup", "backup_reserve_percent": 100}),
        ("/api/v2/islanding/mode", {"island_mode": "intentional_reconnect_failsafe"}),
        ("/api/site_info/site_name", {"site_name": "Elsewhere"}),
        ("/api/sitemaster/run_for_commissioning", {}),
    ],
)
def test_writes_of_a_customer_are_refused(sim, path: str, body: dict) -> None:
    http = _logged_in(sim.url)
    before = http.get(f"{sim.url}/api/operation", timeout=5).content
    answer = http.post(f"{sim.url}{path}", json=body, timeout=5)
    assert answer.status_code == 403
    assert answer.json() == {"code": 403, "error": "Unable to POST to resource", "message": DENIED}
    assert http.get(f"{sim.url}/api/operation", timeout=5).content == before
    # without a session the same body
    assert _http().post(f"{sim.url}{path}", json=body, timeout=5).json()["code"] == 403


def test_site_controller_actions_answer_as_documented(sim) -> None:
    http = _logged_in(sim.url)
    run = http.get(f"{sim.url}/api/sitemaster/run", timeout=5)
    assert (run.status_code, run.content) == (202, b"")
    stop = http.get(f"{sim.url}/api/sitemaster/stop", timeout=5)
    assert stop.status_code == 500
    assert stop.json() == {
        "code": 500,
        "error": "Cannot Start Wizard",
        "message": "Unable to stop sitemaster",
    }
    assert http.get(f"{sim.url}{AGGREGATES}", timeout=5).status_code == 200  # still running
    completed = http.get(f"{sim.url}/api/config/completed", timeout=5)
    assert completed.status_code == 202
    status = http.get(f"{sim.url}/api/status", timeout=5).json()
    assert completed.json()["din"] == status["din"] == sim.server.gateway.din
    assert completed.json().keys() == status.keys()
    # none of them is a reading: the gateway's list of 200 paths leaves them out
    assert not {"/api/sitemaster/run", "/api/sitemaster/stop", "/api/config/completed"} & (
        sim.server.gateway.paths
    )
    # and without a session they are refused like everything else
    assert _http().get(f"{sim.url}/api/sitemaster/run", timeout=5).status_code == 403


def test_powerwall3_profile_answers_only_the_live_paths() -> None:
    # a stopped clock: every answer is the same body, so the server's can be compared exactly
    gateway = SimulatedGateway(SiteOptions(seed=5, powerwall3=True), clock=lambda: 1.76e9)
    assert gateway.paths == frozenset(POWERWALL3_PATHS)
    server = GatewayServer(gateway, password="pw3-pass")
    with SimulatorRunner(server, ssl_context=server_context()) as runner:
        anonymous = _http()
        assert anonymous.get(f"{runner.url}/api/status", timeout=5).status_code == 404
        din = anonymous.get(f"{runner.url}/tedapi/din", timeout=5)
        assert din.status_code == 403 and DENIED in din.text  # how scanners spot a PW3
        http = _logged_in(runner.url, "pw3-pass")
        for path in POWERWALL3_PATHS:
            answer = http.get(f"{runner.url}{path}", timeout=5)
            assert answer.status_code == 200, path
            assert answer.content == gateway.get(path).body, path
        for path in ("/api/status", "/api/devices/vitals", "/api/system_status", "/api/site_info"):
            assert http.get(f"{runner.url}{path}", timeout=5).status_code == 404, path


def test_powerwall3_flag_reaches_the_server() -> None:
    from powerwall_bus.shared.settings import SimulatorSettings
    from powerwall_bus.simulator.command import build_server

    server = build_server(SimulatorSettings(powerwall3=True, password="x-12345"))
    assert server.gateway.paths == frozenset(POWERWALL3_PATHS)
    plain = build_server(SimulatorSettings(password="x-12345"))
    assert plain.gateway.get("/api/status").status == 200
