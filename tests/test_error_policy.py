"""The error table's rows, and what the reader does with them (fake client, fake clock)."""

from __future__ import annotations

import random
import threading
from typing import Any

import pytest

from powerwall_bus.producers.poller.error_policy import (
    REFUSED_CAP,
    SERVER_ERROR_CAP,
    Then,
    error_label,
    policy_for,
)
from powerwall_bus.producers.poller.health import Health
from powerwall_bus.producers.poller.outbox import Outbox
from powerwall_bus.producers.poller.reader import METERS_PATH, SOE_PATH, GatewayReader
from powerwall_bus.producers.poller.schedule import Schedule
from powerwall_bus.shared.errors import (
    BadCredentials,
    GatewayError,
    GatewayHTTPError,
    GatewayServerError,
    LoginCapReached,
    SessionRejected,
)
from powerwall_bus.shared.gateway.client import STATUS_PATH
from powerwall_bus.shared.messages import iso_time
from powerwall_bus.shared.settings import PollerSettings


def test_rows_for_the_new_errors() -> None:
    server = policy_for(GatewayServerError("x", status=503))
    assert (server.endpoint_state, server.then, server.gateway_state) == (
        "failing",
        Then.RETRY_LATER,
        None,
    )
    assert policy_for(GatewayHTTPError("x", status=400)).then is Then.NEXT_SLOT
    refused = policy_for(SessionRejected("x"))
    assert (refused.endpoint_state, refused.then, refused.gateway_state) == (
        "refused",
        Then.REFUSE_PATH,
        None,  # one refused path is not the gateway's state
    )
    capped = policy_for(LoginCapReached("x", until=1.0))
    assert (capped.endpoint_state, capped.then, capped.gateway_state, capped.requested) == (
        "cooldown",
        Then.WAIT_FOR_LOGIN,
        "login_capped",
        False,
    )
    assert policy_for(BadCredentials("x")).then is Then.RELOGIN_LATER
    assert error_label(GatewayServerError("x", status=503)) == "HTTP503"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class NoJitter(random.Random):
    def random(self) -> float:
        return 0.0


class FakeClient:
    """Answers every path with an empty object, except the errors set in ``fail``."""

    firmware = "23.12.10"
    din = "DIN-1"
    logins = 0
    logins_last_hour = 0
    login_blocked_until = 0.0
    cooldown_remaining = 0.0

    def __init__(self) -> None:
        self.fail: dict[str, GatewayError] = {}
        self.sent: list[str] = []

    def get_json(self, path: str) -> Any:
        self.sent.append(path)
        if path in self.fail:
            raise self.fail[path]
        return {}

    def get_status(self) -> dict[str, Any]:
        return self.get_json(STATUS_PATH)


def _reader(intervals: dict[str, float] | None = None) -> tuple[GatewayReader, FakeClient, Clock]:
    clock = Clock()
    client = FakeClient()
    settings = PollerSettings(slow_endpoints=(), meter_stream=False)
    reader = GatewayReader(
        client,  # type: ignore[arg-type]
        settings,
        Outbox(1000),
        Health({}, 0.0),
        threading.Event(),
        clock=clock,
        rng=NoJitter(),
    )
    intervals = intervals or {STATUS_PATH: 300.0, SOE_PATH: 2.0, METERS_PATH: 2.0}
    reader.schedule = Schedule(intervals, 0.0)
    reader._health = Health(intervals, 0.0)
    return reader, client, clock


def _waits(reader: GatewayReader, clock: Clock, endpoint: str, rounds: int) -> list[float]:
    waits = []
    for _ in range(rounds):
        clock.now = reader.schedule.due(endpoint)
        reader._read(endpoint)
        waits.append(reader.schedule.due(endpoint) - clock.now)
    return waits


