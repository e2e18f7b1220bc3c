"""A second RabbitMQ user for a test, made with ``rabbitmqctl`` (the local broker only).

A consumer must refuse what another broker user publishes; proving it needs a second user,
because RabbitMQ lets a connection publish only its own ``user_id``. ``rabbitmqctl`` talks to
the broker on this machine (it needs the Erlang cookie, i.e. root or the rabbitmq user);
where it cannot, the tests that need it are skipped.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from powerwall_bus.shared.settings import AmqpSettings


def _ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=30, check=False
    )


@contextlib.contextmanager
def other_broker_user(amqp: AmqpSettings) -> Iterator[AmqpSettings]:
    """Settings of a new broker user with full permissions on ``amqp``'s virtual host
    (deleted afterwards); skips the test when ``rabbitmqctl`` is not usable here."""
    if amqp.host not in ("127.0.0.1", "localhost") or shutil.which("rabbitmqctl") is None:
        pytest.skip("needs rabbitmqctl for the local broker")
    name = f"pwbus-test-{secrets.token_hex(4)}"
    password = secrets.token_hex(12)
    made = _ctl("add_user", name, password)
    if made.returncode != 0:
        pytest.skip(f"rabbitmqctl cannot add a user here: {made.stderr.strip()[:200]}")
    try:
        allowed = _ctl("set_permissions", "-p", amqp.vhost, name, ".*", ".*", ".*")
        assert allowed.returncode == 0, allowed.stderr
        url = f"amqp://{name}:{password}@{amqp.host}:{amqp.port}/{quote(amqp.vhost, safe='')}"
        yield AmqpSettings(url=url, exchange=amqp.exchange)
    finally:
        _ctl("delete_user", name)
