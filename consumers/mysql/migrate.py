"""Schema migrations for the history database, and the ``pwbus db`` commands.

``schema/migrations/NNNN_name.sql`` are applied in order, each once. The table
``schema_version`` records every version with its file name, checksum and times. A file
is recorded *before* its first statement runs (``applied_at`` NULL) and its progress is
counted statement by statement, because MySQL and MariaDB commit every DDL statement on its
own: a file that stopped half way cannot be rolled back, so the next run finds the row and
refuses to go on (:class:`MigrationError`) instead of guessing. A file that stopped before
its first statement finished changed nothing and is simply applied again.

Migrations need DDL privileges (CREATE, ALTER, INDEX, DROP, REFERENCES on the database), so
``pwbus db migrate`` runs as an administrator. The writer's least-privilege account
(``pwbus db users``) can run :func:`migrate` too as long as there is nothing to do: the
up-to-date check only reads ``schema_version``.

Concurrent runs (two writers starting at once) are serialised with ``GET_LOCK``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import string
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from powerwall_bus.shared.errors import ConfigError, DatabaseError, DatabaseUnavailable, PwbusError
from powerwall_bus.shared.settings import MysqlSettings

_LOGGER = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")
_LOCK_TIMEOUT_S = 60
VERSION_TABLE = "schema_version"

_CREATE_VERSION_TABLE = f"""
CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
    version INT UNSIGNED NOT NULL,
    file_name VARCHAR(255) NOT NULL,
    checksum CHAR(64) NOT NULL,
    statements INT UNSIGNED NOT NULL,
    statements_applied INT UNSIGNED NOT NULL DEFAULT 0,
    started_at DATETIME(3) NOT NULL,
    applied_at DATETIME(3) NULL,
    PRIMARY KEY (version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
"""

# mysql.connector error numbers, translated at this boundary
_ER_DBACCESS_DENIED = 1044
_ER_ACCESS_DENIED = 1045
_ER_BAD_DB = 1049
_ER_TABLEACCESS_DENIED = 1142
_ER_ACCESS_DENIED_NO_PASSWORD = 1698
_ER_SPECIFIC_ACCESS_DENIED = 1227
_UNREACHABLE = frozenset({2002, 2003, 2005, 2006, 2013, 2055})


class MigrationError(DatabaseError):
    """A migration failed, was left half applied, or cannot run with this account."""


class Connection(Protocol):
    """The part of a mysql.connector connection used here."""

    def cursor(self, *args: Any, **kwargs: Any) -> Any: ...

    def commit(self) -> None: ...


@dataclass(frozen=True)
class Migration:
    """One ``NNNN_name.sql`` file: its version number, file name and text."""

    version: int
    file_name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text, recorded with the version."""
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()

    def statements(self) -> list[str]:
        """The file's statements, in order (see :func:`split_statements`)."""
        return split_statements(self.sql)


# --------------------------------------------------------------------------- files


def split_statements(sql: str) -> list[str]:
    """Split a migration into statements: each ends on a line that ends with ``;``.

    Lines that are only a ``--`` comment are dropped; the trailing ``;`` is removed.
    """
    statements: list[str] = []
    current: list[str] = []
    for line in sql.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        current.append(line.rstrip())
        if stripped.endswith(";"):
            text = "\n".join(current).rstrip()[:-1].strip()
            if text:
                statements.append(text)
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return statements


def available_migrations() -> list[Migration]:
    """The migrations shipped with this program (checkout or installed wheel), in order."""
    folder = resources.files("powerwall_bus.schema").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match and entry.is_file():
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    return check_sequence(found)


def check_sequence(migrations: Sequence[Migration]) -> list[Migration]:
    """The migrations sorted; raises unless they run 0001, 0002, ... without a gap."""
    ordered = sorted(migrations, key=lambda m: m.version)
    for position, migration in enumerate(ordered, start=1):
        if migration.version != position:
            raise MigrationError(
                f"schema/migrations: expected version {position:04d}, found {migration.file_name}"
                " (versions must run 0001, 0002, ... without gaps or duplicates)"
            )
    if not ordered:
        raise MigrationError("schema/migrations: no migration files found (broken install?)")
    return ordered


# --------------------------------------------------------------------------- database


def connect(settings: MysqlSettings, *, timeout: float = 10.0) -> Any:
    """Open a connection to the configured database, failures translated (see below)."""
    import mysql.connector

    # mysql.connector logs every authentication plugin it loads at INFO
    connector_log = logging.getLogger("mysql.connector")
    connector_log.setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))

    try:
        return mysql.connector.connect(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            password=settings.password,
            database=settings.database,
            connection_timeout=max(1, int(timeout)),
            charset="utf8mb4",
            autocommit=False,
        )
    except mysql.connector.Error as exc:
        raise database_error(exc, settings) from None


