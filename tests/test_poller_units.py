"""The poller's pure parts: the schedule, the outbox, the health report, outbox sizing."""

from __future__ import annotations

import itertools
import zlib

from powerwall_bus.producers.poller.health import Health
from powerwall_bus.producers.poller.main import outbox_capacity
from powerwall_bus.producers.poller.outbox import Outbox
from powerwall_bus.producers.poller.reader import intervals_for, messages_per_hour
from powerwall_bus.producers.poller.schedule import Schedule
from powerwall_bus.shared.contract import routing_key
from powerwall_bus.shared.messages import OutgoingMessage
from powerwall_bus.shared.settings import PollerSettings


def _run(
    schedule: Schedule, until: float, duration: dict[str, float] | None = None, start: float = 0.0
) -> list[tuple[str, float]]:
    """Drive a schedule with a simulated clock: each read takes ``duration[endpoint]``."""
    now = start
    log: list[tuple[str, float]] = []
    while True:
        endpoint, due = schedule.next()  # type: ignore[misc]
        now = max(now, due)
        if now >= until:
            return log
        log.append((endpoint, now))
        now += (duration or {}).get(endpoint, 0.01)
        schedule.done(endpoint, now)


def test_schedule_keeps_to_its_grid_without_drift() -> None:
    schedule = Schedule({"/soe": 2.0, "/meters": 2.0, "/slow": 300.0}, start=0.0)
    log = _run(schedule, until=3600.0)
    meters = [t for e, t in log if e == "/meters"]
    assert len(meters) == 1800
    assert meters[-1] - 3598.0 < 0.05  # an hour later still on the 2 s grid
    assert [e for e, _ in log[:3]] == ["/soe", "/meters", "/slow"]  # order breaks ties
    assert [round(t) for e, t in log if e == "/slow"] == [300 * k for k in range(12)]


def test_slow_gateway_delays_but_never_piles_up() -> None:
    schedule = Schedule({"/meters": 2.0}, start=0.0)
    log = _run(schedule, until=60.0, duration={"/meters": 5.0})  # each read takes 5 s
    times = [t for _, t in log]
    assert all(b - a >= 5.0 for a, b in itertools.pairwise(times))
    assert all(t % 2.0 == 0 for t in times)  # still on the grid: skipped, not drifted
    assert len(times) == 10


def test_postpone_all_and_remove_restore() -> None:
    schedule = Schedule({"/a": 2.0, "/b": 30.0}, start=0.0)
    schedule.postpone_all(100.5)
    assert schedule.next() == ("/a", 102.0)
    schedule.remove("/a")
    assert schedule.next() == ("/b", 120.0)
    assert schedule.endpoints == ["/b"]
    assert schedule.restore_all(131.0) == ["/a"]
    assert schedule.next() == ("/b", 120.0)
    schedule.done("/b", 121.0)
    assert schedule.next() == ("/a", 132.0)


def _message(n: int, kind: str = "meters", gateway: str = "DIN-1") -> OutgoingMessage:
    return OutgoingMessage(
        routing_key(kind, gateway),
        b'{"n":%d,"pad":"%s"}' % (n, b"x" * 500),
        f"id-{n}",
        n,
        kind,
        gateway=gateway,
        gateway_name="home",
    )


def test_outbox_keeps_order_drops_oldest_and_counts() -> None:
    outbox = Outbox(capacity=3)
    for n in range(5):
        outbox.put(_message(n), float(n))
    assert len(outbox) == 3 and outbox.dropped == 2
    entries = outbox.peek(10)
    assert [e.message.message_id for e in entries] == ["id-2", "id-3", "id-4"]
    assert entries[0].expand() == _message(2)  # headers and all, body as published
    assert len(entries[0].message.body) < len(_message(2).body) / 4  # stored compressed
    assert zlib.decompress(entries[0].message.body) == _message(2).body
    outbox.remove(entries[0])
    assert [e.message.message_id for e in outbox.peek(10)] == ["id-3", "id-4"]


def test_outbox_latest_per_kind() -> None:
    outbox = Outbox(capacity=10)
    outbox.put(_message(1, gateway="unknown"), 1.0)  # before the poller knew its DIN
    outbox.put(_message(2, "soe"), 2.0)
    outbox.put(_message(3), 3.0)
    latest = {m.type: m.message_id for m in outbox.latest()}
    assert latest == {"meters": "id-3", "soe": "id-2"}
    assert {m.headers["x-pwbus-gateway-name"] for m in outbox.latest()} == {"home"}


def test_outbox_holds_an_hour_at_default_cadences() -> None:
    settings = PollerSettings()
    per_hour = messages_per_hour(settings)
    # soe, meters, MeterStream at 2 s, grid status at 5 s, four 30 s kinds, the slow ones.
    assert per_hour > 3 * 1800 + 720
    assert outbox_capacity(settings) >= per_hour
    assert outbox_capacity(PollerSettings(buffer_seconds=7200)) >= 2 * per_hour - 1


def test_intervals_follow_settings_and_keep_status_first() -> None:
    intervals = intervals_for(PollerSettings(meters_interval=1.0, slow_interval=600.0))
    assert next(iter(intervals)) == "/api/status"
    assert intervals["/api/meters/aggregates"] == 1.0
    assert intervals["/api/site_info"] == 600.0
    assert "/api/customer/registration" not in intervals


def test_health_reports_changes_once_and_latency_percentiles() -> None:
    health = Health({"/a": 2.0, "/b": 2.0}, started=0.0)
    assert health.changed() is True  # the initial report
    assert health.changed() is False
    health.success("/a", 1.0)
    assert health.changed() is True  # the gateway went from "starting" to "ok"
    health.success("/b", 1.1)
    assert health.changed() is False  # an endpoint's first success is not news
    health.failure("/a", 2.0, "GatewayTimeout", "timeout", "failing", gateway_state="unreachable")
    assert health.changed() is True
    for ms in range(1, 101):
        health.published(ms / 1000)
    payload = health.payload(10.0, logins=1, buffer={"queued": 0, "capacity": 5, "dropped": 0})
    assert payload["publish_latency_ms"]["p50"] == 50.5
    assert payload["publish_latency_ms"]["p99"] == 99.0
    assert payload["endpoints"]["/a"]["errors"] == {"GatewayTimeout": 1}
    assert payload["gateway_state"] == "unreachable"
