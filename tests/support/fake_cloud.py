"""A gateway simulator with the fake Tesla cloud in front of it, and clients for both.

Test helpers only: :class:`DirectChannel` posts signed messages straight to the simulator's
``/tedapi/v1r`` (what the poller's LAN relay does on a real bus), so pairing tests can use
the LAN road without a broker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.tesla_cloud.client import TeslaCloud
from powerwall_bus.shared.tesla_cloud.tokens import TOKEN_FILE, TokenStore, tokens_from_answer
from powerwall_bus.simulator.cloud import FakeCloud, FakeCloudRunner
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.conftest import SIM_PASSWORD


class FakeClock:
    """The simulated site's clock, moved by the test (the signatures use real time)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class CloudSite:
    """A dark site (no solar: the battery carries the house), its clock and the cloud."""

    gateway: SimulatorRunner
    clock: FakeClock
    cloud: FakeCloudRunner

    @property
    def din(self) -> str:
        return self.gateway.server.gateway.din

    @property
    def fake(self) -> FakeCloud:
        return self.cloud.fake

    def control(self, path: str, payload: Any = None) -> Any:
        """GET (no payload) or POST a fake cloud control endpoint."""
        url = self.cloud.control + path
        http = requests.Session()
        http.trust_env = False
        response = (
            http.get(url, timeout=5) if payload is None else http.post(url, json=payload, timeout=5)
        )
        response.raise_for_status()
        return response.json()

    def client(self, state_dir: Path, **kwargs: Any) -> TeslaCloud:
        """A cloud client with fresh tokens saved in ``state_dir`` (mode 0600)."""
        store = TokenStore(state_dir / TOKEN_FILE)
        store.save(tokens_from_answer(self.control("tokens", {}), time.time()))
        return TeslaCloud(
            api_url=self.cloud.url,
            auth_url=self.cloud.token_url,
            client_id="ownerapi",
            store=store,
            **kwargs,
        )

    def reset(self) -> None:
        self.fake.reset()
        self.fake.backup_rule = "accept"
        self.fake.reserve, self.fake.mode = 20, "autonomous"
        self.fake.pair_window = 540.0
        self.fake.registered.clear()
        self.gateway.server.signed.reset()


@contextmanager
def cloud_site() -> Iterator[CloudSite]:
    """Start the gateway simulator and the fake cloud relaying to it; stop both after."""
    clock = FakeClock()
    gateway = SimulatedGateway(
        SiteOptions(seed=11, powerwalls=2, solar_kw=0, initial_soe=80.0), clock=clock
    )
    server = GatewayServer(gateway, password=SIM_PASSWORD)
    with SimulatorRunner(server, "127.0.0.1", 0, server_context()) as runner:
        fake = FakeCloud(gateway_url=runner.url, din=gateway.din)
        with FakeCloudRunner(fake) as cloud:
            yield CloudSite(runner, clock, cloud)


class DirectChannel:
    """TEST HELPER: a SignedChannel posting straight to the simulator's ``/tedapi/v1r``."""

    name = "lan-direct"

    def __init__(self, gateway_url: str) -> None:
        self._url = gateway_url + "/tedapi/v1r"
        self._http = requests.Session()
        self._http.verify = False
        self._http.trust_env = False

    def send(self, routable: bytes, *, timeout: float) -> bytes:
        headers = {"Content-Type": "application/octet-stream"}
        response = self._http.post(self._url, data=routable, headers=headers, timeout=timeout)
        response.raise_for_status()
        return response.content

    def close(self) -> None:
        self._http.close()