def test_5xx_backs_off_growing_then_starts_over_after_a_success() -> None:
    reader, client, clock = _reader()
    client.fail[METERS_PATH] = GatewayServerError("503", status=503)
    # 5, 10, 20, 40, then 60 s, each ending on the 2 s grid; the other endpoints go on.
    assert _waits(reader, clock, METERS_PATH, 6) == [6.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    health = reader._health.endpoints[METERS_PATH]
    assert health.state == "failing" and health.retry_at == reader.schedule.due(METERS_PATH)
    assert health.as_dict()["retry_at"] == iso_time(reader.schedule.due(METERS_PATH))
    assert reader.schedule.due(SOE_PATH) == 0.0
    del client.fail[METERS_PATH]
    clock.now = reader.schedule.due(METERS_PATH)
    reader._read(METERS_PATH)
    assert health.state == "ok" and health.retry_at is None
    client.fail[METERS_PATH] = GatewayServerError("503", status=503)
    assert _waits(reader, clock, METERS_PATH, 1) == [6.0]  # from 5 s again
    assert SERVER_ERROR_CAP == 60.0


def test_5xx_retry_after_is_honoured() -> None:
    reader, client, clock = _reader()
    client.fail[METERS_PATH] = GatewayServerError("503", status=503, retry_after=3.0)
    assert _waits(reader, clock, METERS_PATH, 3) == [4.0, 4.0, 4.0]  # 3 s, on the 2 s grid
    client.fail[METERS_PATH] = GatewayServerError("503", status=503, retry_after=120.0)
    assert _waits(reader, clock, METERS_PATH, 1) == [120.0]  # longer than our guess: too


def test_a_refused_path_backs_off_alone_from_a_minute_to_an_hour() -> None:
    reader, client, clock = _reader()
    client.fail[METERS_PATH] = SessionRejected("401 after a fresh login", path=METERS_PATH)
    waits = _waits(reader, clock, METERS_PATH, 8)
    assert waits == [60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0, 3600.0]
    assert REFUSED_CAP == 3600.0
    assert reader._health.endpoints[METERS_PATH].state == "refused"
    clock.now = reader.schedule.due(SOE_PATH)
    reader._read(SOE_PATH)
    assert reader._health.gateway_state == "ok"  # one path refused: the gateway is fine
    del client.fail[METERS_PATH]
    clock.now = reader.schedule.due(METERS_PATH)
    reader._read(METERS_PATH)
    assert reader._health.endpoints[METERS_PATH].state == "ok"
    assert _waits(reader, clock, METERS_PATH, 1) == [2.0]  # back on its grid


def test_every_path_refused_is_a_refused_session() -> None:
    reader, client, _ = _reader()
    for path in (METERS_PATH, SOE_PATH):
        client.fail[path] = SessionRejected("401", path=path)
    reader._read(STATUS_PATH)  # /api/status needs no session: it does not count
    reader._read(METERS_PATH)
    assert reader._health.gateway_state == "ok"
    reader._read(SOE_PATH)
    assert reader._health.gateway_state == "session_refused"


def test_login_cap_waits_for_its_end_without_a_request() -> None:
    reader, client, clock = _reader()
    clock.now = 10.0
    client.fail[METERS_PATH] = LoginCapReached("cap", until=1000.0)
    reader._read(METERS_PATH)
    health = reader._health.endpoints[METERS_PATH]
    assert reader.schedule.due(METERS_PATH) == 1000.0
    assert (health.state, health.requests, reader._health.gateway_state) == (
        "cooldown",
        0,
        "login_capped",
    )


@pytest.mark.parametrize("error", [BadCredentials("wrong", path="/api/login/Basic")])
def test_refused_login_waits_for_the_clients_login_back_off(error: GatewayError) -> None:
    reader, client, _ = _reader()
    client.login_blocked_until = 250.0
    client.fail[METERS_PATH] = error
    reader._read(METERS_PATH)
    assert reader.schedule.due(SOE_PATH) >= 250.0  # everything waits for the next login