def database_error(exc: Exception, settings: MysqlSettings) -> PwbusError:
    """Translate a mysql.connector error into one line that names no password.

    :class:`DatabaseUnavailable` when the server cannot be reached (try again later),
    :class:`DatabaseError` when it answered and refused (login, database, SQL).
    """
    errno = getattr(exc, "errno", None)
    where = f"{settings.host}:{settings.port}"
    if errno in (_ER_ACCESS_DENIED, _ER_ACCESS_DENIED_NO_PASSWORD):
        return DatabaseError(
            f"MySQL at {where} refused the login of user {settings.user!r}"
            " (wrong user name or password)"
        )
    if errno == _ER_DBACCESS_DENIED:
        return DatabaseError(
            f"MySQL at {where}: user {settings.user!r} may not use database {settings.database!r}"
        )
    if errno == _ER_BAD_DB:
        return DatabaseError(
            f"MySQL at {where} has no database {settings.database!r}"
            f" (create it: CREATE DATABASE `{settings.database}` CHARACTER SET utf8mb4)"
        )
    if errno in _UNREACHABLE or errno is None:
        return DatabaseUnavailable(
            f"cannot reach MySQL at {where}: {_one_line(exc)} (is the server running?)"
        )
    return DatabaseError(f"MySQL at {where}: {_one_line(exc)}")


def _one_line(exc: Exception) -> str:
    text = getattr(exc, "msg", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _version_table_exists(cursor: Any) -> bool:
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.tables"
        " WHERE table_schema = DATABASE() AND table_name = %s",
        (VERSION_TABLE,),
    )
    (count,) = cursor.fetchone()
    return bool(count)


def applied_versions(connection: Connection) -> dict[int, tuple[str, str, int, int, bool]]:
    """``version -> (file_name, checksum, statements, statements_applied, finished)``."""
    cursor = connection.cursor()
    try:
        if not _version_table_exists(cursor):
            return {}
        cursor.execute(
            f"SELECT version, file_name, checksum, statements, statements_applied,"
            f" applied_at IS NOT NULL FROM {VERSION_TABLE} ORDER BY version"
        )
        return {
            int(row[0]): (str(row[1]), str(row[2]), int(row[3]), int(row[4]), bool(row[5]))
            for row in cursor.fetchall()
        }
    finally:
        cursor.close()


def current_version(connection: Connection) -> int:
    """The highest fully applied version (0 for an empty database)."""
    done = [v for v, row in applied_versions(connection).items() if row[4]]
    return max(done, default=0)


def migrate(connection: Connection, migrations: Sequence[Migration] | None = None) -> int:
    """Apply the pending migrations in order and return the schema version now in place.

    Running it again is a no-op. Raises :class:`MigrationError` when a migration fails or
    an earlier run left one half applied; mysql.connector errors are not translated here
    (see :func:`database_error`) except for missing privileges.
    """
    import mysql.connector

    todo = list(migrations) if migrations is not None else available_migrations()
    cursor = connection.cursor()
    cursor.execute("SELECT DATABASE()")
    (database,) = cursor.fetchone()
    if not database:
        raise MigrationError("no database selected")
    lock = f"pwbus.migrate.{database}"[:64]
    cursor.execute("SELECT GET_LOCK(%s, %s)", (lock, _LOCK_TIMEOUT_S))
    (locked,) = cursor.fetchone()
    if locked != 1:
        raise MigrationError(f"another migration of {database!r} is still running")
    try:
        try:
            return _migrate_locked(connection, cursor, todo)
        except mysql.connector.Error as exc:
            if getattr(exc, "errno", None) in (_ER_TABLEACCESS_DENIED, _ER_SPECIFIC_ACCESS_DENIED):
                raise MigrationError(
                    f"this account may not change the schema ({_one_line(exc)}):"
                    " run `pwbus db migrate` as a database administrator"
                ) from None
            raise
    finally:
        try:  # a lost connection releases the lock anyway; keep the first error
            cursor.execute("SELECT RELEASE_LOCK(%s)", (lock,))
            cursor.fetchall()
            cursor.close()
        except mysql.connector.Error as exc:
            _LOGGER.debug("could not release %s: %s", lock, _one_line(exc))


