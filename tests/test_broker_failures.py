"""Broker trouble against the real RabbitMQ: a refusal ends the process, anything else heals.

* A wrong password is a configuration error: ``pwbus poller``, ``pwbus proxy`` and
  ``pwbus mysql`` exit 2 with one line naming the setting, and no secret.
* A broker that accepts TCP and never speaks AMQP (``TcpProxy.hang``), at start or in the
  middle of a session, costs a timeout and a retry: the subscriber, the publisher and the
  writer all recover once it answers again, without a restart and without losing the
  poller's buffer.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from powerwall_bus.consumers.mysql.writer import Writer, WriterConfig
from powerwall_bus.producers.poller.main import Poller, PollerConfig, run_poller
from powerwall_bus.producers.poller.reader import GatewayReader
from powerwall_bus.shared.bus import BusSubscriber
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.settings import (
    AmqpSettings,
    GatewaySettings,
    MysqlSettings,
    PollerSettings,
)
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.conftest import SIM_PASSWORD
from tests.support.collector import Collector
from tests.support.mysql_writer import apply_schema, count, writer_settings
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from tests.conftest import TestBus

ROOT = Path(__file__).resolve().parents[1]
WRONG = "Wr0ng-Broker-Secret"
GATEWAY_PASSWORD = "hang-Test-1"
HANG = 25.0  # seconds the broker accepts connections and never answers


# --------------------------------------------------------------------------- wrong password


def _wrong_password_url(bus: TestBus) -> str:
    settings = AmqpSettings(url=bus.settings.url)
    return f"amqp://{settings.username}:{WRONG}@{settings.host}:{settings.port}/%2F"


def _run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "powerwall_bus", command],
        env={**os.environ, "PWBUS_LOG_LEVEL": "WARNING", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _assert_one_line_refusal(result: subprocess.CompletedProcess[str], command: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert result.stderr.strip().splitlines() == [result.stderr.strip()], output
    line = result.stderr.strip()
    assert line.startswith(f"pwbus {command}: configuration: amqp.url: the broker amqp://"), line
    assert "refused the login of user" in line and "wrong user name or password" in line
    assert WRONG not in output and "Traceback" not in output


def test_wrong_password_stops_the_poller_with_status_2(
    bus: TestBus, sim: SimulatorRunner, tmp_path: Path
) -> None:
    result = _run(
        "poller",
        {
            "PW_HOST": sim.address,
            "PW_PASSWORD": SIM_PASSWORD,
            "PWBUS_STATE_DIR": str(tmp_path),
            "AMQP_URL": _wrong_password_url(bus),
            "AMQP_EXCHANGE": bus.settings.exchange,
        },
    )
    _assert_one_line_refusal(result, "poller")


def test_wrong_password_stops_the_proxy_with_status_2(bus: TestBus) -> None:
    result = _run(
        "proxy",
        {
            "AMQP_URL": _wrong_password_url(bus),
            "AMQP_EXCHANGE": bus.settings.exchange,
            "PW_PORT": "0",
            "PW_BIND_ADDRESS": "127.0.0.1",
        },
    )
    _assert_one_line_refusal(result, "proxy")


def test_wrong_password_stops_the_writer_with_status_2(
    bus: TestBus, mysql_db: MysqlSettings
) -> None:
    apply_schema(mysql_db)
    result = _run(
        "mysql",
        {
            "AMQP_URL": _wrong_password_url(bus),
            "AMQP_EXCHANGE": bus.settings.exchange,
            "MYSQL_URL": mysql_db.url,
            "MYSQL_DATABASE": mysql_db.database,
            "PWBUS_MYSQL_QUEUE": bus.queue_name("writer"),
            "PWBUS_MYSQL_DEAD_LETTER_QUEUE": bus.queue_name("dead"),
        },
    )
    _assert_one_line_refusal(result, "mysql")


def test_wrong_password_stops_the_stack_with_status_2(bus: TestBus) -> None:
    """The supervisor does not restart a component the broker refused: it would only fail
    again. The stack exits 2, after one start."""
    process = subprocess.run(
        [sys.executable, "-m", "powerwall_bus", "stack", "--components", "proxy"],
        env={
            **os.environ,
            "AMQP_URL": _wrong_password_url(bus),
            "AMQP_EXCHANGE": bus.settings.exchange,
            "PW_PORT": "0",
            "PW_BIND_ADDRESS": "127.0.0.1",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = process.stdout + process.stderr
    assert process.returncode == 2, output
    assert "configuration: amqp.url: the broker amqp://" in output
    assert output.count("started proxy pid") == 1
    assert WRONG not in output and "Traceback" not in output


# --------------------------------------------------------------------------- hung broker


@pytest.fixture
def own_sim() -> Iterator[SimulatorRunner]:
    server = GatewayServer(
        SimulatedGateway(SiteOptions(seed=17, powerwalls=1)), password=GATEWAY_PASSWORD
    )
    with SimulatorRunner(server, ssl_context=server_context()) as runner:
        yield runner


class Pipeline:
    """A poller, a subscriber and a writer, all reaching the broker through one TcpProxy."""

    def __init__(
        self, bus: TestBus, sim: SimulatorRunner, db: MysqlSettings, state: Path, heartbeat: int
    ) -> None:
        broker = AmqpSettings(url=bus.settings.url)
        self.relay = TcpProxy(broker.host, broker.port)
        self.amqp = AmqpSettings(
            url=bus.settings.url,
            host="127.0.0.1",
            port=self.relay.port,
            exchange=bus.settings.exchange,
            heartbeat=heartbeat,
        )
        self.db = db
        self.poller = Poller(
            PollerConfig(
                gateway=GatewaySettings(
                    host=sim.address, password=GATEWAY_PASSWORD, state_dir=state
                ),
                amqp=self.amqp,
                poller=PollerSettings(meters_interval=1.0),
            )
        )
        self.received: list[str] = []
        self.fatal: list[BaseException] = []
        self.subscriber = BusSubscriber(
            self.amqp,
            ["powerwall.#"],  # every kind of every gateway, whatever the key's format
            lambda key, properties, body: self.received.append(properties.type),
            name="test-hang",
            on_fatal=self.fatal.append,
        )
        settings = writer_settings(bus.queue_name("writer"), bus.queue_name("dead"))
        self.writer = Writer(WriterConfig(amqp=self.amqp, mysql=db, writer=settings))
        self.writer_error: list[BaseException] = []
        self._writer_thread = threading.Thread(target=self._write, name="mysql-writer")

    def _write(self) -> None:
        try:
            self.writer.run()
        except BaseException as exc:
            self.writer_error.append(exc)

    def start(self) -> None:
        self.poller.start()
        self.subscriber.start()
        self._writer_thread.start()

    def all_alive(self) -> bool:
        return (
            self.poller.alive()
            and self.subscriber._thread is not None
            and self.subscriber._thread.is_alive()
            and self._writer_thread.is_alive()
            and not (self.fatal or self.writer_error or self.poller.failures.error)
        )

    def meters_received(self) -> int:
        return self.received.count("meters")

    def recovered(self, since_received: int, since_rows: int) -> bool:
        return (
            self.meters_received() > since_received + 3
            and count(self.db, "meter_readings") > since_rows
            and self.poller.health.broker_connected
            and self.subscriber.connected.is_set()
            and self.writer.ready.is_set()
        )

    def stop(self) -> None:
        self.writer.stop()
        self.subscriber.stop()
        self.poller.stop()
        self._writer_thread.join(20)
        self.relay.close()


def _meters(observer: Collector) -> int:
    """Meters messages the observer received (by kind: the routing key's format may vary)."""
    return sum(1 for m in observer.messages() if m.properties.type == "meters")


def _meters_made(sim: SimulatorRunner) -> int:
    return int(sim.server.counters.by_path.get("/api/meters/aggregates", 0))


@pytest.fixture
def pipeline_parts(
    bus: TestBus, own_sim: SimulatorRunner, mysql_db: MysqlSettings, tmp_path: Path
) -> tuple[TestBus, SimulatorRunner, MysqlSettings, Path]:
    apply_schema(mysql_db)
    return bus, own_sim, mysql_db, tmp_path


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_broker_that_never_answers_at_start_is_waited_out(
    pipeline_parts: tuple[TestBus, SimulatorRunner, MysqlSettings, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus, sim, db, state = pipeline_parts
    observer = Collector(bus.settings.url, bus.settings.exchange, ["powerwall.#"])
    pipeline = Pipeline(bus, sim, db, state, heartbeat=30)
    pipeline.relay.hang()
    try:
        pipeline.start()
        time.sleep(HANG)
        assert pipeline.all_alive()  # nobody died of pika's AMQPConnectorStackTimeout
        assert pipeline.relay.held_connections >= 3 and pipeline.relay.connections == 0
        made_while_hung = _meters_made(sim)
        assert made_while_hung >= 15 and not observer.messages()  # read on, held
        pipeline.relay.restore()
        assert wait_until(lambda: pipeline.recovered(0, 0), 60, step=0.5), "no recovery"
        # The poller's buffer survived: every reading made while hung reached the broker.
        assert wait_until(lambda: _meters(observer) >= made_while_hung, 20), (
            _meters(observer),
            made_while_hung,
        )
        assert pipeline.all_alive()
    finally:
        pipeline.stop()
        observer.close()
    assert not pipeline.fatal and not pipeline.writer_error
    assert pipeline.poller.failures.error is None
    messages = [r.getMessage() for r in caplog.records]
    assert any("AMQPConnectorStackTimeout" in m for m in messages)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], messages
    assert all("guest:guest" not in m for m in messages)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_broker_that_stops_answering_mid_session_is_waited_out(
    pipeline_parts: tuple[TestBus, SimulatorRunner, MysqlSettings, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus, sim, db, state = pipeline_parts
    pipeline = Pipeline(bus, sim, db, state, heartbeat=4)  # hangs are noticed within ~15 s
    try:
        pipeline.start()
        assert wait_until(lambda: pipeline.recovered(0, 0), 30, step=0.5), "did not start"
        pipeline.relay.hang()
        time.sleep(HANG)
        assert pipeline.all_alive()
        received, rows = pipeline.meters_received(), count(db, "meter_readings")
        pipeline.relay.restore()
        assert wait_until(lambda: pipeline.recovered(received, rows), 60, step=0.5), "no recovery"
        assert pipeline.all_alive()
    finally:
        pipeline.stop()
    assert not pipeline.fatal and not pipeline.writer_error
    assert pipeline.writer.stats.broker_outages >= 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def _refused_subscriber(settings: AmqpSettings) -> tuple[list[BaseException], BusSubscriber]:
    """Run a subscriber the broker refuses; what reached its ``on_fatal``, and itself."""
    fatal: list[BaseException] = []
    ended = threading.Event()

    def on_fatal(exc: BaseException) -> None:
        fatal.append(exc)
        ended.set()

    subscriber = BusSubscriber(settings, ["#"], lambda *a: None, name="t", on_fatal=on_fatal)
    subscriber.start()
    assert ended.wait(20), "the subscriber kept retrying"
    subscriber.stop()
    return fatal, subscriber


def test_a_subscriber_refused_by_the_broker_reports_once_and_ends(bus: TestBus) -> None:
    settings = AmqpSettings(url=_wrong_password_url(bus), exchange=bus.settings.exchange)
    fatal, subscriber = _refused_subscriber(settings)
    assert len(fatal) == 1 and subscriber.error is fatal[0]
    assert str(fatal[0]).startswith("configuration: amqp.url: ")
    assert not subscriber.connected.is_set()


def test_a_declare_the_user_may_not_make_is_a_configuration_error(bus: TestBus) -> None:
    """A user without configure permission: a 403 channel close, not an outage."""
    user, password = f"pwbus_t_{bus.tag}", "Limited-pw-1"
    admin = _management(bus)
    if admin is None:
        pytest.skip("rabbitmqctl is not available to create a limited user")
    admin("add_user", user, password)
    try:
        admin("set_permissions", "-p", "/", user, "^$", ".*", ".*")  # may not declare
        settings = AmqpSettings(
            url=bus.settings.url, username=user, password=password, exchange=bus.settings.exchange
        )
        fatal, _ = _refused_subscriber(settings)
        assert str(fatal[0]).startswith("configuration: amqp.username: ")
        assert "ACCESS_REFUSED" in str(fatal[0]) and password not in str(fatal[0])
    finally:
        admin("delete_user", user)


def _management(bus: TestBus) -> Callable[..., None] | None:
    """``rabbitmqctl`` for the local test broker, or None."""
    if AmqpSettings(url=bus.settings.url).host not in ("127.0.0.1", "localhost"):
        return None
    for tool in ("/usr/sbin/rabbitmqctl", "/usr/lib/rabbitmq/bin/rabbitmqctl"):
        if os.access(tool, os.X_OK):
            probe = subprocess.run(
                [tool, "status"], capture_output=True, text=True, timeout=60, check=False
            )
            if probe.returncode == 0:

                def run(*args: str, tool: str = tool) -> None:
                    subprocess.run([tool, *args], capture_output=True, timeout=60, check=True)

                return run
    return None


# --------------------------------------------------------------------------- dying threads


def test_a_poller_thread_dying_of_a_bug_ends_the_poller_with_status_1(
    bus: TestBus,
    own_sim: SimulatorRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_run(self: GatewayReader) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(GatewayReader, "run", broken_run)
    config = PollerConfig(
        gateway=GatewaySettings(
            host=own_sim.address, password=GATEWAY_PASSWORD, state_dir=tmp_path
        ),
        amqp=bus.settings,
        poller=PollerSettings(),
    )
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    started = time.monotonic()
    try:
        assert run_poller(config) == 1
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert time.monotonic() - started < 10  # not half alive until someone notices
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert errors[0].startswith("thread gateway-reader died: KeyError: 'a bug' (")


def test_a_subscriber_dying_of_a_bug_reports_it(
    bus: TestBus, caplog: pytest.LogCaptureFixture
) -> None:
    fatal: list[BaseException] = []
    ended = threading.Event()

    def on_connection(connected: bool) -> None:
        if connected:
            raise RuntimeError("a bug in the owner's callback")

    def on_fatal(exc: BaseException) -> None:
        fatal.append(exc)
        ended.set()

    subscriber = BusSubscriber(
        bus.settings,
        ["#"],
        lambda *a: None,
        name="t",
        on_connection=on_connection,
        on_fatal=on_fatal,
    ).start()
    assert ended.wait(20)
    subscriber.stop()
    assert isinstance(fatal[0], RuntimeError) and subscriber.error is fatal[0]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("thread bus-t died: RuntimeError: a bug")
