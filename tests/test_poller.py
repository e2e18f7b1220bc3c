"""The poller end to end: simulator over HTTPS, real RabbitMQ, plain pika consumers."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from powerwall_bus.producers.poller.main import Poller, PollerConfig
from powerwall_bus.producers.poller.reader import intervals_for
from powerwall_bus.shared import contract
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.contract import ANY_GATEWAY, kind_of, routing_key
from powerwall_bus.shared.messages import (
    GATEWAY_HEADER,
    GATEWAY_NAME_HEADER,
    RUN_HEADER,
    SEQ_HEADER,
    parse_envelope,
    parse_meter_stream,
)
from powerwall_bus.shared.schemas import validate_message
from powerwall_bus.shared.settings import AmqpSettings, GatewaySettings, PollerSettings
from powerwall_bus.shared.topology import METER_STREAM, POLLER_STATUS, RESYNC
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.faults import FaultSet
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.support.collector import Collector
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

PASSWORD = "poller-Test-1"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def own_sim() -> Iterator[SimulatorRunner]:
    """A simulator of its own, so counts and faults belong to this test alone."""
    server = GatewayServer(SimulatedGateway(SiteOptions(seed=11, powerwalls=2)), password=PASSWORD)
    with SimulatorRunner(server, ssl_context=server_context()) as runner:
        yield runner


def _config(
    sim: SimulatorRunner,
    amqp: AmqpSettings,
    state: Path,
    *,
    cooldown: float = 300.0,
    name: str = "",
    **poller: object,
) -> PollerConfig:
    return PollerConfig(
        gateway=GatewaySettings(
            name=name,
            host=sim.address,
            password=PASSWORD,
            state_dir=state,
            rate_limit_cooldown=cooldown,
        ),
        amqp=amqp,
        poller=PollerSettings(**poller),  # type: ignore[arg-type]
    )


def _counts(sim: SimulatorRunner) -> dict[str, int]:
    return dict(sim.server.counters.by_path)


def test_meter_stream_is_tesla_api_compatible(own_sim, bus, tmp_path) -> None:
    collector = Collector(bus.settings.url, bus.settings.exchange, [METER_STREAM])
    poller = Poller(_config(own_sim, bus.settings, tmp_path, meters_interval=1.0)).start()
    try:
        assert collector.wait_for(lambda m: len(m) >= 6, timeout=15)
    finally:
        poller.stop()
        collector.close()
    received = collector.messages()
    assert all(validate_message(METER_STREAM, m.body) == [] for m in received)
    bodies = [json.loads(m.body) for m in received]
    assert all(set(body) == {"timestamp", "state_of_energy", "readings"} for body in bodies)
    assert all(isinstance(b["timestamp"], float) for b in bodies)
    assert all(0 <= b["state_of_energy"] <= 100 for b in bodies)
    assert all({"site", "battery", "load", "solar"} <= set(b["readings"]) for b in bodies)
    parsed = [parse_meter_stream(m.body) for m in received]
    gaps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(parsed)]
    assert all(0.8 <= gap <= 1.3 for gap in gaps), gaps  # the configured 1 s, without drift
    props = received[0].properties
    assert props.content_type == "application/json" and props.delivery_mode == 2
    assert props.app_id == "pwbus-poller" and props.type == METER_STREAM
    assert props.message_id and props.timestamp
    # The gateway and the order are in the headers only: the body is Tesla-API's, byte for byte.
    assert props.headers == {
        "schema_version": 1,
        GATEWAY_HEADER: own_sim.server.gateway.din,
        RUN_HEADER: props.headers[RUN_HEADER],
        SEQ_HEADER: props.headers[SEQ_HEADER],
    }
    assert props.user_id == bus.settings.username  # RabbitMQ checked it
    seqs = [m.properties.headers[SEQ_HEADER] for m in received]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_every_kind_is_published_with_its_properties(own_sim, bus, tmp_path) -> None:
    gateway_din = own_sim.server.gateway.din
    collector = Collector(bus.settings.url, bus.settings.exchange, ["powerwall.#"])
    poller = Poller(_config(own_sim, bus.settings, tmp_path, name="home")).start()
    try:
        wanted = {
            routing_key(kind, gateway_din)
            for kind in (
                "meters",
                "soe",
                "grid_status",
                "vitals",
                "api.status",
                "api.system_status",
                "api.site_info.site_name",
                contract.POLLER_STATUS,
            )
        }
        assert collector.wait_for(lambda m: wanted <= {x.routing_key for x in m}, timeout=15)
    finally:
        poller.stop()
        collector.close()
    for message in collector.messages():
        assert validate_message(message.routing_key, message.body) == [], message.routing_key
        envelope = parse_envelope(message.body)
        assert envelope.version == 1
        assert envelope.gateway == gateway_din
        assert message.routing_key == f"powerwall.{gateway_din}.{envelope.kind}"
        assert message.properties.type == envelope.kind
        assert message.properties.headers == {
            "schema_version": 1,
            GATEWAY_HEADER: gateway_din,
            GATEWAY_NAME_HEADER: "home",
            RUN_HEADER: envelope.run,
            SEQ_HEADER: envelope.seq,
        }
        assert message.properties.user_id == bus.settings.username
        assert message.properties.message_id.startswith(gateway_din + "|")
        assert message.properties.delivery_mode == 2
    vitals = parse_envelope(collector.messages(routing_key("vitals", gateway_din))[0].body)
    assert isinstance(vitals.payload, bytes) and any(
        k.startswith("TEPOD--") for k in vitals.decoded
    )


def test_vitals_never_requested_on_new_firmware(own_sim, bus, tmp_path) -> None:
    own_sim.server.gateway.set_firmware("24.36.2 7a9a5bd6")
    poller = Poller(_config(own_sim, bus.settings, tmp_path)).start()
    try:
        time.sleep(3)
    finally:
        poller.stop()
    counts = _counts(own_sim)
    assert counts.get("/api/meters/aggregates", 0) >= 1
    assert "/api/devices/vitals" not in counts
    assert counts["/api/login/Basic"] == 1


@pytest.mark.slow
def test_broker_outage_loses_nothing(own_sim, bus, tmp_path) -> None:
    broker = AmqpSettings(url=bus.settings.url)
    proxy = TcpProxy(broker.host, broker.port)
    via_proxy = AmqpSettings(
        url=bus.settings.url, host="127.0.0.1", port=proxy.port, exchange=bus.settings.exchange
    )
    meters = routing_key("meters", ANY_GATEWAY)
    collector = Collector(bus.settings.url, bus.settings.exchange, [meters])
    poller = Poller(_config(own_sim, via_proxy, tmp_path, meters_interval=1.0)).start()
    try:
        assert collector.wait_for(lambda m: len(m) >= 2, timeout=15)
        proxy.cut()
        time.sleep(30)
        during = len(collector.messages())
        proxy.restore()
        made = lambda: _counts(own_sim)["/api/meters/aggregates"]  # noqa: E731
        unique = lambda m: len({x.properties.message_id for x in m})  # noqa: E731
        assert collector.wait_for(lambda m: unique(m) >= made() - 1, timeout=45)
    finally:
        poller.stop()
        proxy.close()
    time.sleep(0.5)
    collector.close()
    # At least once: a message whose confirm was lost with the connection is sent again,
    # with the same message_id and body, for consumers to recognise. Nothing else repeats.
    delivered = collector.messages()
    first: dict[str, bytes] = {}
    for message in delivered:
        assert first.setdefault(message.properties.message_id, message.body) == message.body
    assert len(delivered) - len(first) <= 5, "more re-sends than a lost confirm explains"
    received = [parse_envelope(body) for body in first.values()]
    times = [e.epoch for e in received]
    assert times == sorted(times), "out of order"
    assert len(received) == _counts(own_sim)["/api/meters/aggregates"]
    assert len(received) - during >= 25  # the outage's readings arrived afterwards
    assert max(b - a for a, b in itertools.pairwise(times)) < 2.1


def test_broker_down_at_start_then_up(own_sim, bus, tmp_path) -> None:
    broker = AmqpSettings(url=bus.settings.url)
    proxy = TcpProxy(broker.host, broker.port)
    proxy.cut()
    via_proxy = AmqpSettings(
        url=bus.settings.url, host="127.0.0.1", port=proxy.port, exchange=bus.settings.exchange
    )
    soe = routing_key("soe", ANY_GATEWAY)
    collector = Collector(bus.settings.url, bus.settings.exchange, [soe])
    poller = Poller(_config(own_sim, via_proxy, tmp_path)).start()
    try:
        time.sleep(4)
        read = _counts(own_sim)["/api/system_status/soe"]
        assert read >= 2 and not collector.messages()  # reading goes on, nothing lost yet
        proxy.restore()
        assert collector.wait_for(lambda m: len(m) >= read, timeout=20)
    finally:
        poller.stop()
        proxy.close()
        collector.close()


def _window_counts(sim: SimulatorRunner) -> dict[str, int]:
    counts = _counts(sim)
    counts.pop("/api/login/Basic", None)
    return counts


@pytest.mark.slow
def test_gateway_load_does_not_depend_on_consumers(bus, tmp_path) -> None:
    """Two pollers side by side for half a minute: one with no consumer, one with 50."""
    window = 29.5
    settings = PollerSettings()
    sims = [
        SimulatorRunner(
            GatewayServer(SimulatedGateway(SiteOptions(seed=n)), password=PASSWORD),
            ssl_context=server_context(),
        ).start()
        for n in (21, 22)
    ]
    quiet = AmqpSettings(url=bus.settings.url, exchange=bus.settings.exchange + ".quiet")
    busy = bus.settings
    consumers = Collector(busy.url, busy.exchange, ["#"], queues=50)
    pollers = [
        Poller(_config(sims[0], quiet, tmp_path / "quiet")),
        Poller(_config(sims[1], busy, tmp_path / "busy")),
    ]
    try:
        for sim, poller in zip(sims, pollers, strict=True):
            sim.server.reset_counts()
            poller.start()
        time.sleep(window)
        for poller in pollers:
            poller.stop()
    finally:
        consumers.close()
        for sim in sims:
            sim.stop()
        connection = bus.connect()
        connection.channel().exchange_delete(quiet.exchange)
        connection.close()
    assert len(consumers.messages()) > 50 * 50  # the 50 consumers really were fed
    expected = {
        path: math.ceil(window / interval) for path, interval in intervals_for(settings).items()
    }
    quiet_counts, busy_counts = (_window_counts(sim) for sim in sims)
    for counts in (quiet_counts, busy_counts):
        for path, want in expected.items():
            assert abs(counts.get(path, 0) - want) <= 1, (path, counts.get(path), want)
        assert set(counts) <= set(expected)
    for path in expected:
        assert abs(quiet_counts.get(path, 0) - busy_counts.get(path, 0)) <= 1, path


def test_rate_limit_cooldown_sends_nothing_and_says_so(own_sim, bus, tmp_path) -> None:
    statuses = Collector(bus.settings.url, bus.settings.exchange, [POLLER_STATUS])
    own_sim.server.set_faults(FaultSet.parse(["rate-limit-requests=6", "rate-limit-seconds=600"]))
    poller = Poller(_config(own_sim, bus.settings, tmp_path, cooldown=6.0)).start()

    def cooling(messages) -> bool:
        return any(parse_envelope(m.body).payload["gateway_state"] == "cooldown" for m in messages)

    try:
        assert statuses.wait_for(cooling, timeout=15)
        at_cooldown = sum(_counts(own_sim).values())
        status = next(
            parse_envelope(m.body).payload
            for m in statuses.messages()
            if parse_envelope(m.body).payload["gateway_state"] == "cooldown"
        )
        assert status["cooldown_until"] is not None
        assert any(e["state"] == "cooldown" for e in status["endpoints"].values())
        own_sim.server.set_faults(FaultSet())  # the gateway would answer now; we must wait
        time.sleep(4.5)
        assert sum(_counts(own_sim).values()) == at_cooldown
        resumed = wait_until(lambda: sum(_counts(own_sim).values()) > at_cooldown, 10)
        assert resumed  # reads resume after the cool-down
    finally:
        poller.stop()
        statuses.close()


def test_late_joiner_gets_latest_of_every_kind_within_a_second(own_sim, bus, tmp_path) -> None:
    observer = Collector(bus.settings.url, bus.settings.exchange, ["#"])
    poller = Poller(_config(own_sim, bus.settings, tmp_path)).start()
    try:
        assert observer.wait_for(
            lambda m: "api.auth.toggle.supported" in {kind_of(x.routing_key) for x in m}, 15
        )
        time.sleep(0.5)
        published = {_kind(m) for m in observer.messages()}
        slow_before = _counts(own_sim)["/api/site_info"]
        late = Collector(bus.settings.url, bus.settings.exchange, [])
        connection = pika.BlockingConnection(pika.URLParameters(bus.settings.url))
        asked = time.monotonic()
        connection.channel().basic_publish(
            exchange=bus.settings.exchange,
            routing_key=RESYNC,
            body=b"{}",
            properties=pika.BasicProperties(reply_to=late.queue, correlation_id="late-1"),
        )
        connection.close()
        assert late.wait_for(lambda m: published <= {_kind(x) for x in m}, timeout=1.0), (
            published - {_kind(x) for x in late.messages()}
        )
        answered = max(m.at for m in late.messages()) - asked
        assert answered < 1.0
        assert all(m.properties.correlation_id == "late-1" for m in late.messages())
        assert _counts(own_sim)["/api/site_info"] == slow_before  # not asked again
        late.close()
    finally:
        poller.stop()
        observer.close()


def _kind(received) -> str:
    """The kind of a message: a resync answer arrives via the default exchange, under the
    queue's name, so only its ``type`` tells (and its headers the gateway)."""
    assert received.properties.headers[GATEWAY_HEADER] != ""
    return received.properties.type


