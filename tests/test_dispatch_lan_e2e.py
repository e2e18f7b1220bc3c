"""The LAN road end to end: Octopus plan -> pwbus dispatch -> bus -> poller -> gateway.

The stack of issue 11's "Done when", in-process on real sockets and the real broker: the
simulated gateway with the dispatcher's key paired, the poller (the only gateway client),
``pwbus octopus`` against the fake Octopus publishing the plan, and the dispatcher acting
over the LAN. The simulated battery discharges before the dispatch, holds (no discharge)
through the hold the dispatcher scheduled, and discharges again once it ended, seen in the
poller's own ``meters`` messages; each step is a ``dispatch.result``; nothing secret is in
a message or a log line.

Time: a dispatch's hold ends on a half hour, so the simulated world runs 20 times faster
than the wall clock, starting just before a half hour, at night (no sun in the way). Every
clock of the world (the site model, the gateway's signature check, the fake Octopus, the
producer, the dispatcher's decisions and signatures) is that one simulated clock; the
poller, which checks signatures before relaying, runs on the wall clock, behind it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
    DispatchSettings,
    GatewaySettings,
    OctopusSettings,
    PollerSettings,
)
from powerwall_bus.shared.tedapi.keys import public_der, write_private_key
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.octopus import FakeOctopus, FakeOctopusRunner
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.conftest import TestBus
from tests.support.collector import Collector
from tests.support.tedapi_keys import signing_key

SPEED = 20.0
PASSWORD = "dispatch-Lan-1"
MARGIN = 3.0  # simulated seconds around a change: one model step plus the readings' slack


def _night_start(now: float) -> datetime:
    """The next 21:26:30 UTC at least two minutes away: dark in London, before a half hour."""
    moment = datetime.fromtimestamp(now, UTC).replace(hour=21, minute=26, second=30, microsecond=0)
    while moment.timestamp() < now + 120:
        moment += timedelta(days=1)
    return moment


class World:
    """One simulated clock: ``start`` at wall time ``t0``, ``SPEED`` times faster."""

    def __init__(self, start: datetime) -> None:
        self.start = start.timestamp()
        self.t0 = time.time()

    def fast(self) -> float:
        """A wall-like clock running ``SPEED`` times faster (the site model's)."""
        return self.t0 + (time.time() - self.t0) * SPEED

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self.start + (time.time() - self.t0) * SPEED

    def of_wall(self, epoch: float) -> float:
        return self.start + (epoch - self.t0) * SPEED

    def iso(self, offset: float) -> str:
        return datetime.fromtimestamp(self.start + offset, UTC).isoformat()


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _wait(condition: Callable[[], object], timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    return None


def test_the_battery_holds_through_a_dispatch_over_the_lan_and_is_released_after(
    bus: TestBus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="powerwall_bus")
    key = signing_key("paired")  # made before the world starts: RSA-4096 takes a while
    key_file = write_private_key(key, tmp_path / "state")
    world = World(_night_start(time.time()))
    options = SiteOptions(
        seed=3,
        powerwalls=1,
        timezone="Europe/London",
        start=datetime.fromtimestamp(world.start, UTC),
        initial_soe=80.0,
    )
    server = GatewayServer(
        SimulatedGateway(options, clock=world.fast), password=PASSWORD, wall_clock=world.now
    )
    server.signed.pair(public_der(key))
    octopus = FakeOctopus(flex_per_minute=10_000, clock=world.now)
    # The dispatch: 28:00-28:45, so the hold is 28:00 (align_start off) to the half hour.
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
        FakeOctopusRunner(octopus) as fake,
    ):
        try:
            poller = Poller(
                PollerConfig(
                    gateway=GatewaySettings(
                        host=sim.address, password=PASSWORD, state_dir=tmp_path / "poller"
                    ),
                    amqp=bus.settings,
                    poller=PollerSettings(meters_interval=0.5, soe_interval=0.5, slow_endpoints=()),
                )
            ).start()
            started.append(poller)
            producer = OctopusProducer(
                OctopusConfig(
                    OctopusSettings(
                        api_key=octopus.api_key,
                        account_number=octopus.account,
                        url=fake.url,
                        poll_interval=2.0,  # simulated seconds: about 6 polls a wall second
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
                        interval=30.0,  # simulated seconds
                    ),
                    amqp=bus.settings,
                    state_dir=tmp_path / "state",
                    account=octopus.account,
                ),
                clock=world.now,
                wall=world.now,
            ).start()
            started.append(dispatcher)
            assert key_file.exists()

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
            # Read back after the schedule: the gateway holds from then at the latest.
            assert report["payload"]["after"] == {"start": action["start"], "end": action["end"]}
            confirmed = _epoch(report["time"])
            assert _epoch(world.iso(90)) <= hold_start < _epoch(world.iso(150))  # >= 60 s left
            assert hold_end == _epoch(world.iso(210))  # 21:30:00, the half hour

            def released() -> bool:
                return any(
                    b["payload"]["after"] is None and _epoch(b["time"]) > hold_end for b in bodies()
                )

            assert _wait(released, 25), [
                (b["time"], b["payload"]["summary"], b["payload"]["after"], b["payload"]["error"])
                for b in bodies()
            ]
            # A few readings after the release, then everything down.
            assert _wait(lambda: world.now() > hold_end + 40, 10)
        finally:
            for part in reversed(started):
                part.stop()  # type: ignore[attr-defined]
            meters.close()
            results.close()

    documents = [json.loads(m.body) for m in results.messages()]
    readings = [json.loads(m.body) for m in meters.messages()]
    battery = [
        (world.of_wall(_epoch(r["time"])), r["payload"]["battery"]["instant_power"])
        for r in readings
    ]
    before = [w for t, w in battery if t < hold_start - MARGIN]
    held = [w for t, w in battery if confirmed + MARGIN <= t < hold_end - MARGIN]
    after = [w for t, w in battery if t >= hold_end + MARGIN]
    assert len(held) >= 5 and len(before) >= 3 and len(after) >= 3, (before, held, after)
    assert max(before) > 0  # discharging into the house before the dispatch
    assert max(held) <= 0, held  # Max Backup: no discharge
    assert max(after) > 0  # released: discharging again

    for message in results.messages():
        assert validate_message(DISPATCH_RESULT, message.body) == []
    assert next(b["payload"]["trigger"] for b in documents) in ("start", "plan")
    assert any(b["payload"]["after"] is not None for b in documents)  # read back while held
    # Nothing secret: the private key never appears, in a message or a log line.
    secret = key_file.read_text()
    lines = secret.strip().splitlines()[1:-1]
    assert "PRIVATE KEY" not in caplog.text
    for chunk in lines[::8]:
        assert chunk not in caplog.text
        assert all(chunk not in m.body.decode() for m in results.messages())
