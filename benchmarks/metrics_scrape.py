"""Benchmark a /metrics scrape, and print the figures.

Builds the proxy's state from simulator bodies (one, then four Powerwalls, with vitals)
and a poller.status of twelve endpoints, then times the collector and the encoding
(exactly what the /metrics handler runs on the event loop), in the text format and in
OpenMetrics. Prints the median and p99 time per scrape, the body size and the number of
series. A scrape blocks the proxy's loop for that long, so it should stay well under a
millisecond or two; Prometheus scrapes every few seconds.

    python benchmarks/metrics_scrape.py [--scrapes 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from powerwall_bus.consumers.proxy.metrics import exposition, registry_for  # noqa: E402
from powerwall_bus.consumers.proxy.render import RenderOptions  # noqa: E402
from powerwall_bus.consumers.proxy.state import ProxyState, Stats  # noqa: E402
from powerwall_bus.shared.messages import (  # noqa: E402
    parse_envelope,
    poller_status_message,
    reading_message,
)
from powerwall_bus.simulator.endpoints import SimulatedGateway  # noqa: E402
from powerwall_bus.simulator.feed import reading_for  # noqa: E402
from powerwall_bus.simulator.site import SiteOptions  # noqa: E402
from tests.support.poller_status import poller_status  # noqa: E402

PATHS = (
    "/api/meters/aggregates",
    "/api/system_status/soe",
    "/api/system_status/grid_status",
    "/api/system_status",
    "/api/devices/vitals",
    "/api/status",
    "/api/operation",
    "/api/site_info/site_name",
    "/api/powerwalls",
    "/api/sitemaster",
    "/api/solar_powerwall",
)
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def state_for(powerwalls: int) -> ProxyState:
    gateway = SimulatedGateway(SiteOptions(seed=1, powerwalls=powerwalls))
    state = ProxyState()
    for path in PATHS:
        state.update(parse_envelope(reading_message(reading_for(gateway, path)).body))
    status = poller_status(gateway.din)
    template = status["endpoints"]["/api/meters/aggregates"]
    status["endpoints"] = {path: dict(template) for path in (*PATHS, "/api/x", "/api/y")}
    state.update(parse_envelope(poller_status_message(time.time(), gateway.din, status).body))
    return state


def measure(powerwalls: int, accept: str, scrapes: int) -> None:
    stats = Stats()
    for path in ("/aggregates", "/soe", "/csv", "/vitals", "/freq", "/pod"):
        stats.count(path)
    registry = registry_for(state_for(powerwalls), stats, RenderOptions())
    body, _ = exposition(registry, accept)
    times = []
    for _ in range(scrapes):
        started = time.perf_counter()
        exposition(registry, accept)
        times.append(time.perf_counter() - started)
    times.sort()
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    label = "openmetrics" if accept == OPENMETRICS else "text"
    print(
        f"{powerwalls:2d} Powerwalls, {label:11s}: median "
        f"{statistics.median(times) * 1000:.3f} ms, p99 {times[int(0.99 * len(times))] * 1000:.3f}"
        f" ms per scrape; {len(body)} bytes, {series} series"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=2000)
    scrapes = parser.parse_args().scrapes
    for powerwalls in (1, 4):
        for accept in ("text/plain", OPENMETRICS):
            measure(powerwalls, accept, scrapes)


if __name__ == "__main__":
    main()