def _migrate_locked(connection: Connection, cursor: Any, todo: list[Migration]) -> int:
    import mysql.connector

    applied = applied_versions(connection)
    for version, (file_name, _checksum, total, done, finished) in sorted(applied.items()):
        if finished:
            continue
        if done == 0:
            _LOGGER.warning("migration %s stopped before its first statement: retrying", file_name)
            cursor.execute(f"DELETE FROM {VERSION_TABLE} WHERE version = %s", (version,))
            connection.commit()
            del applied[version]
            continue
        raise MigrationError(
            f"migration {file_name} is partially applied ({done} of {total} statements ran):"
            f" finish or undo it by hand, then set applied_at (or delete version {version})"
            f" in {VERSION_TABLE} and migrate again"
        )
    known = {m.version: m for m in todo}
    for version, (file_name, checksum, *_rest) in sorted(applied.items()):
        if version in known and known[version].checksum != checksum:
            _LOGGER.warning(
                "migration %s was applied from a different file (%s); not applied again",
                known[version].file_name,
                file_name,
            )
    newest = max(applied, default=0)
    if newest > max(known, default=0):
        _LOGGER.warning(
            "the database schema (version %d) is newer than this program knows (%d)",
            newest,
            max(known, default=0),
        )
    if not _version_table_exists(cursor):
        cursor.execute(_CREATE_VERSION_TABLE)
    for migration in todo:
        if migration.version in applied:
            continue
        statements = migration.statements()
        cursor.execute(
            f"INSERT INTO {VERSION_TABLE} (version, file_name, checksum, statements,"
            " statements_applied, started_at) VALUES (%s, %s, %s, %s, 0, UTC_TIMESTAMP(3))",
            (migration.version, migration.file_name, migration.checksum, len(statements)),
        )
        connection.commit()
        _LOGGER.info("applying migration %s", migration.file_name)
        for number, statement in enumerate(statements, start=1):
            try:
                cursor.execute(statement)
                if cursor.with_rows:
                    cursor.fetchall()
            except mysql.connector.Error as exc:
                if getattr(exc, "errno", None) in (
                    _ER_TABLEACCESS_DENIED,
                    _ER_SPECIFIC_ACCESS_DENIED,
                ):
                    raise
                raise MigrationError(
                    f"migration {migration.file_name} failed at statement {number} of"
                    f" {len(statements)}: {_one_line(exc)}"
                ) from None
            cursor.execute(
                f"UPDATE {VERSION_TABLE} SET statements_applied = %s WHERE version = %s",
                (number, migration.version),
            )
            connection.commit()
        cursor.execute(
            f"UPDATE {VERSION_TABLE} SET applied_at = UTC_TIMESTAMP(3) WHERE version = %s",
            (migration.version,),
        )
        connection.commit()
        applied[migration.version] = (migration.file_name, migration.checksum, 0, 0, True)
    return max(v for v in applied) if applied else 0


# --------------------------------------------------------------------------- users


WRITER_TABLES: tuple[str, ...] = (
    "gateways",
    "meter_readings",
    "soe_readings",
    "grid_status_changes",
    "battery_block_readings",
    "vitals_devices",
    "vitals_signals",
    "vitals_readings",
    "poller_events",
)
_IDENTIFIER = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_HOST = re.compile(r"^[A-Za-z0-9_.%:-]{1,255}$")


def users_sql(
    *,
    database: str,
    writer_password: str,
    reader_password: str,
    writer: str = "pwbus",
    reader: str = "pwbus_report",
    host: str = "%",
) -> str:
    """``schema/users.sql`` with the names and passwords filled in (checked and quoted)."""
    for key, value in (("database", database), ("writer-user", writer), ("reader-user", reader)):
        if not _IDENTIFIER.match(value):
            raise ConfigError(key, "use 1 to 32 letters, digits or _")
    if writer == reader:
        raise ConfigError("reader-user", "must differ from the writer user")
    if not _HOST.match(host):
        raise ConfigError("user-host", "use a host name, an address or a pattern with %")
    for key, password in (
        ("writer-password", writer_password),
        ("reader-password", reader_password),
    ):
        if not password:
            raise ConfigError(key, "must not be empty")
        if "\\" in password or any(ord(c) < 32 for c in password):
            raise ConfigError(key, "must not contain a backslash or control characters")
    template = resources.files("powerwall_bus.schema").joinpath("users.sql").read_text("utf-8")
    grants = "\n".join(
        f"GRANT SELECT, INSERT ON `{database}`.`{table}` TO '{writer}'@'{host}';"
        for table in WRITER_TABLES
    )
    return string.Template(template).substitute(
        database=database,
        writer=writer,
        reader=reader,
        host=host,
        writer_password=writer_password.replace("'", "''"),
        reader_password=reader_password.replace("'", "''"),
        writer_table_grants=grants,
    )


def apply_sql(connection: Connection, sql: str) -> int:
    """Run every statement of ``sql`` (split like a migration); returns how many ran."""
    cursor = connection.cursor()
    try:
        statements = split_statements(sql)
        for statement in statements:
            cursor.execute(statement)
            if cursor.with_rows:
                cursor.fetchall()
        connection.commit()
        return len(statements)
    finally:
        cursor.close()


# --------------------------------------------------------------------------- command


def run_db(args: argparse.Namespace, settings: MysqlSettings) -> int:
    """``pwbus db migrate`` and ``pwbus db users``."""
    import mysql.connector

    if args.db_action == "users":
        sql = users_sql(
            database=settings.database,
            writer_password=args.writer_password,
            reader_password=args.reader_password,
            writer=args.writer_user,
            reader=args.reader_user,
            host=args.user_host,
        )
        if not args.apply:
            sys.stdout.write(sql)
            return 0
    connection = connect(settings)
    try:
        if args.db_action == "migrate":
            version = migrate(connection)
            sys.stdout.write(f"{settings.safe_url}: schema version {version}\n")
            return 0
        count = apply_sql(connection, sql)
        sys.stdout.write(
            f"{settings.safe_url}: users {args.writer_user!r} (writer) and"
            f" {args.reader_user!r} (reports) ready ({count} statements)\n"
        )
        return 0
    except mysql.connector.Error as exc:
        raise database_error(exc, settings) from None
    finally:
        connection.close()
