"""The settings sections: every option of every component, declared once.

Each section is a frozen dataclass (``gateway``, ``amqp``, ``mysql``, ...); its fields carry
their dotted key (``section.field``), environment names, default, help and check (see
:mod:`~powerwall_bus.shared.settings.fields`). :data:`SECTIONS` is the one list of them: the
config file's tables, ``pwbus config`` and the example file all come from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

from powerwall_bus.shared.contract import DEFAULT_SLOW_ENDPOINTS
from powerwall_bus.shared.errors import ConfigError
from powerwall_bus.shared.settings.fields import (
    between,
    one_of,
    parse_url,
    poll_interval,
    port_number,
    service_port,
    setting,
    split_host,
)


def default_state_dir() -> Path:
    """Where sessions, pinned fingerprints and buffers live unless configured."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pwbus"


@dataclass(frozen=True)
class GatewaySettings:
    """How to reach and log in to the Tesla Energy Gateway, and which one a process is for.

    ``name`` says which gateway a process is about when several share the bus. For the
    poller it names its gateway (and picks the config file's ``[gateways.NAME]`` table when
    there is one); for a consumer it is the gateway to follow, by DIN or by that name.
    """

    name: str = setting(
        "",
        env=("PWBUS_GATEWAY",),
        help="which gateway this process is for: a DIN, or the NAME of a [gateways.NAME] "
        "table (empty: the only gateway on the bus)",
    )
    host: str = setting(
        "", env=("PWBUS_GATEWAY_HOST", "PW_HOST"), help="gateway address, host or host:port"
    )
    port: int = setting(443, env=("PWBUS_GATEWAY_PORT",), help="HTTPS port", check=service_port)
    password: str = setting(
        "",
        env=("PWBUS_GATEWAY_PASSWORD", "PW_PASSWORD"),
        secret=True,
        help="customer password (by default the last 5 characters of the sticker password)",
    )
    email: str = setting(
        "pwbus@localhost", env=("PWBUS_GATEWAY_EMAIL", "PW_EMAIL"), help="sent with the login"
    )
    timezone: str = setting(
        "America/Los_Angeles",
        env=("PWBUS_GATEWAY_TIMEZONE", "PW_TIMEZONE"),
        help="site time zone, sent with the login",
    )
    connect_timeout: float = setting(
        5.0,
        env=("PWBUS_GATEWAY_CONNECT_TIMEOUT",),
        help="TCP/TLS connect timeout, s",
        check=between(0.1, 300.0, "seconds"),
    )
    read_timeout: float = setting(
        10.0,
        env=("PWBUS_GATEWAY_READ_TIMEOUT", "PW_TIMEOUT"),
        help="read timeout, s",
        check=between(0.1, 600.0, "seconds"),
    )
    auth_mode: str = setting(
        "cookie",
        env=("PWBUS_GATEWAY_AUTH_MODE", "PW_AUTH_MODE"),
        help="cookie (AuthCookie/UserRecord) or token (Authorization: Bearer)",
        check=one_of("cookie", "token"),
    )
    state_dir: Path = setting(
        None,
        env=("PWBUS_STATE_DIR", "PW_AUTH_PATH"),
        help="folder for the saved session and pinned certificate (default ~/.local/state/pwbus)",
    )
    session_file: Path = setting(
        None,
        env=("PWBUS_GATEWAY_SESSION_FILE", "PW_CACHE_FILE"),
        help="saved login session (mode 0600); default <state_dir>/gateway-session.json",
    )
    tls_fingerprint: str = setting(
        "",
        env=("PWBUS_GATEWAY_TLS_FINGERPRINT",),
        help="'' accepts the self-signed certificate, 'tofu' pins it on first use, "
        "or a SHA-256 fingerprint (hex, colons allowed) to pin",
    )
    rate_limit_cooldown: float = setting(
        300.0,
        env=("PWBUS_GATEWAY_COOLDOWN",),
        help="after HTTP 429, send nothing to the gateway for this many seconds",
        check=between(1.0, 86400.0, "seconds"),
    )
    max_logins_per_hour: int = setting(
        6,
        env=("PWBUS_GATEWAY_MAX_LOGINS",),
        help="never log in more often than this in any hour, restarts included (every login "
        "counts against the gateway's lock-out limit)",
        check=between(1, 60, "logins"),
    )

    def __post_init__(self) -> None:
        # Tesla-API writes "https://192.168.0.100"; pyPowerwall accepts "host:port".
        host, port = split_host(self.host, self.port)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        state_dir = self.state_dir or default_state_dir()
        object.__setattr__(self, "state_dir", Path(state_dir).expanduser())
        if self.session_file is None:
            # Two pollers on one machine (two gateways) must not share a saved session.
            file_name = f"gateway-session-{self.name}.json" if self.name else "gateway-session.json"
            object.__setattr__(self, "session_file", self.state_dir / file_name)
        fingerprint = self.tls_fingerprint.strip()
        if fingerprint and fingerprint.lower() != "tofu":
            fingerprint = fingerprint.replace(":", "").lower()
            if len(fingerprint) != 64 or any(c not in "0123456789abcdef" for c in fingerprint):
                raise ConfigError(
                    "gateway.tls_fingerprint", "must be 'tofu' or a SHA-256 fingerprint in hex"
                )
        object.__setattr__(self, "tls_fingerprint", fingerprint.lower())

    @property
    def base_url(self) -> str:
        """The gateway's HTTPS origin, e.g. ``https://192.168.1.20`` or ``https://[::1]:8443``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}" if self.port == 443 else f"https://{host}:{self.port}"

    def require_login(self) -> None:
        """Fail with a clear message unless host and password are set."""
        if not self.host:
            raise ConfigError("gateway.host", "is required (set PW_HOST or gateway.host)")
        if not self.password:
            raise ConfigError("gateway.password", "is required (set PW_PASSWORD)")


@dataclass(frozen=True)
class AmqpSettings:
    """The RabbitMQ broker, as a URL whose parts can also be set one by one."""

    url: str = setting(
        "amqp://guest:guest@localhost:5672/%2F",
        env=("AMQP_URL",),
        secret=True,
        help="amqp://user:password@host:port/vhost",
    )
    host: str = setting(None, env=("AMQP_HOST",), help="overrides the URL's host")
    port: int = setting(
        None, env=("AMQP_PORT",), help="overrides the URL's port", check=service_port
    )
    username: str = setting(None, env=("AMQP_USERNAME",), help="overrides the URL's user")
    password: str = setting(
        None, env=("AMQP_PASSWORD",), secret=True, help="overrides the URL's password"
    )
    vhost: str = setting(None, env=("AMQP_VHOST",), help="overrides the URL's virtual host")
    exchange: str = setting(
        "Tesla", env=("AMQP_EXCHANGE",), help="the durable topic exchange everything goes through"
    )
    heartbeat: int = setting(
        30, env=("AMQP_HEARTBEAT",), help="seconds", check=between(0, 3600, "seconds (0: none)")
    )

    poller_user: str = setting(
        "",
        env=("PWBUS_POLLER_USER",),
        help="consumers take readings only from messages whose user_id (verified by RabbitMQ) "
        "is this broker user (empty: the consumer's own user, for single-user setups)",
    )
    anonymous_meter_stream: bool = setting(
        False,
        env=("PWBUS_ANONYMOUS_METER_STREAM",),
        help="consumers also take MeterStream messages without a user_id (Tesla-API's own "
        "publisher sets none; anyone on the broker can send such messages)",
    )

    def __post_init__(self) -> None:
        parts = parse_url(self.url, "amqp.url", ("amqp", "amqps"))
        resolved = {
            "host": self.host or parts.host or "localhost",
            "port": self.port if self.port is not None else parts.port or 5672,
            "username": self.username or parts.user or "guest",
            "password": self.password if self.password is not None else parts.password or "guest",
            "vhost": self.vhost or parts.path or "/",
        }
        for name, value in resolved.items():
            object.__setattr__(self, name, value)
        netloc = (
            f"{quote(self.username, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}"
        )
        object.__setattr__(self, "url", f"{parts.scheme}://{netloc}/{quote(self.vhost, safe='')}")

    @property
    def safe_url(self) -> str:
        """The URL without its password, for logs."""
        return f"amqp://{self.username}@{self.host}:{self.port}/{quote(self.vhost, safe='')}"

    @property
    def trusted_publisher(self) -> str:
        """The broker user whose messages consumers take: ``poller_user``, else our own."""
        return self.poller_user or self.username


@dataclass(frozen=True)
class MysqlSettings:
    """The MySQL/MariaDB database, as a URL whose parts can also be set one by one."""

    url: str = setting(
        "mysql://pwbus@localhost:3306/powerwall",
        env=("MYSQL_URL",),
        secret=True,
        help="mysql://user:password@host:port/database",
    )
    host: str = setting(None, env=("MYSQL_HOST",), help="overrides the URL's host")
    port: int = setting(
        None, env=("MYSQL_PORT",), help="overrides the URL's port", check=service_port
    )
    user: str = setting(None, env=("MYSQL_USER",), help="overrides the URL's user")
    password: str = setting(
        None, env=("MYSQL_PASSWORD",), secret=True, help="overrides the URL's password"
    )
    database: str = setting(None, env=("MYSQL_DATABASE",), help="overrides the URL's database")

    def __post_init__(self) -> None:
        parts = parse_url(self.url, "mysql.url", ("mysql", "mariadb"))
        resolved = {
            "host": self.host or parts.host or "localhost",
            "port": self.port if self.port is not None else parts.port or 3306,
            "user": self.user or parts.user or "root",
            "password": self.password if self.password is not None else parts.password or "",
            "database": self.database or parts.path or "powerwall",
        }
        for name, value in resolved.items():
            object.__setattr__(self, name, value)

    @property
    def safe_url(self) -> str:
        """The URL without its password, for logs."""
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


@dataclass(frozen=True)
class LogSettings:
    """Logging for every entry point."""

    level: str = setting(
        "INFO",
        env=("PWBUS_LOG_LEVEL", "LOG_LEVEL"),
        help="the least severe level logged (PW_DEBUG=yes also selects DEBUG)",
        check=one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    )
    debug: bool = setting(False, env=("PW_DEBUG",), help="pyPowerwall's switch for DEBUG logs")
    json: bool = setting(False, env=("PWBUS_LOG_JSON",), help="one JSON object per log line")

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", str(self.level).upper())
        if self.debug:
            object.__setattr__(self, "level", "DEBUG")


@dataclass(frozen=True)
class SimulatorSettings:
    """The gateway simulator (``pwbus simulate``)."""

    host: str = setting("127.0.0.1", env=("PWBUS_SIM_HOST",), help="address to listen on")
    din: str = setting(
        "",
        env=("PWBUS_SIM_DIN",),
        help="the simulated gateway's DIN, PART--SERIAL (empty: made from the seed)",
    )
    port: int = setting(
        8443, env=("PWBUS_SIM_PORT",), help="HTTPS port (0 picks a free one)", check=port_number
    )
    password: str = setting(
        "password",
        env=("PWBUS_SIM_PASSWORD", "PW_PASSWORD"),
        secret=True,
        help="the customer password the simulated gateway accepts",
    )
    seed: int = setting(
        1,
        env=("PWBUS_SIM_SEED",),
        help="makes a run reproducible",
        check=between(0, 2**32 - 1),
    )
    speed: float = setting(
        1.0,
        env=("PWBUS_SIM_SPEED",),
        help="simulated seconds per real second (1440: a day a minute)",
        check=between(0.001, 1_000_000.0),
    )
    powerwalls: int = setting(
        2,
        env=("PWBUS_SIM_POWERWALLS",),
        help="number of Powerwalls, 1 to 4",
        check=lambda n: None if 1 <= n <= 4 else "must be 1, 2, 3 or 4",
    )
    firmware: str = setting(
        "23.12.10 8f14e45f",
        env=("PWBUS_SIM_FIRMWARE",),
        help="firmware version reported; 23.44 or later removes /api/devices/vitals",
    )
    powerwall3: bool = setting(
        False,
        env=("PWBUS_SIM_POWERWALL3",),
        help="a Powerwall 3 as its wired LAN answers: only /api/meters/aggregates, "
        "/api/system_status/soe and /api/system_status/grid_status; every other /api/ path "
        "(/api/status, /api/devices/vitals...) is 404",
    )
    timezone: str = setting("America/Los_Angeles", env=("PWBUS_SIM_TIMEZONE",), help="site zone")
    solar_kw: float = setting(
        7.6,
        env=("PWBUS_SIM_SOLAR_KW",),
        help="solar array size, kW (0: no solar)",
        check=between(0.0, 1000.0, "kW"),
    )
    session_ttl: float = setting(
        86400.0,
        env=("PWBUS_SIM_SESSION_TTL",),
        help="seconds a login session stays valid",
        check=between(1.0, 31_536_000.0, "seconds"),
    )
    fixtures: Path | None = setting(
        None, env=("PWBUS_SIM_FIXTURES",), help="replay recorded bodies from this folder"
    )
    variant: str | None = setting(
        None, env=("PWBUS_SIM_VARIANT",), help="with fixtures: which __variant to serve"
    )
    faults: tuple[str, ...] = setting(
        (), env=("PWBUS_SIM_FAULTS",), help="faults active at start, e.g. rate-limit-logins=3"
    )
    cert_file: Path | None = setting(
        None, env=("PWBUS_SIM_CERT",), help="PEM certificate (default: made)"
    )
    key_file: Path | None = setting(None, env=("PWBUS_SIM_KEY",), help="PEM key for cert_file")
    octopus_port: int | None = setting(
        None,
        env=("PWBUS_SIM_OCTOPUS_PORT",),
        check=port_number,
        help="also serve a fake Octopus GraphQL API (http) on this port (0: a free one; "
        "unset: none); point octopus_energy.url at http://HOST:PORT/v1/graphql/",
    )
    octopus_api_key: str = setting(
        "sk_test_pwbus_fake_octopus",
        env=("PWBUS_SIM_OCTOPUS_API_KEY",),
        secret=True,
        help="the API key the fake Octopus accepts",
    )
    octopus_account: str = setting(
        "A-FAKE0001", env=("PWBUS_SIM_OCTOPUS_ACCOUNT",), help="the fake Octopus account number"
    )
    paired_keys: tuple[str, ...] = setting(
        (),
        env=("PWBUS_SIM_PAIRED_KEYS",),
        help="PEM files of the RSA keys accepted for signed TEDAPI (v1r) commands",
    )
    cloud_port: int | None = setting(
        None,
        env=("PWBUS_SIM_CLOUD_PORT",),
        check=port_number,
        help="also serve a fake Tesla cloud (http: token endpoint, products, Fleet API, the "
        "device_command relay to this simulator) on this port (0: a free one; unset: none); "
        "point cloud.api_url at http://HOST:PORT and cloud.auth_url at "
        "http://HOST:PORT/oauth2/v3/token",
    )


@dataclass(frozen=True)
class PollerSettings:
    """What the poller reads, how often, and how much it holds while the broker is away."""

    meters_interval: float = setting(
        2.0,
        env=("PWBUS_POLL_METERS",),
        check=poll_interval,
        help="seconds between /api/meters/aggregates reads (also the MeterStream rate)",
    )
    soe_interval: float = setting(
        2.0,
        env=("PWBUS_POLL_SOE",),
        check=poll_interval,
        help="seconds between /api/system_status/soe reads",
    )
    grid_status_interval: float = setting(
        5.0,
        env=("PWBUS_POLL_GRID_STATUS",),
        check=poll_interval,
        help="seconds between /api/system_status/grid_status reads",
    )
    system_status_interval: float = setting(
        30.0,
        env=("PWBUS_POLL_SYSTEM_STATUS",),
        check=poll_interval,
        help="seconds between /api/system_status reads",
    )
    operation_interval: float = setting(
        30.0,
        env=("PWBUS_POLL_OPERATION",),
        check=poll_interval,
        help="seconds between /api/operation reads",
    )
    vitals_interval: float = setting(
        30.0,
        env=("PWBUS_POLL_VITALS",),
        check=poll_interval,
        help="seconds between /api/devices/vitals reads (never on firmware 23.44+)",
    )
    solar_powerwall_interval: float = setting(
        30.0,
        env=("PWBUS_POLL_SOLAR_POWERWALL",),
        check=poll_interval,
        help="seconds between /api/solar_powerwall reads (where the gateway has it)",
    )
    slow_interval: float = setting(
        300.0,
        env=("PWBUS_POLL_SLOW",),
        check=poll_interval,
        help="seconds between reads of every other endpoint",
    )
    slow_endpoints: tuple[str, ...] = setting(
        DEFAULT_SLOW_ENDPOINTS,
        env=("PWBUS_POLL_SLOW_ENDPOINTS",),
        help="the other endpoints to read (comma separated)",
        check=lambda paths: next(
            (f"entry {n} is not an /api/ path" for n, p in enumerate(paths, 1) if p[:5] != "/api/"),
            None,
        ),
    )
    meter_stream: bool = setting(
        True,
        env=("PWBUS_POLL_METER_STREAM",),
        help="also publish the Tesla-API compatible MeterStream message",
    )
    status_interval: float = setting(
        30.0,
        env=("PWBUS_POLL_STATUS_INTERVAL",),
        check=between(1.0, 3600.0, "seconds"),
        help="seconds between poller status messages (also sent on every change)",
    )
    buffer_seconds: float = setting(
        3600.0,
        env=("PWBUS_POLL_BUFFER_SECONDS",),
        check=between(10.0, 86400.0, "seconds"),
        help="hold this much reading time in memory while the broker is down",
    )
    backoff_max: float = setting(
        60.0,
        env=("PWBUS_POLL_BACKOFF_MAX",),
        check=between(1.0, 3600.0, "seconds"),
        help="longest wait between attempts while the gateway or broker is unreachable, s",
    )
    declare_writer_queue: bool = setting(
        True,
        env=("PWBUS_POLL_DECLARE_WRITER_QUEUE",),
        help="declare the MySQL writer's durable queue (writer.queue) and its bindings, so "
        "readings wait there before the writer's first start (off if you run no writer)",
    )
    resync_rate: float = setting(
        20.0,
        env=("PWBUS_POLL_RESYNC_RATE",),
        check=between(1.0, 1000.0, "answers a second"),
        help="most resync answers a second, all requesters together (the rest are dropped "
        "and counted); each requester gets at most one a second",
    )
    relay_commands: bool = setting(
        True,
        env=("PWBUS_POLL_RELAY_COMMANDS",),
        help="relay signed Max Backup commands (control.<DIN>.tedapi, from pwbus dispatch "
        "over the LAN) to the gateway between reads; only signed list/schedule/cancel calls "
        "for this gateway pass, and the gateway checks the key is paired (no: never write)",
    )
    outbox_on_disk: bool = setting(
        True,
        env=("PWBUS_POLL_OUTBOX_ON_DISK",),
        help="also keep the outbox on disk, so a restart or crash loses no held reading "
        "(no: memory only)",
    )
    outbox_dir: Path | None = setting(
        None,
        env=("PWBUS_POLL_OUTBOX_DIR",),
        help="folder for the outbox on disk (default: gateway.state_dir)",
    )
    outbox_sync_interval: float = setting(
        5.0,
        env=("PWBUS_POLL_OUTBOX_SYNC",),
        check=between(0.0, 300.0, "seconds"),
        help="while the broker is away, force the outbox to disk at most this often, s; a "
        "power cut loses at most this much (0: every reading, wears an SD card)",
    )


@dataclass(frozen=True)
class ProxySettings:
    """The HTTP proxy (``pwbus proxy``): pyPowerwall's endpoints, served from the bus."""

    port: int = setting(
        8675, env=("PWBUS_PROXY_PORT", "PW_PORT"), help="HTTP port", check=port_number
    )
    bind_address: str = setting(
        "",
        env=("PWBUS_PROXY_BIND", "PW_BIND_ADDRESS"),
        help="address to listen on (empty: every address)",
    )
    https: str = setting(
        "no",
        env=("PWBUS_PROXY_HTTPS", "PW_HTTPS"),
        help="yes: serve TLS (cert_file/key_file, or a certificate made at start); "
        "http: plain HTTP behind a TLS-terminating proxy",
        check=one_of("no", "yes", "http"),
    )
    cert_file: Path | None = setting(
        None, env=("PWBUS_PROXY_CERT",), help="PEM certificate for https=yes"
    )
    key_file: Path | None = setting(None, env=("PWBUS_PROXY_KEY",), help="PEM key of cert_file")
    style: str = setting(
        "clear",
        env=("PWBUS_PROXY_STYLE", "PW_STYLE"),
        help="power-flow page style",
        check=one_of("clear", "black", "white", "grafana", "grafana-dark", "dakboard", "solar"),
    )
    neg_solar: bool = setting(
        True,
        env=("PW_NEG_SOLAR",),
        help="no: clamp negative solar to 0 and add it to the home load",
    )
    site_zero_threshold: float = setting(
        0.0,
        env=("PW_SITE_ZERO_THRESHOLD",),
        check=between(0.0, 100_000.0, "W"),
        help="site (grid) power within +/- this many watts is shown as 0",
    )
    base_url: str = setting(
        "/", env=("PROXY_BASE_URL",), help="path prefix when served behind a reverse proxy"
    )
    browser_cache: int = setting(
        0,
        env=("PW_BROWSER_CACHE",),
        check=between(0, 31_536_000, "seconds"),
        help="max-age in seconds for the page's static files (0: no caching)",
    )
    health_max_age: float = setting(
        30.0,
        env=("PWBUS_PROXY_HEALTH_MAX_AGE",),
        check=between(1.0, 86400.0, "seconds"),
        help="/health answers 503 when the meters data is older than this, s",
    )

    header_timeout: float = setting(
        5.0,
        env=("PWBUS_PROXY_HEADER_TIMEOUT",),
        check=between(1.0, 300.0, "seconds"),
        help="close a connection whose request headers are not complete within this many seconds",
    )
    keepalive_timeout: float = setting(
        30.0,
        env=("PWBUS_PROXY_KEEPALIVE_TIMEOUT",),
        check=between(1.0, 3600.0, "seconds"),
        help="close an idle keep-alive connection after this many seconds",
    )
    max_connections: int = setting(
        1000,
        env=("PWBUS_PROXY_MAX_CONNECTIONS",),
        check=between(8, 1_000_000, "connections"),
        help="open connections at most (also held below the open-files limit); beyond it "
        "a connection still sending its headers makes room, else the newcomer gets 503",
    )

    max_message_bytes: int = setting(
        1_000_000,
        env=("PWBUS_PROXY_MAX_MESSAGE_BYTES",),
        check=between(1024, 134_217_728, "bytes"),
        help="larger messages are dropped unread",
    )
    max_future: float = setting(
        300.0,
        env=("PWBUS_PROXY_MAX_FUTURE",),
        check=between(1.0, 86400.0, "seconds"),
        help="drop readings dated more than this many seconds ahead of this host's clock",
    )
    max_past: float = setting(
        86400.0,
        env=("PWBUS_PROXY_MAX_PAST",),
        check=between(60.0, 366 * 86400.0, "seconds"),
        help="drop readings dated more than this many seconds before this host's clock "
        "(at least poller.buffer_seconds plus the broker outages to ride out)",
    )

    def __post_init__(self) -> None:
        base = "/" + self.base_url.strip("/")
        object.__setattr__(self, "base_url", base if base != "/" else "/")
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("proxy.cert_file", "cert_file and key_file go together")


