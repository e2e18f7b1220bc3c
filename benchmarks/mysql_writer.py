"""Benchmark the MySQL writer next to a naive writer, and print both ingest rates.

Preloads N (100,000) meters messages, real simulator bodies of about 2.7 kB
with distinct reading times, into two fresh queues on a private exchange of a real
RabbitMQ: the writer's (declared as ``pwbus mysql`` declares it) and a plain one. Then, each
on a fresh database with the schema applied:

* ``pwbus mysql`` runs as a child process with its default settings (batches of 1,000,
  prefetch 2,000); the clock runs from the moment its consumer is attached to the queue
  (process start-up is not ingest) until the queue is drained and the newest reading's
  row is committed (batches commit in queue order; all 4 x N rows are counted afterwards);
* a naive writer in this process consumes the second queue (prefetch 100) and, per
  message, does the same checks and conversion (schema, envelope, rows) and then one
  ``INSERT`` and one ``COMMIT``, acknowledging each message after its commit.

Prints messages/s for both and the ratio. Targets (issue 5, and issue 13 again with the
summaries, which ``pwbus mysql`` always keeps): the writer >= 5,000 messages/s and >= 5x
the naive writer. The naive writer stores no summaries: it is today's simplest way in.

    python benchmarks/mysql_writer.py [--messages 100000]

Broker and database come from PWBUS_TEST_AMQP_URL / PWBUS_TEST_MYSQL_URL (an account
that may create databases), defaulting to guest and root on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import mysql.connector
import pika

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from powerwall_bus.consumers.mysql.migrate import migrate  # noqa: E402
from powerwall_bus.consumers.mysql.rows import GridStatusTracker, rows_for_envelope  # noqa: E402
from powerwall_bus.consumers.mysql.writer import MessageCheck, declare_topology  # noqa: E402
from powerwall_bus.producers.poller.publisher import properties_for  # noqa: E402
from powerwall_bus.shared.contract import ANY_GATEWAY, routing_key  # noqa: E402
from powerwall_bus.shared.messages import Reading, parse_envelope, reading_message  # noqa: E402
from powerwall_bus.shared.settings import AmqpSettings, MysqlSettings, WriterSettings  # noqa: E402
from powerwall_bus.simulator.endpoints import SimulatedGateway  # noqa: E402
from powerwall_bus.simulator.feed import reading_for  # noqa: E402
from powerwall_bus.simulator.site import SiteOptions  # noqa: E402

METERS_PATH = "/api/meters/aggregates"
METER_INSERT = (
    "INSERT IGNORE INTO meter_readings (gateway_id, ts, meter, instant_power, "
    "instant_reactive_power, instant_apparent_power, instant_average_voltage, frequency, "
    "instant_total_current, energy_imported, energy_exported) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def messages(count: int) -> list[Any]:
    """``count`` meters messages, one second apart, with slowly changing values."""
    gateway = SimulatedGateway(SiteOptions(seed=5, powerwalls=2))
    base = reading_for(gateway, METERS_PATH)
    start = time.time() - count
    out = []
    for index in range(count):
        payload = copy.deepcopy(base.payload)
        for meter in ("site", "battery", "load", "solar"):
            payload[meter]["instant_power"] = payload[meter]["instant_power"] + index % 97
            payload[meter]["energy_imported"] = payload[meter]["energy_imported"] + index * 0.25
        out.append(reading_message(Reading(METERS_PATH, start + index, base.gateway, payload)))
    return out


def fresh_database(admin: MysqlSettings, name: str) -> MysqlSettings:
    """Create database ``name`` with the schema applied."""
    connection = mysql.connector.connect(
        host=admin.host, port=admin.port, user=admin.user, password=admin.password
    )
    connection.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    connection.close()
    settings = MysqlSettings(url=admin.url, database=name)
    connection = connect(settings)
    migrate(connection)
    connection.close()
    return settings


def connect(settings: MysqlSettings) -> Any:
    return mysql.connector.connect(
        host=settings.host,
        port=settings.port,
        user=settings.user,
        password=settings.password,
        database=settings.database,
        autocommit=False,
    )


def meter_rows(settings: MysqlSettings) -> int:
    connection = connect(settings)
    try:
        cursor = connection.cursor()
        cursor.execute("SELECT COUNT(*) FROM meter_readings")
        return int(cursor.fetchone()[0])
    finally:
        connection.close()


def preload(amqp: AmqpSettings, writer: WriterSettings, naive_queue: str, batch: list) -> None:
    """Publish every message once; both queues get a copy (waits until they hold all)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp.url))
    channel = connection.channel()
    declare_topology(channel, amqp.exchange, writer)
    channel.queue_declare(naive_queue, durable=True)
    meters = routing_key("meters", ANY_GATEWAY)
    channel.queue_bind(naive_queue, amqp.exchange, routing_key=meters)
    for message in batch:
        channel.basic_publish(
            amqp.exchange,
            message.routing_key,
            message.body,
            properties_for(message, user_id=amqp.username),
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        depths = [
            channel.queue_declare(q, passive=True).method.message_count
            for q in (writer.queue, naive_queue)
        ]
        if all(depth >= len(batch) for depth in depths):
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"the queues hold {depths} messages, not {len(batch)}")
    connection.close()


