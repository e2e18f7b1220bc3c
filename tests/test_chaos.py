"""The chaos suite: every fault the pipeline must survive, one after another, on one pipeline.

The real processes (``pwbus poller``, ``pwbus mysql``, ``pwbus proxy``) run against the
simulator, RabbitMQ and MariaDB, with TCP relays in front of the broker and the database
(:mod:`tests.support.pipeline`). Each scenario injects one fault and lifts it; at the end
the suite asserts what the project promises:

* no reading lost: every meter and SoE reading the simulator served is stored in MySQL
  (a SIGKILLed poller may lose the reading it was holding, nothing more);
* none stored twice; no forged, future-dated or malformed message served or stored;
* logins stay within a handful whatever the gateway does; the proxy never answers 5xx.

It prints the table of faults survived. The default run is the short form (seconds per
fault, part of the normal suite); ``PWBUS_CHAOS_SCALE=10 pytest -m chaos`` runs every fault
ten times as long, by hand.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pika
import pytest

from powerwall_bus.shared.contract import routing_key
from powerwall_bus.shared.settings import MysqlSettings
from powerwall_bus.simulator.endpoints import SimulatedGateway
from powerwall_bus.simulator.faults import FaultSet
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner
from powerwall_bus.simulator.site import SiteOptions
from tests.support.broker_user import other_broker_user
from tests.support.mysql_writer import apply_schema, query
from tests.support.pipeline import Pipeline
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from tests.conftest import TestBus

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

SCALE = float(os.environ.get("PWBUS_CHAOS_SCALE", "1"))
PASSWORD = "chaos-Pa55word"
FORGED_SOE = 3.25  # a value the simulated battery never reports in this run
FOREIGN_DIN = "1232100-00-E--TGFORGED00001"
AGGREGATES = "/api/meters/aggregates"
SOE = "/api/system_status/soe"


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[Pipeline, float], None]  # (pipeline, seconds the fault lasts)
    seconds: float = 4.0
    poller_kills: int = 0


def _wait(seconds: float) -> None:
    time.sleep(seconds)


def _gateway_fault(*specs: str) -> Callable[[Pipeline, float], None]:
    def run(pipeline: Pipeline, seconds: float) -> None:
        pipeline.sim.server.set_faults(FaultSet.parse(list(specs)))
        _wait(seconds)
        pipeline.sim.server.set_faults(FaultSet())

    return run


def _broker(action: str, repeat: int = 1) -> Callable[[Pipeline, float], None]:
    def run(pipeline: Pipeline, seconds: float) -> None:
        for _ in range(repeat):
            getattr(pipeline.broker, action)()
            _wait(seconds / repeat)
            pipeline.broker.restore()

    return run


def _database(action: str) -> Callable[[Pipeline, float], None]:
    def run(pipeline: Pipeline, seconds: float) -> None:
        getattr(pipeline.database, action)()
        _wait(seconds)
        pipeline.database.restore()

    return run


def _kill_writer(pipeline: Pipeline, seconds: float) -> None:
    pipeline.writer.kill()
    _wait(seconds)
    pipeline.writer.start()


def _kill_poller(pipeline: Pipeline, seconds: float) -> None:
    pipeline.poller.kill()
    _wait(seconds)
    pipeline.poller.start()


def _wrong_password(pipeline: Pipeline, seconds: float) -> None:
    """The gateway's password changes (and every session ends), then is set back."""
    pipeline.sim.server.set_password("Changed-Pa55word")
    pipeline.sim.server.expire_sessions()
    _wait(seconds)
    pipeline.sim.server.set_password(PASSWORD)


def _kill_poller_during_outage(pipeline: Pipeline, seconds: float) -> None:
    """The broker away, readings pile up in the poller's outbox, then the poller dies."""
    pipeline.broker.cut()
    _wait(seconds)
    pipeline.poller.kill()
    pipeline.poller.start()
    _wait(2)
    pipeline.broker.restore()


def _expire_sessions(pipeline: Pipeline, seconds: float) -> None:
    pipeline.sim.server.expire_sessions()
    _wait(seconds)


def _publish(
    pipeline: Pipeline, key: str, body: bytes, *, url: str | None = None, **properties: object
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url or pipeline.amqp.url))
    try:
        connection.channel().basic_publish(
            pipeline.amqp.exchange,
            key,
            body,
            pika.BasicProperties(content_type="application/json", **properties),
        )
    finally:
        connection.close()


def _envelope(din: str, kind: str, endpoint: str, time_text: str, payload: object) -> bytes:
    document = {
        "version": 1,
        "kind": kind,
        "time": time_text,
        "gateway": din,
        "endpoint": endpoint,
        "payload": payload,
    }
    return json.dumps(document).encode()


