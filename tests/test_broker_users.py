"""``pwbus broker users`` on the real broker: each role may do its part and nothing else.

The users are made with the command's own ``--apply`` (unique names, deleted afterwards),
for this test's own exchange and writer queues, and then try what their programs do (and
what they must not) with pika; RabbitMQ's answers are the proof.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pika
import pika.exceptions
import pytest

from powerwall_bus import broker_users
from powerwall_bus.shared.settings import AmqpSettings, WriterSettings
from powerwall_bus.shared.topology import (
    RESYNC,
    declare_durable_queue,
    declare_exchange,
    writer_bindings,
)
from tests import conftest
from tests.support.waiting import wait_until

ROLES = ("poller", "proxy", "writer", "dispatcher", "octopus")


def _pwbus(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PWBUS_BROKER_")}
    return subprocess.run(
        [sys.executable, "-m", "powerwall_bus", "broker", "users", *argv],
        env={**clean, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=False
    )


@dataclass
class Users:
    """The role users made for one test: names, passwords, the queues they are made for."""

    bus: conftest.TestBus
    names: dict[str, str]
    passwords: dict[str, str]
    writer: WriterSettings
    result: subprocess.CompletedProcess[str]

    def settings(self, role: str) -> AmqpSettings:
        base = self.bus.settings
        url = (
            f"amqp://{quote(self.names[role], safe='')}:{quote(self.passwords[role], safe='')}"
            f"@{base.host}:{base.port}/{quote(base.vhost, safe='')}"
        )
        return AmqpSettings(url=url, exchange=base.exchange, poller_user=self.names["poller"])

    @contextlib.contextmanager
    def channel(self, role: str) -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
        connection = pika.BlockingConnection(pika.URLParameters(self.settings(role).url))
        try:
            yield connection.channel()
        finally:
            if connection.is_open:
                connection.close()


@pytest.fixture(scope="module")
def module_bus(amqp_base_url: str) -> Iterator[conftest.TestBus]:
    """One exchange for the module: making the role users costs ~8 s of rabbitmqctl."""
    test_bus = conftest.TestBus(amqp_base_url)
    yield test_bus
    test_bus.cleanup()


@pytest.fixture(scope="module")
def users(module_bus: conftest.TestBus) -> Iterator[Users]:
    """The role users, made once for the module's tests (each test only uses them)."""
    bus = module_bus
    if bus.settings.host not in ("127.0.0.1", "localhost") or shutil.which("rabbitmqctl") is None:
        pytest.skip("needs rabbitmqctl for the local broker")
    prefix = f"pwbus-t{secrets.token_hex(3)}"
    names = {role: f"{prefix}-{role}" for role in ROLES}
    # Quotes, a space, $ and @: the shell script and the URL must both survive them.
    passwords = {role: f"{role}-'pw $x@{secrets.token_hex(6)}" for role in ROLES}
    writer = WriterSettings(
        queue=bus.queue_name("mysql"), dead_letter_queue=bus.queue_name("mysql.dead")
    )
    env = {
        "AMQP_URL": bus.settings.url,
        "AMQP_EXCHANGE": bus.settings.exchange,
        "PWBUS_MYSQL_QUEUE": writer.queue,
        "PWBUS_MYSQL_DEAD_LETTER_QUEUE": writer.dead_letter_queue,
        **{broker_users.password_env(role): passwords[role] for role in ROLES},
    }
    flags = [f"--{role}-user={names[role]}" for role in ROLES]
    try:
        result = _pwbus(env, "--apply", "--roles", ",".join(ROLES), *flags)
        if "cannot" in result.stderr and "rabbitmqctl" in result.stderr:
            pytest.skip(result.stderr)
        assert result.returncode == 0, result.stderr
        yield Users(bus, names, passwords, writer, result)
    finally:
        for name in names.values():
            _ctl("delete_user", name)


def _refused(exc: pytest.ExceptionInfo[pika.exceptions.ChannelClosedByBroker]) -> None:
    assert exc.value.reply_code == 403 and "ACCESS_REFUSED" in exc.value.reply_text


def _publish(channel, exchange: str, key: str, user_id: str | None = None) -> None:
    channel.confirm_delivery()
    channel.basic_publish(
        exchange, key, b"{}", pika.BasicProperties(user_id=user_id), mandatory=False
    )


