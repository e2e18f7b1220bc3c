"""The one way this project opens a MySQL/MariaDB connection, and the one translation of its errors.

Every database user (the writer's :mod:`~consumers.mysql.db`, migrations, ``pwbus db users``,
reports, the ``pwbus mysql --check`` probe) connects through :func:`connect` and turns
mysql.connector's exceptions into the project's own with :func:`translate` (or the
:func:`translated` block around it). So the same failure reads the same everywhere, and the
decision "try again later" versus "fix the settings" is made in one place:

- :class:`~shared.errors.DatabaseUnavailable` (transient): the server cannot be reached, is
  shutting down, dropped or killed the connection, timed out, ran out of connections or
  disk, or a lock wait or deadlock aborted the statement. Callers keep what they have and
  retry.
- :class:`~shared.errors.DatabaseError` (permanent): the server answered and refused, e.g.
  a wrong login, an unknown database, a missing privilege, an SQL error or a value it will
  not store. The same request would fail again.

Each message is a single line that names the database by its password-free URL
(``database mysql://user@host:port/name``), says what was being done, adds a hint where the
cause is a setting, and ends with the server's own words. The password, and any other
secret the caller names (``pwbus db users`` passes the new accounts' passwords), is
replaced by ``***`` wherever the server's text would echo it, e.g. in an SQL syntax error.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import mysql.connector
import mysql.connector.errors as mysql_errors

from powerwall_bus.shared.errors import DatabaseError, DatabaseUnavailable, PwbusError
from powerwall_bus.shared.settings import MysqlSettings

#: What a connector call may raise: the connector's errors, and socket errors it lets through.
CONNECTOR_ERRORS: tuple[type[BaseException], ...] = (mysql_errors.Error, OSError)

#: Server error numbers that mean "not now" rather than "never": server shutdown, too many
#: connections, server shutdown in progress, lock wait timeout, deadlock, read-only (a
#: fail-over in progress), connection killed (twice: MySQL and MariaDB), disconnected for
#: inactivity.
TRANSIENT_ERRNOS = frozenset({1021, 1040, 1053, 1205, 1213, 1290, 1836, 1927, 4031})

#: Client error numbers that mean the server could not be reached at all (no socket, no
#: TCP connection, unknown host): the hint is "is the server running?".
UNREACHABLE_ERRNOS = frozenset({2002, 2003, 2005})

ER_DBACCESS_DENIED = 1044
ER_ACCESS_DENIED = 1045
ER_BAD_DB = 1049
ER_ACCESS_DENIED_NO_PASSWORD = 1698
#: A wrong login: the settings are wrong, not the server's state.
LOGIN_ERRNOS = frozenset({ER_ACCESS_DENIED, ER_ACCESS_DENIED_NO_PASSWORD})

_TIMEOUT_ERRORS: tuple[type[BaseException], ...] = tuple(
    getattr(mysql_errors, name)
    for name in ("ConnectionTimeoutError", "ReadTimeoutError", "WriteTimeoutError")
    if hasattr(mysql_errors, name)  # connector 9.2 and later
)
_MAX_DETAIL = 300
_REDACTED = "***"


def quiet_connector_log() -> None:
    """Keep mysql.connector's logger at WARNING or above.

    It logs every authentication plugin it loads at INFO, on every connect, which would
    drown the writer's own log lines; warnings and errors still come through.
    """
    root = logging.getLogger().getEffectiveLevel()
    logging.getLogger("mysql.connector").setLevel(max(logging.WARNING, root))


def connect(
    settings: MysqlSettings, *, timeout: float = 10.0, io_timeout: float | None = None
) -> Any:
    """A new connection to the configured database: autocommit off, READ COMMITTED, utf8mb4.

    ``timeout`` bounds connecting; ``io_timeout`` bounds each read or write on the socket
    (None: no limit, for migrations and reports, which may legitimately run for minutes).
    The C extension is used when it is installed, the pure-Python connector otherwise.
    Failures raise :class:`DatabaseUnavailable` or :class:`DatabaseError` (see
    :func:`translate`).
    """
    quiet_connector_log()
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "user": settings.user,
        "password": settings.password,
        "database": settings.database,
        "autocommit": False,
        "connection_timeout": max(1, round(timeout)),
        "use_pure": not getattr(mysql.connector, "HAVE_CEXT", False),
        "charset": "utf8mb4",
    }
    defaults = getattr(mysql.connector.constants, "DEFAULT_CONFIGURATION", {})
    for name in ("read_timeout", "write_timeout"):
        if name in defaults and io_timeout is not None:  # connector 9.2 and later
            options[name] = max(1, round(io_timeout))
    with translated(settings, "connecting"):
        connection = mysql.connector.connect(**options)
        try:
            cursor = connection.cursor()
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            # MySQL 8 cuts GROUP_CONCAT at 1 kB by default (MariaDB at 1 MB), and a cut list
            # is an error inside INSERT ... SELECT in strict mode (the summaries use one)
            cursor.execute("SET SESSION group_concat_max_len = 1048576")
            cursor.close()
        except BaseException:
            with contextlib.suppress(Exception):
                connection.close()
            raise
        return connection


def is_transient(exc: BaseException) -> bool:
    """True for failures that a later attempt may not see again (see the module docstring)."""
    if isinstance(exc, OSError):
        return True
    errno = getattr(exc, "errno", None)
    if errno in TRANSIENT_ERRNOS:
        return True
    if errno in LOGIN_ERRNOS or errno in (ER_DBACCESS_DENIED, ER_BAD_DB):
        return False
    if _TIMEOUT_ERRORS and isinstance(exc, _TIMEOUT_ERRORS):
        return True
    if isinstance(exc, mysql_errors.OperationalError):
        return True  # lost connection (2013), server gone (2006, 2055), our own "no id yet"
    if isinstance(exc, mysql_errors.InterfaceError):
        return errno is None or errno <= 0 or 2000 <= errno < 3000  # client-side: the link
    return False


def one_line(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """The exception's text on one line, at most 300 characters, with ``secrets`` masked."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    return text[:_MAX_DETAIL]