@dataclass(frozen=True)
class WriterSettings:
    """The MySQL history writer (``pwbus mysql``)."""

    queue: str = setting(
        "pwbus.mysql",
        env=("PWBUS_MYSQL_QUEUE",),
        help="durable queue the writer reads (readings wait there while it is down)",
    )
    dead_letter_queue: str = setting(
        "pwbus.mysql.dead",
        env=("PWBUS_MYSQL_DEAD_LETTER_QUEUE",),
        help="where malformed messages go, with the reason in a header",
    )
    dead_letter_max_length: int = setting(
        10000,
        env=("PWBUS_MYSQL_DEAD_LETTER_MAX_LENGTH",),
        check=between(0, 100_000_000, "messages (0: no limit)"),
        help="the dead-letter queue keeps this many messages, dropping the oldest (0: no limit)",
    )
    dead_letter_ttl_days: float = setting(
        14.0,
        env=("PWBUS_MYSQL_DEAD_LETTER_TTL_DAYS",),
        check=between(0.0, 3650.0, "days (0: kept forever)"),
        help="dead letters older than this many days are dropped (0: kept forever)",
    )
    prefetch: int = setting(
        2000,
        env=("PWBUS_MYSQL_PREFETCH",),
        check=between(1, 65535),
        help="unacknowledged messages the broker may send ahead",
    )
    batch_size: int = setting(
        1000,
        env=("PWBUS_MYSQL_BATCH_SIZE",),
        check=between(1, 100_000),
        help="most messages written in one transaction",
    )
    batch_wait: float = setting(
        0.5,
        env=("PWBUS_MYSQL_BATCH_WAIT",),
        check=between(0.01, 300.0, "seconds"),
        help="longest wait for a batch to fill before writing it, s",
    )
    max_message_bytes: int = setting(
        1_000_000,
        env=("PWBUS_MYSQL_MAX_MESSAGE_BYTES",),
        check=between(1024, 134_217_728, "bytes"),
        help="larger messages are dead-lettered unread",
    )
    max_future: float = setting(
        300.0,
        env=("PWBUS_MYSQL_MAX_FUTURE",),
        check=between(1.0, 86400.0, "seconds"),
        help="dead-letter readings dated more than this many seconds ahead of this host's clock",
    )
    max_past: float = setting(
        30 * 86400.0,
        env=("PWBUS_MYSQL_MAX_PAST",),
        check=between(3600.0, 3650 * 86400.0, "seconds"),
        help="dead-letter readings dated more than this many seconds before this host's clock "
        "(they may wait in the queue: cover the longest writer stop plus poller.buffer_seconds)",
    )
    meter_stream: bool = setting(
        False,
        env=("PWBUS_MYSQL_METER_STREAM",),
        help="also store Tesla-API MeterStream messages (behind a Tesla-API publisher)",
    )
    meter_stream_gateway: str = setting(
        "tesla-api",
        env=("PWBUS_MYSQL_METER_STREAM_GATEWAY",),
        help="the gateway name MeterStream rows are stored under (they carry no DIN)",
    )
    retry_max: float = setting(
        30.0,
        env=("PWBUS_MYSQL_RETRY_MAX",),
        check=between(1.0, 3600.0, "seconds"),
        help="longest wait between attempts while the database is down, s",
    )
    migrate: bool = setting(
        True, env=("PWBUS_MYSQL_MIGRATE",), help="apply schema migrations at start"
    )
    raw_retention_days: int = setting(
        7,
        env=("PWBUS_RAW_RETENTION_DAYS",),
        check=between(0, 36500, "days (0: kept forever)"),
        help="raw readings (meters, SoE, battery blocks, poller events) are kept this many"
        " whole UTC days before today; summaries are kept forever (0: raw kept forever)",
    )
    vitals_retention_days: int = setting(
        3,
        env=("PWBUS_VITALS_RETENTION_DAYS",),
        check=between(0, 36500, "days (0: kept forever)"),
        help="vitals readings are kept this many whole UTC days before today (0: forever)",
    )
    retention: bool = setting(
        True,
        env=("PWBUS_MYSQL_RETENTION",),
        help="the writer creates daily partitions ahead and applies retention once a day"
        " (off: run `pwbus db prune` yourself)",
    )


