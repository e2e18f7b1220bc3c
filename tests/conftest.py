"""Shared fixtures: a real broker, a real database, and the gateway simulator on a free port."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
import requests

from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.settings import AmqpSettings, GatewaySettings, MysqlSettings
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.faults import FaultSet
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.support import services

SIM_PASSWORD = "test-Pa55word"
SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"

# A developer's own installation must be out of reach: every environment variable a setting
# reads (AMQP_URL, MYSQL_URL, PW_HOST, PWBUS_STATE_DIR, ...) and PWBUS_CONFIG is removed for
# the whole run, so neither the tests nor the programs they start can pick one up. The
# services come only from PWBUS_TEST_AMQP_URL / PWBUS_TEST_MYSQL_URL (tests/support/services).
services.scrub_production_environment(os.environ)

#: Fixtures that need a real service -> the marker the test gets, so `-m "not mysql"` works.
SERVICE_MARKERS = {
    "amqp_base_url": "rabbitmq",
    "mysql_admin_url": "mysql",
    "browser": "browser",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test by the services its fixtures need (directly or through others)."""
    for item in items:
        needed = set(getattr(item, "fixturenames", ()))
        for fixture, marker in SERVICE_MARKERS.items():
            if fixture in needed:
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Undo what an in-process `pwbus` main did to the root logger.

    `configure_logging` installs a handler on the stderr of the moment, which under pytest is a
    capture file closed after the test; left in place, every later test's logging would print
    'Logging error ... I/O operation on closed file' into the run's output.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


# --------------------------------------------------------------------------- RabbitMQ


@pytest.fixture(scope="session")
def amqp_base_url() -> Iterator[str]:
    with services.amqp_url() as url:
        yield url


class TestBus:
    """A uniquely named exchange (and queues) on the real broker, removed afterwards."""

    __test__ = False  # a helper, not a test class for pytest to collect

    def __init__(self, base_url: str) -> None:
        self.tag = uuid.uuid4().hex[:10]
        self.settings = AmqpSettings(url=base_url, exchange=f"test.{self.tag}")
        self._queues: list[str] = []

    def queue_name(self, purpose: str = "q") -> str:
        """A queue name unique to this test (deleted at teardown)."""
        name = f"test.{self.tag}.{purpose}"
        self._queues.append(name)
        return name

    def connect(self) -> pika.BlockingConnection:
        """A new blocking connection to the test broker."""
        return pika.BlockingConnection(pika.URLParameters(self.settings.url))

    def cleanup(self) -> None:
        try:
            connection = self.connect()
        except pika.exceptions.AMQPError:
            return
        channel = connection.channel()
        for queue in self._queues:
            channel.queue_delete(queue)
        channel.exchange_delete(self.settings.exchange)
        connection.close()


@pytest.fixture
def bus(amqp_base_url: str) -> Iterator[TestBus]:
    test_bus = TestBus(amqp_base_url)
    yield test_bus
    test_bus.cleanup()


# --------------------------------------------------------------------------- MySQL


@pytest.fixture(scope="session")
def mysql_admin_url() -> Iterator[str]:
    with services.mysql_url() as url:
        yield url


@pytest.fixture
def mysql_db(mysql_admin_url: str) -> Iterator[MysqlSettings]:
    """A fresh, empty database for this test, dropped afterwards."""
    with services.scratch_database(mysql_admin_url) as settings:
        yield settings


# --------------------------------------------------------------------------- simulator


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorRunner]:
    """One simulated gateway for the whole session, on a free port of 127.0.0.1."""
    gateway = SimulatedGateway(SiteOptions(seed=42, powerwalls=2))
    server = GatewayServer(gateway, password=SIM_PASSWORD)
    runner = SimulatorRunner(server, "127.0.0.1", 0, server_context())
    with runner:
        yield runner


@pytest.fixture
def sim(simulator: SimulatorRunner) -> Iterator[SimulatorRunner]:
    """The session simulator with counts, faults and sessions reset for this test."""
    server = simulator.server
    server.set_faults(FaultSet())
    server.gateway.set_firmware("23.12.10 8f14e45f")
    server.expire_sessions()
    server.reset_counts()
    yield simulator
    server.set_faults(FaultSet())


@pytest.fixture
def gateway_settings(sim: SimulatorRunner, tmp_path: Path) -> GatewaySettings:
    """Client settings pointing at the simulator, with a private state folder."""
    return GatewaySettings(
        host=sim.address,
        password=SIM_PASSWORD,
        state_dir=tmp_path / "state",
        rate_limit_cooldown=300.0,
    )


def sim_counts(runner: SimulatorRunner) -> dict:
    """The simulator's request counts, read over its control endpoint (a real request)."""
    response = requests.get(f"{runner.url}/_sim/counts", verify=False, timeout=5)
    response.raise_for_status()
    return response.json()
