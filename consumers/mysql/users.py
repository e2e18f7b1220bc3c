"""``pwbus db users``: the two least-privilege accounts of the history database.

``schema/users.sql`` creates (or re-creates, to change a password) the writer's account,
which may only SELECT and INSERT on the tables it fills, plus DELETE on the summaries it
recomputes bucket by bucket (and read ``schema_version``, so its
``migrate`` setting can check that the schema is current), and the reports' account, which
may only SELECT. Account names, host pattern and database are checked against a strict
pattern and the passwords are quoted, so the script is safe to print and to run.

Passwords arrive as arguments: how the command obtains them (environment or a prompt, never
a flag) is the command layer's business. They never appear in an error message.
"""

from __future__ import annotations

import contextlib
import re
import string
import sys
from importlib import resources

from powerwall_bus.consumers.mysql.connection import connect, translated
from powerwall_bus.consumers.mysql.migrate import Connection, split_statements
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings import MysqlSettings

#: The tables the writer fills: it gets SELECT and INSERT on each, nothing else.
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
#: The summary tables the writer keeps current: it recomputes buckets (DELETE, INSERT).
SUMMARY_TABLES: tuple[str, ...] = ("meter_minutes", "meter_hours", "soe_minutes", "block_hours")
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
    ) + "".join(
        f"\nGRANT SELECT, INSERT, DELETE ON `{database}`.`{table}` TO '{writer}'@'{host}';"
        for table in SUMMARY_TABLES
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


def run_users(
    settings: MysqlSettings,
    *,
    writer_password: str,
    reader_password: str,
    writer: str = "pwbus",
    reader: str = "pwbus_report",
    host: str = "%",
    apply: bool = False,
) -> int:
    """``pwbus db users``: print the script on stdout, or (``apply``) run it; 0.

    Run it as an administrator of ``settings.database``, after ``pwbus db migrate``.
    """
    sql = users_sql(
        database=settings.database,
        writer_password=writer_password,
        reader_password=reader_password,
        writer=writer,
        reader=reader,
        host=host,
    )
    if not apply:
        sys.stdout.write(sql)
        return 0
    connection = connect(settings)
    try:
        with translated(settings, "creating the users", secrets=(writer_password, reader_password)):
            count = apply_sql(connection, sql)
    finally:
        with contextlib.suppress(Exception):
            connection.close()
    sys.stdout.write(
        f"{settings.safe_url}: users {writer!r} (writer) and {reader!r} (reports) ready"
        f" ({count} statements)\n"
    )
    return 0
