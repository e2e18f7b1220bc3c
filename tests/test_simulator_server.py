"""The simulator's HTTPS shell over real sockets: login, sessions, faults, counts, replay, CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.faults import FaultSet, parse_fault
from powerwall_bus.simulator.replay import FixtureReplay, parse_http_capture
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.conftest import SHARED_FIXTURES, SIM_PASSWORD, sim_counts

AGGREGATES = "/api/meters/aggregates"


def _http() -> requests.Session:
    session = requests.Session()
    session.verify = False
    session.trust_env = False
    return session


def _login(http: requests.Session, url: str, password: str = SIM_PASSWORD) -> requests.Response:
    return http.post(
        f"{url}/api/login/Basic",
        timeout=5,
        json={"username": "customer", "password": password, "email": "a@b.c"},
    )


def test_login_sets_cookies_and_token(sim) -> None:
    http = _http()
    response = _login(http, sim.url)
    assert response.status_code == 200
    body = response.json()
    assert body["token"] and body["provider"] == "Basic"
    assert response.cookies["AuthCookie"] == body["token"]
    assert "UserRecord" in response.cookies
    data = http.get(f"{sim.url}{AGGREGATES}", timeout=5, cookies={"AuthCookie": body["token"]})
    assert data.status_code == 200
    assert data.headers["Cache-Control"] == "no-cache, no-store"


def test_form_encoded_login_like_pypowerwall(sim) -> None:
    response = _http().post(
        f"{sim.url}/api/login/Basic",
        timeout=5,
        data={
            "username": "customer",
            "password": SIM_PASSWORD,
            "email": "x",
            "clientInfo": "timezone",
        },
    )
    assert response.status_code == 200


def test_wrong_password_and_missing_session(sim) -> None:
    http = _http()
    refused = _login(http, sim.url, "nope-nope")
    assert refused.status_code == 401
    assert refused.json() == {"code": 401, "error": "bad credentials", "message": "Login Error"}
    assert http.get(f"{sim.url}{AGGREGATES}", timeout=5).status_code == 403
    assert http.get(f"{sim.url}/api/status", timeout=5).status_code == 200  # open
    counts = sim_counts(sim)
    assert counts["login_failures"] == 1
    assert counts["requests"] == {"/api/login/Basic": 1, AGGREGATES: 1, "/api/status": 1}


def test_sessions_expire_after_ttl() -> None:
    now = [1000.0]
    server = GatewayServer(
        SimulatedGateway(SiteOptions(seed=3)),
        password="pw-12345",
        session_ttl=60,
        clock=lambda: now[0],
    )
    with SimulatorRunner(server, ssl_context=server_context()) as runner:
        http = _http()
        token = _login(http, runner.url, "pw-12345").json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert http.get(f"{runner.url}{AGGREGATES}", headers=headers, timeout=5).ok
        now[0] += 61
        assert http.get(f"{runner.url}{AGGREGATES}", headers=headers, timeout=5).status_code == 403


def test_logout_invalidates_the_token(sim) -> None:
    http = _http()
    token = _login(http, sim.url).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert http.get(f"{sim.url}/api/logout", headers=headers, timeout=5).status_code == 204
    assert http.get(f"{sim.url}{AGGREGATES}", headers=headers, timeout=5).status_code == 403


def test_rate_limit_after_n_requests_per_minute(sim) -> None:
    http = _http()
    token = _login(http, sim.url).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    sim.server.set_faults(FaultSet.parse(["rate-limit-requests=3", "rate-limit-seconds=60"]))
    statuses = [
        http.get(f"{sim.url}{AGGREGATES}", headers=headers, timeout=5).status_code for _ in range(5)
    ]
    assert statuses == [200, 200, 200, 429, 429]
    body = http.get(f"{sim.url}/api/status", timeout=5).json()
    assert body["code"] == 429 and body["message"] == "API Limit Reached"


def test_control_endpoint_switches_faults_while_running(sim) -> None:
    http = _http()
    token = _login(http, sim.url).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    answer = http.post(f"{sim.url}/_sim/faults", json={"set": ["stopped", "islanded"]}, timeout=5)
    assert sorted(answer.json()["faults"]) == ["islanded", "stopped"]
    stopped = http.get(f"{sim.url}{AGGREGATES}", headers=headers, timeout=5)
    assert stopped.status_code == 502 and stopped.content == b""
    http.post(f"{sim.url}/_sim/faults", json={"clear": ["stopped"]}, timeout=5)
    grid = http.get(f"{sim.url}/api/system_status/grid_status", headers=headers, timeout=5).json()
    assert grid["grid_status"] == "SystemIslandedActive"
    bad = http.post(f"{sim.url}/_sim/faults", json={"set": ["melted"]}, timeout=5)
    assert bad.status_code == 400 and "unknown fault" in bad.json()["error"]
    assert "/_sim/faults" not in sim_counts(sim)["requests"]


def test_latency_fault(sim) -> None:
    sim.server.set_faults(FaultSet.parse(["latency=0.4@/api/status"]))
    start = time.monotonic()
    assert _http().get(f"{sim.url}/api/status", timeout=5).ok
    assert time.monotonic() - start >= 0.4


def test_other_methods_are_refused_like_writes(sim) -> None:
    http = _http()
    token = _login(http, sim.url).json()["token"]
    reply = http.put(
        f"{sim.url}/api/operation", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert reply.status_code == 403
    assert reply.json()["error"] == "Unable to PUT to resource"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("bogus", "unknown fault"),
        ("latency=abc", "needs a number"),
        ("stopped@/api/x", "whole"),
        ("firmware", "needs a value"),
        ("latency=-1", "negative"),
    ],
)
def test_fault_specs_are_checked(spec: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_fault(spec)


def test_fault_spec_round_trip() -> None:
    faults = FaultSet.parse(["latency=0.5@/api/a,/api/b", "stopped", "latency=1"])
    assert faults.value("latency") == 1.0  # the later spec wins
    assert FaultSet.parse(faults.specs()) == faults
    assert faults.without(["stopped"]).get("stopped") is None


# --------------------------------------------------------------------------- replay


def test_replay_serves_bodies_and_http_captures(tmp_path: Path) -> None:
    (tmp_path / "api_status__v1.json").write_bytes(b'{"version": "1.0", "din": "X"}\n')
    (tmp_path / "api_status__v2.json").write_bytes(b'{"version": "2.0"}')
    (tmp_path / "api_site_info.json").write_bytes(b'{"site_name": "Home"}')
    (tmp_path / "api_meters_aggregates__v1.http").write_bytes(
        b"HTTP/2 502 \r\ncache-control: no-cache, no-store\r\ncontent-length: 0\r\n\r\n"
    )
    replay = FixtureReplay(tmp_path, "v1")
    server = GatewayServer(SimulatedGateway(SiteOptions()), password="pw-12345", replay=replay)
    with SimulatorRunner(server, ssl_context=server_context()) as runner:
        http = _http()
        status = http.get(f"{runner.url}/api/status", timeout=5)
        assert status.content == b'{"version": "1.0", "din": "X"}\n'
        token = _login(http, runner.url, "pw-12345").json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert http.get(f"{runner.url}/api/site_info", headers=headers, timeout=5).content == (
            b'{"site_name": "Home"}'
        )
        stopped = http.get(f"{runner.url}{AGGREGATES}", headers=headers, timeout=5)
        assert (stopped.status_code, stopped.content) == (502, b"")
        assert (
            http.get(f"{runner.url}/api/powerwalls", headers=headers, timeout=5).status_code == 404
        )
    with pytest.raises(ConfigError, match="variant"):
        FixtureReplay(tmp_path, "v9")


def test_parse_http_capture() -> None:
    reply = parse_http_capture(
        b'HTTP/2 500 \r\ncontent-type: application/json\r\n\r\n{"code":500}\n', "x.http"
    )
    assert (reply.status, reply.body, reply.content_type) == (
        500,
        b'{"code":500}\n',
        "application/json",
    )
    with pytest.raises(ConfigError):
        parse_http_capture(b"garbage", "y.http")


@pytest.mark.conformance
def test_replay_of_recorded_gateway_fixtures() -> None:
    folder = SHARED_FIXTURES / "gateway" / "powerwall2"
    if not folder.is_dir():
        pytest.skip("../shared/fixtures is not beside this checkout")
    replay = FixtureReplay(folder, "21.44-running")
    server = GatewayServer(SimulatedGateway(SiteOptions()), password="pw-12345", replay=replay)
    checked = 0
    with SimulatorRunner(server, ssl_context=server_context()) as runner:
        http = _http()
        token = _login(http, runner.url, "pw-12345").json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        for file in sorted(folder.iterdir()):
            stem, _, variant = file.stem.partition("__")
            if variant not in ("21.44-running", "") or stem == "api_login_Basic":
                continue
            if variant == "" and any(folder.glob(f"{stem}__21.44-running.*")):
                continue
            expected = parse_http_capture(file.read_bytes()) if file.suffix == ".http" else None
            # A request path maps to a file name by "/" -> "_"; the stem itself maps to itself,
            # which avoids guessing where the recorded path had "/" and where "_".
            reply = http.get(f"{runner.url}/{stem}", headers=headers, timeout=5)
            if expected is not None:
                assert reply.status_code == expected.status, file.name
                assert reply.content == expected.body, file.name
            else:
                assert reply.status_code == 200, file.name
                assert reply.content == file.read_bytes(), file.name
            checked += 1
    assert checked > 40


# --------------------------------------------------------------------------- CLI


def test_pwbus_simulate_command_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PWBUS_SIM_PASSWORD": "cli-Pass-1", "PWBUS_LOG_LEVEL": "INFO"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "powerwall_bus",
            "simulate",
            "--port",
            "0",
            "--seed",
            "9",
            "--speed",
            "60",
            "--fault",
            "latency=0.01",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        url = None
        deadline = time.monotonic() + 20
        lines = []
        assert process.stderr is not None
        while time.monotonic() < deadline and url is None:
            line = process.stderr.readline()
            lines.append(line)
            match = re.search(r"listening on (https://\S+?)(,|\s|$)", line)
            url = match.group(1) if match else None
        assert url, "".join(lines)
        http = _http()
        token = _login(http, url, "cli-Pass-1").json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        samples = []
        for _ in range(3):
            time.sleep(0.5)
            samples.append(http.get(f"{url}{AGGREGATES}", headers=headers, timeout=5).json())
        assert samples[0]["load"]["instant_power"] != samples[-1]["load"]["instant_power"]
        counts = http.get(f"{url}/_sim/counts", timeout=5).json()
        assert counts["requests"][AGGREGATES] == 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        tail = process.stderr.read()
        assert "stopping the simulated gateway" in tail
        assert "cli-Pass-1" not in "".join(lines) + tail
    finally:
        if process.poll() is None:
            process.kill()


def test_pwbus_simulate_bad_flag_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "powerwall_bus", "simulate", "--powerwalls", "7"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "simulator.powerwalls" in result.stderr and "must be 1, 2, 3 or 4" in result.stderr


def test_simctl_reads_counts(sim) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "powerwall_bus", "simctl", "--url", sim.url, "counts"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total"] == 0


def test_curl_login_then_aggregates_balance_over_time(sim, tmp_path: Path) -> None:
    """The issue's check, with curl -k itself: login, then aggregates that move and balance."""
    curl = shutil.which("curl")
    assert curl, "curl is needed for this test (apt-get install curl)"
    jar = tmp_path / "cookies"
    login = subprocess.run(
        [
            curl,
            "-sk",
            "-c",
            str(jar),
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps({"username": "customer", "password": SIM_PASSWORD, "email": "me@home"}),
            f"{sim.url}/api/login/Basic",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert json.loads(login.stdout)["token"]
    samples = []
    for _ in range(3):
        out = subprocess.run(
            [curl, "-sk", "-b", str(jar), f"{sim.url}{AGGREGATES}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        samples.append(json.loads(out))
        time.sleep(1.1)
    meter_fields = {
        "last_communication_time",
        "instant_power",
        "instant_reactive_power",
        "instant_apparent_power",
        "frequency",
        "energy_exported",
        "energy_imported",
        "instant_average_voltage",
        "instant_average_current",
        "i_a_current",
        "i_b_current",
        "i_c_current",
        "timeout",
        "instant_total_current",
    }
    for sample in samples:
        assert {"site", "battery", "load", "solar"} <= set(sample)
        for meter in ("site", "battery", "load", "solar"):
            assert meter_fields <= set(sample[meter]), meter
        load = sample["load"]["instant_power"]
        total = sum(sample[m]["instant_power"] for m in ("site", "solar", "battery"))
        assert abs(load - total) <= max(1.0, 0.01 * abs(load))
    assert samples[0]["load"]["energy_imported"] < samples[-1]["load"]["energy_imported"]
    assert len({s["load"]["last_communication_time"] for s in samples}) == 3
