"""``pwbus console`` as a real process on a real broker, fed by an in-process poller reading
the simulator: its ``--json`` numbers are the poller's readings (the proxy's raw meters and
the app's state of energy), ``--once`` exits after one snapshot, SIGTERM ends it with 0, and
in a real terminal (tmux) the battery line moves and a line says when the data goes stale.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pika
import pytest

from powerwall_bus.producers.poller.main import Poller
from powerwall_bus.shared.bus import BusSubscriber
from powerwall_bus.shared.gateway.payloads import app_soe_clamped, meter_power
from powerwall_bus.shared.messages import parse_envelope
from powerwall_bus.shared.settings import AmqpSettings
from powerwall_bus.simulator.server import SimulatorRunner
from tests.conftest import SIM_PASSWORD
from tests.support.simulated_poller import simulated_poller
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until
from tests.test_stack import _env

if TYPE_CHECKING:
    from tests.conftest import TestBus

PASSWORD = "console-Test-7"


class Recorder:
    """What the poller published, by reading time: the proxy's raw numbers to compare with."""

    def __init__(self) -> None:
        self.meters: dict[str, dict[str, Any]] = {}
        self.soe: list[float] = []
        self._lock = threading.Lock()

    def on_message(self, routing_key: str, properties: pika.BasicProperties, body: bytes) -> None:
        if properties.type not in ("meters", "soe"):
            return
        envelope = parse_envelope(body)
        with self._lock:
            if envelope.kind == "meters":
                self.meters[body_time(body)] = envelope.payload
            else:
                self.soe.append(float(envelope.payload["percentage"]))


def body_time(body: bytes) -> str:
    return str(json.loads(body)["time"])


@pytest.fixture
def poller_on_bus(bus: TestBus, tmp_path: Path) -> Iterator[Poller]:
    with simulated_poller(bus.settings, tmp_path, password=PASSWORD, seed=11) as (_, poller):
        yield poller


def _console_env(bus: TestBus) -> dict[str, str]:
    return _env(AMQP_URL=bus.settings.url, AMQP_EXCHANGE=bus.settings.exchange)


def _console(*args: str) -> list[str]:
    return [sys.executable, "-m", "powerwall_bus", "console", *args]


def test_console_json_prints_the_pollers_numbers_and_stops_on_sigterm(
    bus: TestBus, poller_on_bus: Poller
) -> None:
    recorder = Recorder()
    subscriber = BusSubscriber(
        bus.settings, ["powerwall.#"], recorder.on_message, name="test", resync=False
    ).start()
    try:
        assert subscriber.connected.wait(10)
        child = subprocess.Popen(
            _console("--json"),
            env=_console_env(bus),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        records: list[dict[str, Any]] = []
        assert child.stdout is not None
        started = time.monotonic()
        while len(records) < 5 and time.monotonic() - started < 30:
            line = child.stdout.readline()
            if not line:
                break
            records.append(json.loads(line))
        assert time.monotonic() - started < 15, "the first readings took too long"
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=15)
        assert child.returncode == 0, stderr
    finally:
        subscriber.stop()
    assert len(records) == 5, records
    matched = 0
    soe_shown = {app_soe_clamped(raw) for raw in recorder.soe}
    for record in records:
        assert set(record) >= {"solar", "home", "battery", "grid", "soe", "grid_status", "time"}
        assert record["gateway"] == poller_on_bus.client.din
        payload = recorder.meters.get(record["time"])
        if payload is None:
            continue  # a resync answer of a reading made before the recorder listened
        matched += 1
        assert record["grid"] == meter_power(payload, "site")
        assert record["battery"] == meter_power(payload, "battery")
        assert record["solar"] == meter_power(payload, "solar")
        assert record["home"] == meter_power(payload, "load")
        assert record["soe"] in soe_shown or not soe_shown
        assert record["grid_status"] == "on-grid"
        assert record["freshness"] == "live"
    assert matched >= 3
    assert len({r["time"] for r in records}) == len(records)  # one record per reading


