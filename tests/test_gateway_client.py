"""The gateway client against the simulator over real HTTPS: every error type, and politeness.

The simulator's request counters prove how many requests actually reached the "gateway".
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from pathlib import Path

import pytest

from powerwall_bus.shared.errors import (
    BadCredentials,
    DefaultPasswordNotSupported,
    EndpointNotFound,
    GatewayTimeout,
    GatewayUnreachable,
    RateLimited,
    SessionRejected,
    SiteControllerStopped,
    TLSFingerprintMismatch,
    UnexpectedResponse,
)
from powerwall_bus.shared.gateway.client import GatewayClient
from powerwall_bus.shared.gateway.session_store import SessionStore
from powerwall_bus.shared.gateway.transport import fetch_fingerprint
from powerwall_bus.shared.settings import GatewaySettings
from powerwall_bus.simulator.faults import FaultSet
from tests.conftest import SIM_PASSWORD, sim_counts

AGGREGATES = "/api/meters/aggregates"


class FakeClock:
    """A wall clock the test moves by hand (for cool-downs)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _faults(sim, *specs: str) -> None:
    sim.server.set_faults(FaultSet.parse(list(specs)))


def _client(settings: GatewaySettings, **kwargs) -> GatewayClient:
    return GatewayClient(settings, **kwargs)


def test_login_then_aggregates(sim, gateway_settings) -> None:
    with _client(gateway_settings) as client:
        aggregates = client.get_json(AGGREGATES)
    assert set(aggregates) >= {"site", "battery", "load", "solar"}
    assert isinstance(aggregates["site"]["instant_power"], float | int)
    counts = sim_counts(sim)
    assert counts["logins"] == 1
    assert counts["requests"][AGGREGATES] == 1


def test_session_is_saved_0600_and_reused_after_restart(sim, gateway_settings) -> None:
    with _client(gateway_settings) as first:
        first.get_json(AGGREGATES)
    session_file = gateway_settings.session_file
    assert stat.S_IMODE(os.stat(session_file).st_mode) == 0o600
    with _client(gateway_settings) as second:  # a "restart"
        second.get_json(AGGREGATES)
        assert second.logins == 0
    counts = sim_counts(sim)
    assert counts["logins"] == 1
    assert counts["requests"].get("/api/login/Basic", 0) == 1


def test_bearer_token_mode(sim, gateway_settings) -> None:
    settings = GatewaySettings(
        host=gateway_settings.host,
        port=gateway_settings.port,
        password=SIM_PASSWORD,
        state_dir=gateway_settings.state_dir,
        auth_mode="token",
    )
    with _client(settings) as client:
        assert "percentage" in client.get_json("/api/system_status/soe")


def test_status_needs_no_login_and_records_firmware(sim, gateway_settings) -> None:
    with _client(gateway_settings) as client:
        status = client.get_status()
        assert client.firmware == status["version"].split()[0]
        assert client.din == status["din"]
    assert sim_counts(sim)["logins"] == 0


