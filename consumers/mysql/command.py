"""``pwbus mysql``, ``pwbus db`` and ``pwbus report``: the history's command-line surface.

Light on purpose (see :mod:`powerwall_bus.shared.command`): mysql-connector and pika are
imported inside ``run``. Each command reads its flags and settings into one typed object.

``pwbus db users`` never takes a password as a flag (it would show in ``ps`` and in the
shell's history): the two passwords come from ``PWBUS_DB_WRITER_PASSWORD`` and
``PWBUS_DB_READER_PASSWORD``, or are asked for at the terminal.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from powerwall_bus.shared.command import Command, exchange_flag, password_from_env_or_prompt
from powerwall_bus.shared.settings import (
    AmqpSettings,
    MysqlSettings,
    Sources,
    WriterSettings,
    load,
)

WRITER_PASSWORD_ENV = "PWBUS_DB_WRITER_PASSWORD"
READER_PASSWORD_ENV = "PWBUS_DB_READER_PASSWORD"
REPORT_NAMES = ("daily", "monthly", "hourly", "peaks", "outages", "completeness")
REPORT_FORMATS = ("table", "csv", "json")


# --------------------------------------------------------------------------- pwbus mysql


@dataclass(frozen=True)
class WriterConfig:
    """Everything ``pwbus mysql`` needs."""

    amqp: AmqpSettings
    mysql: MysqlSettings
    writer: WriterSettings


@dataclass(frozen=True)
class WriterCommand:
    """``pwbus mysql``: run the writer, or (``check``) probe the stored history's age."""

    config: WriterConfig
    check: bool = False
    max_age: float = 60.0


def _writer_arguments(parser: argparse.ArgumentParser) -> None:
    exchange_flag(parser)
    parser.add_argument(
        "--queue", dest="writer.queue", metavar="NAME", help="durable queue to read (pwbus.mysql)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="health probe: exit 0 if meter readings newer than --max-age are stored",
    )
    parser.add_argument(
        "--max-age", type=float, default=60.0, metavar="SECONDS", help="for --check (60)"
    )


def _writer_load(sources: Sources, args: argparse.Namespace) -> WriterCommand:
    config = WriterConfig(
        amqp=load(AmqpSettings, "amqp", sources),
        mysql=load(MysqlSettings, "mysql", sources),
        writer=load(WriterSettings, "writer", sources),
    )
    return WriterCommand(config, check=bool(args.check), max_age=float(args.max_age))


def _writer_run(command: WriterCommand) -> int:
    from powerwall_bus.consumers.mysql.main import check_health, run_writer

    if command.check:
        return check_health(command.config.mysql, command.max_age)
    return run_writer(command.config)


MYSQL = Command(
    name="mysql",
    help="write the readings from the bus into MySQL/MariaDB (history)",
    add_arguments=_writer_arguments,
    load=_writer_load,
    run=_writer_run,
)


# --------------------------------------------------------------------------- pwbus db


@dataclass(frozen=True)
class UserAccounts:
    """The two least-privilege accounts ``pwbus db users`` creates."""

    writer_password: str = field(repr=False, metadata={"secret": True})
    reader_password: str = field(repr=False, metadata={"secret": True})
    writer_user: str = "pwbus"
    reader_user: str = "pwbus_report"
    host: str = "%"
    apply: bool = False


@dataclass(frozen=True)
class DbCommand:
    """``pwbus db migrate``, ``summarize``, ``prune`` or ``users``."""

    mysql: MysqlSettings
    action: str
    users: UserAccounts | None = None
    date_from: str | None = None
    date_to: str | None = None
    writer: WriterSettings | None = None  # prune: the retention settings


def _db_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    actions.add_parser("migrate", help="apply the schema migrations (as an administrator)")
    summarize = actions.add_parser(
        "summarize",
        help="rebuild the summaries from the raw readings (after an import or a restore)",
        description="Recomputes the summaries of every UTC day in [--from, --to) that has raw"
        " readings; days without raw readings keep theirs. Running it twice changes nothing.",
    )
    summarize.add_argument("--from", dest="date_from", metavar="DATE", help="(the first day)")
    summarize.add_argument("--to", dest="date_to", metavar="DATE", help="exclusive (no limit)")
    actions.add_parser(
        "prune",
        help="apply retention now: drop raw days older than the retention settings, print them",
        description="Keeps writer.raw_retention_days ($PWBUS_RAW_RETENTION_DAYS) and"
        " writer.vitals_retention_days ($PWBUS_VITALS_RETENTION_DAYS) whole UTC days of raw"
        " readings (0: all), creates daily partitions ahead, never removes raw days that"
        " have no summaries yet. Summaries are kept forever.",
    )
    users = actions.add_parser(
        "users",
        help="print (or --apply) the SQL creating the writer and report users",
        description=f"The passwords come from ${WRITER_PASSWORD_ENV} and "
        f"${READER_PASSWORD_ENV}, or are asked for at the terminal (never as flags).",
    )
    users.add_argument("--writer-user", default="pwbus", metavar="NAME", help="(pwbus)")
    users.add_argument(
        "--reader-user", default="pwbus_report", metavar="NAME", help="report user (pwbus_report)"
    )
    users.add_argument(
        "--user-host", default="%", metavar="HOST", help="host part of both accounts (%%)"
    )
    users.add_argument("--apply", action="store_true", help="run it instead of printing it")