@dataclass(frozen=True)
class DisplaySettings:
    """The displays (``pwbus console``, and the GUI and LED displays to come): when data
    counts as stale, and what they accept from the bus (as the proxy: a live view)."""

    stale_after: float = setting(
        10.0,
        env=("PWBUS_DISPLAY_STALE_AFTER",),
        check=between(1.0, 3600.0, "seconds"),
        help="a display says the data is stale after this many seconds without a reading",
    )
    max_message_bytes: int = setting(
        1_000_000,
        env=("PWBUS_DISPLAY_MAX_MESSAGE_BYTES",),
        check=between(1024, 134_217_728, "bytes"),
        help="larger messages are dropped unread",
    )
    max_future: float = setting(
        300.0,
        env=("PWBUS_DISPLAY_MAX_FUTURE",),
        check=between(1.0, 86400.0, "seconds"),
        help="drop readings dated more than this many seconds ahead of this host's clock",
    )
    max_past: float = setting(
        86400.0,
        env=("PWBUS_DISPLAY_MAX_PAST",),
        check=between(60.0, 366 * 86400.0, "seconds"),
        help="drop readings dated more than this many seconds before this host's clock",
    )


#: The Octopus ``SmartFlexChargingType`` values a dispatch can have.
CHARGING_TYPES = ("SMART", "BOOST", "TEST")


