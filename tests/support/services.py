"""Where the real RabbitMQ and MySQL/MariaDB for the tests come from.

Order: ``PWBUS_TEST_AMQP_URL`` / ``PWBUS_TEST_MYSQL_URL``; else, when a Docker engine
answers, a container started with testcontainers; else the test fails with a message saying
what to start. The broker and database are never mocked, and the production names
(``AMQP_URL``, ``MYSQL_URL`` and the rest) are never read: tests create and drop databases
and exchanges, which must never happen on a real installation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

import pytest

from powerwall_bus.shared.settings import MysqlSettings

AMQP_ENV = "PWBUS_TEST_AMQP_URL"
MYSQL_ENV = "PWBUS_TEST_MYSQL_URL"

AMQP_HELP = (
    "RabbitMQ is needed for this test: start one (e.g. `rabbitmq-server -detached`) and set "
    "PWBUS_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2F, or make a Docker engine available"
)
MYSQL_HELP = (
    "MySQL/MariaDB is needed for this test: start one (e.g. `start-stop-daemon --start --oknodo "
    "--background --exec /usr/sbin/mariadbd`) and set "
    "PWBUS_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test, or make a Docker engine available"
)


def _from_env(name: str) -> str | None:
    return os.environ.get(name) or None


def scrub_production_environment(environ: MutableMapping[str, str]) -> list[str]:
    """Remove every variable a setting of the programs reads; the names removed."""
    from powerwall_bus.shared.settings import option_table

    names = {name for _, env_names, _ in option_table() for name in env_names}
    names.add("PWBUS_CONFIG")
    removed = sorted(name for name in names if name in environ)
    for name in removed:
        del environ[name]
    return removed


def docker_available() -> bool:
    """True when a Docker engine (not only the client) answers."""
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


@contextmanager
def amqp_url() -> Iterator[str]:
    """A broker URL for the whole test session."""
    url = _from_env(AMQP_ENV)
    if url:
        yield url
        return
    if docker_available():
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:3-management") as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(5672)
            yield f"amqp://guest:guest@{host}:{port}/%2F"
        return
    pytest.fail(AMQP_HELP, pytrace=False)


@contextmanager
def mysql_url() -> Iterator[str]:
    """A MySQL/MariaDB admin URL for the whole test session."""
    url = _from_env(MYSQL_ENV)
    if url:
        yield url
        return
    if docker_available():
        from testcontainers.mysql import MySqlContainer

        with MySqlContainer(
            "mariadb:11", username="root", password="test", dbname="test"
        ) as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(3306)
            yield f"mysql://root:test@{host}:{port}/test"
        return
    pytest.fail(MYSQL_HELP, pytrace=False)


@contextmanager
def scratch_database(admin_url: str) -> Iterator[MysqlSettings]:
    """An empty database with a unique name on the test server, dropped afterwards."""
    import mysql.connector

    admin = MysqlSettings(url=admin_url)
    name = f"pwbus_t_{uuid.uuid4().hex[:12]}"
    server = mysql.connector.connect(
        host=admin.host, port=admin.port, user=admin.user, password=admin.password
    )
    cursor = server.cursor()
    cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        yield MysqlSettings(url=admin_url, database=name)
    finally:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        server.close()
