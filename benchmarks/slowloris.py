"""How the proxy answers ordinary requests while connections that never finish their headers
pile up, under a 1024 open-files limit.

Starts ``pwbus proxy`` as a child process limited to ``ulimit -n 1024`` (header deadline
3 s), then keeps N (1,100) connections open that send part of a request's headers and stop,
reopening each one the proxy closes, for D (20) seconds. Meanwhile one ordinary client asks
for ``/stats`` on a fresh connection every 50 ms. Prints the ordinary requests' latency
(median, 99th percentile, worst), how many failed, and how many log lines the proxy wrote.
Target (issue 12): ordinary requests answered within 100 ms, a log that stays small.

    python benchmarks/slowloris.py [--connections 1100] [--seconds 20]

The broker comes from PWBUS_TEST_AMQP_URL (default guest on 127.0.0.1); everything listens on
127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import time

import requests

PARTIAL = b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_proxy(port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PW", "AMQP"))}
    env.update(
        AMQP_URL=os.environ.get("PWBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
        AMQP_EXCHANGE=f"pwbus-bench-{os.getpid()}",
        PWBUS_PROXY_PORT=str(port),
        PWBUS_PROXY_BIND="127.0.0.1",
        PWBUS_PROXY_HEADER_TIMEOUT="3",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "powerwall_bus", "proxy"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)),
    )


def _connect(port: int, selector: selectors.BaseSelector) -> None:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        sock.sendall(PARTIAL)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    except OSError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.connections + 512), hard))

    port = _free_port()
    proxy = _start_proxy(port)
    session = requests.Session()
    session.trust_env = False
    url = f"http://127.0.0.1:{port}/stats"
    for _ in range(200):
        try:
            if session.get(url, timeout=1).ok:
                break
        except requests.RequestException:
            time.sleep(0.1)
    session.close()

    selector = selectors.DefaultSelector()
    for _ in range(args.connections):
        _connect(port, selector)
    latencies: list[float] = []
    failures = reopened = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        # Reopen every connection the proxy closed, so the pile never shrinks.
        for key, _ in selector.select(timeout=0)[:100]:  # a bounded share of each turn
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                sock.close()
                _connect(port, selector)
                reopened += 1
        started = time.perf_counter()
        try:
            with requests.get(url, timeout=5) as answer:
                ok = answer.status_code == 200
        except requests.RequestException:
            ok = False
        if ok:
            latencies.append(time.perf_counter() - started)
        else:
            failures += 1
        time.sleep(0.05)

    proxy.send_signal(signal.SIGTERM)
    _, log = proxy.communicate(timeout=20)
    latencies.sort()
    held = len(selector.get_map())
    print(f"stalled connections held: {held} (reopened {reopened} the proxy closed)")
    if latencies:
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(
            f"ordinary requests: {len(latencies)} answered, {failures} failed; latency median "
            f"{statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, worst "
            f"{latencies[-1] * 1000:.1f} ms (target: within 100 ms)"
        )
    else:
        print(f"ordinary requests: none answered, {failures} failed")
    lines = log.splitlines()
    print(f"proxy log: {len(lines)} lines, {len(log)} bytes; exit status {proxy.returncode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