def _charging_types(values: tuple[str, ...]) -> str | None:
    if not values:
        return "must list at least one of SMART, BOOST, TEST"
    for n, value in enumerate(values, 1):
        if value.upper() not in CHARGING_TYPES:
            return f"entry {n} must be SMART, BOOST or TEST"
    return None


def _hh_mm(value: str) -> str | None:
    text = value.strip()
    if len(text) != 5 or text[2] != ":" or not (text[:2] + text[3:]).isdigit():
        return "must be a time of day as HH:MM (24 h, e.g. 23:30)"
    return None if int(text[:2]) < 24 and int(text[3:]) < 60 else "must be between 00:00 and 23:59"


def _time_zone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return "must be an IANA time zone name, e.g. Europe/London"
    return None


@dataclass(frozen=True)
class DispatchSettings:
    """``pwbus dispatch``: which Octopus dispatches hold the battery (Max Backup), and how
    calmly the hold follows a plan that changes. The rules are in
    :mod:`powerwall_bus.consumers.dispatch.decide`."""

    types: tuple[str, ...] = setting(
        ("SMART",),
        env=("PWBUS_DISPATCH_TYPES",),
        help="dispatch types that hold the battery, comma separated: SMART, BOOST, TEST "
        "(BOOST is billed at the peak rate; the legacy smart-charge and null count as SMART, "
        "bump-charge as BOOST)",
        check=_charging_types,
    )
    skip_offpeak: bool = setting(
        True,
        env=("PWBUS_DISPATCH_SKIP_OFFPEAK",),
        help="yes: never hold inside the regular off-peak window (the whole house is cheap "
        "then anyway; a dispatch running past its end still counts for the part outside); "
        "no: hold through it too",
    )
    offpeak_start: str = setting(
        "23:30",
        env=("PWBUS_DISPATCH_OFFPEAK_START",),
        help="local start of the regular off-peak window, HH:MM (24 h)",
        check=_hh_mm,
    )
    offpeak_end: str = setting(
        "05:30",
        env=("PWBUS_DISPATCH_OFFPEAK_END",),
        help="local end of the regular off-peak window, HH:MM (24 h; before the start: the "
        "next day; equal to the start: no window)",
        check=_hh_mm,
    )
    offpeak_timezone: str = setting(
        "Europe/London",
        env=("PWBUS_DISPATCH_OFFPEAK_TIMEZONE",),
        help="the time zone of the off-peak window, an IANA name (everything else is UTC)",
        check=_time_zone,
    )
    align_start: bool = setting(
        True,
        env=("PWBUS_DISPATCH_ALIGN_START",),
        help="yes: a hold starts with the half hour its dispatch starts in (Octopus bills that "
        "whole half hour off-peak); no: at the dispatch's own start (ends are always rounded "
        "up to the half hour)",
    )
    min_dispatch_minutes: float = setting(
        5.0,
        env=("PWBUS_DISPATCH_MIN_MINUTES",),
        help="ignore a dispatch (after merging touching ones) shorter than this, minutes",
        check=between(0.0, 240.0, "minutes"),
    )
    hysteresis_minutes: float = setting(
        5.0,
        env=("PWBUS_DISPATCH_HYSTERESIS_MINUTES",),
        help="a hold whose end is within this of the wanted end is left alone, and a hold is "
        "shortened or ended only once the plan has said so for this long, minutes",
        check=between(0.0, 120.0, "minutes"),
    )
    bridge_minutes: float = setting(
        10.0,
        env=("PWBUS_DISPATCH_BRIDGE_MINUTES",),
        help="keep a hold through an empty plan (Octopus re-planning) for this long, minutes",
        check=between(0.0, 240.0, "minutes"),
    )
    foreign_hold: str = setting(
        "keep",
        env=("PWBUS_DISPATCH_FOREIGN_HOLD",),
        help="a Max Backup this dispatcher did not make (set in the Tesla app): keep (never "
        "shortened or ended; extended when a dispatch needs longer) or replace (treated as "
        "ours, as Tesla-API's script does)",
        check=one_of("keep", "replace"),
    )
    plan_max_age_minutes: float = setting(
        30.0,
        env=("PWBUS_DISPATCH_PLAN_MAX_AGE",),
        help="a plan fetched longer ago than this (Octopus unreachable) counts as unknown: no "
        "hold is started or ended early (one on the gateway runs to its own end), minutes",
        check=between(1.0, 1440.0, "minutes"),
    )
    dry_run: bool = setting(
        False,
        env=("PWBUS_DISPATCH_DRY_RUN",),
        help="decide and print what would be sent, send nothing",
    )
    channel: str = setting(
        "lan",
        env=("PWBUS_DISPATCH_CHANNEL",),
        help="how signed commands reach the gateway: lan (through the gateway's poller on the "
        "bus; the poller must run with poller.relay_commands on) or cloud (the [cloud] "
        "account's relay); fleet: no signed command reaches it, the Fleet API holds the "
        "battery by mode or reserve instead (cloud.fleet_method)",
    )
    gateway: str = setting(
        "",
        env=("PWBUS_DISPATCH_GATEWAY",),
        help="the gateway's DIN (empty: the one poller on the bus says it in its status)",
    )
    account: str = setting(
        "",
        env=("PWBUS_DISPATCH_ACCOUNT",),
        help="the Octopus account whose plan to follow (empty: octopus_energy.account_number, "
        "else the only one on the bus)",
    )
    key_file: str = setting(
        "",
        env=("PWBUS_DISPATCH_KEY_FILE",),
        help="the paired RSA private key, PEM (empty: tedapi_rsa_key.pem in the state folder, "
        "where pwbus pair makes it)",
    )
    interval: float = setting(
        60.0,
        env=("PWBUS_DISPATCH_INTERVAL",),
        help="decide again at least this often, also without a new plan, s (plan changes "
        "are acted on at once)",
        check=between(10.0, 3600.0, "seconds"),
    )
    plan_user: str = setting(
        "",
        env=("PWBUS_DISPATCH_PLAN_USER",),
        help="take Octopus plans only from messages whose user_id (verified by RabbitMQ) is "
        "this broker user, the one pwbus octopus runs as (empty: amqp.poller_user, else our "
        "own, for single-user setups)",
    )
    command_timeout: float = setting(
        20.0,
        env=("PWBUS_DISPATCH_COMMAND_TIMEOUT",),
        help="wait this long for the gateway's answer to one command, s (longer than the "
        "poller's gateway timeouts, so its own answer comes first)",
        check=between(2.0, 120.0, "seconds"),
    )

    def __post_init__(self) -> None:
        # Checked here too: the decisions are built from these even without the loader.
        problems = {
            "types": _charging_types(self.types),
            "offpeak_start": _hh_mm(self.offpeak_start),
            "offpeak_end": _hh_mm(self.offpeak_end),
            "offpeak_timezone": _time_zone(self.offpeak_timezone),
        }
        for name, problem in problems.items():
            if problem:
                raise ConfigError(f"dispatch.{name}", problem)
        object.__setattr__(self, "types", tuple(dict.fromkeys(t.upper() for t in self.types)))

    @property
    def offpeak_window(self) -> tuple[time, time]:
        """The regular off-peak window's local start and end."""
        return time.fromisoformat(self.offpeak_start), time.fromisoformat(self.offpeak_end)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.offpeak_timezone)

    @property
    def min_dispatch(self) -> timedelta:
        return timedelta(minutes=self.min_dispatch_minutes)

    @property
    def hysteresis(self) -> timedelta:
        return timedelta(minutes=self.hysteresis_minutes)

    @property
    def bridge(self) -> timedelta:
        return timedelta(minutes=self.bridge_minutes)

    @property
    def plan_max_age(self) -> timedelta:
        return timedelta(minutes=self.plan_max_age_minutes)


