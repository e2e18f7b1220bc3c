"""Lock-out protection against the simulator over real HTTPS: refused paths, the login cap,
the wrong-password back-off across restarts, and 5xx with Retry-After.

The client tests move a fake wall clock; the reader tests run the real reader thread against
the simulator and read the poller status it puts in its outbox.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from powerwall_bus.producers.poller.health import Health
from powerwall_bus.producers.poller.outbox import Outbox
from powerwall_bus.producers.poller.reader import GatewayReader, intervals_for
from powerwall_bus.shared.errors import (
    BadCredentials,
    GatewayServerError,
    GatewayUnreachable,
    LoginCapReached,
    SessionRejected,
)
from powerwall_bus.shared.gateway.client import GatewayClient
from powerwall_bus.shared.messages import parse_envelope
from powerwall_bus.shared.settings import GatewaySettings, PollerSettings
from powerwall_bus.simulator.faults import FaultSet
from tests.conftest import sim_counts
from tests.support.waiting import wait_until

AGGREGATES = "/api/meters/aggregates"
SOE = "/api/system_status/soe"
LOGIN = "/api/login/Basic"


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _faults(sim, *specs: str) -> None:
    sim.server.set_faults(FaultSet.parse(list(specs)))


def _logins(sim) -> int:
    return int(sim_counts(sim)["requests"].get(LOGIN, 0))


# --------------------------------------------------------------------------- client


def test_a_refused_path_costs_one_relogin_then_none(sim, gateway_settings) -> None:
    _faults(sim, f"http-error=401@{AGGREGATES}")
    with GatewayClient(gateway_settings) as client:
        assert "percentage" in client.get_json(SOE)
        with pytest.raises(SessionRejected, match="fresh login"):
            client.get_json(AGGREGATES)
        assert _logins(sim) == 2  # the first login, and the one that did not cure the path
        assert client.refused_paths == {AGGREGATES}
        for _ in range(10):
            with pytest.raises(SessionRejected, match="not logging in again"):
                client.get_json(AGGREGATES)
            assert "percentage" in client.get_json(SOE)  # the same session still works
        assert _logins(sim) == 2
        _faults(sim)
        assert "site" in client.get_json(AGGREGATES)
        assert client.refused_paths == frozenset()
    assert _logins(sim) == 2


def test_login_cap_holds_across_a_restart(sim, gateway_settings) -> None:
    clock = FakeClock()
    settings = replace(gateway_settings, max_logins_per_hour=3)
    with GatewayClient(settings, clock=clock) as client:
        for _ in range(3):
            client.login()
            clock.now += 60
        with pytest.raises(LoginCapReached) as caught:
            client.login()
        assert caught.value.until == pytest.approx(clock.now - 180 + 3600)
        assert client.logins_last_hour == 3
        assert client.login_blocked_until == pytest.approx(caught.value.until)
    assert _logins(sim) == 3
    # A restart (a new client, the same state folder) cannot log in either: an expired
    # session needs a login, and the cap refuses it without a request.
    sim.server.expire_sessions()
    with GatewayClient(settings, clock=clock) as restarted:
        with pytest.raises(LoginCapReached):
            restarted.get_json(AGGREGATES)
        assert restarted.logins_last_hour == 3
        assert _logins(sim) == 3
        clock.now = caught.value.until  # the oldest login leaves the window
        assert "site" in restarted.get_json(AGGREGATES)
    assert _logins(sim) == 4


def test_logins_the_gateway_never_answered_do_not_count(tmp_path: Path) -> None:
    settings = GatewaySettings(
        host="127.0.0.1:9", password="x", state_dir=tmp_path, connect_timeout=0.5
    )
    with GatewayClient(settings) as client:
        for _ in range(8):
            with pytest.raises(GatewayUnreachable):
                client.login()
        assert client.logins_last_hour == 0


def test_wrong_password_back_off_survives_a_restart(sim, gateway_settings) -> None:
    clock = FakeClock()
    wrong = replace(gateway_settings, password="Wrong-Pass-123")
    with GatewayClient(wrong, clock=clock) as client, pytest.raises(BadCredentials):
        client.get_json(AGGREGATES)
    assert _logins(sim) == 1
    clock.now += 100
    with GatewayClient(wrong, clock=clock) as restarted:
        with pytest.raises(BadCredentials, match="not retrying"):
            restarted.get_json(AGGREGATES)
        assert restarted.login_blocked_until == pytest.approx(clock.now + 200)
    assert _logins(sim) == 1  # the restart sent nothing
    stored = json.loads(gateway_settings.session_file.read_text())
    assert "Wrong-Pass-123" not in json.dumps(stored)
    # A corrected password is not held back by the wrong one's back-off.
    with GatewayClient(gateway_settings, clock=clock) as fixed:
        assert "site" in fixed.get_json(AGGREGATES)
    assert _logins(sim) == 2


def test_the_wrong_password_is_tried_again_after_the_back_off(sim, gateway_settings) -> None:
    clock = FakeClock()
    wrong = replace(gateway_settings, password="Wrong-Pass-123")
    with GatewayClient(wrong, clock=clock) as client, pytest.raises(BadCredentials):
        client.login()
    clock.now += 301
    with (
        GatewayClient(wrong, clock=clock) as restarted,
        pytest.raises(BadCredentials, match="bad credentials"),
    ):
        restarted.login()
    assert _logins(sim) == 2


@pytest.mark.parametrize(
    ("header", "expected"),
    [("3", 3.0), ("date+7", 7.0), (None, None), ("soon", None)],
    ids=["seconds", "http-date", "absent", "unreadable"],
)
def test_5xx_carries_retry_after(sim, gateway_settings, header, expected) -> None:
    specs = [f"http-error=503@{AGGREGATES}"]
    if header == "date+7":
        header = email.utils.formatdate(time.time() + 7, usegmt=True)
    if header is not None:
        specs.append(f"retry-after={header}")
    _faults(sim, *specs)
    with GatewayClient(gateway_settings) as client, pytest.raises(GatewayServerError) as caught:
        client.get_json(AGGREGATES)
    assert caught.value.status == 503
    if expected is None:
        assert caught.value.retry_after is None
    else:
        assert caught.value.retry_after == pytest.approx(expected, abs=1.5)


# --------------------------------------------------------------------------- reader


class ReaderRun:
    """The real reader in a thread against the simulator, its status read from the outbox."""

    def __init__(self, settings: GatewaySettings, poller: PollerSettings) -> None:
        self.client = GatewayClient(settings)
        self.outbox = Outbox(10_000)
        self.health = Health(intervals_for(poller), time.time())
        self.stop = threading.Event()
        self.reader = GatewayReader(self.client, poller, self.outbox, self.health, self.stop)
        self.thread = threading.Thread(target=self.reader.run, daemon=True)

    def status(self) -> dict:
        """The latest poller status payload put in the outbox."""
        for message in self.outbox.latest():
            envelope = parse_envelope(message.body)
            if envelope.kind == "poller.status":
                return dict(envelope.payload)
        return {}


@pytest.fixture
def reader_run(sim, gateway_settings) -> Iterator[ReaderRun]:
    run = ReaderRun(gateway_settings, PollerSettings(status_interval=1.0))
    yield run
    run.stop.set()
    run.thread.join(10)
    run.client.close()


def _request_times(sim, path: str, seconds: float) -> list[float]:
    """When requests for ``path`` reached the simulator, sampled every 50 ms for ``seconds``."""
    times: list[float] = []
    start = time.monotonic()
    last = sim.server.counters.by_path[path]
    while time.monotonic() - start < seconds:
        now = sim.server.counters.by_path[path]
        times.extend([time.monotonic() - start] * (now - last))
        last = now
        time.sleep(0.05)
    return times


@pytest.mark.slow
def test_401_on_one_path_for_40_s_is_not_a_login_storm(sim, reader_run) -> None:
    _faults(sim, f"http-error=401@{AGGREGATES}")
    sim.server.reset_counts()
    reader_run.thread.start()
    time.sleep(40)
    counts = sim_counts(sim)["requests"]
    assert counts.get(LOGIN, 0) <= 2
    assert counts[AGGREGATES] <= 3  # refused, then backing off a minute
    assert counts[SOE] >= 15  # the other paths keep flowing on the same session
    status = wait_until(lambda: reader_run.status().get("endpoints"), 5) and reader_run.status()
    meters = status["endpoints"][AGGREGATES]
    assert meters["state"] == "refused"
    assert meters["retry_at"] is not None
    assert status["endpoints"][SOE]["state"] == "ok"
    assert status["gateway_state"] == "ok"
    assert status["logins_last_hour"] <= 2


def test_503_with_retry_after_is_retried_after_it(sim, reader_run) -> None:
    _faults(sim, f"http-error=503@{AGGREGATES}", "retry-after=3")
    reader_run.thread.start()
    times = _request_times(sim, AGGREGATES, 11)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 3, times
    assert all(2.5 <= gap <= 5.0 for gap in gaps), gaps  # ~3 s (on the 2 s grid), not 300 s
    status = reader_run.status()
    meters = status["endpoints"][AGGREGATES]
    assert meters["state"] == "failing" and meters["errors"]["HTTP503"] >= 2
    assert meters["retry_at"] is not None
    _faults(sim)
    assert wait_until(lambda: reader_run.status()["endpoints"][AGGREGATES]["state"] == "ok", 8)
    assert reader_run.status()["endpoints"][AGGREGATES]["retry_at"] is None


@pytest.mark.slow
def test_503_without_retry_after_backs_off_growing_from_seconds(sim, reader_run) -> None:
    _faults(sim, f"http-error=503@{AGGREGATES}")
    reader_run.thread.start()
    times = _request_times(sim, AGGREGATES, 24)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) >= 2, times
    assert 3.0 <= gaps[0] <= 7.0, gaps  # 5 s (jittered, on the 2 s grid)
    assert gaps[1] > gaps[0] and gaps[1] <= 12.0, gaps  # then 10 s
    assert reader_run.status()["endpoints"][AGGREGATES]["retry_at"] is not None
