"""Schema migrations, the least-privilege users and ``pwbus db``, against a real MySQL/MariaDB."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mysql.connector
import pytest

from powerwall_bus.consumers.mysql import migrate as mig
from powerwall_bus.consumers.mysql.connection import connect
from powerwall_bus.consumers.mysql.migrate import Migration, MigrationError
from powerwall_bus.consumers.mysql.users import SUMMARY_TABLES, users_sql
from powerwall_bus.shared.errors import ConfigError, DatabaseError, DatabaseUnavailable
from powerwall_bus.shared.settings import MysqlSettings

REPO = Path(__file__).resolve().parents[1]
#: The first migration alone: the runner's own tests add numbered files after it.
FIRST = mig.available_migrations()[:1]
LATEST = len(mig.available_migrations())
TABLES = {
    "battery_block_readings",
    "gateways",
    "grid_status_changes",
    "meter_readings",
    "poller_events",
    "schema_version",
    "soe_readings",
    "vitals_devices",
    "vitals_readings",
    "vitals_signals",
}


@pytest.fixture
def conn(mysql_db: MysqlSettings) -> Iterator[Any]:
    connection = connect(mysql_db)
    yield connection
    connection.close()


def tables(connection: Any) -> set[str]:
    cursor = connection.cursor()
    cursor.execute("SHOW TABLES")
    names = {str(row[0]) for row in cursor.fetchall()}
    cursor.close()
    return names


def version_rows(connection: Any) -> list[tuple[Any, ...]]:
    cursor = connection.cursor()
    cursor.execute(
        "SELECT version, file_name, statements, statements_applied, applied_at IS NOT NULL,"
        " started_at <= applied_at, checksum FROM schema_version ORDER BY version"
    )
    rows = cursor.fetchall()
    cursor.close()
    connection.commit()
    return [tuple(row) for row in rows]


def pwbus(
    *args: str, url: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL_", "PWBUS_"))}
    env["MYSQL_URL"] = url
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "-m", "powerwall_bus", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def url_of(settings: MysqlSettings, *, user: str | None = None, password: str | None = None) -> str:
    name = user or settings.user
    secret = settings.password if password is None else password
    auth = f"{name}:{secret}" if secret else name
    return f"mysql://{auth}@{settings.host}:{settings.port}/{settings.database}"


# --------------------------------------------------------------------------- files


def test_shipped_migrations_are_found_in_order() -> None:
    found = mig.available_migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert found[0].file_name == "0001_initial.sql"
    assert len(found[0].checksum) == 64


def test_the_initial_migration_splits_into_its_nine_tables() -> None:
    statements = mig.available_migrations()[0].statements()
    assert len(statements) == 9
    assert all(s.startswith("CREATE TABLE IF NOT EXISTS") for s in statements)
    assert not any(s.endswith(";") or "--" in s.splitlines()[0] for s in statements)


def test_split_statements_keeps_multi_line_statements_and_drops_comments() -> None:
    sql = (
        "-- heading\nCREATE TABLE a (\n  x INT -- inline stays\n);\n\n-- between\n"
        "SELECT 1;\nSELECT 2"
    )
    assert mig.split_statements(sql) == [
        "CREATE TABLE a (\n  x INT -- inline stays\n)",
        "SELECT 1",
        "SELECT 2",
    ]


# --------------------------------------------------------------------------- migrate


def test_migrate_creates_the_schema_and_records_the_version(conn: Any) -> None:
    assert mig.current_version(conn) == 0
    assert mig.migrate(conn, FIRST) == 1
    assert tables(conn) == TABLES
    ((version, file_name, total, applied, finished, ordered, checksum),) = version_rows(conn)
    assert (version, file_name, total, applied, finished, ordered) == (
        1,
        "0001_initial.sql",
        9,
        9,
        1,
        1,
    )
    assert checksum == mig.available_migrations()[0].checksum
    assert mig.current_version(conn) == 1


def test_migrate_twice_is_a_no_op(conn: Any) -> None:
    assert mig.migrate(conn, FIRST) == 1
    first = version_rows(conn)
    assert mig.migrate(conn, FIRST) == 1
    assert version_rows(conn) == first
    assert tables(conn) == TABLES


def test_a_new_migration_is_applied_after_the_first(conn: Any) -> None:
    migrations = [
        *FIRST,
        Migration(2, "0002_extra.sql", "CREATE TABLE extra (id INT PRIMARY KEY);\n"),
    ]
    assert mig.migrate(conn, FIRST) == 1
    assert mig.migrate(conn, migrations) == 2
    assert "extra" in tables(conn)
    assert [row[:2] for row in version_rows(conn)] == [
        (1, "0001_initial.sql"),
        (2, "0002_extra.sql"),
    ]


BROKEN = Migration(
    2,
    "0002_broken.sql",
    "CREATE TABLE half (id INT PRIMARY KEY);\nALTER TABLE no_such_table ADD COLUMN x INT;\n",
)
FIXED = Migration(
    2,
    "0002_broken.sql",
    "CREATE TABLE IF NOT EXISTS half (id INT PRIMARY KEY);\nALTER TABLE half ADD COLUMN x INT;\n",
)


def test_a_failing_statement_is_reported_and_leaves_a_partial_record(conn: Any) -> None:
    migrations = [*FIRST, BROKEN]
    with pytest.raises(MigrationError, match=r"0002_broken\.sql failed at statement 2 of 2"):
        mig.migrate(conn, migrations)
    assert "half" in tables(conn)  # DDL is not transactional: statement 1 stays applied
    assert version_rows(conn)[1][:5] == (2, "0002_broken.sql", 2, 1, 0)
    assert mig.current_version(conn) == 1


def test_a_partially_applied_migration_is_detected_on_the_next_run(conn: Any) -> None:
    with pytest.raises(MigrationError):
        mig.migrate(conn, [*FIRST, BROKEN])
    # even with the file fixed, nothing runs until a human looked at the database
    with pytest.raises(MigrationError, match=r"0002_broken\.sql is partially applied \(1 of 2"):
        mig.migrate(conn, [*FIRST, FIXED])
    cursor = conn.cursor()
    cursor.execute("ALTER TABLE half ADD COLUMN x INT")  # finished by hand
    cursor.execute("UPDATE schema_version SET applied_at = UTC_TIMESTAMP(3) WHERE version = 2")
    conn.commit()
    cursor.close()
    assert mig.migrate(conn, [*FIRST, FIXED]) == 2


def test_a_migration_that_failed_on_its_first_statement_is_retried(conn: Any) -> None:
    first_fails = Migration(2, "0002_x.sql", "ALTER TABLE nowhere ADD COLUMN x INT;\n")
    with pytest.raises(MigrationError, match="failed at statement 1 of 1"):
        mig.migrate(conn, [*FIRST, first_fails])
    fixed = Migration(2, "0002_x.sql", "ALTER TABLE gateways ADD COLUMN note VARCHAR(10) NULL;\n")
    assert mig.migrate(conn, [*FIRST, fixed]) == 2
    assert version_rows(conn)[1][:5] == (2, "0002_x.sql", 1, 1, 1)


def test_out_of_order_migration_files_are_refused() -> None:
    with pytest.raises(MigrationError, match=r"expected version 0002, found 0003_b\.sql"):
        mig.check_sequence(
            [Migration(1, "0001_a.sql", "SELECT 1;"), Migration(3, "0003_b.sql", "SELECT 1;")]
        )


# --------------------------------------------------------------------------- errors


def test_connect_errors_are_one_line_and_name_no_password(mysql_db: MysqlSettings) -> None:
    wrong = MysqlSettings(url=url_of(mysql_db, password="s3cret-wrong"))
    with pytest.raises(DatabaseError, match="refused the login") as refused:
        connect(wrong)
    assert "s3cret-wrong" not in str(refused.value)
    down = MysqlSettings(url=f"mysql://root@127.0.0.1:1/{mysql_db.database}")
    with pytest.raises(DatabaseUnavailable, match=r"root@127\.0\.0\.1:1/\S+ unavailable"):
        connect(down)
    missing = MysqlSettings(url=url_of(mysql_db).rsplit("/", 1)[0] + "/pwbus_no_such_db")
    with pytest.raises(DatabaseError, match="has no database 'pwbus_no_such_db'"):
        connect(missing)


def test_cli_db_migrate(mysql_db: MysqlSettings) -> None:
    done = pwbus("db", "migrate", url=url_of(mysql_db))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f"schema version {LATEST}")
    again = pwbus("db", "migrate", url=url_of(mysql_db))
    assert again.returncode == 0
    assert again.stdout == done.stdout
    assert "applying migration" not in again.stderr  # nothing to do the second time


def test_cli_db_migrate_refused_login_is_one_line(mysql_db: MysqlSettings) -> None:
    done = pwbus("db", "migrate", url=url_of(mysql_db, password="wrong-Pa55"))
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        f"pwbus db: database {mysql_db.safe_url} refused the login of user {mysql_db.user!r}"
        " (wrong user name or password? check MYSQL_URL / MYSQL_USER / MYSQL_PASSWORD):"
    )
    assert "Access denied" in line and "wrong-Pa55" not in line
    assert done.stdout == ""


def test_cli_db_migrate_server_down_is_one_line(mysql_db: MysqlSettings) -> None:
    done = pwbus("db", "migrate", url=f"mysql://root@127.0.0.1:1/{mysql_db.database}")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        f"pwbus db: database mysql://root@127.0.0.1:1/{mysql_db.database} unavailable while"
        " connecting: "
    )
    assert line.endswith("(is the server running?)")


# --------------------------------------------------------------------------- users


@pytest.fixture
def accounts(mysql_db: MysqlSettings) -> Iterator[tuple[str, str]]:
    """Unique writer and reader names (users are server-wide), dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    writer, reader = f"pwbus_w_{tag}", f"pwbus_r_{tag}"
    yield writer, reader
    admin = connect(mysql_db)
    cursor = admin.cursor()
    for name in (writer, reader):
        cursor.execute(f"DROP USER IF EXISTS '{name}'@'%'")
    admin.close()


