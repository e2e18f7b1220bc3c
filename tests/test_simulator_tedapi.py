"""The simulator's signed TEDAPI over real sockets: pairing, Max Backup, its effect, refusals.

Requests are built and answers read with the project's own client functions
(``shared/tedapi``), posted over HTTPS to ``/tedapi/v1r`` like a client on the LAN would.
The effect test runs its own simulated site without solar, whose model clock the test moves
forward, so ten simulated minutes pass in no time and the battery would surely discharge
without Max Backup.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from powerwall_bus.cli import build_parser, commands
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.command import setting_flags
from powerwall_bus.shared.errors import (
    ConfigError,
    TedapiFault,
    TedapiKeyNotVerified,
    TedapiRefused,
)
from powerwall_bus.shared.max_backup import BackupEvent
from powerwall_bus.shared.settings import SimulatorSettings, Sources
from powerwall_bus.shared.tedapi import keys, schema
from powerwall_bus.shared.tedapi.clients import (
    ClientKind,
    ClientRemoved,
    build_client_request,
    parse_client_response,
)
from powerwall_bus.shared.tedapi.commands import (
    Acknowledged,
    BackupEvents,
    Kind,
    Result,
    build_request,
    parse_response,
    sign_request,
)
from powerwall_bus.simulator.command import SimctlRequest, build_server, run_simctl
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from powerwall_bus.simulator.tedapi import SignedCommands
from tests.conftest import SIM_PASSWORD, sim_counts
from tests.support.tedapi_keys import signing_key

V1R = "/tedapi/v1r"


def _http() -> requests.Session:
    session = requests.Session()
    session.verify = False
    session.trust_env = False
    return session


def post_raw(runner: SimulatorRunner, body: bytes) -> bytes:
    """POST a body to ``/tedapi/v1r`` without logging in; the gateway answers 200 always."""
    response = _http().post(
        runner.url + V1R,
        data=body,
        headers={"Content-Type": "application/octet-stream"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    return response.content


def call(
    runner: SimulatorRunner,
    kind: Kind,
    event: BackupEvent | None = None,
    *,
    key_name: str = "paired",
    din: str | None = None,
    now: float | None = None,
) -> Result:
    body = build_request(
        kind,
        din or runner.server.gateway.din,
        signing_key(key_name),
        time.time() if now is None else now,
        event=event,
    )
    return parse_response(post_raw(runner, body))


def pair_over_http(runner: SimulatorRunner, key_name: str, *, verified: bool = True) -> Any:
    response = _http().post(
        runner.url + "/_sim/pair",
        json={"public_key": keys.public_pem(signing_key(key_name)), "verified": verified},
        timeout=5,
    )
    response.raise_for_status()
    return response.json()


def next_hour() -> BackupEvent:
    start = datetime.fromtimestamp(int(time.time()), UTC)
    return BackupEvent(start, start + timedelta(hours=1))


@pytest.fixture
def paired_sim(sim: SimulatorRunner) -> Iterator[SimulatorRunner]:
    """The session simulator with the "paired" test key paired over its control endpoint."""
    answer = pair_over_http(sim, "paired")
    fingerprint = keys.fingerprint(keys.public_der(signing_key("paired")))
    assert answer == {"paired": [{"fingerprint": fingerprint, "verified": True}]}
    yield sim
    sim.server.signed.reset()


# --------------------------------------------------------------------------- Max Backup calls


def test_schedule_list_cancel_over_https(paired_sim: SimulatorRunner) -> None:
    assert call(paired_sim, Kind.LIST) == BackupEvents(None)
    event = next_hour()
    assert call(paired_sim, Kind.SCHEDULE, event) == Acknowledged(Kind.SCHEDULE)
    assert call(paired_sim, Kind.LIST) == BackupEvents(event)
    snapshot = _http().get(paired_sim.url + "/_sim/snapshot", timeout=5).json()
    assert snapshot["manual_backup"] == {
        "start": event.start.isoformat(),
        "end": event.end.isoformat(),
    }
    assert call(paired_sim, Kind.CANCEL) == Acknowledged(Kind.CANCEL)
    assert call(paired_sim, Kind.LIST) == BackupEvents(None)
    assert call(paired_sim, Kind.CANCEL) == Acknowledged(Kind.CANCEL)  # nothing to cancel: fine


def test_a_second_event_needs_a_cancel_first(paired_sim: SimulatorRunner) -> None:
    first = next_hour()
    assert call(paired_sim, Kind.SCHEDULE, first) == Acknowledged(Kind.SCHEDULE)
    longer = BackupEvent(first.start, first.end + timedelta(minutes=30))
    with pytest.raises(TedapiRefused) as refused:
        call(paired_sim, Kind.SCHEDULE, longer)
    assert refused.value.code == 9
    assert "cancel it first" in refused.value.detail
    assert call(paired_sim, Kind.LIST) == BackupEvents(first)
    assert call(paired_sim, Kind.CANCEL) == Acknowledged(Kind.CANCEL)
    assert call(paired_sim, Kind.SCHEDULE, longer) == Acknowledged(Kind.SCHEDULE)
    assert call(paired_sim, Kind.LIST) == BackupEvents(longer)


def _schedule_body(din: str, start: int, duration: int, now: float) -> bytes:
    """A schedule request our builder would refuse to make (it checks >= 60 s itself)."""
    envelope = schema.MessageEnvelope()
    envelope.delivery_channel = 2
    envelope.sender.authorized_client = 1
    envelope.recipient.din = din
    info = envelope.teg.schedule_manual_backup_event_request.scheduling_info
    info.start_time.seconds = start
    info.duration_seconds = duration
    info.priority = 2**64 - 1
    return sign_request(envelope.SerializeToString(), din, signing_key("paired"), now)


@pytest.mark.parametrize(
    ("offset", "duration", "detail"),
    [(0, 59, "at least 60 s"), (-7200, 3600, "in the past")],
    ids=["59s", "ended"],
)
def test_events_too_short_or_over_are_refused(
    paired_sim: SimulatorRunner, offset: int, duration: int, detail: str
) -> None:
    now = time.time()
    body = _schedule_body(paired_sim.server.gateway.din, int(now) + offset, duration, now)
    with pytest.raises(TedapiRefused) as refused:
        parse_response(post_raw(paired_sim, body))
    assert refused.value.code == 3
    assert detail in refused.value.detail
    assert call(paired_sim, Kind.LIST) == BackupEvents(None)
    sixty = _schedule_body(paired_sim.server.gateway.din, int(now), 60, now)
    assert parse_response(post_raw(paired_sim, sixty)) == Acknowledged(Kind.SCHEDULE)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("case", "fault"),
    [("expired", 17), ("wrong-din", 12), ("unknown-key", 3), ("bad-signature", 5), ("garbage", 10)],
)
def test_refusals_answer_the_gateway_faults(
    paired_sim: SimulatorRunner, case: str, fault: int
) -> None:
    din = paired_sim.server.gateway.din
    now = time.time()
    if case == "expired":
        body = build_request(Kind.LIST, din, signing_key("paired"), now - 13)
    elif case == "wrong-din":
        body = build_request(Kind.LIST, "1232100-00-E--TG000000000000", signing_key("paired"), now)
    elif case == "unknown-key":
        body = build_request(Kind.LIST, din, signing_key("stranger"), now)
    elif case == "bad-signature":
        tampered = bytearray(build_request(Kind.CANCEL, din, signing_key("paired"), now))
        tampered[-60] ^= 0x01  # a signature byte
        body = bytes(tampered)
    else:
        body = b"\x00not protobuf"
    with pytest.raises(TedapiFault) as caught:
        parse_response(post_raw(paired_sim, body))
    assert caught.value.fault == fault
    # a refused schedule changes nothing
    assert call(paired_sim, Kind.LIST) == BackupEvents(None)


def test_refused_schedule_leaves_no_event(paired_sim: SimulatorRunner) -> None:
    din = paired_sim.server.gateway.din
    body = build_request(
        Kind.SCHEDULE, din, signing_key("stranger"), time.time(), event=next_hour()
    )
    with pytest.raises(TedapiFault):
        parse_response(post_raw(paired_sim, body))
    assert paired_sim.server.gateway.manual_backup is None


def test_a_pending_key_is_told_it_is_not_verified(paired_sim: SimulatorRunner) -> None:
    answer = pair_over_http(paired_sim, "stranger", verified=False)
    assert [entry["verified"] for entry in answer["paired"]] == [True, False]
    with pytest.raises(TedapiKeyNotVerified):
        call(paired_sim, Kind.LIST, key_name="stranger")
    pair_over_http(paired_sim, "stranger", verified=True)  # the switch was toggled
    assert call(paired_sim, Kind.LIST, key_name="stranger") == BackupEvents(None)


def test_v1r_needs_no_login_and_is_counted(paired_sim: SimulatorRunner) -> None:
    call(paired_sim, Kind.LIST)
    counts = sim_counts(paired_sim)
    assert counts["requests"][V1R] == 1
    assert counts["logins"] == 0


def client_call(runner: SimulatorRunner, kind: ClientKind, key_name: str, **kwargs: Any) -> Any:
    body = build_client_request(
        kind, runner.server.gateway.din, signing_key(key_name), time.time(), **kwargs
    )
    return parse_client_response(post_raw(runner, body))


def test_a_verified_key_lists_adds_and_removes_keys(paired_sim: SimulatorRunner) -> None:
    paired = keys.public_der(signing_key("paired"))
    stranger = keys.public_der(signing_key("stranger"))
    listed = client_call(paired_sim, ClientKind.LIST, "paired")
    assert [(c.public_key, c.state_name) for c in listed.clients] == [(paired, "VERIFIED")]
    added = client_call(
        paired_sim, ClientKind.ADD, "paired", public_key=stranger, description="garage pi"
    )
    assert (added.public_key, added.description, added.verified) == (stranger, "garage pi", True)
    assert call(paired_sim, Kind.LIST, key_name="stranger") == BackupEvents(None)
    listed = client_call(paired_sim, ClientKind.LIST, "stranger")
    assert [c.fingerprint for c in listed.clients] == [
        keys.fingerprint(paired),
        keys.fingerprint(stranger),
    ]
    removed = client_call(paired_sim, ClientKind.REMOVE, "stranger", public_key=paired)
    assert removed == ClientRemoved()  # any paired key may remove any other
    with pytest.raises(TedapiFault) as caught:
        call(paired_sim, Kind.LIST)
    assert caught.value.fault == 3
    with pytest.raises(TedapiRefused) as refused:
        client_call(paired_sim, ClientKind.REMOVE, "stranger", public_key=paired)
    assert refused.value.code == 5
    with pytest.raises(TedapiRefused) as refused:
        client_call(paired_sim, ClientKind.ADD, "stranger", public_key=b"not a key")
    assert refused.value.code == 3


def test_a_pending_key_is_listed_pending(paired_sim: SimulatorRunner) -> None:
    pair_over_http(paired_sim, "stranger", verified=False)
    listed = client_call(paired_sim, ClientKind.LIST, "paired")
    assert [c.state_name for c in listed.clients] == ["VERIFIED", "PENDING_VERIFICATION"]
    with pytest.raises(TedapiKeyNotVerified):
        client_call(paired_sim, ClientKind.LIST, "stranger")


def test_pair_endpoint_refuses_what_is_not_a_key(sim: SimulatorRunner) -> None:
    for payload in ({}, {"public_key": "not a key"}, {"public_key": "x", "verified": "yes"}):
        response = _http().post(sim.url + "/_sim/pair", json=payload, timeout=5)
        assert response.status_code == 400
    assert _http().get(sim.url + "/_sim/pair", timeout=5).json() == {"paired": []}


def test_unpair_forgets_the_key(paired_sim: SimulatorRunner) -> None:
    response = _http().post(
        paired_sim.url + "/_sim/unpair",
        json={"public_key": keys.public_pem(signing_key("paired"))},
        timeout=5,
    )
    assert response.json() == {"paired": []}
    with pytest.raises(TedapiFault) as caught:
        call(paired_sim, Kind.LIST)
    assert caught.value.fault == 3


# --------------------------------------------------------------------------- the commands


def test_simctl_pairs_a_key_file_by_its_public_half(sim: SimulatorRunner, tmp_path: Path) -> None:
    path = keys.write_private_key(signing_key("paired"), tmp_path)
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            assert run_simctl(SimctlRequest(sim.url, "pair", (str(path),))) == 0
        assert keys.fingerprint(keys.public_der(signing_key("paired"))) in out.getvalue()
        assert "PRIVATE" not in out.getvalue()
        assert call(sim, Kind.LIST) == BackupEvents(None)
        with redirect_stdout(io.StringIO()):
            assert run_simctl(SimctlRequest(sim.url, "unpair", (str(path),))) == 0
        assert sim.server.signed.paired() == []
        assert run_simctl(SimctlRequest(sim.url, "pair", (str(tmp_path / "none.pem"),))) == 2
    finally:
        sim.server.signed.reset()


def test_simulate_paired_key_setting(tmp_path: Path) -> None:
    path = keys.write_private_key(signing_key("paired"), tmp_path)
    public = tmp_path / "public.pem"
    public.write_text(keys.public_pem(signing_key("stranger")))
    server = build_server(SimulatorSettings(paired_keys=(str(path), str(public))))
    assert [k.der for k in server.signed.paired()] == [
        keys.public_der(signing_key("paired")),
        keys.public_der(signing_key("stranger")),
    ]
    (tmp_path / "bad.pem").write_text("nothing")
    with pytest.raises(ConfigError, match=r"simulator\.paired_keys"):
        build_server(SimulatorSettings(paired_keys=(str(tmp_path / "bad.pem"),)))


def test_paired_key_flag_repeats_and_the_environment_takes_a_list() -> None:
    table = {command.name: command for command in commands()}
    args = build_parser(list(table.values())).parse_args(
        ["simulate", "--paired-key", "a.pem", "--paired-key", "b.pem"]
    )
    settings = table["simulate"].load(Sources.gather(flags=setting_flags(args), env={}), args)
    assert settings.paired_keys == ("a.pem", "b.pem")
    args = build_parser(list(table.values())).parse_args(["simulate"])
    env = {"PWBUS_SIM_PAIRED_KEYS": "c.pem, d.pem"}
    settings = table["simulate"].load(Sources.gather(flags=setting_flags(args), env=env), args)
    assert settings.paired_keys == ("c.pem", "d.pem")


def test_an_ended_event_is_dropped_and_does_not_block_a_new_one() -> None:
    clock = FakeClock()
    gateway = SimulatedGateway(SiteOptions(seed=3, powerwalls=1), clock=clock)
    commands = SignedCommands(gateway, [keys.public_der(signing_key("paired"))], clock=clock)
    din = gateway.din
    start = datetime.fromtimestamp(int(clock()), UTC)
    short = BackupEvent(start, start + timedelta(seconds=60))
    key = signing_key("paired")
    schedule = build_request(Kind.SCHEDULE, din, key, clock(), event=short)
    assert parse_response(commands.handle(schedule)) == Acknowledged(Kind.SCHEDULE)
    clock.advance(61)
    listed = parse_response(commands.handle(build_request(Kind.LIST, din, key, clock())))
    assert listed == BackupEvents(None)
    later = BackupEvent(start + timedelta(seconds=61), start + timedelta(seconds=200))
    again = build_request(Kind.SCHEDULE, din, key, clock(), event=later)
    assert parse_response(commands.handle(again)) == Acknowledged(Kind.SCHEDULE)


# --------------------------------------------------------------------------- the effect


class FakeClock:
    """Wall time that moves only when told (the model's and the commands' clock)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def dark_site() -> Iterator[tuple[SimulatorRunner, FakeClock]]:
    """A site without solar (so the battery carries the house) and a paired key."""
    clock = FakeClock()
    gateway = SimulatedGateway(
        SiteOptions(seed=11, powerwalls=2, solar_kw=0, initial_soe=80.0), clock=clock
    )
    server = GatewayServer(
        gateway, password=SIM_PASSWORD, paired_keys=[keys.public_der(signing_key("paired"))]
    )
    with SimulatorRunner(server, "127.0.0.1", 0, server_context()) as runner:
        yield runner, clock