def _bad_messages(pipeline: Pipeline, seconds: float) -> None:
    """Malformed, oversized and future-dated messages on the readings' own routing keys."""
    din = pipeline.sim.server.gateway.din
    meters_key = routing_key("meters", din)
    soe_key = routing_key("soe", din)
    _publish(pipeline, meters_key, b"{not json", type="meters")
    _publish(pipeline, meters_key, b'{"version": 1, "kind": "meters"}', type="meters")
    _publish(pipeline, meters_key, b"x" * (2 * 1024 * 1024), type="meters")
    future = _envelope(din, "soe", SOE, "2099-01-01T00:00:00.000Z", {"percentage": FORGED_SOE})
    _publish(pipeline, soe_key, future, type="soe")
    past = _envelope(din, "soe", SOE, "1900-01-01T00:00:00.000Z", {"percentage": FORGED_SOE})
    _publish(pipeline, soe_key, past, type="soe")
    _publish(pipeline, "MeterStream", b'{"timestamp": Infinity, "state_of_energy": 3.25, '
             b'"readings": {}}', type="MeterStream")  # fmt: skip
    _wait(seconds)


def _forged_messages(pipeline: Pipeline, seconds: float) -> None:
    """Readings from another broker user: a fake SoE now, and a gateway that does not exist."""
    din = pipeline.sim.server.gateway.din
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    with other_broker_user(pipeline.amqp) as forger:
        fake_soe = _envelope(din, "soe", SOE, now, {"percentage": FORGED_SOE})
        for _ in range(3):
            _publish(pipeline, routing_key("soe", din), fake_soe, url=forger.url,
                     type="soe", user_id=forger.username)  # fmt: skip
        stranger = _envelope(FOREIGN_DIN, "soe", SOE, now, {"percentage": 50.0})
        _publish(pipeline, routing_key("soe", FOREIGN_DIN), stranger, url=forger.url,
                 type="soe", user_id=forger.username)  # fmt: skip
    _wait(seconds)


def _resync_flood(pipeline: Pipeline, seconds: float) -> None:
    """A burst of resync requests, most to queues that do not exist."""
    connection = pika.BlockingConnection(pika.URLParameters(pipeline.amqp.url))
    try:
        channel = connection.channel()
        for index in range(1000):
            channel.basic_publish(
                pipeline.amqp.exchange,
                "control.resync",
                b"{}",
                pika.BasicProperties(reply_to=f"chaos.nobody.{index}"),
            )
    finally:
        connection.close()
    _wait(seconds)


SCENARIOS = (
    Scenario("broker closes every connection", _broker("cut"), 4),
    Scenario("broker stalls silently (accepts, never answers)", _broker("hang"), 8),
    Scenario("broker resets connections three times", _broker("cut", repeat=3), 3),
    Scenario("database refuses connections", _database("cut"), 5),
    Scenario("database stalls silently", _database("hang"), 5),
    Scenario("writer SIGKILLed and restarted", _kill_writer, 1),
    Scenario("poller SIGKILLed and restarted", _kill_poller, 1, poller_kills=1),
    Scenario("poller SIGKILLed during a broker outage", _kill_poller_during_outage, 4, 1),
    Scenario("gateway rate-limits (429)", _gateway_fault("http-error=429"), 3),
    Scenario("gateway 401 on one path, logins fine", _gateway_fault(f"http-error=401@{SOE}"), 6),
    Scenario("site controller stopped (502)", _gateway_fault("stopped"), 4),
    Scenario("gateway 503 on the meters", _gateway_fault(f"http-error=503@{AGGREGATES}"), 4),
    Scenario("gateway times out on the meters", _gateway_fault(f"timeout=4@{AGGREGATES}"), 5),
    Scenario("gateway answers garbage", _gateway_fault(f"garbage@{AGGREGATES}"), 3),
    Scenario("gateway session expired", _expire_sessions, 3),
    Scenario("gateway password changed, then set back", _wrong_password, 4),
    Scenario("malformed, oversized and badly dated messages", _bad_messages, 3),
    Scenario("forged readings from another broker user", _forged_messages, 3),
    Scenario("a flood of 1000 resync requests", _resync_flood, 3),
)


@pytest.fixture
def chaos_db(mysql_db: MysqlSettings) -> MysqlSettings:
    apply_schema(mysql_db)
    return mysql_db


