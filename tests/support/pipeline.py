"""The whole pipeline as real processes, with every link breakable, for the chaos suite.

simulator (in-process, real HTTPS) -> ``pwbus poller`` -> [TcpProxy] -> RabbitMQ ->
[TcpProxy] -> ``pwbus mysql`` -> [TcpProxy] -> MariaDB, and ``pwbus proxy`` reading the bus
through the same broker link. The test's own clients (publishing forged messages, counting)
talk to the broker directly. Every process logs to a file in the test's folder, so a failure
can show what each component said.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3

from powerwall_bus.shared.settings import AmqpSettings, MysqlSettings
from powerwall_bus.simulator.server import SimulatorRunner
from tests.support.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # our own simulator


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Component:
    """One ``pwbus`` subcommand as a child process that can be killed and started again."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = folder / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "powerwall_bus", *self.argv],
            env=self.env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )
        log.close()
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; the exit status (None if it had to be killed)."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            return None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class ProxyProbe:
    """Reads the proxy's dashboard routes every 0.25 s; counts statuses and keeps /soe values."""

    base_url: str
    statuses: Counter[int] = field(default_factory=Counter)
    soe_values: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    ROUTES = ("/aggregates", "/soe", "/csv", "/vitals", "/api/status", "/freq", "/pod")

    def start(self) -> ProxyProbe:
        self._thread = threading.Thread(target=self._run, daemon=True, name="proxy-probe")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.wait(0.25):
            for route in self.ROUTES:
                try:
                    response = session.get(self.base_url + route, timeout=5)
                except requests.RequestException:
                    continue  # the proxy restarting or not up yet: not an answer
                self.statuses[response.status_code] += 1
                if response.status_code >= 500:
                    self.errors.append(f"{route}: {response.status_code}")
                if route == "/soe" and response.status_code == 200:
                    document = response.json()
                    if isinstance(document, dict) and "percentage" in document:
                        self.soe_values.append(float(document["percentage"]))


class Pipeline:
    """Poller, writer and proxy as processes around one simulator, broker and database."""

    def __init__(
        self,
        folder: Path,
        *,
        sim: SimulatorRunner,
        sim_password: str,
        amqp: AmqpSettings,
        mysql: MysqlSettings,
        queue: str,
    ) -> None:
        self.folder = folder
        self.sim = sim
        self.amqp = amqp
        self.mysql = mysql
        self.broker = TcpProxy(amqp.host, amqp.port)
        self.database = TcpProxy(mysql.host, mysql.port)
        via_broker = AmqpSettings(
            url=amqp.url, host="127.0.0.1", port=self.broker.port, exchange=amqp.exchange
        )
        via_database = MysqlSettings(
            url=mysql.url,
            host="127.0.0.1",
            port=self.database.port,
            user=mysql.user,
            password=mysql.password,
            database=mysql.database,
        )
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PWBUS_TEST_",))}
        base.update(
            PYTHONUNBUFFERED="1",
            PWBUS_LOG_LEVEL="INFO",
            AMQP_URL=via_broker.url,  # settings resolve the URL with the overridden parts
            AMQP_EXCHANGE=amqp.exchange,
            AMQP_HEARTBEAT="5",
        )
        self.proxy_port = free_port()
        state = folder / "state"
        state.mkdir(mode=0o700, exist_ok=True)
        self.poller = Component(
            "poller",
            ["poller"],
            {
                **base,
                "PW_HOST": sim.address,
                "PW_PASSWORD": sim_password,
                "PWBUS_STATE_DIR": str(state),
                "PWBUS_POLL_METERS": "1",
                "PWBUS_POLL_SOE": "1",
                "PWBUS_GATEWAY_COOLDOWN": "5",
                "PWBUS_POLL_BACKOFF_MAX": "2",
                "PW_TIMEOUT": "2",
            },
            folder,
        )
        self.writer = Component(
            "writer",
            ["mysql"],
            {
                **base,
                "MYSQL_URL": _mysql_url(via_database),
                "PWBUS_MYSQL_QUEUE": queue,
                "PWBUS_MYSQL_DEAD_LETTER_QUEUE": f"{queue}.dead",
                "PWBUS_MYSQL_RETRY_MAX": "2",
                "PWBUS_MYSQL_BATCH_WAIT": "0.2",
            },
            folder,
        )
        self.proxy = Component("proxy", ["proxy", "--port", str(self.proxy_port)], {**base}, folder)
        self.probe = ProxyProbe(f"http://127.0.0.1:{self.proxy_port}")

    def start(self) -> Pipeline:
        """Writer first (its durable queue must exist before readings flow), then the rest."""
        self.writer.start()
        time.sleep(1.5)
        self.poller.start()
        self.proxy.start()
        self.probe.start()
        return self

    def stop(self) -> dict[str, int | None]:
        """Stop everything (SIGTERM), the writer last so it stores what is queued."""
        self.probe.stop()
        statuses = {"poller": self.poller.stop(), "proxy": self.proxy.stop()}
        statuses["writer"] = self.writer.stop()
        self.broker.close()
        self.database.close()
        return statuses

    def kill_everything(self) -> None:
        for component in (self.poller, self.writer, self.proxy):
            if component.alive():
                component.kill()
        self.probe.stop()
        self.broker.close()
        self.database.close()

    def logs(self) -> str:
        return "\n".join(
            f"----- {c.name}\n{c.log()[-4000:]}" for c in (self.poller, self.writer, self.proxy)
        )

    def served(self) -> dict[str, Any]:
        response = requests.get(f"{self.sim.url}/_sim/counts", verify=False, timeout=5)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


def _mysql_url(settings: MysqlSettings) -> str:
    from urllib.parse import quote

    auth = quote(settings.user, safe="")
    if settings.password:
        auth += ":" + quote(settings.password, safe="")
    return f"mysql://{auth}@{settings.host}:{settings.port}/{settings.database}"