# --------------------------------------------------------------------------- the command


def test_apply_makes_the_users_with_their_permissions_and_never_shows_a_password(
    users: Users,
) -> None:
    out = users.result.stdout + users.result.stderr
    assert all(p not in out and quote(p) not in out for p in users.passwords.values())
    listed = json.loads(_ctl("list_permissions", "--formatter", "json", "-q").stdout)
    mine = {entry["user"]: entry for entry in listed if entry["user"] in users.names.values()}
    assert set(mine) == set(users.names.values())
    poller = mine[users.names["poller"]]
    expected = broker_users.role_permissions(
        "poller", users.bus.settings.exchange, users.writer.queue, users.writer.dead_letter_queue
    )
    assert (poller["configure"], poller["write"], poller["read"]) == (
        expected.configure,
        expected.write,
        expected.read,
    )
    # Applying again changes the passwords of the existing users instead of failing.
    env = {
        "AMQP_URL": users.bus.settings.url,
        "AMQP_EXCHANGE": users.bus.settings.exchange,
        broker_users.password_env("proxy"): "Changed-pw1",
    }
    again = _pwbus(env, "--apply", "--roles", "proxy", f"--proxy-user={users.names['proxy']}")
    assert again.returncode == 0, again.stderr
    users.passwords["proxy"] = "Changed-pw1"
    with users.channel("proxy") as channel:
        declare_exchange(channel, users.bus.settings.exchange)


