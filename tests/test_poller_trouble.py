"""What the poller's log says about gateway trouble: when it starts, as it lasts, when it ends."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from powerwall_bus.producers.poller.main import Poller, PollerConfig
from powerwall_bus.producers.poller.trouble import TroubleLog
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.settings import GatewaySettings, PollerSettings
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.faults import FaultSet
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.support.waiting import wait_until

PASSWORD = "trouble-Test-1"


def test_trouble_is_one_line_then_reminders_then_one_line_when_it_ends() -> None:
    log = TroubleLog(reminder=300.0)
    assert log.observe("ok", 0.0) is None  # starting -> ok is not news
    level, text = log.observe("site_controller_stopped", 10.0, cause="502", next_attempt=12.0) or (
        0,
        "",
    )
    assert level == logging.WARNING
    assert text.startswith("the gateway's site controller is stopped (502); next attempt at ")
    assert log.observe("site_controller_stopped", 100.0) is None  # every attempt: silence
    reminder = log.observe("site_controller_stopped", 310.0, cause="502")
    assert reminder is not None and reminder[1].startswith("still: the gateway's site")
    assert "for 300 s" in reminder[1]
    assert log.observe("site_controller_stopped", 400.0) is None
    # Trouble changing its kind is a new line, but the time counts from the first.
    changed = log.observe("unreachable", 500.0, cause="timed out")
    assert changed is not None and changed[1].startswith("the gateway is unreachable (timed out)")
    back = log.observe("ok", 565.0)
    assert back == (logging.INFO, "the gateway answers again, after 555 s of trouble")
    assert log.observe("ok", 900.0) is None


def test_a_wrong_password_is_an_error_and_is_recalled() -> None:
    log = TroubleLog(reminder=300.0)
    first = log.observe("login_refused", 0.0, cause="bad credentials")
    assert first is not None and first[0] == logging.ERROR and "wrong password" in first[1]
    lines = [log.observe("login_refused", t) for t in range(60, 1000, 60)]
    reminders = [line for line in lines if line is not None]
    assert len(reminders) == 3  # at 300, 600 and 900 s


@pytest.fixture
def own_sim() -> Iterator[SimulatorRunner]:
    server = GatewayServer(SimulatedGateway(SiteOptions(seed=5)), password=PASSWORD)
    with SimulatorRunner(server, ssl_context=server_context()) as runner:
        yield runner


@pytest.mark.timeout(60)
def test_a_stopped_site_controller_is_said_at_once_and_its_end_too(
    own_sim: SimulatorRunner, bus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = PollerConfig(
        gateway=GatewaySettings(host=own_sim.address, password=PASSWORD, state_dir=tmp_path),
        amqp=bus.settings,
        poller=PollerSettings(meters_interval=1.0),
    )
    logger = "powerwall_bus.producers.poller.reader"
    with caplog.at_level(logging.INFO, logger=logger):
        poller = Poller(config).start()
        try:
            assert wait_until(lambda: own_sim.server.counters.by_path, 10)
            own_sim.server.set_faults(FaultSet.parse(["stopped"]))
            stopped_at = time.monotonic()

            def lines() -> list[str]:
                return [r.getMessage() for r in caplog.records if r.name == logger]

            assert wait_until(lambda: any("site controller is stopped" in x for x in lines()), 10)
            said_after = time.monotonic() - stopped_at
            time.sleep(3)  # several failed reads: still the one line
            own_sim.server.set_faults(FaultSet())
            assert wait_until(lambda: any("answers again" in x for x in lines()), 15)
        finally:
            poller.stop()
    trouble = [x for x in lines() if "site controller" in x]
    assert len(trouble) == 1 and "next attempt at " in trouble[0], trouble
    assert said_after < 5  # at the first failed read, not 55 s later
