"""The outbox on disk end to end: a broker outage, then SIGKILL, loses at most the reading in
flight; and a second poller for the same gateway refuses to start."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.contract import ANY_GATEWAY, routing_key
from powerwall_bus.shared.messages import parse_envelope
from powerwall_bus.shared.settings import AmqpSettings
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.support.collector import Collector
from tests.support.tcp_proxy import TcpProxy

PASSWORD = "durable-Test-1"
ROOT = Path(__file__).resolve().parents[1]
METERS = "/api/meters/aggregates"


@pytest.fixture
def own_sim() -> Iterator[SimulatorRunner]:
    server = GatewayServer(SimulatedGateway(SiteOptions(seed=12, powerwalls=2)), password=PASSWORD)
    with SimulatorRunner(server, ssl_context=server_context()) as runner:
        yield runner


def _env(sim: SimulatorRunner, amqp_url: str, exchange: str, state: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PW_HOST": sim.address,
        "PW_PASSWORD": PASSWORD,
        "AMQP_URL": amqp_url,
        "AMQP_EXCHANGE": exchange,
        "PWBUS_STATE_DIR": str(state),
        "PWBUS_POLL_METERS": "1",
    }


def _poller(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "powerwall_bus", "poller"],
        env=env,
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _first_by_id(collector: Collector) -> dict[str, bytes]:
    first: dict[str, bytes] = {}
    for message in collector.messages():
        assert first.setdefault(message.properties.message_id, message.body) == message.body
    return first


@pytest.mark.slow
def test_outage_then_sigkill_loses_at_most_the_reading_in_flight(own_sim, bus, tmp_path) -> None:
    proxy = TcpProxy("127.0.0.1", AmqpSettings(url=bus.settings.url).port)
    via_proxy = AmqpSettings(url=bus.settings.url, host="127.0.0.1", port=proxy.port).url
    env = _env(own_sim, via_proxy, bus.settings.exchange, tmp_path)
    collector = Collector(
        bus.settings.url, bus.settings.exchange, [routing_key("meters", ANY_GATEWAY)]
    )
    first = _poller(env)
    second = None
    try:
        assert collector.wait_for(lambda m: len(m) >= 3, timeout=20)
        proxy.cut()
        time.sleep(20)
        during = len(_first_by_id(collector))
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = time.time()
        served = own_sim.server.counters.by_path[METERS]
        assert served - during >= 15  # the outage's readings were held, not published

        proxy.restore()
        second = _poller(env)

        def before_kill(messages: object) -> int:
            return sum(
                parse_envelope(body).epoch < killed_at for body in _first_by_id(collector).values()
            )

        assert collector.wait_for(lambda m: before_kill(m) >= served - 1, timeout=60), (
            before_kill(None),
            served,
        )
        time.sleep(1.0)  # anything sent twice has arrived
        second.send_signal(signal.SIGTERM)
        assert second.wait(20) == 0
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
        proxy.close()
        collector.close()
    received = [parse_envelope(body) for body in _first_by_id(collector).values()]
    times = [e.epoch for e in received]  # in the order they first arrived
    assert times == sorted(times), "out of order"
    held = [t for t in times if t < killed_at]
    assert served - 1 <= len(held) <= served
    assert max(b - a for a, b in itertools.pairwise(held)) < 2.1  # no hole
    assert len(collector.messages()) - len(received) <= 10  # re-sends of lost confirms only


def test_a_second_poller_for_the_same_gateway_refuses_to_start(own_sim, bus, tmp_path) -> None:
    env = _env(own_sim, bus.settings.url, bus.settings.exchange, tmp_path)
    collector = Collector(
        bus.settings.url, bus.settings.exchange, [routing_key("meters", ANY_GATEWAY)]
    )
    first = _poller(env)
    try:
        assert collector.wait_for(lambda m: len(m) >= 1, timeout=20)
        result = subprocess.run(
            [sys.executable, "-m", "powerwall_bus", "poller"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert first.poll() is None  # the first one carries on
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(20)
        collector.close()
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line
    assert line.startswith(
        f"pwbus poller: configuration: gateway.state_dir: another poller (pid {first.pid}) "
        "is running for this gateway"
    ), line
    assert PASSWORD not in line
    # the lock goes with the process: a poller starts again at once
    again = _poller(env)
    try:
        time.sleep(3)
        assert again.poll() is None
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(20) == 0