def _reading(http: requests.Session, url: str) -> tuple[float, float, float]:
    """(battery W, site W, SoE %) as the gateway's endpoints show them."""
    aggregates = http.get(url + "/api/meters/aggregates", timeout=5).json()
    soe = http.get(url + "/api/system_status/soe", timeout=5).json()
    return (
        float(aggregates["battery"]["instant_power"]),
        float(aggregates["site"]["instant_power"]),
        float(soe["percentage"]),
    )


def test_max_backup_holds_the_battery_and_releases_it(
    dark_site: tuple[SimulatorRunner, FakeClock],
) -> None:
    runner, clock = dark_site
    http = _http()
    login = http.post(
        runner.url + "/api/login/Basic",
        json={"username": "customer", "password": SIM_PASSWORD, "email": "t@example.com"},
        timeout=5,
    )
    login.raise_for_status()
    # without Max Backup the battery carries the house and runs down
    battery, _, soe_before = _reading(http, runner.url)
    assert battery > 0  # discharging (the gateway's sign: > 0 is out of the battery)
    clock.advance(600)
    battery, _, soe_free = _reading(http, runner.url)
    assert battery > 0 and soe_free < soe_before
    # Max Backup from now for an hour (the signature uses real time, the model its own)
    event = next_hour()
    assert call(runner, Kind.SCHEDULE, event) == Acknowledged(Kind.SCHEDULE)
    battery, site, soe_held = _reading(http, runner.url)
    assert battery <= 0 and site > 0  # not discharging: the grid serves the house
    for _ in range(3):
        clock.advance(300)
        battery, site, soe = _reading(http, runner.url)
        assert battery <= 0 and site > 0
        assert soe >= soe_held
    # released: the battery carries the house again
    assert call(runner, Kind.CANCEL) == Acknowledged(Kind.CANCEL)
    clock.advance(600)
    battery, _, soe_after = _reading(http, runner.url)
    assert battery > 0 and soe_after < soe_held