@dataclass(frozen=True)
class OctopusSettings:
    """The Octopus Energy account ``pwbus octopus`` follows (``[octopus_energy]``: the
    table name and keys of Tesla-API's ``credentials.json``, so that file works as is).

    Octopus allows 5 ``flexPlannedDispatches`` calls a minute per user and asks integrators
    to poll gently: the interval cannot go below 30 s. Tokens are not settings: they live
    in the state folder (``gateway.state_dir``), mode 0600.
    """

    api_key: str = setting(
        "",
        env=("PWBUS_OCTOPUS_API_KEY",),
        secret=True,
        help="the account's API key (sk_live_...), from the Octopus dashboard's developer page",
    )
    account_number: str = setting(
        "", env=("PWBUS_OCTOPUS_ACCOUNT",), help="the account number, A-XXXXXXXX"
    )
    device_id: str = setting(
        "",
        env=("PWBUS_OCTOPUS_DEVICE_ID",),
        help="the smart-flex device (car or charger) to follow (empty: the account's only one)",
    )
    url: str = setting(
        "https://api.octopus.energy/v1/graphql/",
        env=("PWBUS_OCTOPUS_URL",),
        help="the Kraken GraphQL endpoint",
        check=lambda url: (
            None if url.startswith(("https://", "http://")) else "must be an http(s):// URL"
        ),
    )
    poll_interval: float = setting(
        120.0,
        env=("PWBUS_OCTOPUS_POLL_INTERVAL",),
        check=between(30.0, 3600.0, "seconds"),
        help="seconds between plan requests (Octopus allows 5 a minute; be gentle)",
    )
    publish_every: float = setting(
        60.0,
        env=("PWBUS_OCTOPUS_PUBLISH_EVERY",),
        check=between(5.0, 3600.0, "seconds"),
        help="publish the plan at least this often, changed or not (late consumers)",
    )
    timeout: float = setting(
        20.0,
        env=("PWBUS_OCTOPUS_TIMEOUT",),
        check=between(1.0, 120.0, "seconds"),
        help="HTTP timeout for one Octopus request, s",
    )
    refused_retry: float = setting(
        1800.0,
        env=("PWBUS_OCTOPUS_REFUSED_RETRY",),
        check=between(60.0, 86400.0, "seconds"),
        help="after the API key was refused, try it again this often (a fixed key needs a "
        "restart anyway)",
    )

    def require_account(self) -> None:
        """Fail with a clear message unless the key and the account number are set."""
        if not self.api_key:
            raise ConfigError("octopus_energy.api_key", "is required (set PWBUS_OCTOPUS_API_KEY)")
        if not self.account_number:
            raise ConfigError(
                "octopus_energy.account_number", "is required (set PWBUS_OCTOPUS_ACCOUNT)"
            )


