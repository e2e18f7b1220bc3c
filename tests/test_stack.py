"""``pwbus stack``: real child processes, the real simulator over HTTPS and the real broker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pika
import pytest

from powerwall_bus.shared.messages import MeterStream, parse_meter_stream
from powerwall_bus.shared.topology import METER_STREAM, declare_exchange
from powerwall_bus.stack.relay import decode_record
from powerwall_bus.stack.supervise import Backoff
from tests.support.waiting import wait_until

if TYPE_CHECKING:  # imported by name, pytest would try to collect it as a test class
    from tests.conftest import TestBus

ROOT = Path(__file__).resolve().parents[1]
STARTED = re.compile(r"started (\w+) pid (\d+)")
ISOLATE = ("PW_", "PWBUS_", "AMQP_", "MYSQL_", "LOG_LEVEL")


def _env(**extra: str) -> dict[str, str]:
    """Our environment without any project setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ISOLATE)}
    env.update(extra)
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Stack:
    """``pwbus stack ...`` as a child of the test, its log lines collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self._start([sys.executable, "-m", "powerwall_bus", "stack", *args], env)

    @classmethod
    def command(cls, argv: list[str], env: dict[str, str]) -> Stack:
        """Any command line, read the same way."""
        stack = cls.__new__(cls)
        stack._start(argv, env)
        return stack

    def _start(self, argv: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> tuple[int, re.Match[str]]:
        """The index and match of the first line from ``start`` on matching ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            index = start
            while True:
                while index < len(self.lines):
                    match = regex.search(self.lines[index])
                    if match:
                        return index, match
                    index += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(self.lines[-30:])
                    pytest.fail(f"no log line matching {pattern!r} in {timeout} s; last:\n{tail}")
                self._changed.wait(left)

    def started_pids(self) -> dict[str, list[int]]:
        with self._changed:
            found: dict[str, list[int]] = {}
            for line in self.lines:
                match = STARTED.search(line)
                if match:
                    found.setdefault(match.group(1), []).append(int(match.group(2)))
            return found

    def kill_everything(self) -> None:
        """Teardown after a failure: no process of this test may outlive it."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for pids in self.started_pids().values():
            for pid in pids:
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
        self._reader.join(5)


@pytest.fixture
def meter_queue(bus: TestBus) -> Iterator[tuple[pika.BlockingConnection, str]]:
    """A queue bound to MeterStream on the test exchange."""
    connection = bus.connect()
    channel = connection.channel()
    declare_exchange(channel, bus.settings.exchange)
    queue = bus.queue_name("meters")
    channel.queue_declare(queue)
    channel.queue_bind(queue, bus.settings.exchange, routing_key=METER_STREAM)
    channel.close()
    yield connection, queue
    connection.close()


def _next_meter_stream(
    connection: pika.BlockingConnection, queue: str, newer_than: float, timeout: float
) -> MeterStream:
    channel = connection.channel()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                connection.sleep(0.2)
                continue
            message = parse_meter_stream(body)
            if message.timestamp > newer_than:
                return message
    finally:
        channel.close()
    pytest.fail(f"no MeterStream message newer than {newer_than} within {timeout} s")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_stack_runs_restarts_and_stops_cleanly(
    bus: TestBus, amqp_base_url: str, meter_queue: tuple[pika.BlockingConnection, str]
) -> None:
    connection, queue = meter_queue
    begun = time.time()
    stack = Stack(
        ["--simulate", "--components", "poller"],
        _env(AMQP_URL=amqp_base_url, AMQP_EXCHANGE=bus.settings.exchange),
    )
    try:
        # 1. The simulator starts first, the poller once it answers; readings reach the bus.
        _, summary = stack.wait_for(r"state in (\S+)", 15)
        state_dir = Path(summary.group(1))
        sim_at, sim = stack.wait_for(r"started simulate pid (\d+)", 15)
        ready_at, _ = stack.wait_for(r"simulate answers at https://127\.0\.0\.1:\d+", 15)
        poller_at, first = stack.wait_for(r"started poller pid (\d+)", 15)
        assert sim_at < ready_at < poller_at
        sim_pid, poller_pid = int(sim.group(1)), int(first.group(1))
        message = _next_meter_stream(connection, queue, begun, 15)
        assert {"site", "battery", "load", "solar"} <= set(message.readings)
        assert 0 <= message.state_of_energy <= 100
        stack.wait_for(r"pwbus\.stack\.poller: .*logged in to the gateway", 5)

        # 2. A killed poller is logged, reaped and restarted, and readings flow again.
        killed_at = time.time()
        os.kill(poller_pid, signal.SIGKILL)
        exit_at, _ = stack.wait_for(
            rf"poller \(pid {poller_pid}\) exited unexpectedly \(killed by SIGKILL\).*"
            r"restarting in 1 s",
            10,
        )
        _, second = stack.wait_for(r"started poller pid (\d+)", 10, start=exit_at)
        new_poller_pid = int(second.group(1))
        assert new_poller_pid != poller_pid
        assert not _alive(poller_pid)  # reaped, not a zombie
        assert _alive(sim_pid)  # the simulator was left alone
        message = _next_meter_stream(connection, queue, killed_at, 15)
        assert message.timestamp > killed_at

        # 3. SIGTERM: poller first, then the simulator; exit 0; nothing left behind.
        stopping_from = len(stack.lines)
        stack.process.send_signal(signal.SIGTERM)
        assert stack.process.wait(20) == 0
        stack._reader.join(5)
        pids = stack.started_pids()
        assert pids == {"simulate": [sim_pid], "poller": [poller_pid, new_poller_pid]}
        for pid in (sim_pid, poller_pid, new_poller_pid):
            assert not _alive(pid), f"pid {pid} survived the stack"
        poller_stop, _ = stack.wait_for(
            rf"poller \(pid {new_poller_pid}\) stopped \(exit status 0\)", 1, stopping_from
        )
        sim_stop, _ = stack.wait_for(
            rf"simulate \(pid {sim_pid}\) stopped \(exit status 0\)", 1, stopping_from
        )
        assert poller_stop < sim_stop
        assert not state_dir.exists()  # the private state folder is removed
    finally:
        stack.kill_everything()


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie orphan is init's to reap, and no longer runs)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux")
@pytest.mark.timeout(60)
def test_children_do_not_outlive_a_killed_stack(bus: TestBus, amqp_base_url: str) -> None:
    stack = Stack(
        ["--simulate", "--components", "poller"],
        _env(AMQP_URL=amqp_base_url, AMQP_EXCHANGE=bus.settings.exchange),
    )
    try:
        stack.wait_for(r"started poller pid \d+", 15)
        children = [pid for pids in stack.started_pids().values() for pid in pids]
        assert len(children) == 2 and all(_running(pid) for pid in children)
        stack.process.kill()  # no chance to clean up: the kernel must tell the children
        stack.process.wait(10)
        gone = wait_until(lambda: not any(_running(pid) for pid in children), 15, step=0.1)
        assert gone, "orphaned children still run"
    finally:
        stack.kill_everything()


_STUBBORN = """
import os, sys
from powerwall_bus.shared.logsetup import configure_logging
from powerwall_bus.stack.plan import ChildSpec
from powerwall_bus.stack.supervise import Supervisor
configure_logging("INFO")
child = ChildSpec(
    "stubborn",
    ("sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"),
    dict(os.environ),
)
sys.exit(Supervisor([child], stop_timeout=float(sys.argv[1])).run_sync())
"""


@pytest.mark.parametrize("second_signal", [False, True], ids=["timeout", "second-signal"])
@pytest.mark.timeout(60)
def test_a_child_ignoring_sigterm_is_killed(second_signal: bool) -> None:
    stop_timeout = 30.0 if second_signal else 1.0  # with a second signal: no waiting
    stack = Stack.command(
        [sys.executable, "-c", _STUBBORN, str(stop_timeout)], _env(PYTHONUNBUFFERED="1")
    )
    try:
        stack.wait_for(r"pwbus\.stack\.stubborn: ready", 10)
        child = stack.started_pids()["stubborn"][0]
        asked = time.monotonic()
        stack.process.send_signal(signal.SIGTERM)
        stack.wait_for(r"stopping stubborn", 5)
        if second_signal:
            time.sleep(0.3)
            stack.process.send_signal(signal.SIGTERM)
        assert stack.process.wait(10) == 0
        took = time.monotonic() - asked
        assert (0.9 <= took < 5) if not second_signal else took < 5
        stack._reader.join(5)
        stack.wait_for(rf"stubborn \(pid {child}\) is still running: killing it", 1)
        stack.wait_for(rf"stubborn \(pid {child}\) stopped \(killed by SIGKILL\)", 1)
        assert not _alive(child)
    finally:
        stack.kill_everything()


def test_unknown_component_is_a_one_line_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "powerwall_bus", "stack", "--components", "poller,bogus"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("pwbus stack: configuration: stack.components: ")
    assert "'bogus'" in result.stderr
    assert "known: simulate, poller, proxy" in result.stderr


@pytest.mark.timeout(60)
def test_a_component_configuration_error_stops_the_stack_with_status_2(
    bus: TestBus, amqp_base_url: str
) -> None:
    # No PW_HOST: the poller exits 2 at once; restarting it would only fail again.
    stack = Stack(
        ["--components", "poller"],
        _env(AMQP_URL=amqp_base_url, AMQP_EXCHANGE=bus.settings.exchange),
    )
    try:
        assert stack.process.wait(20) == 2
        stack._reader.join(5)
        stack.wait_for(r"pwbus\.stack\.poller: pwbus poller: configuration: gateway\.host", 1)
        stack.wait_for(r"poller \(pid \d+\) exited with status 2.*not restarting", 1)
        assert len(stack.started_pids()["poller"]) == 1
        assert "simulate" not in stack.started_pids()
    finally:
        stack.kill_everything()


def test_backoff_doubles_to_30_s_and_resets_after_a_long_run() -> None:
    backoff = Backoff()
    delays = [backoff.after_run(0.5) for _ in range(7)]
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.after_run(59.0) == 30
    assert backoff.after_run(60.0) == 1
    assert backoff.after_run(3.0) == 2


def test_child_log_records_keep_their_level() -> None:
    # Children log JSON records; a text line is never parsed, only passed on as it is.
    text = "2024-05-01 12:00:00,123 WARNING producers.poller.reader: gateway slow"
    assert decode_record(text) is None
    json_line = '{"time": "t", "level": "ERROR", "logger": "x.y", "message": "boom"}'
    assert decode_record(json_line) == (40, "x.y: boom")
    with_trace = '{"level": "WARNING", "logger": "a", "message": "m", "exception": "Trace"}'
    assert decode_record(with_trace) == (30, "a: m\nTrace")
    assert decode_record("Traceback (most recent call last):") is None
    assert decode_record("{not json") is None
    assert decode_record('{"level": 3}') is None


def test_plan_runs_a_simulator_poller_and_proxy_per_named_gateway(tmp_path: Path) -> None:
    import shutil
    import stat
    import tomllib

    from powerwall_bus.shared.settings import LogSettings, Sources
    from powerwall_bus.stack.plan import plan_stack, simulated_din

    config = tmp_path / "pwbus.toml"
    config.write_text(
        '[proxy]\nport = 9100\n[gateways.home]\nhost = "10.0.0.2"\npassword = "Home-pass1"\n'
        '[gateways.garage]\nhost = "10.0.0.3"\npassword = "Garage-pass2"\n'
    )
    sources = Sources.gather(env={"PW_HOST": "10.9.9.9"}, config_file=config)
    plan = plan_stack(
        None,
        simulate=True,
        sources=sources,
        log=LogSettings(),
        config_file=None,
        database_reachable=lambda mysql: True,
    )
    try:
        names = [child.name for child in plan.children]
        assert names == [
            "simulate.home", "simulate.garage", "poller.home", "poller.garage",
            "proxy.home", "proxy.garage", "mysql",
        ]  # fmt: skip
        by_name = {child.name: child for child in plan.children}
        assert by_name["poller.garage"].argv[-2:] == ("--gateway", "garage")
        assert by_name["proxy.home"].argv[-4:] == ("--gateway", "home", "--port", "9100")
        assert by_name["proxy.garage"].argv[-4:] == ("--gateway", "garage", "--port", "9101")
        home_sim = by_name["simulate.home"].argv
        assert home_sim[home_sim.index("--din") + 1] == simulated_din("home")
        assert simulated_din("home") != simulated_din("garage")
        # The pollers read a private copy of the file whose tables point at the simulators.
        private = Path(by_name["poller.home"].env["PWBUS_CONFIG"])
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
        tables = tomllib.loads(private.read_text())["gateways"]
        home_port = home_sim[home_sim.index("--port") + 1]
        assert tables["home"]["host"] == f"127.0.0.1:{home_port}"
        assert tables["home"]["password"] == by_name["simulate.home"].env["PWBUS_SIM_PASSWORD"]
        assert tables["home"]["password"] not in ("Home-pass1", tables["garage"]["password"])
        assert {tables["home"]["password"], tables["garage"]["password"]} <= set(plan.secrets)
    finally:
        assert plan.scratch_dir is not None
        shutil.rmtree(plan.scratch_dir)


def test_displays_run_only_when_named() -> None:
    import shutil

    from powerwall_bus.shared.settings import LogSettings, Sources
    from powerwall_bus.stack.plan import plan_stack

    sources = Sources.gather(env={}, config_file=None)
    default = plan_stack(
        None,
        simulate=False,
        sources=sources,
        log=LogSettings(),
        database_reachable=lambda mysql: True,
    )
    assert [child.name for child in default.children] == ["poller", "proxy", "mysql"]
    named = plan_stack("gui,hat,console,proxy", simulate=True, sources=sources, log=LogSettings())
    try:
        assert [child.name for child in named.children] == [
            "simulate", "proxy", "console", "gui", "hat",
        ]  # fmt: skip
        by_name = {child.name: child for child in named.children}
        assert by_name["gui"].argv[-1] == "gui" and by_name["hat"].argv[-1] == "hat"
    finally:
        assert named.scratch_dir is not None
        shutil.rmtree(named.scratch_dir)


def test_without_a_database_the_stack_runs_the_rest_and_says_how_to_turn_the_writer_on() -> None:
    from powerwall_bus.shared.settings import LogSettings, MysqlSettings, Sources, load
    from powerwall_bus.stack.plan import plan_stack, tcp_reachable

    closed = Sources.gather(env={"MYSQL_URL": "mysql://u:Secret-1@127.0.0.1:1/x"}, config_file=None)
    plan = plan_stack(None, simulate=False, sources=closed, log=LogSettings())
    assert [child.name for child in plan.children] == ["poller", "proxy"]
    assert len(plan.notes) == 1 and "writer is off" in plan.notes[0]
    assert "MYSQL_URL" in plan.notes[0] and "Secret-1" not in plan.notes[0]
    assert plan.page == "http://localhost:8675/"
    # Named, it runs whatever the probe says: the user asked for it.
    named = plan_stack("proxy,mysql", simulate=False, sources=closed, log=LogSettings())
    assert [child.name for child in named.children] == ["proxy", "mysql"] and not named.notes
    assert not tcp_reachable(load(MysqlSettings, "mysql", closed))


@pytest.mark.timeout(90)
def test_simctl_finds_the_stacks_simulator_and_a_killed_stack_is_cleaned_up_after(
    bus: TestBus, amqp_base_url: str, tmp_path: Path
) -> None:
    import json

    env = _env(
        AMQP_URL=amqp_base_url,
        AMQP_EXCHANGE=bus.settings.exchange,
        PWBUS_STATE_DIR=str(tmp_path),
    )

    def simctl_counts() -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "powerwall_bus", "simctl", "counts"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    stack = Stack(["--simulate", "--components", "poller"], env)
    try:
        stack.wait_for(r"started poller pid \d+", 20)
        record = json.loads((tmp_path / "stack.json").read_text())
        scratch = Path(record["scratch"])
        (simulator,) = record["simulators"].values()
        assert scratch.is_dir() and simulator.startswith("https://127.0.0.1:")
        # No URL: simctl reads the stack's record (nothing listens on the default 8443) and
        # sees the poller's reads on the stack's simulator.
        assert wait_until(lambda: simctl_counts()["total"] >= 1, 20)
        stack.process.kill()  # no chance to clean up
        stack.process.wait(10)
        assert scratch.is_dir()  # the keys and sessions are still in /tmp...
    finally:
        stack.kill_everything()
    again = Stack(["--simulate", "--components", "poller"], env)
    try:
        again.wait_for(rf"removed {re.escape(str(scratch))}, left behind by a stack", 20)
        assert not scratch.exists()  # ...until the next start removes them
        again.wait_for(r"started poller pid \d+", 20)
        again.process.send_signal(signal.SIGTERM)
        assert again.process.wait(30) == 0
        assert not (tmp_path / "stack.json").exists()  # a clean stop leaves no record
    finally:
        again.kill_everything()


@pytest.mark.timeout(90)
def test_the_stack_runs_the_displays_when_named(
    bus: TestBus, amqp_base_url: str, tmp_path: Path
) -> None:
    """`--components poller,hat,console` with a simulated gateway: the LED display draws
    frames (png backend, chosen by its settings) and the console's lines reach the stack."""
    frames = tmp_path / "frames"
    env = _env(
        AMQP_URL=amqp_base_url,
        AMQP_EXCHANGE=bus.settings.exchange,
        PWBUS_STATE_DIR=str(tmp_path / "state"),
        PWBUS_HAT_BACKEND="png",
        PWBUS_HAT_OUTPUT=str(frames),
    )
    stack = Stack(["--simulate", "--components", "poller,hat,console"], env)
    try:
        stack.wait_for(r"started hat pid \d+", 20)
        stack.wait_for(r"started console pid \d+", 20)
        # The console's picture: its lines are relayed under the stack's log.
        stack.wait_for(r"pwbus\.stack\.console.*level\s+\d+(\.\d)? %", 30)
        assert wait_until(lambda: len(list(frames.glob("*.png"))) >= 4, 30)
        stack.process.send_signal(signal.SIGTERM)
        assert stack.process.wait(30) == 0
    finally:
        stack.kill_everything()
