"""The LAN road end to end: Octopus plan -> pwbus dispatch -> bus -> poller -> gateway.

The stack of issue 11's "Done when", in-process on real sockets and the real broker: the
simulated gateway with the dispatcher's key paired, the poller (the only gateway client),
``pwbus octopus`` against the fake Octopus publishing the plan, and the dispatcher acting
over the LAN. The simulated battery discharges before the dispatch, holds (no discharge)
through the hold the dispatcher scheduled, and discharges again once it ended, seen in the
poller's own ``meters`` messages; each step is a ``dispatch.result``; nothing secret is in
a message or a log line.

The simulated night, its one clock and its plan are :mod:`tests.support.dispatch_world`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.contract import DISPATCH_RESULT, routing_key
from powerwall_bus.shared.schemas import validate_message
from powerwall_bus.shared.tedapi.keys import write_private_key
from powerwall_bus.simulator.octopus import FakeOctopusRunner
from powerwall_bus.simulator.server import SimulatorRunner
from tests.conftest import TestBus
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

PASSWORD = "dispatch-Lan-1"


def test_the_battery_holds_through_a_dispatch_over_the_lan_and_is_released_after(
    bus: TestBus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="powerwall_bus")
    key = signing_key("paired")  # made before the world starts: RSA-4096 takes a while
    key_file = write_private_key(key, tmp_path / "state")
    world = World(night_start(time.time()))
    server = paired_site(world, key, PASSWORD)
    octopus = planned_octopus(world)
    meters = Collector(bus.settings.url, bus.settings.exchange, [routing_key("meters", "*")])
    results = Results(
        Collector(bus.settings.url, bus.settings.exchange, [routing_key(DISPATCH_RESULT, "*")])
    )
    started: list[object] = []
    with (
        SimulatorRunner(server, ssl_context=server_context()) as sim,
        FakeOctopusRunner(octopus) as fake,
    ):
        try:
            started.append(start_poller(bus.settings, sim, PASSWORD, tmp_path / "poller"))
            started.append(
                start_producer(bus.settings, octopus, fake.url, tmp_path / "octopus", world)
            )
            started.append(start_dispatcher(bus.settings, tmp_path / "state", octopus, world))
            assert key_file.exists()

            report = wait_until(results.scheduled, 25)
            assert isinstance(report, dict), results.bodies()
            (action,) = [a for a in report["payload"]["actions"] if a["action"] == "schedule"]
            hold_start, hold_end = epoch(action["start"]), epoch(action["end"])
            # Read back after the schedule: the gateway holds from then at the latest.
            assert report["payload"]["after"] == {"start": action["start"], "end": action["end"]}
            confirmed = epoch(report["time"])
            assert epoch(world.iso(90)) <= hold_start < epoch(world.iso(150))  # >= 60 s left
            assert hold_end == epoch(world.iso(HOLD_END))  # 21:30:00, the half hour

            assert wait_until(lambda: results.released_after(hold_end), 25), [
                (b["time"], b["payload"]["summary"], b["payload"]["after"], b["payload"]["error"])
                for b in results.bodies()
            ]
            # A few readings after the release, then everything down.
            assert wait_until(lambda: world.now() > hold_end + 40, 10)
        finally:
            for part in reversed(started):
                part.stop()  # type: ignore[attr-defined]
            meters.close()
            results.collector.close()

    documents = results.bodies()
    before, held, after = battery_phases(meters, world, hold_start, confirmed, hold_end)
    assert len(held) >= 5 and len(before) >= 3 and len(after) >= 3, (before, held, after)
    assert max(before) > 0  # discharging into the house before the dispatch
    assert max(held) <= 0, held  # Max Backup: no discharge
    assert max(after) > 0  # released: discharging again

    for message in results.collector.messages():
        assert validate_message(DISPATCH_RESULT, message.body) == []
    assert next(b["payload"]["trigger"] for b in documents) in ("start", "plan")
    assert any(b["payload"]["after"] is not None for b in documents)  # read back while held
    # Nothing secret: the private key never appears, in a message or a log line.
    secret = key_file.read_text()
    lines = secret.strip().splitlines()[1:-1]
    assert "PRIVATE KEY" not in caplog.text
    for chunk in lines[::8]:
        assert chunk not in caplog.text
        assert all(chunk not in m.body.decode() for m in results.collector.messages())
