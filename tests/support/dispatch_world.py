"""The simulated night of the dispatch end-to-end tests (LAN road, cloud road, Fleet road).

Time: a dispatch's hold ends on a half hour, so the simulated world runs :data:`SPEED` times
faster than the wall clock, starting just before a half hour, at night (no sun in the way).
Every clock of the world (the site model, the gateway's signature check, the fake Octopus,
the producer, the dispatcher's decisions and signatures) is that one simulated clock; the
poller, which checks signatures before relaying, runs on the wall clock, behind it.

The plan is one dispatch from 90 to 135 simulated seconds after the start (21:28:00 to
21:28:45), so a hold (``align_start`` off) runs from then to 21:30:00, the half hour.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from powerwall_bus.consumers.dispatch.command import DispatchConfig
from powerwall_bus.consumers.dispatch.main import Dispatcher
from powerwall_bus.producers.octopus.command import OctopusConfig
from powerwall_bus.producers.octopus.main import OctopusProducer
from powerwall_bus.producers.poller.command import PollerConfig
from powerwall_bus.producers.poller.main import Poller
from powerwall_bus.shared.settings import (
    AmqpSettings,
    CloudSettings,
    DispatchSettings,
    GatewaySettings,
    OctopusSettings,
    PollerSettings,
)
from powerwall_bus.shared.tedapi.keys import public_der
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.octopus import FakeOctopus
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.support.collector import Collector

SPEED = 20.0
MARGIN = 3.0  # simulated seconds around a change: one model step plus the readings' slack
HOLD_END = 210.0  # simulated seconds from the start: 21:30:00, the half hour


def night_start(now: float) -> datetime:
    """The next 21:26:30 UTC at least two minutes away: dark in London, before a half hour."""
    moment = datetime.fromtimestamp(now, UTC).replace(hour=21, minute=26, second=30, microsecond=0)
    while moment.timestamp() < now + 120:
        moment += timedelta(days=1)
    return moment


class World:
    """One simulated clock: ``start`` at wall time ``t0``, ``speed`` times faster."""

    def __init__(self, start: datetime, speed: float = SPEED) -> None:
        self.start = start.timestamp()
        self.t0 = time.time()
        self.speed = speed

    def fast(self) -> float:
        """A wall-like clock running ``speed`` times faster (the site model's)."""
        return self.t0 + (time.time() - self.t0) * self.speed

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self.start + (time.time() - self.t0) * self.speed

    def of_wall(self, wall: float) -> float:
        """The simulated time of wall time ``wall``."""
        return self.start + (wall - self.t0) * self.speed

    def iso(self, offset: float) -> str:
        """The simulated moment ``offset`` seconds after the start, ISO 8601."""
        return datetime.fromtimestamp(self.start + offset, UTC).isoformat()


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def planned_octopus(world: World) -> FakeOctopus:
    """The fake Octopus with the night's one dispatch planned (and no flex rate limit)."""
    octopus = FakeOctopus(flex_per_minute=10_000, clock=world.now)
    octopus.set_plan(
        [{"start": world.iso(90), "end": world.iso(135), "type": "SMART", "energyAddedKwh": "2.5"}]
    )
    return octopus


def paired_site(world: World, key: Any, password: str) -> GatewayServer:
    """One Powerwall at 80 % at night, with ``key`` paired for signed commands."""
    options = SiteOptions(
        seed=3,
        powerwalls=1,
        timezone="Europe/London",
        start=datetime.fromtimestamp(world.start, UTC),
        initial_soe=80.0,
    )
    server = GatewayServer(
        SimulatedGateway(options, clock=world.fast), password=password, wall_clock=world.now
    )
    server.signed.pair(public_der(key))
    return server


def start_poller(amqp: AmqpSettings, sim: SimulatorRunner, password: str, state: Path) -> Poller:
    """The poller reading meters and SoE twice a wall second (and relaying signed commands)."""
    return Poller(
        PollerConfig(
            gateway=GatewaySettings(host=sim.address, password=password, state_dir=state),
            amqp=amqp,
            poller=PollerSettings(meters_interval=0.5, soe_interval=0.5, slow_endpoints=()),
        )
    ).start()


def start_producer(
    amqp: AmqpSettings,
    octopus: FakeOctopus,
    url: str,
    state: Path,
    world: World,
    *,
    publish_every: float = 60.0,
) -> OctopusProducer:
    """``pwbus octopus`` on the world's clock: about 6 polls a wall second."""
    return OctopusProducer(
        OctopusConfig(
            OctopusSettings(
                api_key=octopus.api_key,
                account_number=octopus.account,
                url=url,
                poll_interval=2.0,  # simulated seconds
                publish_every=publish_every,
                timeout=5.0,
            ),
            amqp,
            state,
        ),
        clock=world.now,
    ).start()


def start_dispatcher(
    amqp: AmqpSettings,
    state: Path,
    octopus: FakeOctopus,
    world: World,
    *,
    cloud: CloudSettings | None = None,
    **dispatch: Any,
) -> Dispatcher:
    """``pwbus dispatch`` on the world's clock, acting on every dispatch at once (``dispatch``:
    more DispatchSettings, e.g. the channel)."""
    settings = DispatchSettings(
        skip_offpeak=False,
        align_start=False,
        min_dispatch_minutes=0.0,
        interval=30.0,  # simulated seconds
        **dispatch,
    )
    config = DispatchConfig(
        dispatch=settings,
        amqp=amqp,
        state_dir=state,
        account=octopus.account,
        cloud=cloud or CloudSettings(),
    )
    return Dispatcher(config, clock=world.now, wall=world.now).start()


class Results:
    """The ``dispatch.result`` messages, read as documents."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(m.body) for m in self.collector.messages()]

    def scheduled(self) -> dict[str, Any] | None:
        """The first result whose hold was scheduled and confirmed."""
        for body in self.bodies():
            for action in body["payload"]["actions"]:
                if action["action"] == "schedule" and action["outcome"] == "done":
                    return body
        return None

    def released_after(self, moment: float) -> bool:
        """A result after ``moment`` reads back no hold."""
        return any(
            b["payload"]["after"] is None and epoch(b["time"]) > moment for b in self.bodies()
        )


def battery_phases(
    meters: Collector, world: World, hold_start: float, confirmed: float, hold_end: float
) -> tuple[list[float], list[float], list[float]]:
    """The battery's power from the poller's meters messages: before the hold, while it was
    confirmed held, after it ended (each with :data:`MARGIN` kept clear of the changes)."""
    battery = [
        (world.of_wall(epoch(r["time"])), r["payload"]["battery"]["instant_power"])
        for r in (json.loads(m.body) for m in meters.messages())
    ]
    before = [w for t, w in battery if t < hold_start - MARGIN]
    held = [w for t, w in battery if confirmed + MARGIN <= t < hold_end - MARGIN]
    after = [w for t, w in battery if t >= hold_end + MARGIN]
    return before, held, after