def committed(settings: MysqlSettings, ts: str) -> bool:
    """True once the solar row of the reading at ``ts`` is committed (an index lookup).

    Batches commit in queue order, so the newest reading's row means all rows are there.
    """
    connection = connect(settings)
    try:
        cursor = connection.cursor()
        cursor.execute(
            "SELECT COUNT(*) FROM meter_readings WHERE ts = %s AND meter = 'solar'",
            (ts,),
        )
        return bool(cursor.fetchone()[0])
    finally:
        connection.close()


def run_writer(
    amqp: AmqpSettings, database: MysqlSettings, writer: WriterSettings, last_ts: str
) -> float:
    """``pwbus mysql`` from its consumer's start until all rows are committed; seconds."""
    env = dict(os.environ)
    env.update(
        AMQP_URL=amqp.url,
        AMQP_EXCHANGE=amqp.exchange,
        MYSQL_URL=database.url,
        MYSQL_DATABASE=database.database,
        PWBUS_MYSQL_QUEUE=writer.queue,
        PWBUS_MYSQL_DEAD_LETTER_QUEUE=writer.dead_letter_queue,
        PWBUS_MYSQL_MIGRATE="no",
        PWBUS_LOG_LEVEL="WARNING",
    )
    child = subprocess.Popen([sys.executable, "-m", "powerwall_bus", "mysql"], env=env, cwd=ROOT)
    try:
        connection = pika.BlockingConnection(pika.URLParameters(amqp.url))
        channel = connection.channel()
        while not channel.queue_declare(writer.queue, passive=True).method.consumer_count:
            if child.poll() is not None:
                raise RuntimeError(f"pwbus mysql exited with status {child.returncode}")
            time.sleep(0.005)
        started = time.monotonic()  # the writer consumes from here on
        while channel.queue_declare(writer.queue, passive=True).method.message_count:
            time.sleep(0.05)
        connection.close()
        while not committed(database, last_ts):
            time.sleep(0.01)
        return time.monotonic() - started
    finally:
        child.terminate()
        child.wait(30)