def test_bad_credentials_are_not_retried(sim, gateway_settings, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    settings = GatewaySettings(
        host=gateway_settings.host,
        port=gateway_settings.port,
        password="Wrong-Pass-123",
        state_dir=gateway_settings.state_dir,
    )
    with _client(settings) as client:
        with pytest.raises(BadCredentials, match="bad credentials"):
            client.get_json(AGGREGATES)
        with pytest.raises(BadCredentials, match="not retrying"):
            client.get_json(AGGREGATES)
    counts = sim_counts(sim)
    assert counts["requests"]["/api/login/Basic"] == 1
    assert AGGREGATES not in counts["requests"]
    assert "Wrong-Pass-123" not in caplog.text


def test_default_password_not_supported(sim, gateway_settings) -> None:
    _faults(sim, "default-password")
    with _client(gateway_settings) as client, pytest.raises(DefaultPasswordNotSupported):
        client.login()


def test_expired_session_gets_one_relogin(sim, gateway_settings) -> None:
    with _client(gateway_settings) as client:
        client.get_json(AGGREGATES)
        sim.server.expire_sessions()
        assert "site" in client.get_json(AGGREGATES)
    counts = sim_counts(sim)
    assert counts["logins"] == 2
    assert counts["requests"][AGGREGATES] == 3  # ok, 401, retried ok


def test_refused_even_after_relogin_is_a_clear_failure(sim, gateway_settings) -> None:
    _faults(sim, f"http-error=403@{AGGREGATES}")
    with _client(gateway_settings) as client, pytest.raises(SessionRejected, match="fresh login"):
        client.get_json(AGGREGATES)
    counts = sim_counts(sim)
    assert counts["logins"] == 2
    assert counts["requests"][AGGREGATES] == 2


def test_rate_limit_cooldown_sends_nothing(sim, gateway_settings) -> None:
    clock = FakeClock()
    with _client(gateway_settings, clock=clock) as client:
        client.login()
        _faults(sim, f"http-error=429@{AGGREGATES}")
        with pytest.raises(RateLimited) as caught:
            client.get_json(AGGREGATES)
        assert caught.value.cooldown_until == pytest.approx(clock.now + 300)
        sent = sim_counts(sim)["total"]
        _faults(sim)  # the gateway would answer again, but we must stay quiet
        for path in (AGGREGATES, "/api/status", "/api/system_status/soe"):
            with pytest.raises(RateLimited, match="not sent"):
                client.get_json(path)
        with pytest.raises(RateLimited):
            client.login()
        assert sim_counts(sim)["total"] == sent
        # A restart during the cool-down honours it too.
        with _client(gateway_settings, clock=clock) as restarted, pytest.raises(RateLimited):
            restarted.get_json(AGGREGATES)
        assert sim_counts(sim)["total"] == sent
        clock.now += 301
        assert "site" in client.get_json(AGGREGATES)
    assert sim_counts(sim)["total"] == sent + 1


def test_rate_limited_login(sim, gateway_settings) -> None:
    _faults(sim, "rate-limit-logins=0", "rate-limit-seconds=5")
    with _client(gateway_settings) as client, pytest.raises(RateLimited):
        client.login()


def test_vitals_decoded_before_23_44(sim, gateway_settings) -> None:
    with _client(gateway_settings) as client:
        vitals = client.get_vitals()
    assert any(key.startswith("STSTSM--") for key in vitals)
    assert any(key.startswith("TEPOD--") for key in vitals)


def test_vitals_never_requested_on_23_44_or_later(sim, gateway_settings) -> None:
    sim.server.gateway.set_firmware("24.36.2 7a9a5bd6")
    with _client(gateway_settings) as client:
        for _ in range(3):
            with pytest.raises(EndpointNotFound):
                client.get_vitals()
        client.get_json(AGGREGATES)
    counts = sim_counts(sim)
    assert "/api/devices/vitals" not in counts["requests"]
    assert counts["logins"] == 1


def test_404_is_remembered_and_never_an_auth_failure(sim, gateway_settings) -> None:
    with _client(gateway_settings) as client:
        client.get_status()
        client.login()
        for _ in range(3):
            with pytest.raises(EndpointNotFound):
                client.get_json("/api/no/such/endpoint")
        assert "/api/no/such/endpoint" in client.missing_endpoints
        sim.server.gateway.set_firmware("23.44.0 4e9c9d3a")
        client.get_status()  # firmware changed: forget what was missing
        assert not client.missing_endpoints
    counts = sim_counts(sim)
    assert counts["requests"]["/api/no/such/endpoint"] == 1
    assert counts["logins"] == 1


def test_site_controller_stopped(sim, gateway_settings) -> None:
    _faults(sim, "stopped")
    with _client(gateway_settings) as client:
        with pytest.raises(SiteControllerStopped, match="502"):
            client.get_json(AGGREGATES)
        assert client.get_json("/api/sitemaster")["running"] is False


def test_garbage_body_is_unexpected_response(sim, gateway_settings) -> None:
    with _client(gateway_settings) as client:
        client.login()
        _faults(sim, f"garbage@{AGGREGATES}")
        with pytest.raises(UnexpectedResponse, match="not JSON"):
            client.get_json(AGGREGATES)


def test_read_timeout(sim, gateway_settings) -> None:
    settings = GatewaySettings(
        host=gateway_settings.host,
        port=gateway_settings.port,
        password=SIM_PASSWORD,
        state_dir=gateway_settings.state_dir,
        read_timeout=0.3,
    )
    with _client(settings) as client:
        client.login()
        _faults(sim, f"timeout=2@{AGGREGATES}")
        with pytest.raises(GatewayTimeout, match="read timeout"):
            client.get_json(AGGREGATES)


def test_dropped_connection(sim, gateway_settings) -> None:
    with _client(gateway_settings) as client:
        client.login()
        _faults(sim, f"drop@{AGGREGATES}")
        with pytest.raises(GatewayUnreachable):
            client.get_json(AGGREGATES)
        _faults(sim)
        assert "site" in client.get_json(AGGREGATES)  # the client recovers by itself


def test_unreachable_gateway(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = GatewaySettings(host=f"127.0.0.1:{port}", password="x" * 8, state_dir=tmp_path)
    with GatewayClient(settings) as client, pytest.raises(GatewayUnreachable, match="refused"):
        client.get_status()


def test_tls_ignores_ca_bundle_environment(sim, gateway_settings, monkeypatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    with _client(gateway_settings) as client:
        assert "site" in client.get_json(AGGREGATES)


def test_pinned_fingerprint(sim, gateway_settings, tmp_path) -> None:
    right = fetch_fingerprint("127.0.0.1", gateway_settings.port, 5)
    pinned = GatewaySettings(
        host=gateway_settings.host,
        port=gateway_settings.port,
        password=SIM_PASSWORD,
        state_dir=tmp_path / "a",
        tls_fingerprint=":".join(right[i : i + 2] for i in range(0, 64, 2)),
    )
    with _client(pinned) as client:
        assert client.get_status()["din"]
    wrong = GatewaySettings(
        host=gateway_settings.host,
        port=gateway_settings.port,
        password=SIM_PASSWORD,
        state_dir=tmp_path / "b",
        tls_fingerprint="0" * 64,
    )
    with _client(wrong) as client, pytest.raises(TLSFingerprintMismatch):
        client.get_status()


def test_trust_on_first_use(sim, gateway_settings, tmp_path) -> None:
    settings = GatewaySettings(
        host=gateway_settings.host,
        port=gateway_settings.port,
        password=SIM_PASSWORD,
        state_dir=tmp_path,
        tls_fingerprint="tofu",
    )
    with _client(settings) as client:
        client.get_status()
    saved = SessionStore(settings.session_file).load(settings.base_url)
    assert saved.fingerprint == fetch_fingerprint("127.0.0.1", settings.port, 5)
    # A different certificate at the same address is refused from now on.
    store = SessionStore(settings.session_file)
    saved.fingerprint = "f" * 64
    store.save(settings.base_url, saved)
    with _client(settings) as client, pytest.raises(TLSFingerprintMismatch):
        client.get_status()


def test_secrets_never_logged(sim, gateway_settings, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    with _client(gateway_settings) as client:
        client.get_json(AGGREGATES)
        sim.server.expire_sessions()
        client.get_json(AGGREGATES)
        token = SessionStore(gateway_settings.session_file).load(gateway_settings.base_url).token
    assert token
    assert SIM_PASSWORD not in caplog.text
    assert token not in caplog.text
