"""§5/§6 of the bus hardening: resync floods, bogus reply_to, the writer's queue declared by
the poller before the writer's first start, and the bounded dead-letter queue."""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pika
import pytest

from powerwall_bus.consumers.mysql.command import WriterConfig
from powerwall_bus.consumers.mysql.queues import declare_topology
from powerwall_bus.consumers.mysql.rows import STORED_KINDS
from powerwall_bus.producers.poller.main import Poller, PollerConfig
from powerwall_bus.producers.poller.publisher import ResyncGate
from powerwall_bus.shared.certs import server_context
from powerwall_bus.shared.settings import (
    AmqpSettings,
    GatewaySettings,
    MysqlSettings,
    PollerSettings,
    WriterSettings,
)
from powerwall_bus.shared.topology import (
    RESYNC,
    WRITER_KINDS,
    dead_letter_limits,
    limits_policy_hint,
)
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.support.collector import Collector
from tests.support.mysql_writer import RunningWriter, count, queue_depth, writer_settings
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from tests.conftest import TestBus

PASSWORD = "guard-Test-1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- units


def test_one_answer_per_requester_a_second_later_requests_coalesce() -> None:
    clock = FakeClock()
    gate = ResyncGate(rate=20.0, clock=clock)
    gate.request("q1", "a")
    assert gate.due() == [("q1", "a")]
    for n in range(50):  # a burst right after the answer: one more answer, a second later
        gate.request("q1", f"b{n}")
    assert gate.due() == []
    clock.now += 0.5
    assert gate.due() == []
    clock.now += 0.5
    assert gate.due() == [("q1", "b49")]  # the newest correlation id
    assert gate.due() == []
    assert gate.counts == {
        "requests": 51,
        "answered": 2,
        "coalesced": 49,
        "dropped": 0,
        "failed": 0,
    }


def test_the_global_rate_caps_answers_and_counts_the_rest() -> None:
    clock = FakeClock()
    gate = ResyncGate(rate=20.0, max_pending=500, clock=clock)
    answered = 0
    for second in range(3):
        for n in range(700):
            gate.request(f"q{second}.{n}", None)
        answered += len(gate.due())
        clock.now += 1.0
    assert answered == 60  # 20 a second, whatever the number of requesters
    assert gate.counts["requests"] == 2100
    assert gate.counts["answered"] == 60
    assert gate.counts["dropped"] == 2100 - 60


def test_writer_kinds_in_the_topology_are_the_writers_stored_kinds() -> None:
    assert WRITER_KINDS == STORED_KINDS  # the poller binds what the writer stores


def test_dead_letter_limits_and_policy_hint() -> None:
    assert dead_letter_limits(10000, 14) == {"x-max-length": 10000, "x-message-ttl": 1209600000}
    assert dead_letter_limits(0, 0) == {}
    hint = limits_policy_hint("pwbus.mysql.dead", dead_letter_limits(5, 1), "/")
    assert hint == (
        "rabbitmqctl set_policy -p / pwbus-dead-letters '^pwbus\\.mysql\\.dead$' "
        '\'{"max-length":5,"message-ttl":86400000}\' --apply-to queues'
    )


# --------------------------------------------------------------------------- real broker


@pytest.fixture
def own_sim() -> Iterator[SimulatorRunner]:
    server = GatewayServer(SimulatedGateway(SiteOptions(seed=13, powerwalls=2)), password=PASSWORD)
    with SimulatorRunner(server, ssl_context=server_context()) as runner:
        yield runner


def poller_config(
    sim: SimulatorRunner,
    amqp: AmqpSettings,
    state: Path,
    writer: WriterSettings | None = None,
    **poller: object,
) -> PollerConfig:
    values: dict[str, object] = {
        "meters_interval": 1.0,
        "soe_interval": 1.0,
        "slow_endpoints": (),
        "status_interval": 2.0,
    }
    values.update(poller)
    return PollerConfig(
        gateway=GatewaySettings(host=sim.address, password=PASSWORD, state_dir=state),
        amqp=amqp,
        poller=PollerSettings(**values),  # type: ignore[arg-type]
        writer=writer,
    )


def _live_meters(collector: Collector) -> list[float]:
    return [m.at for m in collector.messages() if m.routing_key.endswith(".meters")]


def test_a_resync_flood_leaves_live_data_fresh(own_sim, bus: TestBus, tmp_path: Path) -> None:
    collector = Collector(bus.settings.url, bus.settings.exchange, ["powerwall.*.meters"])
    poller = Poller(poller_config(own_sim, bus.settings, tmp_path)).start()
    try:
        assert collector.wait_for(lambda m: len(m) >= 3, 20)
        connection = bus.connect()
        channel = connection.channel()
        started = time.monotonic()
        for n in range(2000):  # half from one requester, half from 1000 made-up ones
            reply_to = collector.queue if n % 2 else f"test.flood.{uuid.uuid4().hex}"
            channel.basic_publish(
                bus.settings.exchange,
                RESYNC,
                b"",
                pika.BasicProperties(reply_to=reply_to, correlation_id=f"c{n}"),
            )
        flooded_in = time.monotonic() - started
        connection.close()
        assert flooded_in < 1.5
        counts = poller.health.resync
        assert wait_until(lambda: counts["requests"] == 2000, 10), counts
        time.sleep(4)
        live = [at for at in _live_meters(collector) if at > started - 1]
        gaps = [b - a for a, b in itertools.pairwise(live)]
        assert len(live) >= 4 and max(gaps) < 2.5, gaps
        elapsed = time.monotonic() - started
        # At most 20 answers a second overall, and one a second to the real requester.
        assert counts["answered"] <= 20 * (elapsed + 1), counts
        assert counts["dropped"] >= 2000 - counts["answered"] - counts["coalesced"] - 1
        to_me = [
            m
            for m in collector.messages()
            if m.routing_key == collector.queue and m.properties.type == "meters"
        ]
        assert 1 <= len(to_me) <= elapsed + 1
        assert poller.publisher._link.outages == 0  # one connection all along
        status = poller.health.payload(time.time(), 0, {"queued": 0, "capacity": 1, "dropped": 0})
        assert status["resync"]["requests"] == 2000
    finally:
        poller.stop()
        collector.close()