def test_the_script_shows_passwords_only_where_users_are_made(bus: conftest.TestBus) -> None:
    env = {broker_users.password_env(role): f"Secret-{role}-42" for role in ROLES}
    env |= {"AMQP_URL": bus.settings.url, "AMQP_EXCHANGE": bus.settings.exchange}
    printed = _pwbus(env, "--roles", ",".join(ROLES))
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    for role in ROLES:
        with_password = [line for line in lines if f"Secret-{role}-42" in line]
        assert len(with_password) == 2
        assert "add_user" in with_password[0] and "change_password" in with_password[1]
    # The definitions hold hashes only.
    defined = _pwbus(env, "--roles", ",".join(ROLES), "--format", "definitions")
    assert defined.returncode == 0 and "Secret-" not in defined.stdout
    document = json.loads(defined.stdout)
    assert {u["name"] for u in document["users"]} == set(broker_users.ROLES[r] for r in ROLES)
    # A failing rabbitmqctl is one line naming the command, without the password.
    request = broker_users.BrokerUsersCommand(
        amqp=bus.settings,
        writer=WriterSettings(),
        accounts=(broker_users.Account("proxy", "someone", "Secret-proxy-42"),),
        apply=True,
    )

    def failing(args: list[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
        if args[0] == "list_users":
            return subprocess.CompletedProcess(args, 0, "[]", "")
        return subprocess.CompletedProcess(args, 70, "", f"Error: no way {stdin}\nmore")

    with pytest.raises(broker_users.PwbusError) as failed:
        broker_users.apply(request, run=failing)
    assert str(failed.value).startswith("rabbitmqctl add_user someone failed (exit 70)")
    assert "Secret" not in str(failed.value) and "\n" not in str(failed.value)


def test_passwords_never_as_flags() -> None:
    refused = _pwbus({}, "--poller-password", "x")
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr
    missing = _pwbus({broker_users.password_env("poller"): "Poller-pw1"}, "--roles", "poller,proxy")
    assert missing.returncode == 2
    assert "PWBUS_BROKER_PROXY_PASSWORD" in missing.stderr and "Poller-pw1" not in missing.stderr


def test_the_poller_queue_prefix_is_the_publishers() -> None:
    from powerwall_bus.producers.poller.publisher import RESYNC_QUEUE_PREFIX

    assert broker_users.POLLER_QUEUE_PREFIX == RESYNC_QUEUE_PREFIX


# --------------------------------------------------------------------------- consumers


def test_a_consumer_cannot_publish_a_reading_but_can_ask_for_resync(users: Users) -> None:
    exchange = users.bus.settings.exchange
    with users.channel("proxy") as channel:
        declare_exchange(channel, exchange)
        queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        for key in ("powerwall.*.#", "MeterStream"):
            channel.queue_bind(queue, exchange, routing_key=key)
        channel.basic_consume(queue, lambda *a: None, auto_ack=True)
        channel.basic_publish(
            exchange,
            RESYNC,
            b"",
            pika.BasicProperties(reply_to=queue, user_id=users.names["proxy"]),
        )
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            _publish(channel, exchange, "powerwall.X.meters")
        _refused(refused)
    with users.channel("proxy") as channel:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            _publish(channel, exchange, "MeterStream")
        _refused(refused)
    with users.channel("proxy") as channel:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            _publish(channel, "", "pwbus.poller.x.resync")  # no default exchange
        _refused(refused)


def test_a_consumer_cannot_touch_the_writers_queue_nor_bind_control(users: Users) -> None:
    exchange = users.bus.settings.exchange
    with users.channel("writer") as channel:
        _declare_writer_queue(channel, users)
    for attempt in (
        lambda c: c.queue_delete(users.writer.queue),
        lambda c: c.queue_purge(users.writer.queue),
        lambda c: c.basic_consume(users.writer.queue, lambda *a: None),
        lambda c: c.queue_declare(users.writer.queue, passive=False, durable=True),
        lambda c: c.queue_bind(
            c.queue_declare("", exclusive=True).method.queue, exchange, routing_key=RESYNC
        ),
        lambda c: c.queue_bind(
            c.queue_declare("", exclusive=True).method.queue, exchange, routing_key="#"
        ),
    ):
        with users.channel("proxy") as channel:
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                attempt(channel)
            _refused(refused)


# --------------------------------------------------------------------------- poller


def _declare_writer_queue(channel, users: Users) -> None:
    exchange = users.bus.settings.exchange
    declare_exchange(channel, exchange)
    declare_durable_queue(
        channel,
        exchange,
        users.writer.queue,
        users.writer.dead_letter_queue,
        writer_bindings(meter_stream=True),
        limits={"x-max-length": 10},
    )


def test_the_poller_publishes_readings_and_declares_its_queues(users: Users) -> None:
    exchange = users.bus.settings.exchange
    poller = users.names["poller"]
    with users.channel("poller") as channel:
        declare_exchange(channel, exchange)
        _declare_writer_queue(channel, users)
        queue = f"pwbus.poller.{secrets.token_hex(6)}.resync"
        channel.queue_declare(
            queue, exclusive=True, auto_delete=True, arguments={"x-max-length": 100}
        )
        channel.queue_bind(queue, exchange, routing_key=RESYNC)
        channel.basic_consume(queue, lambda *a: None, auto_ack=True)
        # The control relay's queue: one gateway's signed commands (producers/poller/relay.py).
        commands = f"pwbus.poller.{secrets.token_hex(6)}.control"
        channel.queue_declare(commands, exclusive=True, auto_delete=True)
        channel.queue_bind(commands, exchange, routing_key="control.X.tedapi")
        for key in ("powerwall.X.meters", "powerwall.X.poller.status", "MeterStream"):
            _publish(channel, exchange, key, user_id=poller)
        # A resync answer goes to the asker's queue through the default exchange.
        with users.channel("proxy") as asking:
            reply_to = asking.queue_declare("", exclusive=True).method.queue
            _publish(channel, "", reply_to, user_id=poller)
            assert asking.queue_declare(reply_to, passive=True).method.message_count == 1
    with users.channel("poller") as channel:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            _publish(channel, exchange, "control.resync", user_id=poller)
        _refused(refused)
    with users.channel("writer") as channel:
        # The writer's queue got the meters and MeterStream (the status too, a stored kind).
        assert channel.queue_declare(users.writer.queue, passive=True).method.message_count == 3


# --------------------------------------------------------------------------- writer


def test_the_writer_declares_binds_consumes_and_dead_letters(users: Users) -> None:
    exchange = users.bus.settings.exchange
    with users.channel("writer") as channel:
        _declare_writer_queue(channel, users)
        channel.queue_unbind(users.writer.queue, exchange, routing_key="MeterStream")
        with users.channel("poller") as poller:
            _publish(poller, exchange, "powerwall.X.meters", user_id=users.names["poller"])
        method, _, body = channel.basic_get(users.writer.queue)
        assert method is not None and body == b"{}"
        channel.basic_ack(method.delivery_tag)
        _publish(channel, "", users.writer.dead_letter_queue)
        assert (
            channel.queue_declare(users.writer.dead_letter_queue, passive=True).method.message_count
            == 1
        )
    for key in ("powerwall.X.meters", "control.resync"):
        with users.channel("writer") as channel:
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                _publish(channel, exchange, key)
            _refused(refused)


# --------------------------------------------------------------------------- dispatcher


def test_the_dispatcher_publishes_control_commands_only(users: Users) -> None:
    exchange = users.bus.settings.exchange
    with users.channel("dispatcher") as channel:
        declare_exchange(channel, exchange)
        _publish(channel, exchange, "control.resync")
        _publish(channel, exchange, "control.anything")
        _publish(channel, exchange, "dispatch.X.result")
        # pwbus dispatch follows the plan and learns the DIN from the poller's status.
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.queue_bind(queue, exchange, routing_key="octopus.*.plan")
        channel.queue_bind(queue, exchange, routing_key="powerwall.*.poller.status")
    for attempt in (
        lambda c: _publish(c, exchange, "powerwall.X.meters"),
        lambda c: c.queue_bind(
            c.queue_declare("", exclusive=True).method.queue, exchange, routing_key="powerwall.#"
        ),
        lambda c: c.queue_bind(
            c.queue_declare("", exclusive=True).method.queue, exchange, routing_key="control.#"
        ),
    ):
        with users.channel("dispatcher") as channel:
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                attempt(channel)
            _refused(refused)


def test_the_definitions_file_loads_into_rabbitmq_and_its_users_log_in(tmp_path: Path) -> None:
    """What compose does at boot (load_definitions), done here with rabbitmqctl."""
    tag = secrets.token_hex(4)
    vhost, poller = f"pwbus-defs-{tag}", f"pwbus-defs-{tag}-poller"
    output = tmp_path / "definitions.json"
    made = _pwbus(
        {"PWBUS_BROKER_POLLER_PASSWORD": "Defs-poller-1", "PWBUS_BROKER_PROXY_PASSWORD": "P-2"},
        "--format=definitions", "--roles=poller,proxy", f"--vhost={vhost}",
        f"--poller-user={poller}", f"--proxy-user=pwbus-defs-{tag}-proxy", f"--output={output}",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "Defs-poller-1" not in output.read_text()  # hashes only
    try:
        # The broker's node reads the file itself, as its own user: a readable copy (hashes only).
        readable = Path(f"/tmp/pwbus-definitions-{tag}.json")
        readable.write_text(output.read_text())
        readable.chmod(0o644)
        loaded = _ctl("import_definitions", str(readable))
        readable.unlink()
        assert loaded.returncode == 0, loaded.stderr
        url = f"amqp://{poller}:Defs-poller-1@127.0.0.1:5672/{vhost}"
        connection = wait_until(lambda: _connect(url), 20, step=0.5)  # the import is async
        assert connection is not None
        channel = connection.channel()
        channel.exchange_declare("Tesla", "topic", durable=True)
        _publish(channel, "Tesla", "powerwall.X.meters", poller)
        connection.close()
        with pytest.raises(pika.exceptions.ProbableAuthenticationError):
            pika.BlockingConnection(pika.URLParameters(url.replace("Defs-poller-1", "wrong")))
    finally:
        for role in ("poller", "proxy"):
            _ctl("delete_user", f"pwbus-defs-{tag}-{role}")
        _ctl("delete_vhost", vhost)


def _connect(url: str) -> pika.BlockingConnection | None:
    try:
        return pika.BlockingConnection(pika.URLParameters(url))
    except pika.exceptions.AMQPError:
        return None


def test_the_octopus_producer_publishes_plans_and_nothing_else(users: Users) -> None:
    exchange = users.bus.settings.exchange
    with users.channel("octopus") as channel:
        declare_exchange(channel, exchange)
        _publish(channel, exchange, "octopus.A-1234ABCD.plan", user_id=users.names["octopus"])
    for attempt in (
        lambda c: _publish(c, exchange, "powerwall.X.meters"),
        lambda c: _publish(c, exchange, "control.X.tedapi"),
        lambda c: c.queue_declare("", exclusive=True),
    ):
        with users.channel("octopus") as channel:
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                attempt(channel)
            _refused(refused)
