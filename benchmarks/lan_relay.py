"""How long one signed command takes over the LAN road: dispatcher -> bus -> poller -> gateway.

Starts the simulated gateway (a fresh key paired) and a poller at its default cadences
in-process, then sends N (60) signed ``list`` commands one after another through
:class:`~powerwall_bus.consumers.dispatch.lan.LanChannel` and prints the round trip (median,
95th percentile, worst) and the most gateway requests the simulator saw at once (1: the
poller posts commands between its reads). Target (issue 11): well under a second, so the
dispatcher's list, cancel, schedule and read back take no longer than the gateway does.

    python benchmarks/lan_relay.py [--commands 60]

The broker comes from PWBUS_TEST_AMQP_URL (default guest on 127.0.0.1); everything listens on
127.0.0.1. The exchange is a throwaway one, deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import pika

from powerwall_bus.consumers.dispatch.lan import LanChannel
from powerwall_bus.producers.poller.command import PollerConfig
from powerwall_bus.producers.poller.main import Poller
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.settings import AmqpSettings, GatewaySettings, PollerSettings
from powerwall_bus.shared.tedapi.commands import Kind, build_request
from powerwall_bus.shared.tedapi.keys import generate_key, public_der
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions

PASSWORD = "bench-Relay-1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=60)
    args = parser.parse_args()
    url = os.environ.get("PWBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    amqp = AmqpSettings(url=url, exchange=f"bench.relay.{secrets.token_hex(4)}")
    key = generate_key()
    server = GatewayServer(SimulatedGateway(SiteOptions(seed=1, powerwalls=1)), password=PASSWORD)
    server.signed.pair(public_der(key))
    din = server.gateway.din
    times: list[float] = []
    with (
        SimulatorRunner(server, ssl_context=server_context()) as sim,
        tempfile.TemporaryDirectory() as state,
    ):
        gateway = GatewaySettings(host=sim.address, password=PASSWORD, state_dir=Path(state))
        poller = Poller(PollerConfig(gateway, amqp, PollerSettings())).start()
        channel = LanChannel(amqp, din)
        try:
            assert poller.relay is not None
            while not poller.relay.bound.wait(0.1):
                pass
            for _ in range(args.commands):
                body = build_request(Kind.LIST, din, key, time.time())
                started = time.perf_counter()
                channel.send(body, timeout=10)
                times.append(time.perf_counter() - started)
        finally:
            channel.close()
            poller.stop()
        most = server.counters.max_in_flight
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().exchange_delete(amqp.exchange)
    connection.close()
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print(
        f"{len(times)} signed list commands through the poller: median "
        f"{statistics.median(times) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, worst "
        f"{times[-1] * 1000:.1f} ms; most gateway requests at once: {most}"
    )


if __name__ == "__main__":
    main()
