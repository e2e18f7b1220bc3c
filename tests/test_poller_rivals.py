"""Two pollers for one gateway on one bus: the younger stops, the elder goes on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from powerwall_bus.producers.poller.rivals import CLOCK_SLACK_S, Me, Verdict, judge
from powerwall_bus.shared.certs import server_context
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from tests.conftest import TestBus

ROOT = Path(__file__).resolve().parents[1]
DIN = "1232100-00-E--TG1234567890AB"
ME = Me(run="aaaa", started=1000.0, din=DIN)


@pytest.mark.parametrize(
    ("din", "run", "made_at", "started", "verdict"),
    [
        (DIN, "aaaa", 1010.0, "1970-01-01T00:16:40Z", Verdict.NONE),  # our own status
        ("1232100-00-E--TGOTHER", "bbbb", 1010.0, "1970-01-01T00:10:00Z", Verdict.NONE),
        (DIN, "bbbb", 1000.0 - CLOCK_SLACK_S - 1, "1970-01-01T00:10:00Z", Verdict.NONE),  # replay
        (DIN, "bbbb", 1010.0, "1970-01-01T00:10:00Z", Verdict.YIELD),  # it started at 600
        (DIN, "bbbb", 1010.0, "1970-01-01T00:20:00Z", Verdict.ELDER),  # it started at 1200
        (DIN, "0000", 1010.0, "1970-01-01T00:16:40Z", Verdict.YIELD),  # same second: run breaks
        (DIN, "zzzz", 1010.0, "1970-01-01T00:16:40Z", Verdict.ELDER),
        (DIN, "bbbb", 1010.0, "yesterday", Verdict.ELDER),  # unreadable: keep going
        (DIN, "", 1010.0, "1970-01-01T00:10:00Z", Verdict.NONE),
    ],
)
def test_judge(din: str, run: str, made_at: float, started: str, verdict: Verdict) -> None:
    assert judge(ME, din, run, made_at, started) is verdict


def test_nothing_is_a_rival_before_our_gateway_is_known() -> None:
    unknown = Me(run="aaaa", started=1000.0, din=None)
    assert judge(unknown, DIN, "bbbb", 1010.0, "1970-01-01T00:10:00Z") is Verdict.NONE


@pytest.mark.slow
def test_a_second_poller_for_the_same_gateway_stops(bus: TestBus, tmp_path: Path) -> None:
    password = "rival-Pa55word"
    server = GatewayServer(SimulatedGateway(SiteOptions(seed=3)), password=password)
    with SimulatorRunner(server, ssl_context=server_context()) as sim:
        env = {
            **os.environ,
            "PW_HOST": sim.address,
            "PW_PASSWORD": password,
            "AMQP_URL": bus.settings.url,
            "AMQP_EXCHANGE": bus.settings.exchange,
            "PWBUS_POLL_STATUS_INTERVAL": "1",
            "PWBUS_POLL_DECLARE_WRITER_QUEUE": "no",
        }
        logs = {name: (tmp_path / f"{name}.log") for name in ("elder", "younger")}
        processes: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name in ("elder", "younger"):
                state = tmp_path / name  # two state folders: the lock cannot see it
                state.mkdir()
                with logs[name].open("wb") as log:
                    processes[name] = subprocess.Popen(
                        [sys.executable, "-m", "powerwall_bus", "poller"],
                        env={**env, "PWBUS_STATE_DIR": str(state)},
                        stdout=log,
                        stderr=log,
                        cwd=ROOT,
                    )
                if name == "elder":
                    started = wait_until(lambda: "logged in" in logs["elder"].read_text(), 20)
                    assert started, logs["elder"].read_text()
            younger = processes["younger"]
            assert younger.wait(timeout=40) == 2, logs["younger"].read_text()
            said = logs["younger"].read_text().strip().splitlines()[-1]
            assert said.startswith("pwbus poller: configuration: gateway: another poller")
            assert "already polls gateway" in said
            assert processes["elder"].poll() is None  # the elder goes on
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.terminate()
                    process.wait(20)
