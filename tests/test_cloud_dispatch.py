"""Acting through the cloud, over real sockets: the signed relay to the gateway simulator
(Max Backup holds the simulated battery), its refusals, and the Fleet API actuator.

The simulated site has no solar, so its battery carries the house and runs down unless Max
Backup holds it; the test moves the model's clock, so ten simulated minutes pass at once.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from powerwall_bus.consumers.dispatch.channel import SignedChannel
from powerwall_bus.consumers.dispatch.cloud import (
    FLEET_HOLD_FILE,
    CloudChannel,
    FleetActuator,
    FleetChannel,
    open_cloud_channel,
    open_fleet_actuator,
)
from powerwall_bus.consumers.dispatch.decide import Action, Cancel, Schedule, decide
from powerwall_bus.consumers.dispatch.holds import ceil_half_hour
from powerwall_bus.shared.errors import (
    CloudCommandRefused,
    CloudNotFound,
    TedapiFault,
    TedapiKeyNotVerified,
)
from powerwall_bus.shared.max_backup import BackupEvent
from powerwall_bus.shared.octopus.plan import DispatchPlan, PlannedDispatch
from powerwall_bus.shared.settings import CloudSettings, DispatchSettings
from powerwall_bus.shared.tedapi import keys
from powerwall_bus.shared.tedapi.commands import (
    Acknowledged,
    BackupEvents,
    Kind,
    build_request,
    parse_response,
)
from powerwall_bus.shared.tesla_cloud.client import TeslaCloud
from powerwall_bus.shared.tesla_cloud.tokens import TOKEN_FILE, TokenStore, tokens_from_answer
from tests.support.fake_cloud import CloudSite, cloud_site
from tests.support.tedapi_keys import signing_key


@pytest.fixture(scope="module")
def module_site() -> Iterator[CloudSite]:
    with cloud_site() as site:
        yield site


@pytest.fixture
def site(module_site: CloudSite) -> Iterator[CloudSite]:
    module_site.reset()
    yield module_site
    module_site.reset()


def _pair(site: CloudSite, name: str, *, verified: bool = True) -> None:
    pem = keys.public_pem(signing_key(name))
    payload = {"public_key": pem, "verified": verified}
    requests.post(
        site.gateway.url + "/_sim/pair", json=payload, verify=False, timeout=5
    ).raise_for_status()


def _reading(site: CloudSite, http: requests.Session) -> tuple[float, float]:
    """(battery W, SoE %) as the gateway's endpoints show them."""
    aggregates = http.get(site.gateway.url + "/api/meters/aggregates", timeout=5).json()
    soe = http.get(site.gateway.url + "/api/system_status/soe", timeout=5).json()
    return float(aggregates["battery"]["instant_power"]), float(soe["percentage"])


def _logged_in(site: CloudSite) -> requests.Session:
    http = requests.Session()
    http.verify = False
    http.trust_env = False
    from tests.conftest import SIM_PASSWORD

    login = {"username": "customer", "password": SIM_PASSWORD, "email": "t@example.com"}
    http.post(site.gateway.url + "/api/login/Basic", json=login, timeout=5).raise_for_status()
    return http


def _call(
    channel: SignedChannel,
    din: str,
    kind: Kind,
    event: BackupEvent | None = None,
    name: str = "paired",
) -> object:
    body = build_request(kind, din, signing_key(name), time.time(), event=event)
    return parse_response(channel.send(body, timeout=10))


def test_max_backup_through_the_cloud_relay_holds_the_battery(
    site: CloudSite, tmp_path: Path
) -> None:
    _pair(site, "paired")
    channel = CloudChannel(site.client(tmp_path))
    assert channel.din == site.din  # found through products
    http = _logged_in(site)
    site.clock.now = max(site.clock.now, time.time() + 1)  # the model at the signer's time
    battery, _ = _reading(site, http)
    assert battery > 0  # discharging into the house
    start = datetime.fromtimestamp(int(time.time()), UTC)
    event = BackupEvent(start, start + timedelta(hours=1))
    assert _call(channel, channel.din, Kind.SCHEDULE, event) == Acknowledged(Kind.SCHEDULE)
    assert _call(channel, channel.din, Kind.LIST) == BackupEvents(event)
    battery, soe_held = _reading(site, http)
    assert battery <= 0
    for _ in range(2):
        site.clock.advance(300)
        battery, soe = _reading(site, http)
        assert battery <= 0 and soe >= soe_held
    assert _call(channel, channel.din, Kind.CANCEL) == Acknowledged(Kind.CANCEL)
    site.clock.advance(600)
    battery, soe_after = _reading(site, http)
    assert battery > 0 and soe_after < soe_held
    counts = site.control("counts")
    assert counts["relayed"] == 3 and counts["requests"]["device_command"] == 3
    channel.close()