def _password(sources: Sources, env_name: str, who: str) -> str:
    return password_from_env_or_prompt(sources, f"db.{who}_password", env_name, who)


def _db_load(sources: Sources, args: argparse.Namespace) -> DbCommand:
    mysql = load(MysqlSettings, "mysql", sources)
    if args.db_action != "users":
        return DbCommand(
            mysql,
            args.db_action,
            date_from=getattr(args, "date_from", None),
            date_to=getattr(args, "date_to", None),
            writer=load(WriterSettings, "writer", sources) if args.db_action == "prune" else None,
        )
    accounts = UserAccounts(
        writer_password=_password(sources, WRITER_PASSWORD_ENV, "writer"),
        reader_password=_password(sources, READER_PASSWORD_ENV, "reader"),
        writer_user=args.writer_user,
        reader_user=args.reader_user,
        host=args.user_host,
        apply=bool(args.apply),
    )
    return DbCommand(mysql, "users", accounts)


def _db_run(command: DbCommand) -> int:
    if command.action == "prune":
        from powerwall_bus.consumers.mysql.history import run_prune

        assert command.writer is not None
        return run_prune(command.mysql, command.writer)
    if command.action == "summarize":
        from powerwall_bus.consumers.mysql.history import run_summarize

        return run_summarize(command.mysql, command.date_from, command.date_to)
    if command.users is None:
        from powerwall_bus.consumers.mysql.migrate import run_migrate

        return run_migrate(command.mysql)
    from powerwall_bus.consumers.mysql.users import run_users

    users = command.users
    return run_users(
        command.mysql,
        writer_password=users.writer_password,
        reader_password=users.reader_password,
        writer=users.writer_user,
        reader=users.reader_user,
        host=users.host,
        apply=users.apply,
    )


DB = Command(
    name="db",
    help="the MySQL/MariaDB history database: migrate, summarize, prune, users",
    add_arguments=_db_arguments,
    load=_db_load,
    run=_db_run,
)


# --------------------------------------------------------------------------- pwbus report


@dataclass(frozen=True)
class ReportCommand:
    """``pwbus report NAME``: which report, over which days, shown how."""

    mysql: MysqlSettings
    name: str
    date_from: str | None = None
    date_to: str | None = None
    gateway: str | None = None
    format: str = "table"
    plot: str | None = None
    timezone: str = "UTC"
    interval: float = 2.0
    raw: bool = False


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help=", ".join(REPORT_NAMES))
    parser.add_argument(
        "--from",
        dest="date_from",
        metavar="DATE",
        help="YYYY-MM-DD, today, yesterday, 7d, this-month, last-month, this-year, last-year"
        " (default per report: 7d; hourly and outages 30d; monthly this-year)",
    )
    parser.add_argument(
        "--to",
        dest="date_to",
        metavar="DATE",
        help="a date is exclusive, a word's range is included (default: the end of --from's"
        " range, or today included)",
    )
    parser.add_argument("--gateway", metavar="DIN", help="one gateway (default: each)")
    parser.add_argument(
        "--format", default="table", metavar="FORMAT", help=f"{', '.join(REPORT_FORMATS)} (table)"
    )
    parser.add_argument("--plot", metavar="FILE.png", help="also draw a chart (needs matplotlib)")
    parser.add_argument(
        "--timezone", default="UTC", metavar="ZONE", help="days in this IANA zone (UTC)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="expected sample interval (2)",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="read the raw readings instead of the summaries (slow; to check them)",
    )


def _report_load(sources: Sources, args: argparse.Namespace) -> ReportCommand:
    return ReportCommand(
        mysql=load(MysqlSettings, "mysql", sources),
        name=args.name,
        date_from=args.date_from,
        date_to=args.date_to,
        gateway=args.gateway,
        format=args.format,
        plot=args.plot,
        timezone=args.timezone,
        interval=args.interval,
        raw=bool(args.raw),
    )


def _report_run(command: ReportCommand) -> int:
    from powerwall_bus.consumers.mysql.reports import run_report_command

    return run_report_command(command)


REPORT = Command(
    name="report",
    help="energy, profile, outage and completeness reports from MySQL",
    add_arguments=_report_arguments,
    load=_report_load,
    run=_report_run,
)
