"""The cloud road end to end: Octopus plan -> pwbus dispatch -> fake Tesla cloud -> gateway.

The twin of ``test_dispatch_lan_e2e`` (whose simulated world it shares: 12 times faster than
the wall clock, at night, just before a half hour) with ``dispatch.channel = cloud``: the
dispatcher's signed messages go through the fake cloud's ``device_command`` relay, which
checks them and posts them to the simulated gateway. The poller still reads the gateway (its
``meters`` messages show the battery) but relays nothing. The battery discharges before the
dispatch, holds through it and discharges again after; every step is a ``dispatch.result``
naming the cloud road; no token or key is in a message or a log line.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from powerwall_bus.consumers.dispatch.command import DispatchConfig
from powerwall_bus.consumers.dispatch.main import Dispatcher
from powerwall_bus.producers.octopus.command import OctopusConfig
from powerwall_bus.producers.octopus.main import OctopusProducer
from powerwall_bus.producers.poller.command import PollerConfig
from powerwall_bus.producers.poller.main import Poller
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.contract import DISPATCH_RESULT, routing_key
from powerwall_bus.shared.schemas import validate_message
from powerwall_bus.shared.settings import (
    CloudSettings,
    DispatchSettings,
    GatewaySettings,
    OctopusSettings,
    PollerSettings,
)
from powerwall_bus.shared.tedapi.keys import public_der, write_private_key
from powerwall_bus.shared.tesla_cloud.tokens import TOKEN_FILE, TokenStore, tokens_from_answer
from powerwall_bus.simulator.cloud import FakeCloud, FakeCloudRunner
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.octopus import FakeOctopus, FakeOctopusRunner
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.support.collector import Collector
from tests.support.tedapi_keys import signing_key
from tests.test_dispatch_lan_e2e import MARGIN, World, _epoch, _night_start, _wait

if TYPE_CHECKING:
    from tests.conftest import TestBus

PASSWORD = "dispatch-Cloud-1"


def test_the_battery_holds_through_a_dispatch_through_the_cloud_and_is_released_after(
    bus: TestBus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="powerwall_bus")
    key = signing_key("paired")
    state = tmp_path / "state"
    key_file = write_private_key(key, state)
    world = World(_night_start(time.time()))
    options = SiteOptions(
        seed=3,
        powerwalls=1,
        timezone="Europe/London",
        start=datetime.fromtimestamp(world.start, UTC),
        initial_soe=80.0,
    )
    gateway = SimulatedGateway(options, clock=world.fast)
    server = GatewayServer(gateway, password=PASSWORD, wall_clock=world.now)
    server.signed.pair(public_der(key))
    octopus = FakeOctopus(flex_per_minute=10_000, clock=world.now)
    octopus.set_plan(
        [{"start": world.iso(90), "end": world.iso(135), "type": "SMART", "energyAddedKwh": "2.5"}]
    )
    meters = Collector(bus.settings.url, bus.settings.exchange, [routing_key("meters", "*")])
    results = Collector(
        bus.settings.url, bus.settings.exchange, [routing_key(DISPATCH_RESULT, "*")]
    )
    started: list[object] = []
    with (
        SimulatorRunner(server, ssl_context=server_context()) as sim,
        FakeOctopusRunner(octopus) as fake_octopus,
    ):
        cloud = FakeCloud(gateway_url=sim.url, din=gateway.din, clock=world.now)
        with FakeCloudRunner(cloud) as fake_cloud:
            tokens = fake_cloud.call(cloud.issue)
            TokenStore(state / TOKEN_FILE).save(tokens_from_answer(tokens, world.now()))
            try:
                poller = Poller(
                    PollerConfig(
                        gateway=GatewaySettings(
                            host=sim.address, password=PASSWORD, state_dir=tmp_path / "poller"
                        ),
                        amqp=bus.settings,
                        poller=PollerSettings(
                            meters_interval=0.5, soe_interval=0.5, slow_endpoints=()
                        ),
                    )
                ).start()
                started.append(poller)
                producer = OctopusProducer(
                    OctopusConfig(
                        OctopusSettings(
                            api_key=octopus.api_key,
                            account_number=octopus.account,
                            url=fake_octopus.url,
                            poll_interval=2.0,
                            publish_every=60.0,
                            timeout=5.0,
                        ),
                        bus.settings,
                        tmp_path / "octopus",
                    ),
                    clock=world.now,
                ).start()
                started.append(producer)
                dispatcher = Dispatcher(
                    DispatchConfig(
                        dispatch=DispatchSettings(
                            skip_offpeak=False,
                            align_start=False,
                            min_dispatch_minutes=0.0,
                            interval=30.0,
                            channel="cloud",
                        ),
                        amqp=bus.settings,
                        state_dir=state,
                        account=octopus.account,
                        cloud=CloudSettings(api_url=fake_cloud.url, auth_url=fake_cloud.token_url),
                    ),
                    clock=world.now,
                    wall=world.now,
                ).start()
                started.append(dispatcher)

                def bodies() -> list[dict]:
                    return [json.loads(m.body) for m in results.messages()]

                def scheduled() -> dict | None:
                    for body in bodies():
                        for action in body["payload"]["actions"]:
                            if action["action"] == "schedule" and action["outcome"] == "done":
                                return body
                    return None

                report = _wait(scheduled, 25)
                assert isinstance(report, dict), bodies()
                (action,) = [a for a in report["payload"]["actions"] if a["action"] == "schedule"]
                hold_start, hold_end = _epoch(action["start"]), _epoch(action["end"])
                assert report["payload"]["after"] == {
                    "start": action["start"],
                    "end": action["end"],
                }
                confirmed = _epoch(report["time"])
                assert hold_end == _epoch(world.iso(210))  # the half hour

                def released() -> bool:
                    return any(
                        b["payload"]["after"] is None and _epoch(b["time"]) > hold_end
                        for b in bodies()
                    )

                assert _wait(released, 25), bodies()
                assert _wait(lambda: world.now() > hold_end + 40, 10)
            finally:
                for part in reversed(started):
                    part.stop()  # type: ignore[attr-defined]
                meters.close()
                results.close()
            counts = cloud.counts.as_dict()

    assert counts["relayed"] >= 3 and counts["refused"] == {}  # list, schedule, list at least
    assert counts["statuses"].get("401") is None
    assert server.counters.by_path.get("/tedapi/v1r", 0) == counts["relayed"]  # all via cloud
    documents = [json.loads(m.body) for m in results.messages()]
    assert {b["payload"]["channel"] for b in documents} == {"cloud"}
    readings = [json.loads(m.body) for m in meters.messages()]
    battery = [
        (world.of_wall(_epoch(r["time"])), r["payload"]["battery"]["instant_power"])
        for r in readings
    ]
    before = [w for t, w in battery if t < hold_start - MARGIN]
    held = [w for t, w in battery if confirmed + MARGIN <= t < hold_end - MARGIN]
    after = [w for t, w in battery if t >= hold_end + MARGIN]
    assert len(held) >= 5 and len(before) >= 3 and len(after) >= 3, (before, held, after)
    assert max(before) > 0
    assert max(held) <= 0, held
    assert max(after) > 0
    for message in results.messages():
        assert validate_message(DISPATCH_RESULT, message.body) == []
    everything = caplog.text + "".join(m.body.decode() for m in results.messages())
    for secret in (tokens["access_token"], tokens["refresh_token"]):
        assert secret not in everything
    for chunk in key_file.read_text().strip().splitlines()[1:-1][::8]:
        assert chunk not in everything


class FastWorld:
    """A simulated clock 30 times faster than the wall's (no gateway model to keep up)."""

    def __init__(self, start: datetime) -> None:
        self.start, self.t0 = start.timestamp(), time.time()

    def now(self) -> float:
        return self.start + (time.time() - self.t0) * 30.0

    def iso(self, offset: float) -> str:
        return datetime.fromtimestamp(self.start + offset, UTC).isoformat()