def test_users_script_grants_least_privilege(
    mysql_db: MysqlSettings, accounts: tuple[str, str]
) -> None:
    writer, reader = accounts
    assert pwbus("db", "migrate", url=url_of(mysql_db)).returncode == 0
    done = pwbus(
        "db", "users", "--apply", "--writer-user", writer, "--reader-user", reader,
        url=url_of(mysql_db),
        extra_env={
            "PWBUS_DB_WRITER_PASSWORD": "Writer-pw1", "PWBUS_DB_READER_PASSWORD": "Read'er-pw2"
        },
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"users '{writer}' (writer) and '{reader}' (reports) ready" in done.stdout
    assert "Writer-pw1" not in done.stdout + done.stderr

    as_writer = connect(MysqlSettings(url=url_of(mysql_db, user=writer, password="Writer-pw1")))
    cursor = as_writer.cursor()
    cursor.execute("INSERT INTO gateways (din, first_seen) VALUES ('W-1', UTC_TIMESTAMP(3))")
    cursor.execute("SELECT COUNT(*) FROM gateways")
    assert cursor.fetchone() == (1,)
    as_writer.commit()
    for forbidden in (
        "DROP TABLE meter_readings",
        "DELETE FROM gateways",
        "UPDATE gateways SET din = 'x'",
        "CREATE TABLE sneaky (id INT)",
        "INSERT INTO schema_version (version, file_name, checksum, statements, started_at)"
        " VALUES (9, 'x', 'x', 0, UTC_TIMESTAMP())",
    ):
        with pytest.raises(mysql.connector.Error) as denied:
            cursor.execute(forbidden)
        assert denied.value.errno == 1142, forbidden  # command denied to user
    # the writer may check that the schema is current (its `migrate` setting) ...
    assert mig.migrate(as_writer) == LATEST
    # ... but not apply a migration: that needs an administrator
    extra = [
        *mig.available_migrations(),
        Migration(LATEST + 1, f"{LATEST + 1:04d}_x.sql", "CREATE TABLE x (i INT);"),
    ]
    with pytest.raises(MigrationError, match="run `pwbus db migrate` as a database administrator"):
        mig.migrate(as_writer, extra)
    as_writer.close()

    as_reader = connect(MysqlSettings(url=url_of(mysql_db, user=reader, password="Read'er-pw2")))
    cursor = as_reader.cursor()
    cursor.execute("SELECT din FROM gateways")
    assert cursor.fetchall() == [("W-1",)]
    with pytest.raises(mysql.connector.Error) as denied:
        cursor.execute("INSERT INTO gateways (din, first_seen) VALUES ('R-1', UTC_TIMESTAMP(3))")
    assert denied.value.errno == 1142
    with pytest.raises(mysql.connector.Error) as denied:
        cursor.execute("DROP TABLE gateways")
    assert denied.value.errno == 1142
    as_reader.close()


def test_users_script_is_printed_without_apply(mysql_db: MysqlSettings) -> None:
    done = pwbus(
        "db", "users",
        url=url_of(mysql_db),
        extra_env={"PWBUS_DB_WRITER_PASSWORD": "w'1", "PWBUS_DB_READER_PASSWORD": "r2"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    script = done.stdout
    assert f"GRANT SELECT, INSERT ON `{mysql_db.database}`.`meter_readings` TO 'pwbus'@'%';" in (
        script
    )
    assert "IDENTIFIED BY 'w''1';" in script  # the quote is doubled
    assert f"GRANT SELECT ON `{mysql_db.database}`.* TO 'pwbus_report'@'%';" in script
    grants = [s for s in mig.split_statements(script) if s.startswith("GRANT")]
    # schema_version, the 9 data tables, the 4 summaries, the reader's database
    assert len(grants) == 15
    for grant in grants:
        privileges, _, target = grant.removeprefix("GRANT ").partition(" ON ")
        if any(f"`{table}`" in target for table in SUMMARY_TABLES):
            assert privileges == "SELECT, INSERT, DELETE", grant  # buckets are recomputed
        else:
            assert privileges in ("SELECT", "SELECT, INSERT"), grant
    assert "${" not in script


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"database": "bad-name"}, "database"),
        ({"writer": "x; DROP"}, "writer-user"),
        ({"reader": "pwbus"}, "reader-user"),
        ({"host": "a b"}, "user-host"),
        ({"writer_password": "back\\slash"}, "writer-password"),
        ({"reader_password": ""}, "reader-password"),
    ],
)
def test_users_script_refuses_unsafe_values(kwargs: dict[str, str], key: str) -> None:
    values = {"database": "powerwall", "writer_password": "a", "reader_password": "b", **kwargs}
    with pytest.raises(ConfigError) as refused:
        users_sql(**values)
    assert refused.value.key == key
