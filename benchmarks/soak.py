"""Soak: the whole pipeline for a long while (30 minutes by default), then its memory and losses.

Runs the simulator, ``pwbus poller``, ``pwbus mysql`` and ``pwbus proxy`` as real processes
against the local RabbitMQ and MariaDB (PWBUS_TEST_AMQP_URL, PWBUS_TEST_MYSQL_URL), with a
dashboard-like client reading the proxy four times a second, and prints each component's
resident memory at the start and at the end, the readings served and stored, and the
proxy's answers. By hand: ``python benchmarks/soak.py --minutes 30``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import mysql.connector
import pika

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from powerwall_bus.shared.certs import server_context  # noqa: E402
from powerwall_bus.shared.settings import AmqpSettings, MysqlSettings  # noqa: E402
from powerwall_bus.simulator.endpoints import SimulatedGateway  # noqa: E402
from powerwall_bus.simulator.server import GatewayServer, SimulatorRunner  # noqa: E402
from powerwall_bus.simulator.site import SiteOptions  # noqa: E402
from tests.support.mysql_writer import apply_schema, query  # noqa: E402
from tests.support.pipeline import Component, Pipeline  # noqa: E402

PASSWORD = "soak-Pa55word"


def rss_mb(component: Component) -> float:
    """Resident memory of a running component, MB (from /proc)."""
    assert component.process is not None
    for line in Path(f"/proc/{component.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (30)")
    args = parser.parse_args()
    amqp_url = os.environ.get("PWBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    admin_url = os.environ.get("PWBUS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
    tag = uuid.uuid4().hex[:8]
    amqp = AmqpSettings(url=amqp_url, exchange=f"soak.{tag}")
    admin = MysqlSettings(url=admin_url)
    database = f"pwbus_soak_{tag}"
    connection = mysql.connector.connect(
        host=admin.host, port=admin.port, user=admin.user, password=admin.password or ""
    )
    connection.cursor().execute(f"CREATE DATABASE {database}")
    db = MysqlSettings(url=admin_url.rsplit("/", 1)[0] + f"/{database}")
    apply_schema(db)
    server = GatewayServer(SimulatedGateway(SiteOptions(seed=5)), password=PASSWORD)
    folder = Path(tempfile.mkdtemp(prefix="pwbus-soak-"))
    try:
        with SimulatorRunner(server, ssl_context=server_context()) as sim:
            pipeline = Pipeline(
                folder,
                sim=sim,
                sim_password=PASSWORD,
                amqp=amqp,
                mysql=db,
                queue=f"soak.{tag}",
            ).start()
            components = (pipeline.poller, pipeline.writer, pipeline.proxy)
            time.sleep(20)
            start = {c.name: rss_mb(c) for c in components}
            time.sleep(args.minutes * 60)
            end = {c.name: rss_mb(c) for c in components}
            statuses = pipeline.stop()
            served = pipeline.served()["served"]
            time.sleep(2)
            stored = query(db, "SELECT COUNT(*) FROM meter_readings", ())[0][0]
    finally:
        connection.cursor().execute(f"DROP DATABASE IF EXISTS {database}")
        connection.close()
        broker = pika.BlockingConnection(pika.URLParameters(amqp_url))
        channel = broker.channel()
        for queue in (f"soak.{tag}", f"soak.{tag}.dead"):
            channel.queue_delete(queue)
        channel.exchange_delete(amqp.exchange)
        broker.close()
    print(f"soak: {args.minutes:g} minutes, logs in {folder}")
    print(f"  {'component':<10} {'RSS start MB':>13} {'RSS end MB':>11}")
    for name in start:
        print(f"  {name:<10} {start[name]:>13.1f} {end[name]:>11.1f}")
    meters = served.get("/api/meters/aggregates", 0)
    print(f"  meter readings served {meters}, stored {stored // 4}")
    probe = pipeline.probe
    print(f"  proxy answers {sum(probe.statuses.values())}, 5xx {len(probe.errors)}")
    print(f"  exit statuses {statuses}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