def test_the_fleet_road_holds_by_mode_through_a_dispatch_and_restores_after(
    bus: TestBus, tmp_path: Path
) -> None:
    """``--channel fleet``: the dispatcher's loop unchanged, the Fleet API acting; the
    site's mode is backup through the hold and back to what it was after, nothing else."""
    state = tmp_path / "state"
    write_private_key(signing_key("unpaired"), state)  # signs, but nothing checks pairing
    world = FastWorld(_night_start(time.time()))
    din = "1232100-00-E--TG000000FLEET1"
    octopus = FakeOctopus(flex_per_minute=10_000, clock=world.now)
    octopus.set_plan(
        [{"start": world.iso(90), "end": world.iso(135), "type": "SMART", "energyAddedKwh": "2.5"}]
    )
    results = Collector(
        bus.settings.url, bus.settings.exchange, [routing_key(DISPATCH_RESULT, "*")]
    )
    cloud = FakeCloud(gateway_url="https://127.0.0.1:9", din=din, clock=world.now)
    started: list[object] = []
    with FakeOctopusRunner(octopus) as fake_octopus, FakeCloudRunner(cloud) as fake_cloud:
        tokens = fake_cloud.call(cloud.issue)
        TokenStore(state / TOKEN_FILE).save(tokens_from_answer(tokens, world.now()))
        try:
            started.append(
                Dispatcher(
                    DispatchConfig(
                        dispatch=DispatchSettings(
                            skip_offpeak=False,
                            align_start=False,
                            min_dispatch_minutes=0.0,
                            interval=30.0,
                            channel="fleet",
                            gateway=din,
                        ),
                        amqp=bus.settings,
                        state_dir=state,
                        account=octopus.account,
                        cloud=CloudSettings(api_url=fake_cloud.url, auth_url=fake_cloud.token_url),
                    ),
                    clock=world.now,
                    wall=world.now,
                ).start()
            )
            started.append(
                OctopusProducer(
                    OctopusConfig(
                        OctopusSettings(
                            api_key=octopus.api_key,
                            account_number=octopus.account,
                            url=fake_octopus.url,
                            poll_interval=2.0,
                            publish_every=2.0,
                            timeout=5.0,
                        ),
                        bus.settings,
                        tmp_path / "octopus",
                    ),
                    clock=world.now,
                ).start()
            )
            hold_end = _epoch(world.iso(210))  # the half hour after the dispatch
            assert _wait(lambda: len(cloud.history) >= 2, 15), cloud.history
            time.sleep(0.5)  # a few more decisions: nothing else is written
        finally:
            for part in reversed(started):
                part.stop()  # type: ignore[attr-defined]
            results.close()
    writes = [(moment, value) for moment, field, value in cloud.history]
    assert [value for _, value in writes] == ["backup", "autonomous"], writes
    assert _epoch(world.iso(85)) <= writes[0][0] < _epoch(world.iso(150))
    assert hold_end <= writes[1][0] < hold_end + 120  # restored once the hold ended
    documents = [json.loads(m.body) for m in results.messages()]
    assert documents and {b["payload"]["channel"] for b in documents} == {"fleet"}
    for message in results.messages():
        assert validate_message(DISPATCH_RESULT, message.body) == []
    assert not (state / "fleet-hold.json").exists()