def _rotation(value: int) -> str | None:
    return None if value in (0, 90, 180, 270) else "must be 0, 90, 180 or 270 (degrees)"


def _clock_time(value: str) -> str | None:
    hours, sep, minutes = value.partition(":")
    ok = sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2
    if ok and int(hours) < 24 and int(minutes) < 60:
        return None
    return "must be a local time HH:MM (00:00-23:59)"


def _location(value: str) -> str | None:
    problem = "must be LATITUDE,LONGITUDE in degrees (-90..90,-180..180)"
    if not value:
        return None
    parts = value.split(",")
    try:
        latitude, longitude = (float(part) for part in parts)
    except ValueError:
        return problem
    ok = -90.0 <= latitude <= 90.0 and -180.0 <= longitude <= 180.0
    return None if ok else problem


@dataclass(frozen=True)
class HatSettings:
    """The Unicorn HAT HD display (``pwbus hat``): how bright, which way up, the solar
    array it scales production against, how fast text scrolls, and the optional weather."""

    backend: str = setting(
        "unicornhathd",
        env=("PWBUS_HAT_BACKEND",),
        check=one_of("unicornhathd", "sim", "png"),
        help="unicornhathd: the HAT on a Raspberry Pi (extra 'hat'); sim: the unicorn-hat-sim "
        "window (extra 'hat-sim'); png: each distinct frame as PNG files in output "
        "(extra 'png')",
    )
    output: Path | None = setting(
        None, env=("PWBUS_HAT_OUTPUT",), help="the folder where backend png writes its frames"
    )
    brightness: float = setting(
        0.5,
        env=("PWBUS_HAT_BRIGHTNESS",),
        check=between(0.0, 1.0),
        help="LED brightness by day, 0-1",
    )
    night_brightness: float = setting(
        0.1,
        env=("PWBUS_HAT_NIGHT_BRIGHTNESS",),
        check=between(0.0, 1.0),
        help="LED brightness between night_start and night_end (local time), 0-1",
    )
    night_start: str = setting(
        "22:00",
        env=("PWBUS_HAT_NIGHT_START",),
        check=_clock_time,
        help="local time the night brightness starts, HH:MM (equal to night_end: no night)",
    )
    night_end: str = setting(
        "07:00",
        env=("PWBUS_HAT_NIGHT_END",),
        check=_clock_time,
        help="local time the night brightness ends, HH:MM",
    )
    rotation: int = setting(
        0,
        env=("PWBUS_HAT_ROTATION",),
        check=_rotation,
        help="turn the picture by 0, 90, 180 or 270 degrees (clockwise) to suit the mounting",
    )
    panels: int = setting(
        21,
        env=("PWBUS_HAT_PANELS",),
        check=between(1, 1000, "panels"),
        help="number of solar panels (Tesla-API's NumberOfMicroinverters)",
    )
    panel_watts: float = setting(
        380.0,
        env=("PWBUS_HAT_PANEL_WATTS",),
        check=between(1.0, 5000.0, "W"),
        help="rated W of one panel: production above panels x this shows light green",
    )
    panel_max_watts: float = setting(
        384.0,
        env=("PWBUS_HAT_PANEL_MAX_WATTS",),
        check=between(1.0, 5000.0, "W"),
        help="most W one panel gives: panels x this is the full scale of colours and chart",
    )
    scroll_delay: float = setting(
        0.04,
        env=("PWBUS_HAT_SCROLL_DELAY",),
        check=between(0.005, 1.0, "seconds"),
        help="seconds per one-pixel step of scrolling text",
    )
    hold: float = setting(
        5.0,
        env=("PWBUS_HAT_HOLD",),
        check=between(1.0, 60.0, "seconds"),
        help="seconds each screen (production, chart, battery) stays at least",
    )
    weather: bool = setting(
        False,
        env=("PWBUS_HAT_WEATHER",),
        help="show a weather icon from Open-Meteo (needs location)",
    )
    location: str = setting(
        "",
        env=("PWBUS_HAT_LOCATION",),
        check=_location,
        help="where the weather is for: LATITUDE,LONGITUDE in degrees (north and east "
        "positive), e.g. 51.5007,-0.1246",
    )
    weather_url: str = setting(
        "https://api.open-meteo.com",
        env=("PWBUS_HAT_WEATHER_URL",),
        help="Open-Meteo base URL (its /v1/forecast is asked)",
    )
    weather_interval: float = setting(
        900.0,
        env=("PWBUS_HAT_WEATHER_INTERVAL",),
        check=between(60.0, 86400.0, "seconds"),
        help="seconds a weather answer (or failure) is kept before asking again",
    )
    weather_timeout: float = setting(
        5.0,
        env=("PWBUS_HAT_WEATHER_TIMEOUT",),
        check=between(0.5, 60.0, "seconds"),
        help="timeout of one weather request, s",
    )

    def __post_init__(self) -> None:
        if self.weather and not self.location:
            raise ConfigError("hat.weather", "needs hat.location (LATITUDE,LONGITUDE)")
        if not self.weather_url.startswith(("http://", "https://")):
            raise ConfigError("hat.weather_url", "must start with http:// or https://")

    @property
    def coordinates(self) -> tuple[float, float] | None:
        """(latitude, longitude) in degrees, or None when no location is set."""
        if not self.location:
            return None
        latitude, longitude = (float(part) for part in self.location.split(","))
        return latitude, longitude

    @property
    def capacity(self) -> float:
        """Full scale in W: every panel at its most."""
        return self.panels * self.panel_max_watts

    @property
    def rated(self) -> float:
        """Every panel at its rating, W: above it production draws light green."""
        return self.panels * self.panel_watts