def test_the_relay_refuses_what_the_gateway_would(site: CloudSite, tmp_path: Path) -> None:
    _pair(site, "paired")
    _pair(site, "pending-one", verified=False)
    channel = CloudChannel(site.client(tmp_path))
    with pytest.raises(TedapiFault) as caught:
        _call(channel, site.din, Kind.LIST, name="stranger")
    assert caught.value.name == "UNKNOWN_KEY_ID"
    with pytest.raises(TedapiKeyNotVerified):
        _call(channel, site.din, Kind.LIST, name="pending-one")
    with pytest.raises(TedapiFault) as caught:
        _call(channel, "1232100-00-E--TG000000WRONG1", Kind.LIST)  # signed for another gateway
    assert caught.value.name == "WRONG_PERSONALIZATION"
    body = build_request(Kind.LIST, site.din, signing_key("paired"), time.time() - 60)
    with pytest.raises(TedapiFault) as caught:
        parse_response(channel.send(body, timeout=10))
    assert caught.value.name == "TIME_EXPIRED"
    counts = site.control("counts")
    assert counts["relayed"] == 0  # nothing refused reached the gateway
    assert counts["refused"] == {
        "UNKNOWN_KEY_ID": 1,
        "NOT_VERIFIED": 1,
        "WRONG_PERSONALIZATION": 1,
        "TIME_EXPIRED": 1,
    }


def test_grpc_signed_command_road_lists_events_too(site: CloudSite, tmp_path: Path) -> None:
    _pair(site, "paired")
    channel = CloudChannel(site.client(tmp_path), via="command")
    assert _call(channel, site.din, Kind.LIST) == BackupEvents(None)
    assert site.control("counts")["requests"]["command"] == 1


# --------------------------------------------------------------------------- Fleet API