def test_pwbus_poller_process_stops_cleanly_on_sigterm(own_sim, bus, tmp_path) -> None:
    statuses = Collector(bus.settings.url, bus.settings.exchange, [POLLER_STATUS, METER_STREAM])
    env = {
        **os.environ,
        "PW_HOST": own_sim.address,
        "PW_PASSWORD": PASSWORD,
        "AMQP_URL": bus.settings.url,
        "AMQP_EXCHANGE": bus.settings.exchange,
        "PWBUS_STATE_DIR": str(tmp_path),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "powerwall_bus", "poller"],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert statuses.wait_for(lambda m: any(x.routing_key == METER_STREAM for x in m), 20)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert process.stderr is not None
        log = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert statuses.wait_for(
        lambda m: any(
            kind_of(x.routing_key) == contract.POLLER_STATUS
            and parse_envelope(x.body).payload["gateway_state"] == "stopped"
            for x in m
        ),
        5,
    )
    statuses.close()
    assert "poller stopped" in log
    assert PASSWORD not in log


def test_pwbus_poller_without_gateway_is_one_line_error(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PW_", "PWBUS_GATEWAY"))}
    result = subprocess.run(
        [sys.executable, "-m", "powerwall_bus", "poller"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "pwbus poller: configuration: gateway.host: is required (set PW_HOST or gateway.host)"
    )