@dataclass(frozen=True)
class GuiSettings:
    """The Tk window (``pwbus gui``): how it looks. When data is stale is the displays'
    shared ``display.stale_after``."""

    fullscreen: bool = setting(
        False,
        env=("PWBUS_GUI_FULLSCREEN",),
        help="fill the whole screen (a kiosk display); Escape leaves full screen",
    )
    font_scale: float = setting(
        1.0,
        env=("PWBUS_GUI_FONT_SCALE",),
        check=between(0.5, 4.0),
        help="multiply every font size by this (large screens, small screens)",
    )
    theme: str = setting(
        "light",
        env=("PWBUS_GUI_THEME",),
        check=one_of("light", "dark"),
        help="light or dark colours",
    )


def _http_url(url: str) -> str | None:
    return None if url.startswith(("https://", "http://")) else "must be an http(s):// URL"


def _site_id(value: str) -> str | None:
    return None if value == "" or value.isdigit() else "must be the energy_site_id digits"


@dataclass(frozen=True)
class CloudSettings:
    """Tesla's cloud (``[cloud]``): where the Owner API or Fleet API and its token endpoint
    are, which OAuth client the tokens belong to, and the energy site to act on.

    Tokens are not settings: they live in the state folder (``gateway.state_dir``,
    ``tesla-cloud-tokens.json``, mode 0600), where ``pwbus cloud login`` or the user puts
    them and every refresh replaces them (Tesla's refresh tokens are single-use).
    """

    api_url: str = setting(
        "https://owner-api.teslamotors.com",
        env=("PWBUS_CLOUD_API_URL",),
        help="the API base URL: the Owner API (default; the device_command relay lives "
        "there) or a Fleet API region, e.g. https://fleet-api.prd.eu.vn.cloud.tesla.com",
        check=_http_url,
    )
    auth_url: str = setting(
        "https://auth.tesla.com/oauth2/v3/token",
        env=("PWBUS_CLOUD_AUTH_URL",),
        help="the OAuth token endpoint (Fleet API: "
        "https://fleet-auth.prd.vn.cloud.tesla.com/oauth2/v3/token)",
        check=_http_url,
    )
    client_id: str = setting(
        "ownerapi",
        env=("PWBUS_CLOUD_CLIENT_ID",),
        help="the OAuth client id the tokens were issued to (ownerapi, or your Fleet API "
        "application's id)",
    )
    energy_site_id: str = setting(
        "",
        env=("PWBUS_CLOUD_ENERGY_SITE_ID",),
        help="the energy_site_id to act on (empty: the account's only site with a gateway)",
        check=_site_id,
    )
    timeout: float = setting(
        20.0,
        env=("PWBUS_CLOUD_TIMEOUT",),
        check=between(1.0, 120.0, "seconds"),
        help="HTTP timeout for one cloud request, s",
    )
    refresh_margin: float = setting(
        300.0,
        env=("PWBUS_CLOUD_REFRESH_MARGIN",),
        check=between(0.0, 3600.0, "seconds"),
        help="refresh the access token this long before it expires, s",
    )
    pair_timeout: float = setting(
        600.0,
        env=("PWBUS_CLOUD_PAIR_TIMEOUT",),
        check=between(10.0, 3600.0, "seconds"),
        help="pwbus pair register: wait this long for the switch toggle to verify the key, s",
    )
    pair_poll: float = setting(
        5.0,
        env=("PWBUS_CLOUD_PAIR_POLL",),
        check=between(0.1, 60.0, "seconds"),
        help="pwbus pair register: ask the paired-key list this often while waiting, s",
    )

    fleet_method: str = setting(
        "mode",
        env=("PWBUS_CLOUD_FLEET_METHOD",),
        check=one_of("mode", "reserve"),
        help="pwbus dispatch --channel fleet holds the battery by the operation mode (backup, "
        "then the mode it had) or by the backup reserve (100 %, then the reserve it had; "
        "recent firmware caps a cloud reserve at 80 %)",
    )

    @property
    def site_id(self) -> int | None:
        """The configured energy site, None: discover it."""
        return int(self.energy_site_id) if self.energy_site_id else None


