"""Time the cloud road on the local fakes: signed Max Backup calls through the fake Tesla
cloud's ``device_command`` relay to the gateway simulator, and token refreshes.

Starts a gateway simulator (HTTPS) and the fake cloud (HTTP) on 127.0.0.1, pairs a fresh
RSA-4096 key, then sends N signed ``get_backup_events`` calls through
:class:`~powerwall_bus.consumers.dispatch.cloud.CloudChannel` and N refreshes of the access
token (each a rotation saved 0600), and prints the median and the 95th percentile of each.
What it measures is the project's own overhead (signing, JSON, the fake's verification and
the HTTPS hop); the real cloud adds the internet and Tesla's relay, seconds at times.

    python benchmarks/cloud_relay.py [--calls 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from powerwall_bus.consumers.dispatch.cloud import CloudChannel
from powerwall_bus.shared.tedapi import keys
from powerwall_bus.shared.tedapi.commands import (
    BackupEvents,
    Kind,
    build_request,
    parse_response,
)
from tests.support.fake_cloud import cloud_site


def _summary(label: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"{label}: median {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    key = keys.generate_key()
    with cloud_site() as site, tempfile.TemporaryDirectory() as folder:
        requests.post(
            site.gateway.url + "/_sim/pair",
            json={"public_key": keys.public_pem(key), "verified": True},
            verify=False,
            timeout=5,
        ).raise_for_status()
        cloud = site.client(Path(folder))
        channel = CloudChannel(cloud)
        din = channel.din
        relayed = []
        for _ in range(args.calls):
            started = time.perf_counter()
            body = build_request(Kind.LIST, din, key, time.time())
            assert isinstance(parse_response(channel.send(body, timeout=10)), BackupEvents)
            relayed.append(time.perf_counter() - started)
        refreshed = []
        for _ in range(args.calls):
            started = time.perf_counter()
            cloud.refresh()
            refreshed.append(time.perf_counter() - started)
        channel.close()
    print(_summary(f"signed list through the relay ({args.calls} calls)", relayed))
    print(_summary(f"token refresh, saved 0600 ({args.calls} refreshes)", refreshed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