@pytest.fixture
def pipeline(bus: TestBus, chaos_db: MysqlSettings, tmp_path: Path) -> Iterator[Pipeline]:
    from powerwall_bus.shared.certs import server_context

    gateway = SimulatedGateway(SiteOptions(seed=11, powerwalls=2, speed=1.0))
    server = GatewayServer(gateway, password=PASSWORD)
    with SimulatorRunner(server, ssl_context=server_context()) as sim:
        purpose = f"chaos-{uuid.uuid4().hex[:6]}"
        bus.queue_name(f"{purpose}.dead")  # removed with the test's other queues
        running = Pipeline(
            tmp_path,
            sim=sim,
            sim_password=PASSWORD,
            amqp=bus.settings,
            mysql=chaos_db,
            queue=bus.queue_name(purpose),
        )
        try:
            yield running.start()
        finally:
            running.kill_everything()


def _stored(db: MysqlSettings, table: str, din: str) -> int:
    rows = query(
        db,
        f"SELECT COUNT(*) FROM {table} t JOIN gateways g ON g.id = t.gateway_id WHERE g.din = %s",
        (din,),
    )
    return int(rows[0][0])


def test_the_pipeline_survives_every_fault(
    pipeline: Pipeline, chaos_db: MysqlSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    din = pipeline.sim.server.gateway.din
    assert wait_until(lambda: _stored(chaos_db, "meter_readings", din) > 0, 30), pipeline.logs()
    table: list[tuple[str, float, int]] = []
    kills = 0
    for scenario in SCENARIOS:
        before = _stored(chaos_db, "meter_readings", din)
        seconds = scenario.seconds * SCALE
        scenario.run(pipeline, seconds)
        kills += scenario.poller_kills

        # Recovered: new readings reach the database again within a while.
        def moving(since: int = before) -> bool:
            return _stored(chaos_db, "meter_readings", din) > since + 8

        recovered = wait_until(moving, 60, step=0.5)
        assert recovered, f"no new readings after: {scenario.name}\n{pipeline.logs()}"
        table.append((scenario.name, seconds, _stored(chaos_db, "meter_readings", din) - before))

    time.sleep(2)
    statuses = pipeline.stop()
    served = pipeline.served()
    meters = served["served"].get(AGGREGATES, 0)
    soe = served["served"].get(SOE, 0)
    assert wait_until(
        lambda: _stored(chaos_db, "meter_readings", din) >= 4 * (meters - 2 * kills), 30
    )
    stored_meters = _stored(chaos_db, "meter_readings", din)
    stored_soe = _stored(chaos_db, "soe_readings", din)

    # Nothing lost (a killed poller may lose what it held), nothing twice.
    assert 4 * (meters - 2 * kills) <= stored_meters <= 4 * meters, (meters, stored_meters)
    assert soe - 2 * kills <= stored_soe <= soe, (soe, stored_soe)
    distinct = query(
        chaos_db, "SELECT COUNT(DISTINCT gateway_id, ts, meter) FROM meter_readings", ()
    )[0][0]
    assert distinct == stored_meters
    # Nothing forged, future-dated or ancient stored; nothing forged served.
    assert query(chaos_db, "SELECT COUNT(*) FROM soe_readings WHERE percentage = %s",
                 (FORGED_SOE,))[0][0] == 0  # fmt: skip
    assert (
        query(
            chaos_db,
            "SELECT COUNT(*) FROM meter_readings WHERE ts > UTC_TIMESTAMP() + INTERVAL 1 DAY "
            "OR ts < '2000-01-01'",
            (),
        )[0][0]
        == 0
    )
    assert FORGED_SOE not in pipeline.probe.soe_values
    assert (
        query(chaos_db, "SELECT COUNT(*) FROM gateways WHERE din = %s", (FOREIGN_DIN,))[0][0] == 0
    )
    # The gateway was never hammered; the proxy never failed; everything stopped cleanly.
    assert served["logins"] + served["login_failures"] <= 6, served  # the hourly cap
    assert pipeline.probe.errors == [], pipeline.probe.errors[:10]
    assert pipeline.probe.statuses[200] > 100
    assert statuses == {"poller": 0, "proxy": 0, "writer": 0}, pipeline.logs()

    with capsys.disabled():
        print(f"\nchaos suite (scale {SCALE:g}): {len(table)} faults survived")
        print(f"  {'fault':<52} {'lasted s':>8} {'rows written meanwhile':>22}")
        for name, seconds, written in table:
            print(f"  {name:<52} {seconds:>8.1f} {written:>22}")
        print(
            f"  readings served {meters} meters / {soe} soe, stored {stored_meters // 4} / "
            f"{stored_soe}; logins {served['logins']}; proxy answers "
            f"{sum(pipeline.probe.statuses.values())}, 5xx {len(pipeline.probe.errors)}"
        )