def test_ctrl_c_ends_the_console_with_status_0_and_a_pipe_that_closes_is_no_error(
    bus: TestBus, poller_on_bus: Poller
) -> None:
    child = subprocess.Popen(
        _console(),
        env=_console_env(bus),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    wait_until(lambda: " battery " in child.stdout.readline(), 15)  # type: ignore[union-attr]
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=15)
    assert child.returncode == 0, stderr
    piped = subprocess.run(
        f"{sys.executable} -m powerwall_bus console | head -1",
        shell=True,
        env=_console_env(bus),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert piped.stdout.startswith("gateway ")
    assert "Traceback" not in piped.stderr and "BrokenPipe" not in piped.stderr


@pytest.mark.parametrize("args", [("--once",), ("--once", "--json")])
def test_console_once_prints_one_snapshot_and_exits_0(
    bus: TestBus, poller_on_bus: Poller, args: tuple[str, ...]
) -> None:
    started = time.monotonic()
    done = subprocess.run(
        _console(*args), env=_console_env(bus), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 10
    if "--json" in args:
        (line,) = done.stdout.splitlines()
        assert 0 <= json.loads(line)["soe"] <= 100
    else:
        assert "battery" in done.stdout and "level" in done.stdout
        assert done.stdout.count("level") == 1


def test_console_once_without_data_says_so(bus: TestBus) -> None:
    done = subprocess.run(
        _console("--once", "--stale-after", "1"),
        env=_console_env(bus),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.strip().endswith("no reading from the bus within 1 s")


def test_a_bad_setting_is_one_line_and_status_2(bus: TestBus) -> None:
    done = subprocess.run(
        _console("--stale-after", "0"),
        env=_console_env(bus),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "display.stale_after" in done.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_console_in_a_real_terminal(bus: TestBus, poller_on_bus: Poller) -> None:
    session = f"pwbus-{uuid.uuid4().hex[:8]}"
    env = _console_env(bus)
    command = " ".join(
        [
            *(f"{k}={v!r}" for k, v in env.items() if k.startswith("AMQP_")),
            sys.executable,
            "-m",
            "powerwall_bus",
            "console",
            "--stale-after",
            "3",
        ]
    )
    tmux = ["tmux", "-L", session]
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", session, "-x", "120", "-y", "50", command],
        check=True,
        env=env,
    )

    def pane() -> str:
        return subprocess.run(
            [*tmux, "capture-pane", "-p", "-t", session, "-S", "-200"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def battery_lines() -> list[str]:
        return [line for line in pane().splitlines() if " battery " in line and "%" in line]

    try:
        wait_until(lambda: "level" in pane(), 15)
        # The line moves: each names the time of the reading it shows.
        wait_until(lambda: len(set(battery_lines())) >= 3, 15)
        poller_on_bus.stop()
        wait_until(lambda: "STALE" in pane() or "gateway trouble" in pane(), 15)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def test_console_direct_reads_the_gateway_without_a_broker(
    sim: SimulatorRunner, tmp_path: Path
) -> None:
    """``--direct``: no broker at all (the URL points at a closed port), the simulator read
    by the project's gateway client; the numbers are the simulator's."""
    env = _env(
        PW_HOST=sim.address,
        PW_PASSWORD=SIM_PASSWORD,
        PWBUS_STATE_DIR=str(tmp_path),
        AMQP_URL="amqp://guest:guest@127.0.0.1:1/%2F",
    )
    done = subprocess.run(
        _console("--direct", "--once", "--json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    record = json.loads(line)
    assert record["gateway"] == sim.server.gateway.din
    assert record["freshness"] == "live"
    assert isinstance(record["home"], int | float) and 0 <= record["soe"] <= 100


class Lines:
    """A child's stdout lines, read by a thread so the test never blocks on them."""

    def __init__(self, child: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert child.stdout is not None
        self._stdout = child.stdout
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._stdout:
            self.lines.append(line.rstrip("\n"))

    def after(self, index: int) -> list[str]:
        return self.lines[index:]


@pytest.mark.slow
def test_broker_away_the_console_goes_stale_keeps_running_and_comes_back(
    bus: TestBus, poller_on_bus: Poller
) -> None:
    broker = AmqpSettings(url=bus.settings.url)
    relay = TcpProxy(broker.host, broker.port)
    env = _console_env(bus)
    env.update(AMQP_HOST="127.0.0.1", AMQP_PORT=str(relay.port), AMQP_HEARTBEAT="2")
    child = subprocess.Popen(
        _console("--stale-after", "2"), env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        out = Lines(child)
        wait_until(lambda: any(" battery " in line for line in out.lines), 15)
        relay.cut()
        cut_at = len(out.lines)
        wait_until(
            lambda: any("STALE" in line and "broker away" in line for line in out.after(cut_at)),
            15,
        )
        assert child.poll() is None  # not frozen, not ended: waiting for the broker
        relay.restore()
        back_at = len(out.lines)
        wait_until(lambda: "live again" in out.after(back_at), 30)
        wait_until(lambda: any(" battery " in line for line in out.after(back_at + 1)), 10)
        child.send_signal(signal.SIGTERM)
        assert child.wait(15) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        relay.close()
