"""One connect() and one error translation, checked against errors a real server produces.

Every failure here is provoked for real: against the test MariaDB/MySQL
(``PWBUS_TEST_MYSQL_URL``) and against local ports of 127.0.0.1 that refuse, hang up or
never answer. Only :class:`OSError` (which the connector lets through from its socket) is
made up.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import mysql.connector
import pytest

from powerwall_bus.consumers.mysql.connection import (
    CONNECTOR_ERRORS,
    connect,
    is_transient,
    translate,
    translated,
)
from powerwall_bus.shared.errors import DatabaseError, DatabaseUnavailable, PwbusError
from powerwall_bus.shared.settings import MysqlSettings


def url_of(settings: MysqlSettings, *, user: str | None = None, password: str = "") -> str:
    auth = f"{user or settings.user}:{password}" if password else (user or settings.user)
    return f"mysql://{auth}@{settings.host}:{settings.port}/{settings.database}"


def failure(call: Callable[[], Any]) -> BaseException:
    """The connector (or socket) error that ``call`` raises."""
    try:
        call()
    except CONNECTOR_ERRORS as exc:
        return exc
    raise AssertionError("expected a connector error")


def assert_one_line(error: PwbusError, settings: MysqlSettings) -> str:
    text = str(error)
    assert "\n" not in text and len(text) < 600
    assert text.startswith(f"database {settings.safe_url}")
    return text


@contextlib.contextmanager
def local_port(behaviour: str) -> Iterator[int]:
    """A port of 127.0.0.1 that refuses connections, hangs up at once, or never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    if behaviour == "refuse":
        server.close()  # nobody listens: the kernel answers with a reset
        yield port
        return
    server.listen()
    server.settimeout(0.1)  # so the hang-up loop sees ``stop`` soon
    stop = threading.Event()

    def hang_up() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                connection, _ = server.accept()
                connection.close()

    worker = threading.Thread(target=hang_up, daemon=True) if behaviour == "hang-up" else None
    if worker is not None:
        worker.start()
    try:
        yield port
    finally:
        stop.set()
        server.close()
        if worker is not None:
            worker.join(5)


@pytest.fixture
def root(mysql_db: MysqlSettings) -> Iterator[Any]:
    connection = connect(mysql_db)
    yield connection
    with contextlib.suppress(Exception):
        connection.close()


# --------------------------------------------------------------------------- connect


def test_connect_opens_a_read_committed_transaction_without_autocommit(root: Any) -> None:
    cursor = root.cursor()
    cursor.execute("SELECT @@SESSION.autocommit, @@SESSION.character_set_client, DATABASE()")
    autocommit, charset, database = cursor.fetchone()
    assert (autocommit, charset) == (0, "utf8mb4") and database
    cursor.execute(
        "SHOW SESSION VARIABLES WHERE Variable_name IN ('tx_isolation', 'transaction_isolation')"
    )
    assert {str(value) for _name, value in cursor.fetchall()} == {"READ-COMMITTED"}
    cursor.close()


def test_connect_keeps_the_connector_logger_to_warnings(mysql_db: MysqlSettings) -> None:
    connector_log = logging.getLogger("mysql.connector")
    connector_log.setLevel(logging.DEBUG)
    connect(mysql_db).close()
    assert connector_log.level >= logging.WARNING


# --------------------------------------------------------------------------- permanent


def test_a_wrong_password_is_permanent_and_names_the_settings(mysql_db: MysqlSettings) -> None:
    settings = MysqlSettings(url=url_of(mysql_db, password="s3cret-Wrong"))
    with pytest.raises(DatabaseError) as refused:
        connect(settings)
    assert not isinstance(refused.value, DatabaseUnavailable)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    text = assert_one_line(refused.value, settings)
    assert f"refused the login of user {settings.user!r}" in text
    assert "MYSQL_PASSWORD" in text and "Access denied" in text
    assert "s3cret-Wrong" not in text


def test_an_unknown_database_is_permanent_with_the_statement_to_create_it(
    mysql_db: MysqlSettings,
) -> None:
    settings = MysqlSettings(url=url_of(mysql_db), database="pwbus_no_such_db")
    with pytest.raises(DatabaseError) as refused:
        connect(settings)
    text = assert_one_line(refused.value, settings)
    assert "has no database 'pwbus_no_such_db'" in text
    assert "CREATE DATABASE `pwbus_no_such_db` CHARACTER SET utf8mb4" in text


def test_a_user_without_access_to_the_database_is_permanent(
    mysql_db: MysqlSettings, root: Any
) -> None:
    name = f"pwbus_c_{uuid.uuid4().hex[:8]}"
    cursor = root.cursor()
    cursor.execute(f"CREATE USER '{name}'@'%' IDENTIFIED BY 'Only-usage-1'")
    try:
        settings = MysqlSettings(url=url_of(mysql_db, user=name, password="Only-usage-1"))
        with pytest.raises(DatabaseError) as refused:
            connect(settings)
        assert not isinstance(refused.value, DatabaseUnavailable)
        text = assert_one_line(refused.value, settings)
        assert f"user {name!r} may not use database {mysql_db.database!r}" in text
        assert "Only-usage-1" not in text
    finally:
        cursor.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        cursor.close()


