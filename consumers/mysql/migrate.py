"""Schema migrations for the history database, and ``pwbus db migrate``.

``schema/migrations/NNNN_name.sql`` are applied in order, each once. The table
``schema_version`` records every version with its file name, checksum and times. A file
is recorded *before* its first statement runs (``applied_at`` NULL) and its progress is
counted statement by statement, because MySQL and MariaDB commit every DDL statement on its
own: a file that stopped half way cannot be rolled back, so the next run finds the row and
refuses to go on (:class:`MigrationError`) instead of guessing. A file that stopped before
its first statement finished changed nothing and is simply applied again.

Migrations need DDL privileges (CREATE, ALTER, INDEX, DROP, REFERENCES on the database), so
``pwbus db migrate`` runs as an administrator. The writer's least-privilege account
(``pwbus db users``, :mod:`~consumers.mysql.users`) can run :func:`migrate` too as long as
there is nothing to do: the up-to-date check only reads ``schema_version``.

Concurrent runs (two writers starting at once) are serialised with ``GET_LOCK``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import mysql.connector.errors as mysql_errors

from powerwall_bus.consumers.mysql.connection import connect, one_line, translated
from powerwall_bus.shared.errors import DatabaseError
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

# Missing privileges (table access, e.g. CREATE; a global one): the account may read
# schema_version but not change the schema.
_PRIVILEGE_ERRNOS = frozenset({1142, 1227})


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
    an earlier run left one half applied, or when this account lacks the privileges; other
    mysql.connector errors are left to the caller to translate
    (:func:`consumers.mysql.connection.translated`).
    """
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
        except mysql_errors.Error as exc:
            if getattr(exc, "errno", None) in _PRIVILEGE_ERRNOS:
                raise MigrationError(
                    f"this account may not change the schema ({one_line(exc)}):"
                    " run `pwbus db migrate` as a database administrator"
                ) from None
            raise
    finally:
        try:  # a lost connection releases the lock anyway; keep the first error
            cursor.execute("SELECT RELEASE_LOCK(%s)", (lock,))
            cursor.fetchall()
            cursor.close()
        except mysql_errors.Error as exc:
            _LOGGER.debug("could not release %s: %s", lock, one_line(exc))


def _migrate_locked(connection: Connection, cursor: Any, todo: list[Migration]) -> int:
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
            except mysql_errors.Error as exc:
                if getattr(exc, "errno", None) in _PRIVILEGE_ERRNOS:
                    raise
                raise MigrationError(
                    f"migration {migration.file_name} failed at statement {number} of"
                    f" {len(statements)}: {one_line(exc)}"
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


# --------------------------------------------------------------------------- command


def run_migrate(settings: MysqlSettings) -> int:
    """``pwbus db migrate``: apply what is pending, print the version in place; 0."""
    connection = connect(settings)
    try:
        with translated(settings, "applying migrations"):
            version = migrate(connection)
    finally:
        with contextlib.suppress(Exception):
            connection.close()
    sys.stdout.write(f"{settings.safe_url}: schema version {version}\n")
    return 0
