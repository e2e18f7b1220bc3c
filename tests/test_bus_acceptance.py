"""What the consumers take from the real broker: only the poller's user, sane times, finite
numbers; and no message can freeze the proxy (RabbitMQ + MariaDB, no poller: the test
publishes what a poller, a forger or a wrong clock would)."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pika
import pika.exceptions
import pytest
import requests

from powerwall_bus.consumers.mysql.command import WriterConfig
from powerwall_bus.consumers.mysql.queues import REASON_HEADER
from powerwall_bus.consumers.proxy.main import ProxyConfig
from powerwall_bus.shared.contract import METER_STREAM, routing_key
from powerwall_bus.shared.messages import Reading, meter_stream_message, reading_message
from powerwall_bus.shared.settings import MysqlSettings, ProxySettings
from tests.support.broker_user import other_broker_user
from tests.support.mysql_writer import (
    Publisher,
    RunningWriter,
    apply_schema,
    drain,
    execute,
    query,
    writer_settings,
)
from tests.support.running_proxy import RunningProxy
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from tests.conftest import TestBus

DIN = "1232100-00-E--TG121832953V3E"
AGGREGATES_PATH = "/api/meters/aggregates"
GRID_PATH = "/api/system_status/grid_status"
Y2099 = 4_070_908_800.0
Y1900 = -2_208_988_800.0


def aggregates(power: float) -> dict[str, Any]:
    meter = {"instant_power": power, "energy_exported": 1.0, "energy_imported": 2.0}
    return {name: dict(meter) for name in ("site", "battery", "load", "solar")}


def meters(power: float, at: float | None = None) -> Any:
    reading = Reading(AGGREGATES_PATH, time.time() if at is None else at, DIN, aggregates(power))
    return reading_message(reading)


def strict_json(text: str) -> Any:
    """json.loads refusing NaN/Infinity, as a browser's JSON.parse does."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def proxy(bus: TestBus) -> Iterator[RunningProxy]:
    config = ProxyConfig(ProxySettings(port=0, bind_address="127.0.0.1"), bus.settings)
    with RunningProxy(config) as running:
        assert wait_until(lambda: running.server.state.bus_connected, 10)
        yield running


@pytest.fixture
def publisher(bus: TestBus) -> Iterator[Publisher]:
    sender = Publisher(bus.settings)
    yield sender
    sender.close()


def send_raw(publisher: Publisher, message: Any, **properties: Any) -> None:
    """Publish a message without the poller's ``timestamp`` property (AMQP cannot carry one
    before 1970), as our user unless ``user_id`` says otherwise."""
    publisher.raw(message.routing_key, message.body, type=message.type, **properties)


def _get(proxy: RunningProxy, path: str) -> requests.Response:
    return requests.get(proxy.url + path, timeout=5)


def _site_power(proxy: RunningProxy) -> float | None:
    body = strict_json(_get(proxy, "/aggregates").text)
    return body["site"]["instant_power"] if isinstance(body, dict) and body else None


def _refused(proxy: RunningProxy) -> dict[str, int]:
    return strict_json(_get(proxy, "/stats").text)["bus"]["refused"]


def _shows(proxy: RunningProxy, power: float) -> bool:
    return bool(wait_until(lambda: _site_power(proxy) == power, 10))


def test_wild_times_and_non_finite_numbers_never_freeze_the_proxy(
    proxy: RunningProxy, publisher: Publisher
) -> None:
    publisher.message(meters(111))
    assert _shows(proxy, 111)

    publisher.message(meters(999, at=Y2099))  # one message dated 2099 froze it before
    assert wait_until(lambda: _refused(proxy).get("future") == 1, 10)
    publisher.message(meters(222))
    assert _shows(proxy, 222)

    stream = meter_stream_message(time.time(), 50.0, aggregates(888), DIN)
    infinite = json.loads(stream.body)
    infinite["timestamp"] = float("inf")
    # The proxy binds no MeterStream key; one reaches it as a resync answer does, typed.
    body = json.dumps(infinite).encode()
    publisher.raw(routing_key("meters", DIN), body, type=METER_STREAM, headers=stream.headers)
    nan = json.loads(meters(777).body)
    nan["payload"]["site"]["instant_power"] = float("nan")
    publisher.raw(routing_key("meters", DIN), json.dumps(nan).encode(), type="meters")
    assert wait_until(lambda: _refused(proxy).get("non_finite") == 2, 10)
    publisher.message(meters(333))
    assert _shows(proxy, 333)

    # The poller's clock steps back an hour: its next readings are still the latest.
    older_copy = meters(334)  # made before the next one: a resync answer, say
    publisher.message(meters(444, at=time.time() - 3600))
    assert _shows(proxy, 444)
    publisher.message(older_copy)
    send_raw(publisher, meters(1900, at=Y1900))
    assert wait_until(lambda: _refused(proxy).get("past") == 1, 10)
    time.sleep(0.5)
    assert _site_power(proxy) == 444  # the older copy did not overwrite the newer data

    health = _get(proxy, "/health")
    text = health.text
    strict_json(text)
    assert "old" not in " ".join(strict_json(text)["problems"])
    assert strict_json(text)["refused_messages"] == 4
    for path in ("/aggregates", "/soe", "/stats", "/api/meters/aggregates", "/csv"):
        assert "NaN" not in _get(proxy, path).text and "Infinity" not in _get(proxy, path).text