def test_sql_errors_are_permanent_and_mask_every_secret(mysql_db: MysqlSettings, root: Any) -> None:
    cursor = root.cursor()
    # A syntax error quotes the statement back: the passwords in it must not reach the message.
    exc = failure(lambda: cursor.execute("SELEC 'Pw-one', 'Pw-two'"))
    assert "Pw-one" in str(exc) and "Pw-two" in str(exc)
    settings = MysqlSettings(url=url_of(mysql_db), password="Pw-two")
    error = translate(exc, settings, doing="creating the users", secrets=("Pw-one",))
    assert type(error) is DatabaseError
    text = assert_one_line(error, settings)
    assert f"database {settings.safe_url} refused creating the users: 1064" in text
    assert "Pw-one" not in text and "Pw-two" not in text and "***" in text


def test_a_value_the_server_will_not_store_is_permanent(mysql_db: MysqlSettings, root: Any) -> None:
    cursor = root.cursor()
    cursor.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    cursor.execute("INSERT INTO t VALUES (1)")
    duplicate = failure(lambda: cursor.execute("INSERT INTO t VALUES (1)"))
    expected = r"refused writing a batch: 1062 \(23000\)"
    with (
        pytest.raises(DatabaseError, match=expected) as refused,
        translated(mysql_db, "writing a batch"),
    ):
        raise duplicate
    assert not isinstance(refused.value, DatabaseUnavailable)


# --------------------------------------------------------------------------- transient


def test_a_refused_connection_is_transient(mysql_db: MysqlSettings) -> None:
    with local_port("refuse") as port:
        settings = MysqlSettings(url=url_of(mysql_db), port=port)
        with pytest.raises(DatabaseUnavailable) as down:
            connect(settings, timeout=2)
    text = assert_one_line(down.value, settings)
    assert (
        f"unavailable while connecting: 2003: Can't connect to MySQL server on '127.0.0.1:{port}'"
        in text
    )
    assert text.endswith("(is the server running?)")


def test_a_server_that_hangs_up_is_transient(mysql_db: MysqlSettings) -> None:
    with local_port("hang-up") as port:
        settings = MysqlSettings(url=url_of(mysql_db), port=port)
        with pytest.raises(DatabaseUnavailable, match="unavailable while connecting: 2013"):
            connect(settings, timeout=2)


def test_a_server_that_never_answers_times_out_as_transient(mysql_db: MysqlSettings) -> None:
    with local_port("silent") as port:
        settings = MysqlSettings(url=url_of(mysql_db), port=port)
        with pytest.raises(DatabaseUnavailable, match="unavailable while connecting") as down:
            connect(settings, timeout=1)
    assert_one_line(down.value, settings)


def test_a_killed_connection_is_transient_and_so_is_using_it_afterwards(
    mysql_db: MysqlSettings, root: Any
) -> None:
    cursor = root.cursor()
    killed = failure(lambda: cursor.execute("KILL CONNECTION_ID()"))
    assert getattr(killed, "errno", None) == 1927  # "Connection was killed" (MariaDB)
    assert is_transient(killed)
    afterwards = failure(lambda: root.cursor().execute("SELECT 1"))
    assert is_transient(afterwards)
    error = translate(afterwards, mysql_db, doing="writing a batch")
    assert isinstance(error, DatabaseUnavailable)
    assert "unavailable while writing a batch: " in assert_one_line(error, mysql_db)


def test_a_lock_wait_timeout_is_transient(mysql_db: MysqlSettings, root: Any) -> None:
    cursor = root.cursor()
    cursor.execute("CREATE TABLE locked (id INT PRIMARY KEY, n INT) ENGINE=InnoDB")
    cursor.execute("INSERT INTO locked VALUES (1, 0)")
    root.commit()
    cursor.execute("UPDATE locked SET n = 1 WHERE id = 1")  # holds the row lock, uncommitted
    other = connect(mysql_db)
    try:
        waiting = other.cursor()
        waiting.execute("SET SESSION innodb_lock_wait_timeout = 1")
        timed_out = failure(lambda: waiting.execute("UPDATE locked SET n = 2 WHERE id = 1"))
    finally:
        other.close()
        root.rollback()
    assert getattr(timed_out, "errno", None) == 1205
    error = translate(timed_out, mysql_db, doing="writing a batch")
    assert isinstance(error, DatabaseUnavailable)
    assert "Lock wait timeout" in str(error)


def test_socket_errors_are_transient(mysql_db: MysqlSettings) -> None:
    error = translate(ConnectionResetError(104, "Connection reset by peer"), mysql_db)
    assert isinstance(error, DatabaseUnavailable)
    assert str(error) == (
        f"database {mysql_db.safe_url} unavailable while connecting:"
        " [Errno 104] Connection reset by peer"
    )


def test_the_translation_does_not_need_a_live_server(mysql_db: MysqlSettings) -> None:
    """The connector's own classification of an error, without a server, is respected."""
    lost = mysql.connector.errors.OperationalError(msg="no id for gateway 'x' yet")
    assert isinstance(translate(lost, mysql_db), DatabaseUnavailable)
    assert type(translate(mysql.connector.errors.ProgrammingError(msg="bad"), mysql_db)) is (
        DatabaseError
    )
