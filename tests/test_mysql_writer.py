"""The MySQL writer against a real RabbitMQ and a real MariaDB (and the simulator + poller)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pika
import pytest

from powerwall_bus.consumers.mysql.command import WriterConfig
from powerwall_bus.consumers.mysql.main import check_health
from powerwall_bus.consumers.mysql.queues import (
    DEAD_AT_HEADER,
    EXCHANGE_HEADER,
    REASON_HEADER,
    ROUTING_KEY_HEADER,
)
from powerwall_bus.consumers.mysql.writer import Writer
from powerwall_bus.producers.poller.main import Poller, PollerConfig
from powerwall_bus.shared import contract
from powerwall_bus.shared.contract import routing_key
from powerwall_bus.shared.errors import ConfigError, DatabaseError
from powerwall_bus.shared.messages import Reading, meter_stream_message, reading_message
from powerwall_bus.shared.settings import (
    AmqpSettings,
    GatewaySettings,
    MysqlSettings,
    PollerSettings,
)
from powerwall_bus.shared.topology import METER_STREAM
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.feed import reading_for
from powerwall_bus.simulator.site import SiteOptions
from tests.support.collector import Collector
from tests.support.mysql_writer import (
    Publisher,
    RunningWriter,
    apply_schema,
    count,
    counts,
    db_connect,
    drain,
    execute,
    query,
    queue_depth,
    replace,
    writer_settings,
)
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from tests.conftest import TestBus

ROOT = Path(__file__).resolve().parents[1]
METERS = "/api/meters/aggregates"
SOE = "/api/system_status/soe"
GRID = "/api/system_status/grid_status"
SYSTEM_STATUS = "/api/system_status"
#: Routing keys for hand-made messages (the DIN in the key does not matter to the writer).
SOE_KEY = routing_key("soe", "1232100-00-E--TG0000000TEST")
METERS_KEY = routing_key("meters", "1232100-00-E--TG0000000TEST")
MEASURES = (
    "instant_power",
    "instant_reactive_power",
    "instant_apparent_power",
    "instant_average_voltage",
    "frequency",
    "instant_total_current",
    "energy_imported",
    "energy_exported",
)


@pytest.fixture
def db(mysql_db: MysqlSettings) -> MysqlSettings:
    """A fresh database with the schema applied (by the project's migration runner)."""
    assert apply_schema(mysql_db) >= 1
    return mysql_db


def config(bus: TestBus, database: MysqlSettings, **writer: Any) -> WriterConfig:
    settings = writer_settings(bus.queue_name("writer"), bus.queue_name("dead"), **writer)
    return WriterConfig(amqp=bus.settings, mysql=database, writer=settings)


def meters_messages(count_: int, *, start: float, step: float = 1.0, seed: int = 4) -> list:
    """``count_`` meters messages from simulator bodies, ``step`` seconds apart."""
    gateway = SimulatedGateway(SiteOptions(seed=seed, powerwalls=2))
    base = reading_for(gateway, METERS)
    out = []
    for index in range(count_):
        payload = json.loads(json.dumps(base.payload))
        payload["site"]["instant_power"] += index
        out.append(reading_message(Reading(METERS, start + index * step, base.gateway, payload)))
    return out


def dead_letters(amqp: AmqpSettings, queue: str, expected: int) -> list:
    """Take messages from the dead-letter queue until ``expected`` arrived."""
    found: list = []

    def enough() -> bool:
        found.extend(drain(amqp, queue))
        return len(found) >= expected

    assert wait_until(enough, 20), found
    return found


def _datetime(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


# --------------------------------------------------------------------------- end to end


def test_end_to_end_simulator_poller_broker_writer_database(
    sim, gateway_settings: GatewaySettings, bus: TestBus, mysql_db: MysqlSettings
) -> None:
    assert check_health(mysql_db, 60) == 1  # not even a schema yet
    din = sim.server.gateway.din
    meters, soe_key, vitals_key, status_key = (
        routing_key(kind, din) for kind in ("meters", "soe", "vitals", contract.POLLER_STATUS)
    )
    keys = [meters, soe_key, vitals_key, status_key]
    collector = Collector(bus.settings.url, bus.settings.exchange, keys)
    poller_settings = PollerSettings(
        meters_interval=1.0,
        soe_interval=1.0,
        grid_status_interval=1.0,
        system_status_interval=2.0,
        vitals_interval=3.0,
        status_interval=2.0,
        slow_endpoints=(),
    )
    # migrate=True: the writer creates the schema itself on this empty database.
    with RunningWriter(config(bus, mysql_db, migrate=True)) as writer:
        poller = Poller(PollerConfig(gateway_settings, bus.settings, poller_settings)).start()
        try:
            time.sleep(7)
        finally:
            poller.stop()
        served = dict(sim.server.counters.by_path)
        published = collector.messages
        assert collector.wait_for(
            lambda _: (
                (len(published(meters)), len(published(soe_key))) == (served[METERS], served[SOE])
            ),
            10,
        )
        assert served[METERS] >= 6
        expected = {
            "meter_readings": 4 * served[METERS],
            "soe_readings": served[SOE],
            "grid_status_changes": 1,  # connected all along: the first sample only
            "battery_block_readings": 2 * served[SYSTEM_STATUS],
            "poller_events": len(published(status_key)),
        }
        assert wait_until(
            lambda: {t: n for t, n in counts(mysql_db).items() if t in expected} == expected, 20
        ), (counts(mysql_db), expected)
        assert writer.stats.dead_lettered == 0
    collector.close()

    # Values equal the published bodies, meter by meter, at the reading's millisecond.
    rows = {
        (ts, meter): values
        for ts, meter, *values in query(
            mysql_db, f"SELECT ts, meter, {', '.join(MEASURES)} FROM meter_readings"
        )
    }
    for message in published(meters):
        body = json.loads(message.body)
        ts = body["time"].replace("T", " ").rstrip("Z")
        for meter in ("site", "battery", "load", "solar"):
            stored = rows[(_datetime(ts), meter)]
            assert stored == [body["payload"][meter].get(name) for name in MEASURES], meter
    soe = query(mysql_db, "SELECT percentage, app_percentage FROM soe_readings")
    published_soe = sorted(json.loads(m.body)["payload"]["percentage"] for m in published(soe_key))
    assert sorted(p for p, _ in soe) == published_soe
    assert all(app == pytest.approx((p - 5) / 0.95) for p, app in soe)
    ((status, din),) = query(
        mysql_db,
        "SELECT c.grid_status, g.din FROM grid_status_changes c"
        " JOIN gateways g ON g.id = c.gateway_id",
    )
    assert (status, din) == ("SystemGridConnected", sim.server.gateway.din)
    vitals = published(vitals_key)
    numeric = sum(
        1
        for message in vitals
        for fields in json.loads(message.body)["decoded"].values()
        for name, value in fields.items()
        if isinstance(value, int | float) and name != "lastCommunicationTime"
    )
    assert vitals and count(mysql_db, "vitals_readings") == numeric
    assert check_health(mysql_db, 60) == 0


# --------------------------------------------------------------------------- dead letters


def test_malformed_messages_are_dead_lettered_and_the_rest_written(
    bus: TestBus, db: MysqlSettings
) -> None:
    cfg = config(bus, db, batch_wait=2.0)
    gateway = SimulatedGateway(SiteOptions(seed=9, powerwalls=2))
    good = [reading_message(reading_for(gateway, path)) for path in (METERS, SOE, GRID)]
    wrong_types = json.loads(good[0].body)
    wrong_types["payload"]["site"]["instant_power"] = "a lot"
    missing = json.loads(good[1].body)
    del missing["payload"]["percentage"]
    huge = b'{"version": 1, "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    with RunningWriter(cfg) as writer:
        publisher = Publisher(bus.settings)
        publisher.message(good[0])
        publisher.raw(METERS_KEY, b'{"version": 1, "kind": "meters",', message_id="bad-1")
        publisher.message(good[1])
        publisher.raw(METERS_KEY, json.dumps(wrong_types).encode(), message_id="bad-2")
        publisher.raw(SOE_KEY, json.dumps(missing).encode(), message_id="bad-3", type="soe")
        publisher.raw(METERS_KEY, huge, message_id="bad-4", app_id="someone")
        publisher.message(good[2])
        publisher.raw(METER_STREAM, b"{}")  # not bound without writer.meter_stream
        publisher.raw(SOE_KEY, b"[" * 200_000 + b"]" * 200_000, message_id="bad-5")
        publisher.close()
        letters = dead_letters(bus.settings, cfg.writer.dead_letter_queue, 5)
        assert wait_until(lambda: writer.stats.written == 3, 10)
    assert counts(db) == {
        "meter_readings": 4,
        "soe_readings": 1,
        "grid_status_changes": 1,
        "battery_block_readings": 0,
        "vitals_readings": 0,
        "poller_events": 0,
    }
    by_id = {properties.message_id: (properties, body) for properties, body in letters}
    assert set(by_id) == {"bad-1", "bad-2", "bad-3", "bad-4", "bad-5"}
    reasons = {key: by_id[key][0].headers[REASON_HEADER] for key in by_id}
    assert "not JSON" in reasons["bad-1"]
    assert "payload/site/instant_power" in reasons["bad-2"] and "number" in reasons["bad-2"]
    assert "percentage" in reasons["bad-3"] and "required" in reasons["bad-3"]
    assert "exceeds max_message_bytes" in reasons["bad-4"]
    assert "nested too deeply" in reasons["bad-5"]
    for key, (properties, _) in by_id.items():
        assert "\n" not in reasons[key] and len(reasons[key]) <= 300
        assert properties.headers[EXCHANGE_HEADER] == bus.settings.exchange
        assert isinstance(properties.headers[DEAD_AT_HEADER], int)
        assert properties.delivery_mode == 2
    assert by_id["bad-3"][0].headers[ROUTING_KEY_HEADER] == SOE_KEY
    assert by_id["bad-3"][0].type == "soe"
    assert by_id["bad-4"][0].app_id == "someone" and by_id["bad-4"][1] == huge  # kept whole
    assert writer.stats.dead_lettered == 5
    assert queue_depth(bus.settings, cfg.writer.queue)[0] == 0  # everything acknowledged


def test_a_message_the_database_refuses_is_dead_lettered_alone(
    bus: TestBus, db: MysqlSettings
) -> None:
    execute(
        db,
        "CREATE TRIGGER refuse_full BEFORE INSERT ON soe_readings FOR EACH ROW "
        "BEGIN IF NEW.percentage > 99.9 THEN "
        "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by the test trigger'; "
        "END IF; END",
    )
    cfg = config(bus, db, batch_wait=1.0)
    start = time.time()
    messages = [
        reading_message(Reading(SOE, start + i, "1232100-00-E--TG1", {"percentage": p}))
        for i, p in enumerate((40.0, 99.95, 41.0))
    ]
    with RunningWriter(cfg) as writer:
        publisher = Publisher(bus.settings)
        for message in [*messages, *meters_messages(2, start=start)]:
            publisher.message(message)
        publisher.close()
        letters = dead_letters(bus.settings, cfg.writer.dead_letter_queue, 1)
        assert wait_until(lambda: writer.stats.written == 4, 10)
    ((properties, body),) = letters
    assert body == messages[1].body
    assert "database refused" in properties.headers[REASON_HEADER]
    assert "refused by the test trigger" in properties.headers[REASON_HEADER]
    assert sorted(p for (p,) in query(db, "SELECT percentage FROM soe_readings")) == [40.0, 41.0]
    assert count(db, "meter_readings") == 8


# --------------------------------------------------------------------------- MeterStream


def test_meter_stream_bodies_are_stored_under_the_configured_gateway(
    bus: TestBus, db: MysqlSettings
) -> None:
    cfg = config(
        bus,
        db,
        meter_stream=True,
        meter_stream_gateway="garage-tesla-api",
        max_past=3650 * 86400.0,  # the readings are dated 2026-11-21
    )
    # Behind a Tesla-API publisher, which sets no user_id.
    cfg = replace(cfg, amqp=replace(cfg.amqp, anonymous_meter_stream=True))
    gateway = SimulatedGateway(SiteOptions(seed=12, powerwalls=1))
    aggregates = json.loads(gateway.get(METERS).body)
    start = 1795269838.25
    bodies = [
        meter_stream_message(start + i, 40.0 + i, aggregates, "ignored").body for i in range(3)
    ]
    with RunningWriter(cfg) as writer:
        publisher = Publisher(bus.settings)
        for body in bodies:  # as the Tesla-API publisher sends them: no type, no message id
            publisher.raw(METER_STREAM, body, content_type="application/json", user_id=None)
        publisher.message(meters_messages(1, start=start)[0])
        publisher.close()
        assert wait_until(lambda: writer.stats.written == 4, 10)
    assert writer.stats.dead_lettered == 0
    rows = query(
        db,
        "SELECT g.din, r.ts, r.meter, r.instant_power, r.energy_exported FROM meter_readings r"
        " JOIN gateways g ON g.id = r.gateway_id WHERE g.din = 'garage-tesla-api'"
        " ORDER BY r.ts, r.meter",
    )
    assert len(rows) == 12
    assert {row[2] for row in rows} == {"site", "battery", "load", "solar"}
    by_meter = {row[2]: row for row in rows[:4]}
    for meter, (_, ts, _, power, exported) in by_meter.items():
        assert ts == _datetime("2026-11-21 14:03:58.250")
        assert (power, exported) == (
            aggregates[meter]["instant_power"],
            aggregates[meter]["energy_exported"],
        )
    soe = query(
        db,
        "SELECT s.percentage, s.app_percentage FROM soe_readings s"
        " JOIN gateways g ON g.id = s.gateway_id WHERE g.din = 'garage-tesla-api' ORDER BY s.ts",
    )
    assert [p for p, _ in soe] == [40.0, 41.0, 42.0]
    assert soe[0][1] == pytest.approx(35 / 0.95)
    assert count(db, "gateways") == 2  # the DIN of the meters message too
    first_seen = query(db, "SELECT first_seen FROM gateways WHERE din = 'garage-tesla-api'")
    assert first_seen == [(_datetime("2026-11-21 14:03:58.250"),)]  # the first reading's time

    # Turned off again, the durable queue loses its MeterStream binding.
    with RunningWriter(replace(cfg, writer=replace(cfg.writer, meter_stream=False))) as writer:
        publisher = Publisher(bus.settings)
        publisher.raw(METER_STREAM, bodies[0].replace(b"1795269838.25", b"1795269999.5"))
        publisher.close()
        time.sleep(1.0)
        assert writer.stats.received == 0
    assert count(db, "soe_readings") == 3


# --------------------------------------------------------------------------- outages


@pytest.mark.slow
def test_database_refusing_connections_for_30_s_loses_and_doubles_nothing(
    bus: TestBus, db: MysqlSettings, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = TcpProxy(db.host, db.port)
    through_proxy = replace(db, host="127.0.0.1", port=proxy.port)
    cfg = config(bus, through_proxy, prefetch=100, batch_size=50, retry_max=2.0)
    stop = threading.Event()
    ready = meters_messages(1500, start=time.time() - 3600)
    published: list = []

    def publish() -> None:  # 20 readings a second, before, during and after the outage
        publisher = Publisher(bus.settings)
        for message in ready:
            if stop.is_set():
                break
            publisher.message(message)
            published.append(message)
            time.sleep(0.05)
        publisher.close()

    caplog.set_level(logging.INFO, logger="powerwall_bus.consumers.mysql.writer")
    feeder = threading.Thread(target=publish, daemon=True)
    try:
        with RunningWriter(cfg) as writer:
            feeder.start()
            assert wait_until(lambda: writer.stats.written >= 20, 10)
            proxy.cut()
            cut_at = time.monotonic()
            time.sleep(3)
            written = writer.stats.written
            time.sleep(30 - (time.monotonic() - cut_at))
            assert writer.stats.written == written  # nothing acknowledged while down
            # Beyond the prefetch (100) the readings wait in the queue.
            assert queue_depth(bus.settings, cfg.writer.queue)[0] > 300
            proxy.restore()
            time.sleep(2)
            stop.set()
            feeder.join(10)
            assert wait_until(lambda: count(db, "meter_readings") == 4 * len(published), 30)
            assert writer.stats.database_outages == 1
    finally:
        stop.set()
        proxy.close()
    assert len(published) > 500
    distinct = query(db, "SELECT COUNT(DISTINCT gateway_id, meter, ts) FROM meter_readings")
    assert distinct[0][0] == count(db, "meter_readings") == 4 * len(published)
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "unavailable" in r.message
    ]
    assert len(warnings) == 1, [r.message for r in warnings]  # logged once, clearly
    assert "holding" in warnings[0].message and "\n" not in warnings[0].message
    assert any("is back after" in r.message for r in caplog.records)


def test_a_held_up_transaction_keeps_the_broker_served_and_the_acks_in_order(
    bus: TestBus, db: MysqlSettings
) -> None:
    """Batches overlap: while one batch's transaction waits (here on a table lock) the
    writer keeps taking deliveries and checks the next batch, but acknowledges nothing
    before that commit; stopping meanwhile finishes the batch and then the rest."""
    cfg = config(bus, db, prefetch=200, batch_size=10, batch_wait=0.1)
    messages = meters_messages(60, start=time.time() - 600)
    publisher = Publisher(bus.settings)
    blocker = db_connect(db)
    cursor = blocker.cursor()
    try:
        with RunningWriter(cfg) as writer:
            cursor.execute("LOCK TABLES meter_readings WRITE")
            for message in messages[:10]:
                publisher.message(message)
            assert wait_until(lambda: writer.stats.received == 10, 10)
            time.sleep(0.5)  # the first batch's INSERT now waits for the lock
            for message in messages[10:]:
                publisher.message(message)
            # The writer is not stuck with its transaction: it takes every delivery.
            assert wait_until(lambda: writer.stats.received == 60, 10)
            assert writer.stats.written == 0 and writer.stats.batches == 0  # none acked
            writer.stop()  # the held batch and the rest are still written
            time.sleep(0.5)
            cursor.execute("UNLOCK TABLES")
    finally:
        cursor.close()
        blocker.close()
        publisher.close()
    assert writer.stats.written == 60
    assert count(db, "meter_readings") == 4 * 60
    distinct = query(db, "SELECT COUNT(DISTINCT gateway_id, meter, ts) FROM meter_readings")
    assert distinct[0][0] == 4 * 60
    assert queue_depth(bus.settings, cfg.writer.queue) == (0, 0)  # all acknowledged
    assert count(db, "meter_minutes") > 0  # the summaries came with the batches


def test_writer_killed_mid_batch_then_restarted_loses_and_doubles_nothing(
    bus: TestBus, db: MysqlSettings
) -> None:
    queue, dead = bus.queue_name("writer"), bus.queue_name("dead")
    env = {
        **os.environ,
        "AMQP_URL": bus.settings.url,
        "AMQP_EXCHANGE": bus.settings.exchange,
        "MYSQL_URL": db.url,
        "MYSQL_DATABASE": db.database,
        "PWBUS_MYSQL_QUEUE": queue,
        "PWBUS_MYSQL_DEAD_LETTER_QUEUE": dead,
        "PWBUS_MYSQL_BATCH_WAIT": "60",
        "PWBUS_MYSQL_BATCH_SIZE": "100000",
        "PWBUS_MYSQL_PREFETCH": "10000",
        "PYTHONUNBUFFERED": "1",
    }

    def start(**extra: str) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-m", "powerwall_bus", "mysql"],
            env={**env, **extra},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if not wait_until(
            lambda: _consumers(bus.settings, queue) == 1 or child.poll() is not None, 20
        ):
            child.kill()
        assert child.poll() is None, child.communicate(timeout=10)[1]
        return child

    first = start()
    messages = meters_messages(300, start=time.time() - 1000)
    publisher = Publisher(bus.settings)
    for message in messages:
        publisher.message(message)
    # All 300 delivered to the writer, none acknowledged: then it dies mid-batch.
    assert wait_until(lambda: queue_depth(bus.settings, queue)[0] == 0, 10)
    time.sleep(0.3)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    assert count(db, "meter_readings") == 0
    assert queue_depth(bus.settings, queue)[0] == 300  # the broker kept them

    # The next writer holds them in one batch; SIGTERM finishes that batch and exits 0.
    second = start()
    assert wait_until(lambda: queue_depth(bus.settings, queue)[0] == 0, 10)
    time.sleep(1.0)  # delivered by the broker and read by the writer
    second.send_signal(signal.SIGTERM)
    _, err = second.communicate(timeout=20)
    assert second.returncode == 0, err
    assert "Traceback" not in err
    assert count(db, "meter_readings") == 4 * 300

    # Redeliveries (the same messages again) change nothing.
    third = start(PWBUS_MYSQL_BATCH_WAIT="0.2", PWBUS_MYSQL_BATCH_SIZE="50")
    for message in messages[:120]:
        publisher.message(message)
    publisher.close()
    assert wait_until(lambda: queue_depth(bus.settings, queue)[0] == 0, 10)
    time.sleep(1.0)
    third.send_signal(signal.SIGTERM)
    _, err = third.communicate(timeout=20)
    assert third.returncode == 0, err
    assert count(db, "meter_readings") == 4 * 300
    assert queue_depth(bus.settings, queue)[0] == 0
    assert drain(bus.settings, dead) == []


def _consumers(amqp: AmqpSettings, queue: str) -> int:
    try:
        return queue_depth(amqp, queue)[1]
    except pika.exceptions.ChannelClosedByBroker:
        return 0  # not declared yet


def test_broker_outage_reconnects_and_redelivered_messages_are_written_once(
    bus: TestBus, db: MysqlSettings
) -> None:
    proxy = TcpProxy(bus.settings.host, bus.settings.port)
    cfg = config(bus, db, batch_wait=1.0)
    cfg = replace(cfg, amqp=replace(bus.settings, host="127.0.0.1", port=proxy.port))
    messages = meters_messages(120, start=time.time() - 500)
    publisher = Publisher(bus.settings)  # straight to the broker
    try:
        with RunningWriter(cfg) as writer:
            for message in messages[:60]:
                publisher.message(message)
            assert wait_until(lambda: writer.stats.written == 60, 10)
            for message in messages[60:]:
                publisher.message(message)
            assert wait_until(lambda: writer.stats.received > 60, 5)
            proxy.cut()  # some delivered, none of them committed yet (batch_wait 1 s)
            time.sleep(2)
            proxy.restore()
            assert wait_until(lambda: count(db, "meter_readings") == 4 * 120, 20)
            assert writer.stats.broker_outages == 1
            time.sleep(1.5)
    finally:
        publisher.close()
        proxy.close()
    assert count(db, "meter_readings") == 4 * 120
    assert queue_depth(bus.settings, cfg.writer.queue)[0] == 0


# --------------------------------------------------------------------------- start-up failures


def test_wrong_database_login_fails_at_start_with_one_line(bus: TestBus, db: MysqlSettings) -> None:
    env = {
        **os.environ,
        "AMQP_URL": bus.settings.url,
        "AMQP_EXCHANGE": bus.settings.exchange,
        "MYSQL_URL": db.url,
        "MYSQL_DATABASE": db.database,
        "MYSQL_USER": "pwbus_nobody",
        "MYSQL_PASSWORD": "s3cret-Wrong",
        "PWBUS_MYSQL_QUEUE": bus.queue_name("writer"),
        "PWBUS_MYSQL_DEAD_LETTER_QUEUE": bus.queue_name("dead"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "powerwall_bus", "mysql"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("pwbus mysql: database mysql://pwbus_nobody@")
    assert "Access denied" in line and "MYSQL_PASSWORD" in line
    assert "s3cret-Wrong" not in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(DatabaseError):
        Writer(config(bus, replace(db, password="s3cret-Wrong", user="pwbus_nobody"))).run()


def test_a_queue_declared_with_other_arguments_is_a_configuration_error(
    bus: TestBus, db: MysqlSettings
) -> None:
    cfg = config(bus, db)
    connection = bus.connect()
    connection.channel().queue_declare(cfg.writer.queue, durable=True)  # no dead-letter target
    connection.close()
    with pytest.raises(ConfigError, match=r"writer\.queue"):
        Writer(cfg).run()
    with pytest.raises(ConfigError, match=r"writer\.prefetch"):
        Writer(replace(cfg, writer=replace(cfg.writer, prefetch=70000))).run()


@pytest.fixture(autouse=True)
def _no_stray_writers() -> Iterator[None]:
    yield
    assert not [t for t in threading.enumerate() if t.name == "mysql-writer" and t.is_alive()]
