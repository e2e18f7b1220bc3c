"""``pwbus``: one command, one subcommand per component.

Each subcommand builds its own typed settings object here, from flags over environment
over the config file, configures logging once, and hands the settings down. Components
are imported only when their subcommand runs, so a Raspberry Pi running the LED display
does not need aiohttp, and a server does not need the LED library.

Every known failure ends as one line on stderr, ``pwbus <command>: <what is wrong>``, and a
non-zero exit status (2 for configuration, 1 for anything else): never a traceback, never
a secret.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from powerwall_bus import __version__
from powerwall_bus.shared.errors import ConfigError, PwbusError
from powerwall_bus.shared.logsetup import configure_logging
from powerwall_bus.shared.settings import (
    AmqpSettings,
    GatewaySettings,
    LogSettings,
    MysqlSettings,
    PollerSettings,
    ProxySettings,
    SimulatorSettings,
    Sources,
    WriterSettings,
    describe,
    example_config,
    load,
    secret_values,
)

_LOGGER = logging.getLogger("pwbus")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pwbus",
        description="Tesla Powerwall gateway data for many programs, through RabbitMQ.",
    )
    parser.add_argument("--version", action="version", version=f"pwbus {__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file, or a Tesla-API credentials.json ($PWBUS_CONFIG)",
    )
    parser.add_argument(
        "--log-level",
        dest="log.level",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR ($PWBUS_LOG_LEVEL)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from powerwall_bus.simulator.cli import add_simctl_arguments, add_simulate_arguments

    simulate = commands.add_parser(
        "simulate",
        help="run the gateway simulator (HTTPS, for tests and demos)",
        formatter_class=argparse.RawTextHelpFormatter,
    )
    add_simulate_arguments(simulate)
    simctl = commands.add_parser("simctl", help="steer a running simulator (faults, counts)")
    add_simctl_arguments(simctl)
    poller = commands.add_parser("poller", help="read the gateway and publish to RabbitMQ")
    poller.add_argument(
        "--meters-interval",
        dest="poller.meters_interval",
        metavar="S",
        help="seconds between meter reads (2; 1 allowed)",
    )
    poller.add_argument("--exchange", dest="amqp.exchange", help="topic exchange (Tesla)")
    stack = commands.add_parser(
        "stack", help="run the simulator, the poller and the consumers as supervised processes"
    )
    stack.add_argument(
        "--simulate",
        action="store_true",
        help="also run a simulated gateway on a free port and point the poller at it",
    )
    stack.add_argument(
        "--components",
        metavar="NAME,...",
        help="components to run, comma separated (default: all but simulate)",
    )
    proxy = commands.add_parser(
        "proxy", help="serve the pyPowerwall proxy's endpoints from the bus (port 8675)"
    )
    proxy.add_argument("--port", dest="proxy.port", help="HTTP port (8675)")
    proxy.add_argument("--exchange", dest="amqp.exchange", help="topic exchange (Tesla)")
    mysql = commands.add_parser(
        "mysql", help="write the readings from the bus into MySQL/MariaDB (history)"
    )
    mysql.add_argument("--exchange", dest="amqp.exchange", help="topic exchange (Tesla)")
    mysql.add_argument(
        "--queue", dest="writer.queue", metavar="NAME", help="durable queue to read (pwbus.mysql)"
    )
    mysql.add_argument(
        "--check",
        action="store_true",
        help="health probe: exit 0 if meter readings newer than --max-age are stored",
    )
    mysql.add_argument("--max-age", type=float, default=60.0, metavar="S", help="for --check (60)")
    db = commands.add_parser("db", help="the MySQL/MariaDB history database: migrate, users")
    db_actions = db.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    db_actions.add_parser("migrate", help="apply the schema migrations (as an administrator)")
    users = db_actions.add_parser(
        "users", help="print (or --apply) the SQL creating the writer and report users"
    )
    users.add_argument("--writer-password", required=True, help="password of the writer user")
    users.add_argument("--reader-password", required=True, help="password of the report user")
    users.add_argument("--writer-user", default="pwbus", help="writer user name (pwbus)")
    users.add_argument("--reader-user", default="pwbus_report", help="report user (pwbus_report)")
    users.add_argument("--user-host", default="%", help="host part of both accounts (%%)")
    users.add_argument("--apply", action="store_true", help="run it instead of printing it")
    report = commands.add_parser(
        "report", help="energy, profile, outage and completeness reports from MySQL"
    )
    report.add_argument(
        "name", metavar="NAME", help="daily, monthly, hourly, peaks, outages or completeness"
    )
    report.add_argument("--from", dest="date_from", metavar="YYYY-MM-DD", required=True)
    report.add_argument(
        "--to", dest="date_to", metavar="YYYY-MM-DD", required=True, help="exclusive"
    )
    report.add_argument("--gateway", metavar="DIN", help="one gateway (default: each)")
    report.add_argument("--format", default="table", help="table, csv or json (table)")
    report.add_argument("--plot", metavar="FILE.png", help="also draw a chart (needs matplotlib)")
    report.add_argument("--timezone", default="UTC", help="days in this IANA zone (UTC)")
    report.add_argument(
        "--interval", type=float, default=2.0, metavar="S", help="expected sample interval (2)"
    )
    config = commands.add_parser("config", help="print the effective settings (secrets masked)")
    config.add_argument(
        "--example",
        action="store_true",
        help="print a commented example config file with every option",
    )
    config.add_argument(
        "sections",
        nargs="*",
        default=["gateway", "amqp", "mysql", "log"],
        help="sections to show (gateway amqp mysql log simulator)",
    )
    return parser


_SECTION_CLASSES: dict[str, type] = {
    "gateway": GatewaySettings,
    "amqp": AmqpSettings,
    "mysql": MysqlSettings,
    "log": LogSettings,
    "simulator": SimulatorSettings,
    "poller": PollerSettings,
    "proxy": ProxySettings,
    "writer": WriterSettings,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pwbus`` console script."""
    args = _parser().parse_args(argv)
    command = args.command
    try:
        flags = {k: v for k, v in vars(args).items() if "." in k and v is not None}
        sources = Sources.gather(flags=flags, config_file=args.config)
        log = load(LogSettings, "log", sources)
        return _dispatch(command, args, sources, log)
    except ConfigError as exc:
        sys.stderr.write(f"pwbus {command}: {exc}\n")
        return 2
    except PwbusError as exc:
        sys.stderr.write(f"pwbus {command}: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(command: str, args: argparse.Namespace, sources: Sources, log: LogSettings) -> int:
    if command == "simulate":
        sim = load(SimulatorSettings, "simulator", sources)
        configure_logging(log.level, json_lines=log.json, secrets=secret_values(sim))
        from powerwall_bus.simulator.cli import run_simulator

        return run_simulator(sim)
    if command == "poller":
        from powerwall_bus.producers.poller.main import PollerConfig, run_poller

        config = PollerConfig(
            gateway=load(GatewaySettings, "gateway", sources),
            amqp=load(AmqpSettings, "amqp", sources),
            poller=load(PollerSettings, "poller", sources),
        )
        configure_logging(
            log.level, json_lines=log.json, secrets=secret_values(config.gateway, config.amqp)
        )
        config.gateway.require_login()
        return run_poller(config)
    if command == "stack":
        from powerwall_bus.stack import plan_stack, run_stack

        plan = plan_stack(
            args.components,
            simulate=args.simulate,
            sources=sources,
            log=log,
            config_file=args.config,
        )
        configure_logging(log.level, json_lines=log.json, secrets=plan.secrets)
        return run_stack(plan)
    if command == "proxy":
        from powerwall_bus.consumers.proxy.main import ProxyConfig, run_proxy

        proxy_config = ProxyConfig(
            proxy=load(ProxySettings, "proxy", sources), amqp=load(AmqpSettings, "amqp", sources)
        )
        configure_logging(log.level, json_lines=log.json, secrets=secret_values(proxy_config.amqp))
        return run_proxy(proxy_config)
    if command == "mysql":
        from powerwall_bus.consumers.mysql.main import check_health, run_writer
        from powerwall_bus.consumers.mysql.writer import WriterConfig

        writer_config = WriterConfig(
            amqp=load(AmqpSettings, "amqp", sources),
            mysql=load(MysqlSettings, "mysql", sources),
            writer=load(WriterSettings, "writer", sources),
        )
        configure_logging(
            log.level,
            json_lines=log.json,
            secrets=secret_values(writer_config.amqp, writer_config.mysql),
        )
        if args.check:
            return check_health(writer_config.mysql, args.max_age)
        return run_writer(writer_config)
    if command == "simctl":
        configure_logging(log.level, json_lines=log.json)
        from powerwall_bus.simulator.cli import run_simctl

        return run_simctl(args)
    if command in ("db", "report"):
        mysql_settings = load(MysqlSettings, "mysql", sources)
        secrets = secret_values(mysql_settings)
        if command == "db" and args.db_action == "users":
            secrets += [args.writer_password, args.reader_password]
        configure_logging(log.level, json_lines=log.json, secrets=secrets)
        if command == "db":
            from powerwall_bus.consumers.mysql.migrate import run_db

            return run_db(args, mysql_settings)
        from powerwall_bus.consumers.mysql.reports import run_report_command

        return run_report_command(args, mysql_settings)
    if command == "config" and args.example:
        sys.stdout.write(example_config())
        return 0
    if command == "config":
        sections: dict[str, Any] = {}
        for name in args.sections:
            if name not in _SECTION_CLASSES:
                raise ConfigError(name, f"unknown section; known: {', '.join(_SECTION_CLASSES)}")
            sections[name] = load(_SECTION_CLASSES[name], name, sources)
        sys.stdout.write("\n".join(describe(sections)) + "\n")
        return 0
    raise ConfigError("command", f"unknown command {command!r}")  # argparse prevents this


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
