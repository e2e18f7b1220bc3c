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

Concurrent runs (two writers starting at once) are serialised with ``GET_LOCK`` on the
migration lock (:func:`lock_name`). A running writer holds that lock on its own connection
for as long as it runs (:func:`hold_lock`), so ``pwbus db migrate`` by hand refuses to run
a pending migration under a writer's feet (a table being copied would miss what the writer
adds meanwhile); with nothing pending it just says the version. A writer starting with
``writer.migrate`` migrates before it takes the lock.

Two kinds of statement go beyond SQL. ``PWBUS STEP name`` runs a Python step of
:mod:`~consumers.mysql.upgrade` (copying a large table in chunks, building summaries: work
that says what it is doing with progress lines). A file whose comments hold the line
``-- resumable: ...`` is written so every statement may run again; a run that stopped half
way is resumed at the statement that was running, instead of refused.
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
_STEP = re.compile(r"^PWBUS STEP ([a-z_]+)$")
_RESUMABLE = "-- resumable:"
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

    @property
    def resumable(self) -> bool:
        """True when every statement of the file may run again (see the module docstring)."""
        return any(line.strip().startswith(_RESUMABLE) for line in self.sql.splitlines())

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


def lock_name(database: str) -> str:
    """The migration lock of one database (GET_LOCK names are at most 64 characters)."""
    return f"pwbus.migrate.{database}"[:64]


def _database(cursor: Any) -> str:
    cursor.execute("SELECT DATABASE()")
    (database,) = cursor.fetchone()
    if not database:
        raise MigrationError("no database selected")
    return str(database)


def hold_lock(connection: Connection) -> bool:
    """Take the migration lock on this connection and keep it (until the connection ends):
    a running writer does, so no migration copies tables under its feet. False when
    another session holds it."""
    cursor = connection.cursor()
    try:
        cursor.execute("SELECT GET_LOCK(%s, 0)", (lock_name(_database(cursor)),))
        (locked,) = cursor.fetchone()
    finally:
        cursor.close()
    return locked == 1


def lock_holder(connection: Connection) -> int | None:
    """The connection id holding the migration lock, or None."""
    cursor = connection.cursor()
    try:
        cursor.execute("SELECT IS_USED_LOCK(%s)", (lock_name(_database(cursor)),))
        (holder,) = cursor.fetchone()
    finally:
        cursor.close()
    return None if holder is None else int(holder)


def pending(connection: Connection, migrations: Sequence[Migration] | None = None) -> list[str]:
    """The file names of the migrations not (fully) applied yet."""
    todo = list(migrations) if migrations is not None else available_migrations()
    applied = applied_versions(connection)
    return [m.file_name for m in todo if not (m.version in applied and applied[m.version][4])]


def migrate(
    connection: Connection,
    migrations: Sequence[Migration] | None = None,
    *,
    wait: float = _LOCK_TIMEOUT_S,
) -> int:
    """Apply the pending migrations in order and return the schema version now in place.

    Running it again is a no-op. Raises :class:`MigrationError` when a migration fails or
    an earlier run left one half applied, or when this account lacks the privileges; other
    mysql.connector errors are left to the caller to translate
    (:func:`consumers.mysql.connection.translated`).
    """
    todo = list(migrations) if migrations is not None else available_migrations()
    if todo and not pending(connection, todo):
        return current_version(connection)  # up to date: no lock needed (a writer holds it)
    cursor = connection.cursor()
    database = _database(cursor)
    lock = lock_name(database)
    cursor.execute("SELECT GET_LOCK(%s, %s)", (lock, wait))
    (locked,) = cursor.fetchone()
    if locked != 1:
        raise MigrationError(
            f"the migration lock of {database!r} is held by another session (a running"
            " writer, or another migration): stop the writer (`pwbus mysql`) and try again"
        )
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
    resume: dict[int, int] = {}
    resumable = {m.version for m in todo if m.resumable}
    for version, (file_name, _checksum, total, done, finished) in sorted(applied.items()):
        if finished:
            continue
        if version in resumable:
            _LOGGER.info(
                "migration %s stopped after %d of %d statements: resuming", file_name, done, total
            )
            resume[version] = done
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
        if migration.version in applied and migration.version not in resume:
            continue
        statements = migration.statements()
        if migration.version not in resume:
            cursor.execute(
                f"INSERT INTO {VERSION_TABLE} (version, file_name, checksum, statements,"
                " statements_applied, started_at) VALUES (%s, %s, %s, %s, 0, UTC_TIMESTAMP(3))",
                (migration.version, migration.file_name, migration.checksum, len(statements)),
            )
            connection.commit()
            _LOGGER.info("applying migration %s", migration.file_name)
        skip = resume.get(migration.version, 0)
        for number, statement in enumerate(statements, start=1):
            if number <= skip:
                continue
            try:
                step = _STEP.match(statement)
                if step:
                    from powerwall_bus.consumers.mysql.upgrade import run_step

                    run_step(connection, step.group(1))
                else:
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
    """``pwbus db migrate``: apply what is pending, print the version in place; 0.

    Refuses (at once, not after a wait) while a writer holds the migration lock.
    """
    connection = connect(settings, io_timeout=None)
    try:
        with translated(settings, "applying migrations"):
            todo = pending(connection)
            holder = lock_holder(connection) if todo else None
            if holder is not None:
                raise MigrationError(
                    f"{len(todo)} migration(s) pending ({', '.join(todo)}), but connection"
                    f" {holder} holds the migration lock (a running writer, `pwbus mysql`):"
                    " stop the writer, run `pwbus db migrate`, then start it again"
                )
            version = migrate(connection, wait=0 if todo else _LOCK_TIMEOUT_S)
    finally:
        with contextlib.suppress(Exception):
            connection.close()
    sys.stdout.write(f"{settings.safe_url}: schema version {version}\n")
    return 0
