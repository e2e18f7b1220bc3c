"""Real gateway clients against ``pwbus facade`` fed by the simulator, the poller and the real
broker, and against the simulator itself: every value the same.

The simulated site's clock is stopped, so the simulator answers every path with the same
body however late the poller and the clients ask: whatever a client reads through the facade
must equal what it reads from the simulator, value for value, and the facade's bytes equal
the simulator's bytes for every path the poller publishes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from powerwall_bus.consumers.facade.command import FacadeConfig
from powerwall_bus.consumers.facade.main import FacadeServer
from powerwall_bus.producers.poller.main import Poller, PollerConfig
from powerwall_bus.shared import contract
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.loop_thread import LoopThread
from powerwall_bus.shared.settings import FacadeSettings, GatewaySettings, PollerSettings
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.support.gateway_clients import home_assistant, pypowerwall_local
from tests.support.waiting import wait_until

SIM_PASSWORD = "sim-Secret-1"
FACADE_PASSWORD = "facade-Own-2"  # the facade's own: never the gateway's
FROZEN = float(int(time.time()))


@dataclass
class Stack:
    sim: SimulatorRunner
    facade: FacadeServer
    loop: LoopThread

    @property
    def facade_host(self) -> str:
        return f"127.0.0.1:{self.facade.port}"

    def forget_facade_sessions(self) -> None:
        self.loop.call(self.facade.sessions.end_all)


def _published_paths(gateway: SimulatedGateway) -> set[str]:
    """The paths the poller reads by default and the simulator answers with 200."""
    polled = {e.path for e in contract.ENDPOINTS if e.poll is not None}
    return polled & set(gateway.paths)


@pytest.fixture
def stack(bus, tmp_path: Path) -> Iterator[Stack]:
    gateway = SimulatedGateway(SiteOptions(seed=21, powerwalls=2), clock=lambda: FROZEN)
    server = GatewayServer(gateway, password=SIM_PASSWORD)
    with SimulatorRunner(server, ssl_context=server_context()) as sim:
        poller = Poller(
            PollerConfig(
                gateway=GatewaySettings(
                    host=sim.address, password=SIM_PASSWORD, state_dir=tmp_path / "poller"
                ),
                amqp=bus.settings,
                poller=PollerSettings(meters_interval=1.0),
            )
        ).start()
        loop = LoopThread("facade-under-test").start()
        facade = FacadeServer(
            FacadeConfig(
                facade=FacadeSettings(password=FACADE_PASSWORD, port=0, bind_address="127.0.0.1"),
                amqp=bus.settings,
                state_dir=tmp_path / "facade",
            )
        )
        try:
            loop.run(facade.start())
            wanted = _published_paths(gateway)
            arrived = wait_until(lambda: wanted <= set(facade.state.paths()), 30, step=0.2)
            assert arrived, f"missing on the bus: {sorted(wanted - set(facade.state.paths()))}"
            yield Stack(sim, facade, loop)
        finally:
            loop.run(facade.stop())
            loop.stop()
            poller.stop()


def _bytes(url: str, path: str, password: str) -> requests.Response:
    http = requests.Session()
    http.verify = False
    http.trust_env = False
    login = http.post(
        f"{url}/api/login/Basic",
        json={"username": "customer", "password": password, "email": "x@y.z"},
        timeout=5,
    )
    assert login.status_code == 200
    return http.get(f"{url}{path}", timeout=5)


def test_every_published_path_is_the_simulators_body(stack: Stack) -> None:
    gateway = stack.sim.server.gateway
    facade_url = f"https://{stack.facade_host}"
    paths = sorted(_published_paths(gateway))
    assert "/api/devices/vitals" in paths and "/api/system_status/soe" in paths
    for path in paths:
        answer = _bytes(facade_url, path, FACADE_PASSWORD)
        assert answer.status_code == 200, path
        assert answer.content == gateway.get(path).body, path
        assert answer.headers["Content-Type"].split(";")[0] == gateway.get(path).content_type
    # the state of energy is the gateway's raw value (the pyPowerwall proxy scales it)
    soe = json.loads(_bytes(facade_url, "/api/system_status/soe", FACADE_PASSWORD).content)
    assert soe == json.loads(gateway.get("/api/system_status/soe").body)


def test_home_assistant_sees_the_same_through_the_facade(stack: Stack) -> None:
    direct = home_assistant(stack.sim.address, SIM_PASSWORD, stack.sim.server.expire_sessions)
    through = home_assistant(stack.facade_host, FACADE_PASSWORD, stack.forget_facade_sessions)
    assert through == direct
    gateway = stack.sim.server.gateway
    status = json.loads(gateway.get("/api/status").body)
    soe = json.loads(gateway.get("/api/system_status/soe").body)
    assert through["flow_din"] == through["setup"]["gateway_din"] == gateway.din
    assert through["setup"]["status"]["_raw"] == status
    assert through["update"]["charge"] == soe["percentage"]
    assert through["update_after_login"] == through["update"]
    assert len(through["setup"]["serial_numbers"]) == 2
    assert through["expired_error"] == [
        "Unable to GET to resource",
        "User does not have adequate access rights",
    ]
    assert through["after_logout_authenticated"] is False
    assert through["island_error"][0] == "Unable to POST to resource"
    assert through["wrong_password_error"] == ["bad credentials", "Login Error"]


@pytest.mark.parametrize("authmode", ["cookie", "token"])
def test_pypowerwall_sees_the_same_through_the_facade(
    stack: Stack, tmp_path: Path, authmode: str
) -> None:
    direct = pypowerwall_local(stack.sim.address, SIM_PASSWORD, tmp_path / "sim", authmode=authmode)
    through = pypowerwall_local(
        stack.facade_host, FACADE_PASSWORD, tmp_path / "facade", authmode=authmode
    )
    assert through == direct
    gateway = stack.sim.server.gateway
    soe = json.loads(gateway.get("/api/system_status/soe").body)["percentage"]
    assert through["level"] == soe
    assert through["din"] == gateway.din
    assert through["vitals"] and through["strings"] and through["temps"]  # from the protobuf
    assert through["grid_status"] == "UP"
    assert through["operation_refused"] is None  # the customer's write was refused (403)
