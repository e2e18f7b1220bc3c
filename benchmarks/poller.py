"""Benchmark the poller at its default cadences and print the figures.

Runs the gateway simulator in this process and ``pwbus poller`` as a child process (so its
CPU time and memory are its own), against a real RabbitMQ, for ``--seconds`` (default 120),
and prints:

* gateway requests per minute, per endpoint (from the simulator's counters);
* publish latency from reading to broker confirm, p50 and p99 (from the poller's own
  status messages, which carry these percentiles);
* CPU seconds per hour and the share of one core; peak RSS (VmHWM);
* bytes the outbox journal writes to disk per day (its own counter, logged by the poller at
  shutdown, extrapolated from the process's lifetime), its fsyncs per day, and the kernel's
  ``write_bytes`` for the process (``/proc/<pid>/io``: what reached the block layer) as a
  cross-check. With the broker up, the journal writes every message once and forces
  nothing to the card.

Targets (issue 3): RSS under 60 MB, CPU under 2 % of one core.

    python benchmarks/poller.py --seconds 300
    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2F python benchmarks/poller.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pika

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from powerwall_bus.shared.certs import server_context  # noqa: E402
from powerwall_bus.shared.topology import POLLER_STATUS  # noqa: E402
from powerwall_bus.simulator.endpoints import SimulatedGateway  # noqa: E402
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner  # noqa: E402
from powerwall_bus.simulator.site import SiteOptions  # noqa: E402

PASSWORD = "bench-Pass-1"


def _proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _proc_write_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


_JOURNAL_LINE = re.compile(
    r"outbox journal: (\d+) bytes written in (\d+) s, (\d+) fsyncs, (\d+) messages left"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="measurement length")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    args = parser.parse_args()
    amqp_url = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    exchange = f"bench.{uuid.uuid4().hex[:8]}"

    server = GatewayServer(SimulatedGateway(SiteOptions(seed=3)), password=PASSWORD)
    simulator = SimulatorRunner(server, ssl_context=server_context()).start()
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.exchange_declare(exchange, "topic", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, exchange, POLLER_STATUS)  # every poller's status

    env = {
        **os.environ,
        "PW_HOST": simulator.address,
        "PW_PASSWORD": PASSWORD,
        "AMQP_URL": amqp_url,
        "AMQP_EXCHANGE": exchange,
        "PWBUS_STATE_DIR": tempfile.mkdtemp(prefix="pwbus-bench-"),
        "PWBUS_LOG_LEVEL": "INFO",  # the journal's counters come in the last INFO line
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "powerwall_bus", "poller"],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = time.monotonic()
    log = ""
    try:
        connection.sleep(args.warmup)  # keeps the heartbeat going
        server.reset_counts()
        cpu_start, wall_start = _proc_cpu_seconds(child.pid), time.monotonic()
        connection.sleep(args.seconds)
        cpu_used = _proc_cpu_seconds(child.pid) - cpu_start
        wall = time.monotonic() - wall_start
        counts = dict(server.counters.by_path)
        peak_rss = _proc_peak_rss_mb(child.pid)
        block_bytes = _proc_write_bytes(child.pid)
        lifetime = time.monotonic() - started
        status = None
        while True:
            method, _, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            status = json.loads(body)["payload"]
    finally:
        child.send_signal(signal.SIGTERM)
        _, log = child.communicate(timeout=30)
        channel.exchange_delete(exchange)
        connection.close()
        simulator.stop()

    minutes = wall / 60
    print(f"poller benchmark: {wall:.0f} s at the default cadences (after {args.warmup:.0f} s)")
    print("\ngateway requests per minute, per endpoint:")
    for path, count in sorted(counts.items(), key=lambda item: -item[1]):
        print(f"  {path:<44} {count / minutes:8.2f}")
    print(f"  {'total':<44} {sum(counts.values()) / minutes:8.2f}")
    latency = (status or {}).get("publish_latency_ms", {})
    print(
        f"\npublish latency, reading to broker confirm: p50 {latency.get('p50')} ms, "
        f"p99 {latency.get('p99')} ms ({latency.get('samples')} messages)"
    )
    cpu_per_hour = cpu_used / wall * 3600
    print(
        f"CPU: {cpu_per_hour:.1f} s per hour = {cpu_used / wall * 100:.2f} % of one core "
        "(target < 2 %)"
    )
    print(f"peak RSS: {peak_rss:.1f} MB (target < 60 MB)")
    found = _JOURNAL_LINE.search(log or "")
    if found:
        written, seconds, syncs, left = (int(g) for g in found.groups())
        per_day = 86400 / max(seconds, 1)
        print(
            f"outbox journal: {written * per_day / 1e6:.1f} MB written per day "
            f"({written} bytes in {seconds} s), {syncs * per_day:.0f} fsyncs per day, "
            f"{left} messages left at shutdown"
        )
    else:
        print("outbox journal: no figures (journal off, or the poller did not stop cleanly)")
    if block_bytes is not None:
        print(
            f"block-layer writes by the poller (/proc/<pid>/io write_bytes): "
            f"{block_bytes / lifetime * 86400 / 1e6:.1f} MB per day"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
