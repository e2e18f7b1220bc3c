"""Several gateways on one bus: two simulators, two pollers, one broker, and the consumers.

Each proxy must serve its own gateway's numbers and never the other's; a proxy told nothing
keeps to one and says on /health that it should be told; the writer stores both. The two
simulated sites differ on purpose: another DIN, seed, number of Powerwalls and a state of
energy far apart (20 % and 90 %), so a mixed-up answer cannot pass for the right one.
"""

from __future__ import annotations

import json
import random
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from powerwall_bus.consumers.mysql.command import WriterConfig
from powerwall_bus.consumers.proxy.main import ProxyConfig
from powerwall_bus.producers.poller.main import Poller, PollerConfig
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.settings import (
    GatewaySettings,
    MysqlSettings,
    PollerSettings,
    ProxySettings,
)
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from powerwall_bus.stack.plan import simulated_din
from tests.support.mysql_writer import RunningWriter, query, writer_settings
from tests.support.running_proxy import RunningProxy
from tests.support.waiting import wait_until
from tests.test_stack import Stack, _env

if TYPE_CHECKING:
    from tests.conftest import TestBus

PASSWORD = "two-Sites-42"
HOME_DIN = "1232100-00-E--TG000000HOME1"
GARAGE_DIN = "1232100-00-E--TG00000GARAGE"
SOE_PATH = "/api/system_status/soe"


@dataclass(frozen=True)
class Site:
    """One simulated gateway with its poller."""

    name: str
    sim: SimulatorRunner
    poller: Poller
    powerwalls: int

    @property
    def din(self) -> str:
        return self.sim.server.gateway.din

    def soe(self) -> float:
        """The state of energy the gateway reports now (gateway scale)."""
        return float(json.loads(self.sim.server.gateway.get(SOE_PATH).body)["percentage"])


@pytest.fixture
def sites(bus: TestBus, tmp_path: Path) -> Iterator[dict[str, Site]]:
    """``home`` (1 Powerwall, 20 %) and ``garage`` (3 Powerwalls, 90 %), each with a named
    in-process poller, on one exchange."""
    options = {
        "home": SiteOptions(seed=31, din=HOME_DIN, powerwalls=1, initial_soe=20.0),
        "garage": SiteOptions(seed=32, din=GARAGE_DIN, powerwalls=3, initial_soe=90.0),
    }
    started: dict[str, Site] = {}
    try:
        for name, site_options in options.items():
            server = GatewayServer(SimulatedGateway(site_options), password=PASSWORD)
            sim = SimulatorRunner(server, ssl_context=server_context()).start()
            gateway = GatewaySettings(
                name=name, host=sim.address, password=PASSWORD, state_dir=tmp_path / name
            )
            poller = Poller(
                PollerConfig(gateway, bus.settings, PollerSettings(meters_interval=1.0))
            )
            started[name] = Site(name, sim, poller.start(), site_options.powerwalls)
        yield started
    finally:
        for site in started.values():
            site.poller.stop()
            site.sim.stop()


def _proxy(bus: TestBus, follow: str = "") -> RunningProxy:
    settings = ProxySettings(port=0, bind_address="127.0.0.1")
    return RunningProxy(ProxyConfig(settings, bus.settings, follow=follow))


def _get(proxy: RunningProxy, path: str) -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    return session.get(proxy.url + path, timeout=5)


def _json(proxy: RunningProxy, path: str) -> Any:
    return _get(proxy, path).json()


def _served(proxy: RunningProxy) -> bool:
    """Meters, the state of energy, /api/status and /api/system_status have all arrived.

    They come from different polls, so one being served says nothing about the others.
    """
    paths = ("/soe", "/api/status", "/aggregates", "/api/system_status")
    return all(_json(proxy, path) for path in paths)


def _assert_serves_only(proxy: RunningProxy, site: Site, samples: int = 12) -> None:
    """Every answer over a few seconds is the site's own: its DIN, Powerwalls and soe."""
    assert wait_until(lambda: _served(proxy), 20), f"{site.name}: no data"
    for _ in range(samples):
        assert _json(proxy, "/api/status")["din"] == site.din
        assert _json(proxy, "/soe")["percentage"] == pytest.approx(site.soe(), abs=1.0)
        powerwalls = len(_json(proxy, "/api/system_status")["battery_blocks"])
        assert powerwalls == site.powerwalls, site.name
        time.sleep(0.25)


@pytest.mark.timeout(90)
def test_two_proxies_each_serve_only_their_gateway(bus: TestBus, sites: dict[str, Site]) -> None:
    home, garage = sites["home"], sites["garage"]
    # One follows a poller's name (bound to every gateway, filtered on the headers), the
    # other a DIN (bound to that gateway's keys alone; resync answers still come from both).
    with _proxy(bus, "home") as by_name, _proxy(bus, GARAGE_DIN) as by_din:
        _assert_serves_only(by_name, home)
        _assert_serves_only(by_din, garage)
        for proxy, site in ((by_name, home), (by_din, garage)):
            health = _get(proxy, "/health")
            assert health.status_code == 200, health.json()
            assert health.json()["gateway"]["din"] == site.din
            gateway = _json(proxy, "/stats")["gateway"]
            assert (gateway["din"], gateway["name"]) == (site.din, site.name)
        assert _json(by_name, "/stats")["gateway"]["wanted"] == "home"
        assert _json(by_din, "/stats")["gateway"]["wanted"] == GARAGE_DIN


