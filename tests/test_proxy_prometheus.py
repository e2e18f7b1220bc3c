"""A real Prometheus (Debian's package) scrapes the proxy's /metrics and answers PromQL.

Two ways in: the proxy fed directly with the simulator's bodies (quick, exact values), and
the real pipeline (simulator -> poller -> RabbitMQ -> proxy). Either way Prometheus runs
from the shipped scrape configuration (``configuration/prometheus/scrape.yml``) pointed at
the proxy with a 1 s interval, the target must be up, and instant queries must return what
the proxy's own /aggregates and /soe say.
"""

from __future__ import annotations

import json
from pathlib import Path

import requests

from powerwall_bus.consumers.proxy.main import ProxyConfig
from powerwall_bus.producers.poller.main import Poller, PollerConfig
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.settings import GatewaySettings, PollerSettings, ProxySettings
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.support.prometheus import SHIPPED, PrometheusServer, check_config
from tests.support.running_proxy import RunningProxy
from tests.support.waiting import wait_until

PASSWORD = "prom-Pass-42"
PATHS = (
    "/api/meters/aggregates",
    "/api/system_status/soe",
    "/api/system_status/grid_status",
    "/api/system_status",
    "/api/devices/vitals",
    "/api/status",
)


def _proxy_settings() -> ProxySettings:
    return ProxySettings(port=0, bind_address="127.0.0.1")


def _json(proxy: RunningProxy, path: str) -> object:
    return requests.get(proxy.url + path, timeout=5).json()


def test_the_shipped_scrape_config_is_valid_for_prometheus() -> None:
    output = check_config(SHIPPED)
    assert "SUCCESS" in output


def test_prometheus_scrapes_the_readings_the_proxy_serves(bus, tmp_path: Path) -> None:
    gateway = SimulatedGateway(SiteOptions(seed=33, powerwalls=2))
    with RunningProxy(ProxyConfig(_proxy_settings(), bus.settings)) as proxy:
        proxy.feed(gateway, *PATHS)
        with PrometheusServer(tmp_path, f"127.0.0.1:{proxy.server.port}") as prometheus:
            target = prometheus.wait_until_up()
            assert target["labels"]["job"] == "powerwall-bus"
            assert target["scrapeUrl"] == f"{proxy.url}/metrics"
            assert prometheus.wait_for_value('up{job="powerwall-bus"}') == 1
            aggregates = _json(proxy, "/aggregates")
            assert isinstance(aggregates, dict)
            for meter in ("site", "battery", "load", "solar"):
                promql = f'powerwall_meter_power_watts{{meter="{meter}"}}'
                assert prometheus.wait_for_value(promql) == aggregates[meter]["instant_power"]
                counter = f'powerwall_meter_energy_exported_watt_hours_total{{meter="{meter}"}}'
                assert prometheus.value(counter) == aggregates[meter]["energy_exported"]
            soe = _json(proxy, "/soe")
            assert isinstance(soe, dict)
            assert prometheus.value("powerwall_state_of_energy_percent") == soe["percentage"]
            # PromQL over our labels: the DIN, the grid state, the packs.
            (series,) = prometheus.query("powerwall_state_of_energy_percent")
            assert series["metric"]["din"] == gateway.din
            assert series["metric"]["site"] == "test"  # the scrape config's own label
            grid = prometheus.query("powerwall_grid_status == 1")
            assert [s["metric"]["state"] for s in grid] == ["SystemGridConnected"]
            pod = _json(proxy, "/pod")
            assert isinstance(pod, dict)
            packs = prometheus.query("powerwall_pack_energy_remaining_watt_hours")
            assert {s["metric"]["pack"]: float(s["value"][1]) for s in packs} == {
                "PW1": pod["PW1_POD_nom_energy_remaining"],
                "PW2": pod["PW2_POD_nom_energy_remaining"],
            }


def test_prometheus_over_the_real_pipeline(bus, tmp_path: Path) -> None:
    server = GatewayServer(SimulatedGateway(SiteOptions(seed=5, powerwalls=1)), password=PASSWORD)
    with SimulatorRunner(server, ssl_context=server_context()) as sim:
        poller = Poller(
            PollerConfig(
                gateway=GatewaySettings(host=sim.address, password=PASSWORD, state_dir=tmp_path),
                amqp=bus.settings,
                poller=PollerSettings(meters_interval=1.0, status_interval=1.0),
            )
        ).start()
        stopped = False
        try:
            with (
                RunningProxy(ProxyConfig(_proxy_settings(), bus.settings)) as proxy,
                PrometheusServer(tmp_path, f"127.0.0.1:{proxy.server.port}") as prometheus,
            ):
                prometheus.wait_until_up()
                requests_ = 'pwbus_poller_requests_total{endpoint="/api/meters/aggregates"}'
                assert prometheus.wait_for_value(requests_, 20) >= 1
                assert prometheus.wait_for_value("pwbus_proxy_broker_connected") == 1
                assert prometheus.wait_for_value("pwbus_poller_broker_connected") == 1

                def gateway_ok() -> dict | None:
                    found = prometheus.query("pwbus_poller_gateway_state == 1")
                    return (
                        found[0]["metric"]
                        if found and found[0]["metric"]["state"] == "ok"
                        else None
                    )

                state = wait_until(gateway_ok, 10, step=0.25)
                assert state is not None, prometheus.query("pwbus_poller_gateway_state == 1")
                assert state["din"] == sim.server.gateway.din
                assert prometheus.wait_for_value('pwbus_data_age_seconds{kind="meters"}') < 10
                # Freeze the data (stop the poller): once the last messages have reached
                # the proxy, Prometheus must hold exactly what the proxy serves.
                poller.stop()
                stopped = True
                served: dict[str, object] = {}

                def caught_up() -> bool:
                    aggregates = _json(proxy, "/aggregates")
                    soe = _json(proxy, "/soe")
                    assert isinstance(aggregates, dict) and isinstance(soe, dict)
                    served.update(aggregates=aggregates, soe=soe)
                    return (
                        all(
                            prometheus.value(f'powerwall_meter_power_watts{{meter="{meter}"}}')
                            == aggregates[meter]["instant_power"]
                            for meter in ("site", "battery", "load", "solar")
                        )
                        and prometheus.value("powerwall_state_of_energy_percent")
                        == soe["percentage"]
                    )

                assert wait_until(caught_up, 15, step=0.25), json.dumps(served)
                level = _json(proxy, "/api/system_status/soe")
                assert isinstance(level, dict)
                assert prometheus.value("powerwall_battery_level_percent") == level["percentage"]
                # The simulator's own facts, through Prometheus.
                (info,) = prometheus.query("powerwall_gateway_info")
                assert info["metric"]["firmware"] == sim.server.gateway.firmware
                packs = prometheus.query("powerwall_pack_full_energy_watt_hours")
                assert [p["metric"]["pack"] for p in packs] == ["PW1"]  # powerwalls=1
                polled = prometheus.value(requests_)
                assert polled is not None and polled >= 1
                assert sim.server.counters.by_path["/api/meters/aggregates"] >= polled
        finally:
            if not stopped:
                poller.stop()