def run_naive(amqp: AmqpSettings, database: MysqlSettings, queue: str, n: int) -> float:
    """One INSERT and one COMMIT per message; the elapsed seconds."""
    check = MessageCheck()
    tracker = GridStatusTracker()
    db = connect(database)
    cursor = db.cursor()
    cursor.execute("INSERT INTO gateways (din, first_seen) VALUES ('placeholder', NOW())")
    db.commit()
    gateway_ids: dict[str, int] = {}
    done = 0
    started = time.monotonic()
    connection = pika.BlockingConnection(pika.URLParameters(amqp.url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=100)

    def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
        nonlocal done
        if check.problems(properties.type or method.routing_key, body):
            raise RuntimeError("a benchmark message is invalid")
        rows = rows_for_envelope(parse_envelope(body), tracker)
        din = rows.meters[0].gateway
        if din not in gateway_ids:
            cursor.execute(
                "INSERT IGNORE INTO gateways (din, first_seen) VALUES (%s, NOW())", (din,)
            )
            cursor.execute("SELECT id FROM gateways WHERE din = %s", (din,))
            gateway_ids[din] = int(cursor.fetchone()[0])
        cursor.executemany(METER_INSERT, [(gateway_ids[din], *row[1:]) for row in rows.meters])
        db.commit()
        channel.basic_ack(method.delivery_tag)
        done += 1

    channel.basic_consume(queue, on_message_callback=on_message)
    while done < n:
        connection.process_data_events(time_limit=0.5)
    elapsed = time.monotonic() - started
    connection.close()
    db.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    n = args.messages
    amqp_url = os.environ.get("PWBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    mysql_url = os.environ.get("PWBUS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
    tag = uuid.uuid4().hex[:8]
    amqp = AmqpSettings(url=amqp_url, exchange=f"bench.{tag}")
    admin = MysqlSettings(url=mysql_url)
    writer = WriterSettings(queue=f"bench.{tag}.writer", dead_letter_queue=f"bench.{tag}.dead")
    naive_queue = f"bench.{tag}.naive"
    names = [f"pwbus_bench_{tag}_writer", f"pwbus_bench_{tag}_naive"]
    try:
        print(f"building {n:,} meters messages...", flush=True)
        batch = messages(n)
        size = sum(len(m.body) for m in batch) / n
        last_ts = json.loads(batch[-1].body)["time"].replace("T", " ").rstrip("Z")
        print(f"preloading both queues ({size:,.0f} bytes a message)...", flush=True)
        preload(amqp, writer, naive_queue, batch)
        del batch
        writer_db = fresh_database(admin, names[0])
        naive_db = fresh_database(admin, names[1])

        print("pwbus mysql...", flush=True)
        writer_s = run_writer(amqp, writer_db, writer, last_ts)
        writer_rate = n / writer_s
        print(f"  {n:,} messages in {writer_s:.1f} s: {writer_rate:,.0f} messages/s", flush=True)

        print("naive writer (one INSERT + COMMIT per message)...", flush=True)
        naive_s = run_naive(amqp, naive_db, naive_queue, n)
        naive_rate = n / naive_s
        print(f"  {n:,} messages in {naive_s:.1f} s: {naive_rate:,.0f} messages/s", flush=True)

        for name, database in (("writer", writer_db), ("naive", naive_db)):
            rows = meter_rows(database)
            if rows != 4 * n:
                raise RuntimeError(f"{name}: {rows} meter rows, expected {4 * n}")
        ratio = writer_rate / naive_rate
        print()
        print(f"pwbus mysql   {writer_rate:10,.0f} messages/s  ({4 * writer_rate:,.0f} rows/s)")
        print(f"naive writer  {naive_rate:10,.0f} messages/s")
        print(f"ratio         {ratio:10.1f} x")
        ok = writer_rate >= 5000 and ratio >= 5
        print(f"targets (>= 5,000 messages/s, >= 5x naive): {'met' if ok else 'MISSED'}")
        return 0 if ok else 1
    finally:
        connection = pika.BlockingConnection(pika.URLParameters(amqp.url))
        channel = connection.channel()
        for queue in (writer.queue, writer.dead_letter_queue, naive_queue):
            channel.queue_delete(queue)
        channel.exchange_delete(amqp.exchange)
        connection.close()
        db = mysql.connector.connect(
            host=admin.host, port=admin.port, user=admin.user, password=admin.password
        )
        for name in names:
            db.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        db.close()


if __name__ == "__main__":
    sys.exit(main())