@pytest.mark.timeout(90)
def test_a_proxy_left_unset_keeps_to_one_gateway_and_says_so(
    bus: TestBus, sites: dict[str, Site], caplog: pytest.LogCaptureFixture
) -> None:
    with _proxy(bus) as proxy:

        def both_seen() -> dict[str, Any] | None:
            health = _get(proxy, "/health")
            others = health.json()["gateway"]["others"]
            return health.json() if health.status_code == 503 and others else None

        health = wait_until(both_seen, 20)
        assert health, _get(proxy, "/health").json()
        followed = sites["home"] if health["gateway"]["din"] == HOME_DIN else sites["garage"]
        other = sites["garage"] if followed is sites["home"] else sites["home"]
        (problem,) = [p for p in health["problems"] if "several gateways" in p]
        assert problem == (
            f"several gateways on the bus ({followed.name} ({followed.din}), "
            f"{other.name} ({other.din})): set PWBUS_GATEWAY"
        )
        _assert_serves_only(proxy, followed)  # never mixed, even while it complains
        assert _get(proxy, "/health").status_code == 503  # and it keeps saying so
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w for w in warnings if other.din in w and "PWBUS_GATEWAY" in w], warnings


@pytest.mark.timeout(90)
def test_the_writer_stores_every_gateway(
    bus: TestBus, sites: dict[str, Site], mysql_db: MysqlSettings
) -> None:
    settings = writer_settings(bus.queue_name("writer"), bus.queue_name("dead"), migrate=True)
    with RunningWriter(WriterConfig(bus.settings, mysql_db, settings)) as writer:

        def stored() -> dict[str, int]:
            rows = query(
                mysql_db,
                "SELECT g.din, COUNT(*) FROM meter_readings r"
                " JOIN gateways g ON g.id = r.gateway_id GROUP BY g.din",
            )
            return {din: int(n) for din, n in rows}

        assert wait_until(lambda: len(stored()) == 2 and min(stored().values()) >= 8, 30), stored()
        assert writer.stats.dead_lettered == 0
    assert set(stored()) == {HOME_DIN, GARAGE_DIN}
    # Each gateway's state of energy is its own (20 % and 90 % apart, never swapped).
    for din, site in ((HOME_DIN, sites["home"]), (GARAGE_DIN, sites["garage"])):
        values = query(
            mysql_db,
            "SELECT s.percentage FROM soe_readings s JOIN gateways g ON g.id = s.gateway_id"
            " WHERE g.din = %s",
            (din,),
        )
        assert values and all(abs(v - site.soe()) < 2 for (v,) in values), (din, values)


# --------------------------------------------------------------------------- pwbus stack


def _two_free_ports() -> int:
    """A port P with P and P + 1 free (the stack's proxies count up from P).

    Drawn below the kernel's ephemeral range (32768 and up): the stack picks its simulators'
    ports from that range after this returns, and must not be handed the same numbers.
    """
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as first, socket.socket() as second:
            try:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    pytest.fail("no two adjacent free ports")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_pwbus_stack_runs_two_gateways_from_one_config_file(
    bus: TestBus, amqp_base_url: str, tmp_path: Path
) -> None:
    port = _two_free_ports()
    config = tmp_path / "pwbus.toml"
    config.write_text(
        f"[proxy]\nport = {port}\n"
        '[gateways.home]\nhost = "192.0.2.10"\npassword = "Home-pass1"\n'
        '[gateways.garage]\nhost = "192.0.2.11"\npassword = "Garage-pass2"\n'
    )
    stack = Stack(
        ["--simulate", "--components", "poller,proxy"],
        _env(
            AMQP_URL=amqp_base_url,
            AMQP_EXCHANGE=bus.settings.exchange,
            PWBUS_CONFIG=str(config),
        ),
    )
    http = requests.Session()
    http.trust_env = False

    def status(index: int) -> Any:
        try:
            return http.get(f"http://127.0.0.1:{port + index}/api/status", timeout=2).json()
        except (requests.RequestException, ValueError):
            return None

    try:
        for name in ("home", "garage"):
            stack.wait_for(rf"started proxy\.{name} pid \d+", 30)

        def both() -> list[Any] | None:
            answers = [status(0), status(1)]
            return answers if all(answers) else None

        answers = wait_until(both, 45)
        assert answers, "\n".join(stack.lines[-30:])
        assert [answer["din"] for answer in answers] == [
            simulated_din("home"),
            simulated_din("garage"),
        ]
        for index, name in enumerate(("home", "garage")):
            stats = http.get(f"http://127.0.0.1:{port + index}/stats", timeout=2).json()
            gateway = stats["gateway"]
            assert (gateway["name"], gateway["din"]) == (name, simulated_din(name))
        assert not [line for line in stack.lines if re.search(r"several gateways", line)]
    finally:
        stack.process.terminate()
        try:
            stack.process.wait(30)
        finally:
            stack.kill_everything()
