"""``pwbus dispatch``'s shell on the real broker: restarts, the dry run, the CLI process.

A plan message is published by hand here (the Octopus producer's own path is in
``test_dispatch_lan_e2e.py``); the gateway is the simulator behind a real poller.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pika
import pytest

from powerwall_bus.consumers.dispatch.command import DispatchConfig
from powerwall_bus.consumers.dispatch.main import Dispatcher
from powerwall_bus.producers.poller.command import PollerConfig
from powerwall_bus.producers.poller.main import Poller
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.contract import DISPATCH_RESULT, routing_key
from powerwall_bus.shared.messages import RunSequence
from powerwall_bus.shared.octopus.message import PlanMessage, plan_message
from powerwall_bus.shared.octopus.plan import DispatchPlan, PlannedDispatch
from powerwall_bus.shared.settings import DispatchSettings, GatewaySettings, PollerSettings
from powerwall_bus.shared.tedapi.keys import public_der, write_private_key
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.conftest import TestBus, sim_counts
from tests.support.collector import Collector
from tests.support.tedapi_keys import signing_key
from tests.support.waiting import wait_until

PASSWORD = "dispatch-Shell-1"
ACCOUNT = "A-SHELL001"
ROOT = Path(__file__).resolve().parents[1]
TEDAPI = "/tedapi/v1r"


def _plan_body(now: datetime, minutes: float) -> tuple[str, bytes]:
    """A plan with one SMART dispatch running from a minute ago for ``minutes`` more."""
    dispatch = PlannedDispatch(now - timedelta(minutes=1), now + timedelta(minutes=minutes))
    plan = DispatchPlan("00000000-0000-4000-8000-00000000d001", now, (dispatch,))
    message = PlanMessage(ACCOUNT, now, "ok", now, plan, source="flex")
    outgoing = plan_message(message, RunSequence())
    return outgoing.routing_key, outgoing.body


def _publish(bus: TestBus, key: str, body: bytes) -> None:
    connection = bus.connect()
    try:
        channel = connection.channel()
        channel.exchange_declare(bus.settings.exchange, exchange_type="topic", durable=True)
        properties = pika.BasicProperties(user_id=bus.settings.username, type="octopus.plan")
        channel.basic_publish(bus.settings.exchange, key, body, properties)
    finally:
        connection.close()


@pytest.fixture
def own_sim() -> Iterator[SimulatorRunner]:
    server = GatewayServer(SimulatedGateway(SiteOptions(seed=8, powerwalls=1)), password=PASSWORD)
    server.signed.pair(public_der(signing_key("paired")))
    with SimulatorRunner(server, ssl_context=server_context()) as runner:
        yield runner


def _decided(dispatcher: Dispatcher) -> Callable[[], bool]:
    return lambda: bool(dispatcher.results)


def _settings(**overrides: object) -> DispatchSettings:
    options: dict[str, object] = {"skip_offpeak": False, "min_dispatch_minutes": 0.0}
    options.update(overrides)
    return DispatchSettings(**options)  # type: ignore[arg-type]


def test_a_restarted_dispatcher_never_schedules_twice(
    own_sim: SimulatorRunner, bus: TestBus, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    write_private_key(signing_key("paired"), state)
    poller = Poller(
        PollerConfig(
            gateway=GatewaySettings(host=own_sim.address, password=PASSWORD, state_dir=tmp_path),
            amqp=bus.settings,
            poller=PollerSettings(slow_endpoints=()),
        )
    ).start()
    results = Collector(
        bus.settings.url, bus.settings.exchange, [routing_key(DISPATCH_RESULT, "*")]
    )
    din = own_sim.server.gateway.din
    config = DispatchConfig(_settings(gateway=din), bus.settings, state, ACCOUNT)
    try:
        assert poller.relay is not None and wait_until(poller.relay.bound.is_set, 15)
        for run in (1, 2, 3):
            if run == 3:  # a restart that lost its memory: the hold now looks hand-set
                config.memory_file(din).unlink()
            dispatcher = Dispatcher(config).start()
            try:
                key, body = _plan_body(datetime.now(UTC), 40)
                assert wait_until(dispatcher.listening.is_set, 10)
                _publish(bus, key, body)
                decided = _decided(dispatcher)
                assert wait_until(decided, 15), f"run {run}: no decision"
            finally:
                dispatcher.stop()
    finally:
        poller.stop()
        results.close()
    documents = [json.loads(m.body)["payload"] for m in results.messages()]
    sent = [a for d in documents for a in d["actions"]]
    assert [a["action"] for a in sent] == ["schedule"]  # the first run only
    assert sent[0]["outcome"] == "done"
    event = own_sim.server.gateway.manual_backup
    assert event is not None and documents[-1]["after"] == {
        "start": sent[0]["start"],
        "end": sent[0]["end"],
    }
    assert config.memory_file(din).exists()  # run 3 kept the (foreign-looking) hold, saved
    counts = sim_counts(own_sim)["requests"]
    assert counts[TEDAPI] == 1 + 2 + 1 + 1  # run 1: list, schedule, read back; runs 2, 3: list


def test_dry_run_and_sigterm_as_a_process_send_nothing_and_log_no_secret(
    own_sim: SimulatorRunner, bus: TestBus, tmp_path: Path
) -> None:
    din = own_sim.server.gateway.din
    key_file = write_private_key(signing_key("paired"), tmp_path / "state")
    commands = Collector(bus.settings.url, bus.settings.exchange, ["control.#", "dispatch.#"])
    env = {
        **os.environ,
        "AMQP_URL": bus.settings.url,
        "AMQP_EXCHANGE": bus.settings.exchange,
        "PWBUS_STATE_DIR": str(tmp_path / "state"),
        "PWBUS_DISPATCH_SKIP_OFFPEAK": "no",
        "PWBUS_DISPATCH_GATEWAY": din,
        "PWBUS_DISPATCH_ACCOUNT": ACCOUNT,
    }
    env.pop("PWBUS_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "powerwall_bus", "dispatch", "--dry-run"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(2.0)  # connected and bound (no resync with a DIN given)
        key, body = _plan_body(datetime.now(UTC), 40)
        _publish(bus, key, body)
        deadline = time.monotonic() + 15
        assert process.stdout is not None
        lines: list[str] = []
        while time.monotonic() < deadline and not any("would schedule" in x for x in lines):
            lines.append(process.stdout.readline().decode())
        process.send_signal(signal.SIGTERM)
        status = process.wait(15)
        rest = process.stdout.read()
        assert process.stderr is not None
        errors = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        commands.close()
    output = "".join(lines) + rest.decode()
    log = errors.decode()
    assert status == 0, log
    assert "would schedule Max Backup from" in output, output
    assert "planned hold" in output
    assert commands.messages() == []  # no command, no result: a dry run sends nothing
    assert sim_counts(own_sim)["requests"].get(TEDAPI, 0) == 0
    assert "PRIVATE KEY" not in log and "Traceback" not in log
    assert key_file.read_text().splitlines()[5] not in log + output


def test_a_missing_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "PWBUS_STATE_DIR": str(tmp_path), "PWBUS_DISPATCH_GATEWAY": "X"}
    env.pop("PWBUS_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-m", "powerwall_bus", "dispatch"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 2
    text = result.stderr.decode()
    assert "dispatch.key_file" in text and "pwbus pair" in text
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1


def test_a_gateway_that_cannot_be_read_is_reported_once_not_acted_on(
    bus: TestBus, tmp_path: Path
) -> None:
    """No poller takes commands for the DIN: one result says so, with the plan and no action."""
    state = tmp_path / "state"
    write_private_key(signing_key("paired"), state)
    din = "1232100-00-E--TG000000000077"
    results = Collector(
        bus.settings.url, bus.settings.exchange, [routing_key(DISPATCH_RESULT, din)]
    )
    config = DispatchConfig(_settings(gateway=din, interval=10.0), bus.settings, state, ACCOUNT)
    dispatcher = Dispatcher(config).start()
    try:
        assert wait_until(dispatcher.listening.is_set, 10)
        for extra in range(3):  # the same trouble again and again: still one message
            key, body = _plan_body(datetime.now(UTC), 40 + extra)
            _publish(bus, key, body)
            time.sleep(0.5)
        assert wait_until(lambda: len(results.messages()) >= 1, 10)
        time.sleep(1.0)
    finally:
        dispatcher.stop()
        results.close()
    (only,) = [json.loads(m.body)["payload"] for m in results.messages()]
    assert only["trigger"] == "start" and only["actions"] == [] and only["before"] is None
    assert "no poller takes commands" in only["error"]
    assert only["plan"]["account"] == ACCOUNT
