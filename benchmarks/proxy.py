"""Benchmark the proxy next to a bare aiohttp handler, and print the figures.

Starts ``pwbus proxy`` as a child process on a private exchange of a real RabbitMQ, feeds it
one message of every kind built from simulator bodies, then loads it with 32 keep-alive
connections (wrk when installed, else an aiohttp client) on /aggregates, /csv, /freq and
/vitals, and the same load on a bare aiohttp handler returning a constant body, run in a
child process the same way. Prints requests/s and p50/p99 latency for each, the proxy's
peak RSS, and how long a new meters message takes to be visible on /aggregates after it
reaches the broker (p50/p99 over many messages).

Targets (issue 4): >= 70 % of the bare handler's throughput, p99 < 10 ms, RSS < 80 MB,
message visible on /aggregates within 50 ms (p99).

    python benchmarks/proxy.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pika

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from powerwall_bus.shared.messages import reading_message  # noqa: E402
from powerwall_bus.simulator.endpoints import SimulatedGateway  # noqa: E402
from powerwall_bus.simulator.feed import reading_for  # noqa: E402
from powerwall_bus.simulator.site import SiteOptions  # noqa: E402

ROUTES = ("/aggregates", "/csv", "/freq", "/vitals")
CONNECTIONS = 32
FEED = (
    "/api/meters/aggregates",
    "/api/system_status/soe",
    "/api/system_status/grid_status",
    "/api/system_status",
    "/api/operation",
    "/api/status",
    "/api/devices/vitals",
)

BARE = textwrap.dedent("""
    import sys
    from aiohttp import web
    BODY = b"x" * int(sys.argv[2])  # a constant body as large as the proxy's /aggregates
    async def handler(request):
        return web.Response(body=BODY, content_type="application/json")
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
""")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load_wrk(url: str, seconds: float) -> tuple[float, float, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds:.0f}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    return rps, p50, p99


def load_aiohttp(url: str, seconds: float) -> tuple[float, float, float]:
    import aiohttp

    async def run() -> tuple[float, float, float]:
        latencies: list[float] = []
        deadline = time.monotonic() + seconds
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                while time.monotonic() < deadline:
                    start = time.perf_counter()
                    async with session.get(url) as response:
                        await response.read()
                    latencies.append(time.perf_counter() - start)

            await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        latencies.sort()
        return (
            len(latencies) / seconds,
            latencies[len(latencies) // 2] * 1000,
            latencies[int(len(latencies) * 0.99)] * 1000,
        )

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="per route")
    parser.add_argument("--freshness-samples", type=int, default=200)
    args = parser.parse_args()
    amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    exchange = f"bench.proxy.{uuid.uuid4().hex[:8]}"
    load = load_wrk if shutil.which("wrk") else load_aiohttp
    tool = "wrk" if shutil.which("wrk") else "aiohttp client"

    proxy_port = free_port()
    env = {
        **os.environ,
        "AMQP_URL": amqp_url,
        "AMQP_EXCHANGE": exchange,
        "PW_PORT": str(proxy_port),
        "PWBUS_LOG_LEVEL": "WARNING",
    }
    proxy = subprocess.Popen([sys.executable, "-m", "powerwall_bus", "proxy"], env=env, cwd=ROOT)
    bares: list[subprocess.Popen[bytes]] = []
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.exchange_declare(exchange, "topic", durable=True)
    results: dict[str, tuple[float, float, float]] = {}
    try:
        wait_port(proxy_port)
        time.sleep(1.0)  # the proxy's subscription
        gateway = SimulatedGateway(SiteOptions(seed=5, powerwalls=2))

        def publish(path: str) -> dict:
            reading = reading_for(gateway, path)
            message = reading_message(reading)
            channel.basic_publish(exchange, message.routing_key, message.body)
            return reading.payload if isinstance(reading.payload, dict) else {}

        for path in FEED:
            publish(path)
        time.sleep(0.5)
        load(f"http://127.0.0.1:{proxy_port}/aggregates", 3)  # warm-up, not counted
        for route in ROUTES:
            results[f"proxy {route}"] = load(f"http://127.0.0.1:{proxy_port}{route}", args.seconds)
        import requests

        size = len(requests.get(f"http://127.0.0.1:{proxy_port}/aggregates", timeout=5).content)
        for name, body_size in ((f"bare, {size} B body", size), ("bare, 32 B body", 32)):
            port = free_port()
            bares.append(subprocess.Popen([sys.executable, "-c", BARE, str(port), str(body_size)]))
            wait_port(port)
            results[name] = load(f"http://127.0.0.1:{port}/", args.seconds)
        rss = peak_rss_mb(proxy.pid)

        # Freshness: publish a meters message, poll /aggregates until it shows.
        http = requests.Session()
        delays = []
        for _ in range(args.freshness_samples):
            sent = time.perf_counter()
            marker = publish("/api/meters/aggregates")["site"]["last_communication_time"]
            while True:
                body = http.get(f"http://127.0.0.1:{proxy_port}/aggregates", timeout=5).json()
                if body and body["site"]["last_communication_time"] == marker:
                    break
                if time.perf_counter() - sent > 2:
                    raise RuntimeError("a message did not show on /aggregates within 2 s")
            delays.append((time.perf_counter() - sent) * 1000)
            time.sleep(0.02)
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(15)
        for bare in bares:
            bare.send_signal(signal.SIGTERM)
            bare.wait(15)
        channel.exchange_delete(exchange)
        connection.close()

    bare_rps = results[f"bare, {size} B body"][0]
    print(
        f"proxy benchmark: {CONNECTIONS} keep-alive connections, {args.seconds:.0f} s per "
        f"route, load from {tool}"
    )
    print(
        f"(vs bare: throughput relative to a bare aiohttp handler with a constant body as "
        f"large as /aggregates, {size} bytes)"
    )
    print(f"{'target':<26}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs bare':>9}")
    for name, (rps, p50, p99) in results.items():
        print(f"{name:<26}{rps:>10.0f}{p50:>9.2f}{p99:>9.2f}{rps / bare_rps:>9.0%}")
    delays.sort()
    print(f"\nproxy peak RSS: {rss:.1f} MB (target < 80 MB)")
    print(
        f"new message visible on /aggregates after publish: p50 "
        f"{statistics.median(delays):.1f} ms, p99 {delays[int(len(delays) * 0.99) - 1]:.1f} ms "
        f"over {len(delays)} messages (includes the broker hop; target p99 < 50 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
