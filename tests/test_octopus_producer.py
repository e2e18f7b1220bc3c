"""``pwbus octopus`` end to end: the fake Octopus, the REAL broker, the plan on a queue.

In-process (the producer's threads) for the plan's content, a change published at once,
the periodic republish, a refused key and rate limits; and once as the real ``pwbus
octopus`` process (environment, SIGTERM, exit 0), whose stderr is scanned for secrets.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from powerwall_bus.producers.octopus.command import OctopusConfig
from powerwall_bus.producers.octopus.main import OctopusProducer
from powerwall_bus.producers.octopus.publisher import APP_ID
from powerwall_bus.shared.contract import OCTOPUS_PLAN, routing_key
from powerwall_bus.shared.octopus.message import PlanMessage, parse_plan_message
from powerwall_bus.shared.schemas import validate_message
from powerwall_bus.shared.settings import AmqpSettings, OctopusSettings
from powerwall_bus.simulator.octopus import FakeOctopus, FakeOctopusRunner, default_devices
from tests.support.collector import Collector, Received
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until
from tests.test_octopus_client import Clock

if TYPE_CHECKING:
    from tests.conftest import TestBus

SMART = {
    "start": "2030-01-14T13:00:00+00:00",
    "end": "2030-01-14T14:00:00+00:00",
    "type": "SMART",
    "energyAddedKwh": "7.1",
}
LATER = {
    "start": "2030-01-14T23:30:00+00:00",
    "end": "2030-01-15T02:00:00+00:00",
    "type": "SMART",
    "energyAddedKwh": "17.9",
}


@pytest.fixture
def fake() -> Iterator[FakeOctopusRunner]:
    octopus = FakeOctopus(flex_per_minute=10_000)  # the tests poll 5 times a second
    octopus.set_plan([dict(SMART)])
    with FakeOctopusRunner(octopus) as runner:
        yield runner


def _config(
    runner: FakeOctopusRunner, bus: TestBus, state: Path, **overrides: object
) -> OctopusConfig:
    options: dict[str, object] = {
        "api_key": runner.fake.api_key,
        "account_number": runner.fake.account,
        "url": runner.url,
        "poll_interval": 0.2,
        "publish_every": 30.0,
        "timeout": 5.0,
        "refused_retry": 60.0,
    }
    options.update(overrides)
    return OctopusConfig(OctopusSettings(**options), bus.settings, state)  # type: ignore[arg-type]


def _plans(collector: Collector) -> list[PlanMessage]:
    return [parse_plan_message(m.body) for m in collector.messages()]


@pytest.fixture
def collector(bus: TestBus, fake: FakeOctopusRunner) -> Iterator[Collector]:
    key = routing_key(OCTOPUS_PLAN, fake.fake.account)
    consumer = Collector(bus.settings.url, bus.settings.exchange, [key])
    yield consumer
    consumer.close()


def _polled(producer: OctopusProducer, more: int) -> bool:
    """Wait until the producer asked Octopus ``more`` more times."""
    target = producer.polls + more
    return wait_until(lambda: producer.polls >= target, 10)


def _run(config: OctopusConfig) -> OctopusProducer:
    return OctopusProducer(config).start()


def test_the_plan_arrives_typed_valid_and_persistent(
    bus: TestBus, fake: FakeOctopusRunner, collector: Collector, tmp_path: Path
) -> None:
    producer = _run(_config(fake, bus, tmp_path))
    try:
        assert collector.wait_for(lambda got: len(got) >= 1, 10)
        assert wait_until(lambda: producer.polls >= 4, 10)
    finally:
        producer.stop()
    first: Received = collector.messages()[0]
    assert first.routing_key == f"octopus.{fake.fake.account}.plan"
    assert validate_message(first.properties.type or "", first.body) == []
    assert validate_message(first.routing_key, first.body) == []
    props = first.properties
    assert (props.type, props.app_id, props.delivery_mode) == (OCTOPUS_PLAN, APP_ID, 2)
    assert props.content_type == "application/json" and props.user_id == "guest"
    message = parse_plan_message(first.body)
    assert (message.account, message.state, message.source) == (
        fake.fake.account,
        "ok",
        "flex",
    )
    assert message.plan is not None
    assert message.plan.device_id == default_devices()[0]["id"]
    assert [d.to_payload() for d in message.plan.dispatches] == [
        {
            "start": "2030-01-14T13:00:00Z",
            "end": "2030-01-14T14:00:00Z",
            "type": "SMART",
            "energy_kwh": 7.1,
        }
    ]
    assert message.device_state == "SMART_CONTROL_CAPABLE"
    assert message.retry_at is None and message.note is None
    # Unchanged plans publish nothing more within publish_every (30 s): one message only.
    assert producer.polls >= 2 and len(collector.messages()) == 1


def test_a_change_is_published_at_once_and_the_plan_republished_periodically(
    bus: TestBus, fake: FakeOctopusRunner, collector: Collector, tmp_path: Path
) -> None:
    producer = _run(_config(fake, bus, tmp_path, publish_every=1.0))
    try:
        assert collector.wait_for(lambda got: len(got) >= 1, 10)
        response = requests.post(
            fake.control + "plan", json={"dispatches": [SMART, LATER]}, timeout=5
        )
        assert response.json() == {"dispatches": 2}
        assert collector.wait_for(
            lambda got: any(
                len(m.plan.dispatches) == 2 for m in _plans(collector) if m.plan is not None
            ),
            10,
        )
        assert collector.wait_for(lambda got: len(got) >= 4, 10)  # periodic, unchanged
    finally:
        producer.stop()
    plans = _plans(collector)
    assert [p.seq for p in plans] == sorted(p.seq or 0 for p in plans)  # one run, in order
    assert len({p.run for p in plans}) == 1
    changed = next(i for i, p in enumerate(plans) if p.plan and len(p.plan.dispatches) == 2)
    later = plans[changed + 1 :]
    assert later and all(p.plan is not None and len(p.plan.dispatches) == 2 for p in later)
    assert all(p.state == "ok" for p in plans)
    # fetched_at moves on with every poll: consumers can tell how fresh the plan is.
    last, first_changed = later[-1].plan, plans[changed].plan
    assert last is not None and first_changed is not None
    assert last.fetched_at > first_changed.fetched_at


def test_a_refused_key_is_one_error_line_and_a_clear_state(
    bus: TestBus,
    fake: FakeOctopusRunner,
    collector: Collector,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = "sk_live_NOTTHEKEY0000000000"
    with caplog.at_level(logging.DEBUG):
        producer = _run(_config(fake, bus, tmp_path, api_key=key, refused_retry=60.0))
        try:
            assert collector.wait_for(lambda got: len(got) >= 1, 10)
            polls = producer.polls
        finally:
            producer.stop()
    message = parse_plan_message(collector.messages()[0].body)
    assert (message.state, message.plan, message.source) == ("refused", None, None)
    assert message.retry_at is not None
    assert (message.retry_at - message.since).total_seconds() == pytest.approx(60, abs=1)
    assert polls == 1  # retried slowly, not hammered
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "refused the API key" in errors[0].getMessage()
    assert key not in caplog.text and key.encode() not in collector.messages()[0].body


def test_rate_limits_show_in_the_state_and_end(
    bus: TestBus, fake: FakeOctopusRunner, collector: Collector, tmp_path: Path
) -> None:
    producer = _run(_config(fake, bus, tmp_path))
    try:
        assert collector.wait_for(lambda got: len(got) >= 1, 10)
        requests.post(fake.control + "faults", json={"set": {"waf403": 2}}, timeout=5)
        assert collector.wait_for(
            lambda got: any(p.state == "rate_limited" for p in _plans(collector)), 10
        )
        assert collector.wait_for(lambda got: _plans(collector)[-1].state == "ok", 10)
    finally:
        producer.stop()
    plans = _plans(collector)
    limited = next(p for p in plans if p.state == "rate_limited")
    assert limited.plan is not None and len(limited.plan.dispatches) == 1  # the last plan kept
    assert limited.retry_at is not None and limited.retry_at > limited.since
    assert [p.state for p in plans] == ["ok", "rate_limited", "ok"]  # each change once


def test_pwbus_octopus_process_publishes_stops_on_sigterm_and_logs_no_secret(
    bus: TestBus, fake: FakeOctopusRunner, collector: Collector, tmp_path: Path
) -> None:
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("PWBUS_", "AMQP"))
    }
    env.update(
        {
            "PWBUS_OCTOPUS_API_KEY": fake.fake.api_key,
            "PWBUS_OCTOPUS_ACCOUNT": fake.fake.account,
            "PWBUS_OCTOPUS_URL": fake.url,
            "PWBUS_STATE_DIR": str(tmp_path / "state"),
            "AMQP_URL": bus.settings.url,
            "PWBUS_LOG_LEVEL": "DEBUG",
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "powerwall_bus", "octopus", "--exchange", bus.settings.exchange],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert collector.wait_for(lambda got: len(got) >= 1, 20)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    token_file = tmp_path / "state" / f"octopus-tokens-{fake.fake.account}.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    saved = json.loads(token_file.read_text())
    secrets = [fake.fake.api_key, saved["access"], saved["refresh"]]
    body = collector.messages()[0].body.decode()
    assert not any(secret in stderr or secret in body for secret in secrets)
    assert "Octopus reachable" in stderr and "received SIGTERM" in stderr
    assert wait_until(lambda: parse_plan_message(collector.messages()[0].body).state == "ok", 1)


def test_the_producer_reconnects_to_the_broker_and_sends_the_newest_plan(
    bus: TestBus, fake: FakeOctopusRunner, collector: Collector, tmp_path: Path
) -> None:
    broker = AmqpSettings(url=bus.settings.url)
    relay = TcpProxy(broker.host, broker.port)
    amqp = AmqpSettings(
        url=bus.settings.url, host="127.0.0.1", port=relay.port, exchange=bus.settings.exchange
    )
    config = _config(fake, bus, tmp_path)
    producer = OctopusProducer(OctopusConfig(config.octopus, amqp, tmp_path)).start()
    try:
        assert collector.wait_for(lambda got: len(got) >= 1, 10)
        relay.cut()
        assert wait_until(lambda: not producer.publisher._link.up, 10)
        for plan in ([SMART, LATER], [LATER]):  # two changes while away: the newer one wins
            requests.post(fake.control + "plan", json={"dispatches": plan}, timeout=5)
            assert _polled(producer, 2)
        relay.restore()
        assert collector.wait_for(lambda got: len(got) >= 2, 20)
    finally:
        producer.stop()
        relay.close()
    plans = _plans(collector)
    assert plans[-1].plan is not None
    assert [d.to_payload()["start"] for d in plans[-1].plan.dispatches] == ["2030-01-14T23:30:00Z"]
    assert len(plans) == 2  # the plan in between was replaced while the broker was away
    assert producer.publisher._link.outages == 1


def test_an_hour_at_the_default_settings_stays_well_inside_the_rate_limits(
    tmp_path: Path,
) -> None:
    """The producer's own schedule, with simulated time: requests in an hour, and never
    more flexPlannedDispatches in a minute than Octopus allows (the fake enforces 5)."""
    clock = Clock()
    fake = FakeOctopus(clock=clock)
    fake.set_plan([dict(SMART), dict(LATER)])
    with FakeOctopusRunner(fake) as runner:
        settings = OctopusSettings(
            api_key=fake.api_key, account_number=fake.account, url=runner.url
        )
        producer = OctopusProducer(OctopusConfig(settings, AmqpSettings(), tmp_path), clock=clock)
        try:
            end = clock.now + 3600
            while clock.now < end:
                next_poll, _ = producer.poll_once()
                clock.now = max(next_poll, clock.now + 1)
        finally:
            producer.client.close()
    assert producer.tracker.state == "ok"
    assert "KT-CT-1199" not in fake.counts.errors and not fake.counts.errors
    assert producer.polls == 30  # every 120 s
    assert fake.counts.http <= 34  # 30 plans + the device list + a login + a refresh
    assert fake.counts.logins == {"api_key": 1, "refresh": 1}  # renewed before it expired