class Now:
    def __init__(self) -> None:
        self.moment = datetime(2026, 1, 14, 13, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.moment


def _schedule(now: datetime, minutes: int) -> Schedule:
    return Schedule(now, now + timedelta(minutes=minutes), "test dispatch")


@pytest.mark.parametrize(
    ("method", "held", "restored"), [("mode", "backup", "autonomous"), ("reserve", 100, 20)]
)
def test_fleet_actuator_holds_extends_and_restores(
    site: CloudSite, tmp_path: Path, method: str, held: object, restored: object
) -> None:
    now = Now()
    actuator = FleetActuator(
        site.client(tmp_path), tmp_path / "fleet-hold.json", method=method, clock=now
    )
    field = "default_real_mode" if method == "mode" else "backup_reserve_percent"
    assert actuator.current() is None
    first = _schedule(now.moment, 60)
    lines = actuator.apply([first])
    assert len(lines) == 1 and site.control("state")[field] == held
    assert actuator.current() == first.event
    # decide() cancels before every schedule: a longer hold moves the end, no restore between
    longer = _schedule(now.moment, 90)
    actuator.apply([Cancel(first.event, "longer"), longer])
    assert site.control("state")[field] == held
    assert actuator.current() == BackupEvent(first.start, longer.end)
    actuator.apply([Cancel(BackupEvent(first.start, longer.end), "plan ended")])
    assert site.control("state")[field] == restored
    assert actuator.current() is None and not (tmp_path / "fleet-hold.json").exists()


def test_fleet_hold_is_restored_once_its_end_passed_even_after_a_restart(
    site: CloudSite, tmp_path: Path
) -> None:
    now = Now()
    FleetActuator(site.client(tmp_path), tmp_path / "hold.json", clock=now).apply(
        [_schedule(now.moment, 30)]
    )
    assert site.fake.mode == "backup"
    now.moment += timedelta(minutes=31)
    restarted = FleetActuator(site.client(tmp_path), tmp_path / "hold.json", clock=now)
    assert restarted.current() is None
    assert site.fake.mode == "autonomous"


def test_fleet_reserve_capped_by_firmware_is_reported_and_undone(
    site: CloudSite, tmp_path: Path
) -> None:
    site.control("backup_rule", {"rule": "clamp80"})
    now = Now()
    actuator = FleetActuator(
        site.client(tmp_path), tmp_path / "hold.json", method="reserve", clock=now
    )
    with pytest.raises(
        CloudCommandRefused, match=r"asked for reserve 100 %, the site reports 80 %"
    ):
        actuator.apply([_schedule(now.moment, 60)])
    assert site.fake.reserve == 20 and actuator.current() is None


# --------------------------------------------------------------------------- pwbus simulate


def test_simulate_serves_a_fake_cloud_relaying_to_itself(tmp_path: Path) -> None:
    """The demo: ``pwbus simulate --cloud-port 0`` as a process; a paired key's Max Backup
    list goes through its cloud to its gateway; SIGTERM stops both with status 0."""
    key_file = keys.write_private_key(signing_key("paired"), tmp_path)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PWBUS_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "powerwall_bus",
            "simulate",
            "--port",
            "0",
            "--cloud-port",
            "0",
            "--paired-key",
            str(key_file),
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = re.search(r"fake Tesla cloud listening on (http://\S+) ", line)
            if match:
                url.append(match.group(1))
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert found.wait(20), "".join(lines)
        answer = requests.post(url[0] + "/_sim/tokens", json={}, timeout=5).json()
        store = TokenStore(tmp_path / TOKEN_FILE)
        store.save(tokens_from_answer(answer, time.time()))
        cloud = TeslaCloud(
            api_url=url[0], auth_url=url[0] + "/oauth2/v3/token", client_id="ownerapi", store=store
        )
        channel = CloudChannel(cloud)
        assert _call(channel, channel.din, Kind.LIST) == BackupEvents(None)
        channel.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0


def test_the_factories_build_both_roads_from_the_settings(site: CloudSite, tmp_path: Path) -> None:
    site.client(tmp_path)  # tokens in the state folder
    settings = CloudSettings(api_url=site.cloud.url, auth_url=site.cloud.token_url)
    channel = open_cloud_channel(settings, tmp_path, site.din)
    _pair(site, "paired")
    assert _call(channel, channel.din, Kind.LIST) == BackupEvents(None)
    elsewhere = open_cloud_channel(settings, tmp_path, "1232100-00-E--TG000000OTHER")
    with pytest.raises(CloudNotFound, match=r"has gateway .*, not 1232100-00-E--TG000000OTHER"):
        elsewhere.send(b"", timeout=5)
    assert site.control("counts")["requests"].get("device_command") == 1
    elsewhere.close()
    actuator = open_fleet_actuator(settings, tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    actuator.apply([_schedule(now, 30)])
    assert (tmp_path / FLEET_HOLD_FILE).exists() and site.fake.mode == "backup"
    actuator.apply([Cancel(BackupEvent(now, now + timedelta(minutes=30)), "done")])
    assert site.fake.mode == "autonomous"
    channel.close()
    actuator.close()


# --------------------------------------------------------------------------- decide() on each road

SETTINGS = DispatchSettings(skip_offpeak=False, hysteresis_minutes=0.0, bridge_minutes=0.0)


def _plan(now: datetime, *dispatches: tuple[datetime, datetime]) -> DispatchPlan:
    planned = tuple(PlannedDispatch(start, end, "SMART", 7.0) for start, end in dispatches)
    return DispatchPlan("car-1", now, planned)


def _send(channel: SignedChannel, din: str, actions: tuple[Action, ...]) -> None:
    for action in actions:
        if isinstance(action, Schedule):
            answer = _call(channel, din, Kind.SCHEDULE, action.event)
        else:
            answer = _call(channel, din, Kind.CANCEL)
        assert isinstance(answer, Acknowledged)


def test_decisions_through_the_relay_hold_then_release_the_battery(
    site: CloudSite, tmp_path: Path
) -> None:
    _pair(site, "paired")
    channel = CloudChannel(site.client(tmp_path))
    http = _logged_in(site)
    now = datetime.now(UTC)
    site.clock.now = max(site.clock.now, now.timestamp() + 1)
    plan = _plan(now, (now - timedelta(minutes=10), now + timedelta(minutes=50)))
    listed = _call(channel, channel.din, Kind.LIST)
    assert isinstance(listed, BackupEvents)
    decision = decide(now, plan, listed.manual, SETTINGS)
    assert [type(a) for a in decision.actions] == [Schedule]
    _send(channel, channel.din, decision.actions)
    listed = _call(channel, channel.din, Kind.LIST)
    assert isinstance(listed, BackupEvents) and listed.manual is not None
    assert _reading(site, http)[0] <= 0  # held
    # a restarted dispatcher (no memory) decides from the gateway's word: nothing sent twice
    again = decide(datetime.now(UTC), plan, listed.manual, SETTINGS)
    assert again.actions == ()
    # the plan empties: the hold is ended, the battery carries the house again (decided at
    # a half-hour boundary: inside a half hour the hold would run to its end, whole half hours)
    later = ceil_half_hour(datetime.now(UTC))
    ended = decide(later, _plan(later), listed.manual, SETTINGS, decision.memory)
    assert [type(a) for a in ended.actions] == [Cancel]
    _send(channel, channel.din, ended.actions)
    assert _call(channel, channel.din, Kind.LIST) == BackupEvents(None)
    site.clock.advance(600)
    assert _reading(site, http)[0] > 0


def test_decisions_through_the_fleet_api(site: CloudSite, tmp_path: Path) -> None:
    now = Now()
    actuator = FleetActuator(site.client(tmp_path), tmp_path / "hold.json", clock=now)
    plan = _plan(now.moment, (now.moment, now.moment + timedelta(minutes=50)))
    decision = decide(now.moment, plan, actuator.current(), SETTINGS)
    actuator.apply(decision.actions)
    assert site.fake.mode == "backup"
    current = actuator.current()
    assert current is not None and current.end == datetime(2026, 1, 14, 14, 0, tzinfo=UTC)
    assert decide(now.moment, plan, current, SETTINGS, decision.memory).actions == ()
    now.moment += timedelta(minutes=61)  # the dispatcher wakes after the hold's end
    assert actuator.current() is None and site.fake.mode == "autonomous"


def test_fleet_channel_answers_like_a_gateway_and_acts_by_mode(
    site: CloudSite, tmp_path: Path
) -> None:
    actuator = FleetActuator(site.client(tmp_path), tmp_path / "hold.json")
    channel = FleetChannel(actuator, site.din)
    site.fake.history.clear()
    assert _call(channel, site.din, Kind.LIST) == BackupEvents(None)
    start = datetime.fromtimestamp(int(time.time()), UTC)
    first = BackupEvent(start, start + timedelta(minutes=30))
    assert _call(channel, site.din, Kind.SCHEDULE, first) == Acknowledged(Kind.SCHEDULE)
    assert _call(channel, site.din, Kind.LIST) == BackupEvents(first)
    longer = BackupEvent(start, start + timedelta(minutes=60))
    assert _call(channel, site.din, Kind.CANCEL) == Acknowledged(Kind.CANCEL)
    assert _call(channel, site.din, Kind.SCHEDULE, longer) == Acknowledged(Kind.SCHEDULE)
    assert _call(channel, site.din, Kind.LIST) == BackupEvents(longer)
    assert [value for _, _, value in site.fake.history] == ["backup"]  # moved, not restored
    assert _call(channel, site.din, Kind.CANCEL) == Acknowledged(Kind.CANCEL)
    assert _call(channel, site.din, Kind.LIST) == BackupEvents(None)
    assert [value for _, _, value in site.fake.history] == ["backup", "autonomous"]
    with pytest.raises(TedapiFault, match="WRONG_PERSONALIZATION"):
        _call(channel, "1232100-00-E--TG000000WRONG1", Kind.LIST)
    channel.close()
