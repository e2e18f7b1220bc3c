"""The cloud road end to end: Octopus plan -> pwbus dispatch -> fake Tesla cloud -> gateway.

The twin of ``test_dispatch_lan_e2e`` (whose simulated night it shares,
:mod:`tests.support.dispatch_world`) with ``dispatch.channel = cloud``: the
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
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.contract import DISPATCH_RESULT, routing_key
from powerwall_bus.shared.schemas import validate_message
from powerwall_bus.shared.settings import CloudSettings
from powerwall_bus.shared.tedapi.keys import write_private_key
from powerwall_bus.shared.tesla_cloud.tokens import TOKEN_FILE, TokenStore, tokens_from_answer
from powerwall_bus.simulator.cloud import FakeCloud, FakeCloudRunner
from powerwall_bus.simulator.octopus import FakeOctopusRunner
from powerwall_bus.simulator.server import SimulatorRunner
from tests.support.collector import Collector
from tests.support.dispatch_world import (
    HOLD_END,
    Results,
    World,
    battery_phases,
    epoch,
    night_start,
    paired_site,
    planned_octopus,
    start_dispatcher,
    start_poller,
    start_producer,
)
from tests.support.tedapi_keys import signing_key
from tests.support.waiting import wait_until

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
    world = World(night_start(time.time()))
    server = paired_site(world, key, PASSWORD)
    din = server.gateway.din
    octopus = planned_octopus(world)
    meters = Collector(bus.settings.url, bus.settings.exchange, [routing_key("meters", "*")])
    results = Results(
        Collector(bus.settings.url, bus.settings.exchange, [routing_key(DISPATCH_RESULT, "*")])
    )
    started: list[object] = []
    with (
        SimulatorRunner(server, ssl_context=server_context()) as sim,
        FakeOctopusRunner(octopus) as fake_octopus,
    ):
        cloud = FakeCloud(gateway_url=sim.url, din=din, clock=world.now)
        with FakeCloudRunner(cloud) as fake_cloud:
            tokens = fake_cloud.call(cloud.issue)
            TokenStore(state / TOKEN_FILE).save(tokens_from_answer(tokens, world.now()))
            try:
                started.append(start_poller(bus.settings, sim, PASSWORD, tmp_path / "poller"))
                started.append(
                    start_producer(
                        bus.settings, octopus, fake_octopus.url, tmp_path / "octopus", world
                    )
                )
                cloud_account = CloudSettings(api_url=fake_cloud.url, auth_url=fake_cloud.token_url)
                started.append(
                    start_dispatcher(
                        bus.settings, state, octopus, world, cloud=cloud_account, channel="cloud"
                    )
                )

                report = wait_until(results.scheduled, 25)
                assert isinstance(report, dict), results.bodies()
                (action,) = [a for a in report["payload"]["actions"] if a["action"] == "schedule"]
                hold_start, hold_end = epoch(action["start"]), epoch(action["end"])
                assert report["payload"]["after"] == {
                    "start": action["start"],
                    "end": action["end"],
                }
                confirmed = epoch(report["time"])
                assert hold_end == epoch(world.iso(HOLD_END))  # the half hour

                assert wait_until(lambda: results.released_after(hold_end), 25), results.bodies()
                assert wait_until(lambda: world.now() > hold_end + 40, 10)
            finally:
                for part in reversed(started):
                    part.stop()  # type: ignore[attr-defined]
                meters.close()
                results.collector.close()
            counts = cloud.counts.as_dict()

    assert counts["relayed"] >= 3 and counts["refused"] == {}  # list, schedule, list at least
    assert counts["statuses"].get("401") is None
    assert server.counters.by_path.get("/tedapi/v1r", 0) == counts["relayed"]  # all via cloud
    documents = results.bodies()
    assert {b["payload"]["channel"] for b in documents} == {"cloud"}
    before, held, after = battery_phases(meters, world, hold_start, confirmed, hold_end)
    assert len(held) >= 5 and len(before) >= 3 and len(after) >= 3, (before, held, after)
    assert max(before) > 0
    assert max(held) <= 0, held
    assert max(after) > 0
    for message in results.collector.messages():
        assert validate_message(DISPATCH_RESULT, message.body) == []
    everything = caplog.text + "".join(m.body.decode() for m in results.collector.messages())
    for secret in (tokens["access_token"], tokens["refresh_token"]):
        assert secret not in everything
    for chunk in key_file.read_text().strip().splitlines()[1:-1][::8]:
        assert chunk not in everything


def test_the_fleet_road_holds_by_mode_through_a_dispatch_and_restores_after(
    bus: TestBus, tmp_path: Path
) -> None:
    """``--channel fleet``: the dispatcher's loop unchanged, the Fleet API acting; the
    site's mode is backup through the hold and back to what it was after, nothing else."""
    state = tmp_path / "state"
    write_private_key(signing_key("unpaired"), state)  # signs, but nothing checks pairing
    world = World(night_start(time.time()), speed=30.0)  # no gateway model to keep up
    din = "1232100-00-E--TG000000FLEET1"
    octopus = planned_octopus(world)
    results = Collector(
        bus.settings.url, bus.settings.exchange, [routing_key(DISPATCH_RESULT, "*")]
    )
    cloud = FakeCloud(gateway_url="https://127.0.0.1:9", din=din, clock=world.now)
    started: list[object] = []
    with FakeOctopusRunner(octopus) as fake_octopus, FakeCloudRunner(cloud) as fake_cloud:
        tokens = fake_cloud.call(cloud.issue)
        TokenStore(state / TOKEN_FILE).save(tokens_from_answer(tokens, world.now()))
        try:
            cloud_account = CloudSettings(api_url=fake_cloud.url, auth_url=fake_cloud.token_url)
            started.append(
                start_dispatcher(
                    bus.settings,
                    state,
                    octopus,
                    world,
                    cloud=cloud_account,
                    channel="fleet",
                    gateway=din,
                )
            )
            started.append(
                start_producer(
                    bus.settings,
                    octopus,
                    fake_octopus.url,
                    tmp_path / "octopus",
                    world,
                    publish_every=2.0,
                )
            )
            hold_end = epoch(world.iso(HOLD_END))  # the half hour after the dispatch
            assert wait_until(lambda: len(cloud.history) >= 2, 15), cloud.history
            time.sleep(0.5)  # a few more decisions: nothing else is written
        finally:
            for part in reversed(started):
                part.stop()  # type: ignore[attr-defined]
            results.close()
    writes = [(moment, value) for moment, field, value in cloud.history]
    assert [value for _, value in writes] == ["backup", "autonomous"], writes
    assert epoch(world.iso(85)) <= writes[0][0] < epoch(world.iso(150))
    assert hold_end <= writes[1][0] < hold_end + 120  # restored once the hold ended
    documents = [json.loads(m.body) for m in results.messages()]
    assert documents and {b["payload"]["channel"] for b in documents} == {"fleet"}
    for message in results.messages():
        assert validate_message(DISPATCH_RESULT, message.body) == []
    assert not (state / "fleet-hold.json").exists()