def test_the_broker_refuses_a_user_id_that_is_not_the_connections(bus: TestBus) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(bus.settings.url))
    try:
        channel = connection.channel()
        channel.exchange_declare(bus.settings.exchange, exchange_type="topic", durable=True)
        channel.confirm_delivery()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            channel.basic_publish(
                bus.settings.exchange,
                routing_key("meters", DIN),
                meters(1).body,
                pika.BasicProperties(user_id="pwbus-poller-impostor"),
            )
        assert closed.value.reply_code == 406  # PRECONDITION_FAILED: user_id mismatch
    finally:
        if connection.is_open:
            connection.close()


def test_the_proxy_serves_only_the_poller_users_messages(
    bus: TestBus, proxy: RunningProxy, publisher: Publisher
) -> None:
    publisher.message(meters(100))
    assert _shows(proxy, 100)
    soe = reading_message(Reading("/api/system_status/soe", time.time(), DIN, {"percentage": 3}))
    publisher.raw(soe.routing_key, soe.body, type="soe", user_id=None)  # no user_id
    with other_broker_user(bus.settings) as other:
        forger = Publisher(other)
        try:
            forger.message(meters(-5000))  # with its own (verified) user_id
            status = reading_message(Reading(GRID_PATH, time.time(), DIN, {}))
            forger.raw(status.routing_key, status.body, type="grid_status")
        finally:
            forger.close()
    assert wait_until(lambda: _refused(proxy) == {"no_user_id": 1, "forged": 2}, 10)
    publisher.message(meters(101))
    assert _shows(proxy, 101)
    state = proxy.server.state
    assert state.soe is None and state.payload("grid_status") is None  # never served
    assert _get(proxy, "/health").json()["gateway_state"] is None


# --------------------------------------------------------------------------- the writer


@pytest.fixture
def db(mysql_db: MysqlSettings) -> MysqlSettings:
    assert apply_schema(mysql_db) >= 1
    return mysql_db


def _config(bus: TestBus, database: MysqlSettings) -> WriterConfig:
    settings = writer_settings(bus.queue_name("writer"), bus.queue_name("dead"))
    return WriterConfig(amqp=bus.settings, mysql=database, writer=settings)


def _grid(status: str, at: float) -> Any:
    payload = {"grid_status": status, "grid_services_active": False}
    return reading_message(Reading(GRID_PATH, at, DIN, payload))


def test_the_writer_dead_letters_wild_times_and_other_users(
    bus: TestBus, db: MysqlSettings, publisher: Publisher
) -> None:
    cfg = _config(bus, db)
    now = time.time()
    with RunningWriter(cfg) as writer:
        send_raw(publisher, meters(1, at=Y1900))
        publisher.message(_grid("SystemIslandedActive", Y2099))
        late = meters(2)
        send_raw(publisher, late, message_id="anon", user_id=None)
        with other_broker_user(bus.settings) as other:
            forger = Publisher(other)
            try:
                forger.message(meters(3))
            finally:
                forger.close()
        # A real 12 s outage after the 2099 message: both changes are stored.
        publisher.message(_grid("SystemGridConnected", now - 20))
        publisher.message(_grid("SystemIslandedActive", now - 12))
        publisher.message(_grid("SystemGridConnected", now))
        assert wait_until(lambda: writer.stats.dead_lettered == 4 and writer.stats.written == 3, 15)
    dead = {
        props.message_id: props.headers
        for props, _ in drain(bus.settings, cfg.writer.dead_letter_queue)
    }
    reasons = sorted(headers[REASON_HEADER].split(" ")[0] for headers in dead.values())
    assert reasons == ["dated", "dated", "from", "no"], dead
    assert dead["anon"][REASON_HEADER].startswith("no user_id")
    assert any("x-pwbus-user-id" in headers for headers in dead.values())
    assert query(db, "SELECT COUNT(*) FROM meter_readings") == [(0,)]
    changes = query(db, "SELECT grid_status FROM grid_status_changes ORDER BY ts")
    assert [row[0] for row in changes] == [
        "SystemGridConnected",
        "SystemIslandedActive",
        "SystemGridConnected",
    ]
    assert query(db, "SELECT COUNT(*) FROM grid_status_changes WHERE YEAR(ts) > 2090") == [(0,)]


def test_a_future_grid_change_in_the_database_does_not_hide_real_ones(
    bus: TestBus, db: MysqlSettings, publisher: Publisher
) -> None:
    """A row stored by an earlier version from a poller whose clock ran ahead is ignored
    when the tracker is seeded at start."""
    cfg = _config(bus, db)
    now = time.time()
    with RunningWriter(cfg) as writer:
        publisher.message(_grid("SystemGridConnected", now - 30))
        assert wait_until(lambda: writer.stats.written == 1, 10)
    when = dt.datetime(2099, 1, 1).strftime("%Y-%m-%d %H:%M:%S")
    execute(
        db,
        "INSERT INTO grid_status_changes (gateway_id, ts, grid_status, grid_services_active) "
        f"SELECT gateway_id, '{when}', 'SystemIslandedActive', 0 FROM grid_status_changes",
    )
    with RunningWriter(cfg) as writer:
        publisher.message(_grid("SystemIslandedActive", now - 12))
        publisher.message(_grid("SystemGridConnected", now))
        assert wait_until(lambda: writer.stats.written == 2, 10)
    stored = query(db, "SELECT grid_status FROM grid_status_changes WHERE YEAR(ts) < 2090")
    assert len(stored) == 3