@dataclass(frozen=True)
class FacadeSettings:
    """The gateway look-alike (``pwbus facade``): an HTTPS server that answers like a
    gateway from the bus, for Home Assistant's Powerwall integration, ``tesla-powerwall``,
    pyPowerwall's local mode and scripts. Its login is its own: never the gateway's."""

    password: str = setting(
        "",
        env=("PWBUS_FACADE_PASSWORD",),
        secret=True,
        help="the customer password clients log in to the facade with (required; its own, "
        "never the gateway's)",
    )
    port: int = setting(
        443,
        env=("PWBUS_FACADE_PORT",),
        check=port_number,
        help="HTTPS port (443, what Home Assistant assumes; any other as host:port there; "
        "0: a free one)",
    )
    bind_address: str = setting(
        "",
        env=("PWBUS_FACADE_BIND_ADDRESS",),
        help="address to listen on (empty: every address)",
    )
    cert_file: Path | None = setting(
        None,
        env=("PWBUS_FACADE_CERT",),
        help="PEM certificate (default: one made once and kept in the state folder)",
    )
    key_file: Path | None = setting(None, env=("PWBUS_FACADE_KEY",), help="PEM key of cert_file")
    health_max_age: float = setting(
        30.0,
        env=("PWBUS_FACADE_HEALTH_MAX_AGE",),
        check=between(1.0, 86400.0, "seconds"),
        help="/health answers 503 when the meters data is older than this, s",
    )
    max_failed_logins: int = setting(
        10,
        env=("PWBUS_FACADE_MAX_FAILED_LOGINS",),
        check=between(1, 1000, "logins a minute"),
        help="wrong passwords a minute before logins answer 429 (as a gateway does) for the "
        "rest of the minute",
    )
    max_message_bytes: int = setting(
        1_000_000,
        env=("PWBUS_FACADE_MAX_MESSAGE_BYTES",),
        check=between(1024, 134_217_728, "bytes"),
        help="larger messages are dropped unread",
    )
    max_future: float = setting(
        300.0,
        env=("PWBUS_FACADE_MAX_FUTURE",),
        check=between(1.0, 86400.0, "seconds"),
        help="drop readings dated more than this many seconds ahead of this host's clock",
    )
    max_past: float = setting(
        86400.0,
        env=("PWBUS_FACADE_MAX_PAST",),
        check=between(60.0, 366 * 86400.0, "seconds"),
        help="drop readings dated more than this many seconds before this host's clock",
    )

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("facade.cert_file", "cert_file and key_file go together")

    def require_password(self) -> None:
        """Fail with a clear message unless the facade's own password is set."""
        if not self.password:
            raise ConfigError(
                "facade.password",
                "is required (set PWBUS_FACADE_PASSWORD: the facade's own customer password, "
                "not the gateway's)",
            )


SECTIONS: dict[str, type] = {
    "gateway": GatewaySettings,
    "amqp": AmqpSettings,
    "mysql": MysqlSettings,
    "log": LogSettings,
    "simulator": SimulatorSettings,
    "poller": PollerSettings,
    "proxy": ProxySettings,
    "writer": WriterSettings,
    "display": DisplaySettings,
    "gui": GuiSettings,
    "hat": HatSettings,
    "dispatch": DispatchSettings,
    "octopus_energy": OctopusSettings,
    "cloud": CloudSettings,
    "facade": FacadeSettings,
}