def test_bogus_reply_to_never_costs_the_connection(own_sim, bus: TestBus, tmp_path: Path) -> None:
    collector = Collector(bus.settings.url, bus.settings.exchange, ["powerwall.*.meters"])
    poller = Poller(poller_config(own_sim, bus.settings, tmp_path)).start()
    try:
        assert collector.wait_for(lambda m: len(m) >= 2, 20)
        connection = bus.connect()
        channel = connection.channel()
        for reply_to in (
            "no.such.queue",
            "amq.rabbitmq.reply-to.garbage",
            "amq.gen-not-there",
            "x" * 255,
            collector.queue,
        ):
            channel.basic_publish(
                bus.settings.exchange, RESYNC, b"", pika.BasicProperties(reply_to=reply_to)
            )
        connection.close()
        assert collector.wait_for(lambda m: any(x.routing_key == collector.queue for x in m), 5), (
            poller.health.resync,
            {m.routing_key for m in collector.messages()},
        )
        before = len(_live_meters(collector))
        assert collector.wait_for(lambda _: len(_live_meters(collector)) >= before + 2, 5)
        assert poller.publisher._link.outages == 0
        assert poller.alive()
    finally:
        poller.stop()
        collector.close()


def _depth(bus: TestBus, queue: str) -> int:
    """Messages ready in ``queue``; -1 while it does not exist."""
    try:
        return queue_depth(bus.settings, queue)[0]
    except pika.exceptions.ChannelClosedByBroker:
        return -1


def test_readings_published_before_the_writer_first_started_are_stored(
    own_sim, bus: TestBus, tmp_path: Path, mysql_db: MysqlSettings
) -> None:
    writer = writer_settings(bus.queue_name("writer"), bus.queue_name("dead"), migrate=True)
    poller = Poller(poller_config(own_sim, bus.settings, tmp_path, writer=writer)).start()
    try:
        assert wait_until(lambda: _depth(bus, writer.queue) >= 6, 20)
    finally:
        poller.stop()
    waiting, consumers = queue_depth(bus.settings, writer.queue)
    assert consumers == 0 and waiting >= 6
    with RunningWriter(WriterConfig(amqp=bus.settings, mysql=mysql_db, writer=writer)):
        assert wait_until(lambda: queue_depth(bus.settings, writer.queue)[0] == 0, 20)
        assert wait_until(lambda: count(mysql_db, "meter_readings") >= 4, 10)
        assert count(mysql_db, "soe_readings") >= 1


def _publish_eight(bus: TestBus, queue: str) -> int:
    """Publish 8 messages straight to ``queue``; how many it then holds."""
    connection = bus.connect()
    channel = connection.channel()
    channel.confirm_delivery()  # each publish waits until the queue has it
    for n in range(8):
        channel.basic_publish("", queue, str(n).encode())
    depth = channel.queue_declare(queue, passive=True).method.message_count
    connection.close()
    return int(depth)


def test_the_dead_letter_queue_has_a_length_limit_and_ttl(bus: TestBus) -> None:
    settings = writer_settings(
        bus.queue_name("writer"),
        bus.queue_name("dead"),
        dead_letter_max_length=5,
        dead_letter_ttl_days=1,
    )
    connection = bus.connect()
    declare_topology(connection.channel(), bus.settings.exchange, settings)
    connection.close()
    assert _publish_eight(bus, settings.dead_letter_queue) == 5  # the oldest dropped
    connection = bus.connect()
    channel = connection.channel()  # the same arguments again: accepted
    declare_topology(channel, bus.settings.exchange, settings)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        channel.queue_declare(settings.dead_letter_queue, durable=True)  # without them
    assert refused.value.reply_code == 406  # so the TTL argument is there too
    connection.close()


def test_an_older_dead_letter_queue_without_limits_is_kept_with_a_warning(
    bus: TestBus, caplog: pytest.LogCaptureFixture
) -> None:
    settings = writer_settings(bus.queue_name("writer"), bus.queue_name("dead"))
    connection = bus.connect()
    channel = connection.channel()
    channel.queue_declare(settings.dead_letter_queue, durable=True)  # as older versions did
    with caplog.at_level(logging.WARNING):
        declare_topology(channel, bus.settings.exchange, settings)
    assert channel.is_open
    assert channel.queue_declare(settings.queue, passive=True).method.consumer_count == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "rabbitmqctl set_policy" in warnings[0]
    assert settings.dead_letter_queue in warnings[0]
    connection.close()
