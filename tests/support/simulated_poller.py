"""The front half of the pipeline in this process: simulator (real HTTPS) -> poller -> bus.

The end-to-end tests of the consumers (proxy, console, window, LED display) all need a
poller reading a simulated gateway and publishing to the test's exchange; this is that setup,
once. The poller polls meters every second so a test sees new readings quickly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from powerwall_bus.producers.poller.main import Poller, PollerConfig
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.settings import AmqpSettings, GatewaySettings, PollerSettings
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions


@contextmanager
def simulated_poller(
    amqp: AmqpSettings, state_dir: Path, *, password: str, seed: int, powerwalls: int = 2
) -> Iterator[tuple[SimulatorRunner, Poller]]:
    """A simulated site and a started poller publishing it to ``amqp``; both stop on exit."""
    server = GatewayServer(
        SimulatedGateway(SiteOptions(seed=seed, powerwalls=powerwalls)), password=password
    )
    with SimulatorRunner(server, ssl_context=server_context()) as sim:
        poller = Poller(
            PollerConfig(
                gateway=GatewaySettings(host=sim.address, password=password, state_dir=state_dir),
                amqp=amqp,
                poller=PollerSettings(meters_interval=1.0),
            )
        ).start()
        try:
            yield sim, poller
        finally:
            poller.stop()