def translate(
    exc: BaseException,
    settings: MysqlSettings,
    *,
    doing: str = "connecting",
    secrets: Iterable[str] = (),
) -> PwbusError:
    """The project's exception for a connector (or socket) error; the caller raises it.

    ``doing`` completes "unavailable while ..." / "refused ...", e.g. "writing a batch".
    The settings' password and ``secrets`` never appear in the message.
    """
    masked = [settings.password, *secrets]
    detail = one_line(exc, masked)
    subject = f"database {settings.safe_url}"
    errno = getattr(exc, "errno", None)
    if is_transient(exc):
        hint = " (is the server running?)" if errno in UNREACHABLE_ERRNOS else ""
        return DatabaseUnavailable(f"{subject} unavailable while {doing}: {detail}{hint}")
    if errno in LOGIN_ERRNOS:
        return DatabaseError(
            f"{subject} refused the login of user {settings.user!r} (wrong user name or"
            f" password? check MYSQL_URL / MYSQL_USER / MYSQL_PASSWORD): {detail}"
        )
    if errno == ER_DBACCESS_DENIED:
        return DatabaseError(
            f"{subject}: user {settings.user!r} may not use database {settings.database!r}"
            f" (grant it, or check MYSQL_USER / MYSQL_DATABASE): {detail}"
        )
    if errno == ER_BAD_DB:
        return DatabaseError(
            f"{subject}: the server has no database {settings.database!r} (create it:"
            f" CREATE DATABASE `{settings.database}` CHARACTER SET utf8mb4; or check"
            " MYSQL_DATABASE)"
        )
    return DatabaseError(f"{subject} refused {doing}: {detail}")


@contextlib.contextmanager
def translated(
    settings: MysqlSettings, doing: str, *, secrets: Iterable[str] = ()
) -> Iterator[None]:
    """Run the block; a connector or socket error leaves it as :func:`translate` says.

    The original exception is not chained: its text may hold what the message masks.
    """
    try:
        yield
    except CONNECTOR_ERRORS as exc:
        raise translate(exc, settings, doing=doing, secrets=secrets) from None
