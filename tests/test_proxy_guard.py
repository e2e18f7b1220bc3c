"""The proxy against clients that misbehave: slow headers, too many connections, bad requests.

The unit part checks the pure header watch and the throttle; the rest runs the real proxy
(in-process, and as a process under ``ulimit -n 1024``) against raw sockets on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import requests

from powerwall_bus.consumers.proxy.guard import HeaderWatch
from powerwall_bus.consumers.proxy.main import ProxyConfig
from powerwall_bus.shared.settings import ProxySettings
from tests.support.pipeline import free_port
from tests.support.running_proxy import RunningProxy
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from tests.conftest import TestBus

PARTIAL = b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


# --------------------------------------------------------------------------- pure parts


def test_header_watch_follows_requests_across_reads() -> None:
    watch = HeaderWatch()
    assert watch.waiting  # a new connection owes its headers
    assert watch.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r")
    assert not watch.feed(b"\n")  # the terminator split across two reads
    assert not watch.feed(b"")
    assert watch.feed(b"GET /next")  # the next request has begun
    assert not watch.feed(b" HTTP/1.1\r\n\r\n")
    # Two pipelined requests in one read, the second unfinished.
    assert watch.feed(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n")
    assert not watch.feed(b"\r\n")


# --------------------------------------------------------------------------- in-process proxy


def _proxy(bus: TestBus, **limits: float) -> RunningProxy:
    settings = ProxySettings(port=0, bind_address="127.0.0.1", **limits)  # type: ignore[arg-type]
    return RunningProxy(ProxyConfig(settings, bus.settings))


def _open(port: int, payload: bytes = PARTIAL) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if payload:
        sock.sendall(payload)
    return sock


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    """True when the proxy closes the connection (EOF or reset) within the time."""
    sock.settimeout(within)
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def _get(port: int, path: str = "/stats") -> requests.Response:
    session = requests.Session()
    session.trust_env = False
    return session.get(f"http://127.0.0.1:{port}{path}", timeout=10)


@pytest.mark.timeout(60)
def test_unfinished_headers_are_cut_off_but_a_steady_client_is_not(bus: TestBus) -> None:
    with _proxy(bus, header_timeout=1.0) as proxy:
        port = proxy.server.port
        assert port
        silent, partial = _open(port, b""), _open(port)
        trickle = _open(port, b"GET /stats HTTP/1.1\r\n")
        keep_alive = requests.Session()
        keep_alive.trust_env = False
        started = time.monotonic()
        while time.monotonic() - started < 2.5:  # bytes keep coming, headers never end
            with contextlib.suppress(OSError):
                trickle.send(b"X")
            # A well-behaved client on one connection, a request every 0.4 s: never cut off.
            assert keep_alive.get(f"http://127.0.0.1:{port}/stats", timeout=5).ok
            time.sleep(0.4)
        for sock in (silent, partial, trickle):
            assert _closed_by_peer(sock, 5.0)
            sock.close()
        assert proxy.server.site is not None and proxy.server.site.guard is not None
        assert proxy.server.site.guard.timed_out >= 3


@pytest.mark.timeout(60)
def test_at_the_limit_header_stragglers_make_room_and_busy_connections_do_not(
    bus: TestBus,
) -> None:
    with _proxy(bus, header_timeout=30.0, max_connections=8) as proxy:
        port = proxy.server.port
        assert port
        stragglers = [_open(port) for _ in range(8)]
        assert wait_until(lambda: len(proxy.server.site.guard.open) == 8, 5)  # type: ignore[union-attr]
        # A normal request still gets through: the longest-waiting straggler goes.
        assert _get(port).status_code == 200
        assert _closed_by_peer(stragglers[0], 5.0)
        for sock in stragglers:
            sock.close()
        # Eight clients that finished a request and keep their connections: no straggler to
        # close, so a ninth connection is told plainly that the proxy is full.
        sessions = []
        for _ in range(8):
            session = requests.Session()
            session.trust_env = False
            assert session.get(f"http://127.0.0.1:{port}/stats", timeout=5).ok
            sessions.append(session)
        ninth = _open(port, b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = ninth.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503 ") and b"too many connections" in answer
        ninth.close()
        for session in sessions:
            session.close()
        assert wait_until(lambda: _get(port).status_code == 200, 10)


# --------------------------------------------------------------------------- a real process


def _raise_own_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def _limit_child_to_1024() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


@pytest.fixture
def proxy_process(bus: TestBus) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PW", "AMQP"))}
    env.update(
        AMQP_URL=bus.settings.url,
        AMQP_EXCHANGE=bus.settings.exchange,
        PWBUS_PROXY_PORT=str(port),
        PWBUS_PROXY_BIND="127.0.0.1",
        PWBUS_PROXY_HEADER_TIMEOUT="3",
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "powerwall_bus", "proxy"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_child_to_1024,
    )
    try:
        assert wait_until(lambda: _answers(port), 20), "the proxy did not start"
        yield child, port
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)


def _answers(port: int) -> bool:
    try:
        return _get(port).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.timeout(120)
def test_1100_unfinished_connections_under_ulimit_1024_leave_the_proxy_answering(
    proxy_process: tuple[subprocess.Popen[str], int],
) -> None:
    child, port = proxy_process
    _raise_own_limit(4096)
    attack = []
    for _ in range(1100):
        try:
            attack.append(_open(port))
        except OSError:  # the kernel's backlog was full for a moment: the proxy sheds load
            time.sleep(0.01)
    assert len(attack) >= 1000
    # While they hold on, ordinary requests are answered (figures: benchmarks/slowloris.py).
    for _ in range(20):
        assert _get(port).status_code == 200
    # Bad requests are answered 400 and cost the log one short line at most.
    for _ in range(200):
        with _open(port, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n") as bad:
            assert bad.recv(64).startswith(b"HTTP/1.0 400")
    # Every straggler is closed by the header deadline (3 s), none is left to pile up.
    deadline = time.monotonic() + 20
    for sock in attack:
        assert _closed_by_peer(sock, max(0.1, deadline - time.monotonic()))
        sock.close()
    assert _get(port).status_code == 200
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=15)
    assert child.returncode == 0, stderr[-2000:]
    lines = stderr.splitlines()
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "out of system resource" not in stderr
    assert len(lines) < 25, "\n".join(lines[-30:])
    assert sum("malformed request" in line for line in lines) == 1
