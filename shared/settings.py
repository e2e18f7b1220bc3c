"""Typed settings, read in one place: command-line flags over environment over a config file.

Every option is declared once, as a dataclass field carrying its dotted key
(``gateway.host``), the environment names that set it and a one-line help text. Each
entry point builds one settings object from the sections it needs and passes it down;
nothing else in the project reads ``os.environ``.

Compatibility, so users of the two systems we replace move over without rewriting config:

* the pyPowerwall proxy's environment names where they mean the same thing
  (``PW_HOST`` incl. ``host:port``, ``PW_PASSWORD``, ``PW_EMAIL``, ``PW_TIMEZONE``,
  ``PW_TIMEOUT``, ``PW_DEBUG``, ``PW_AUTH_MODE``, ``PW_AUTH_PATH``, ``PW_CACHE_FILE``, ...);
* the Tesla-API ``credentials.json`` layout (``gateway.host`` with its ``https://`` scheme,
  ``gateway.password``, ``amqp.host/username/password``) as a config file.

A bad or missing value raises :class:`~shared.errors.ConfigError` whose one-line message
names the key, where the value came from and what is wrong. Secrets never appear in
``repr()`` or in error messages.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from powerwall_bus.shared.errors import ConfigError

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "n", ""})


def setting(
    default: Any = dataclasses.MISSING,
    *,
    env: tuple[str, ...] = (),
    help: str = "",
    secret: bool = False,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """Declare one option: its default, environment names, help and an optional check.

    ``check`` returns a problem description (or None when the value is fine).
    """
    metadata = {"env": env, "help": help, "secret": secret, "check": check}
    if isinstance(default, list | dict | set):
        raise TypeError("use a tuple or None as the default of a setting")
    return field(default=default, metadata=metadata, repr=not secret)


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be a TCP port number (0-65535)"


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


# --------------------------------------------------------------------------- sections


def default_state_dir() -> Path:
    """Where sessions, pinned fingerprints and buffers live unless configured."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pwbus"


@dataclass(frozen=True)
class GatewaySettings:
    """How to reach and log in to the Tesla Energy Gateway."""

    host: str = setting(
        "", env=("PWBUS_GATEWAY_HOST", "PW_HOST"), help="gateway address, host or host:port"
    )
    port: int = setting(443, env=("PWBUS_GATEWAY_PORT",), help="HTTPS port", check=_port)
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
        check=_positive,
    )
    read_timeout: float = setting(
        10.0,
        env=("PWBUS_GATEWAY_READ_TIMEOUT", "PW_TIMEOUT"),
        help="read timeout, s",
        check=_positive,
    )
    auth_mode: str = setting(
        "cookie",
        env=("PWBUS_GATEWAY_AUTH_MODE", "PW_AUTH_MODE"),
        help="cookie (AuthCookie/UserRecord) or token (Authorization: Bearer)",
        check=_one_of("cookie", "token"),
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
        check=_positive,
    )

    def __post_init__(self) -> None:
        # Tesla-API writes "https://192.168.0.100"; pyPowerwall accepts "host:port".
        host, port = _split_host(self.host, self.port)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        state_dir = self.state_dir or default_state_dir()
        object.__setattr__(self, "state_dir", Path(state_dir).expanduser())
        if self.session_file is None:
            object.__setattr__(self, "session_file", self.state_dir / "gateway-session.json")
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
class _UrlParts:
    """The pieces of a service URL, unquoted; None where the URL has none."""

    scheme: str
    host: str | None
    port: int | None
    user: str | None
    password: str | None
    path: str  # without its leading "/": the AMQP vhost or the database name


def _parse_url(url: str, key: str, schemes: tuple[str, ...]) -> _UrlParts:
    """Split a broker or database URL, with one-line errors naming ``key``."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ConfigError(key, "must start with " + " or ".join(f"{s}://" for s in schemes))
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(key, "has an invalid port") from None
    return _UrlParts(
        scheme=parts.scheme,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        path=unquote(parts.path[1:]),
    )


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
    port: int = setting(None, env=("AMQP_PORT",), help="overrides the URL's port", check=_port)
    username: str = setting(None, env=("AMQP_USERNAME",), help="overrides the URL's user")
    password: str = setting(
        None, env=("AMQP_PASSWORD",), secret=True, help="overrides the URL's password"
    )
    vhost: str = setting(None, env=("AMQP_VHOST",), help="overrides the URL's virtual host")
    exchange: str = setting(
        "Tesla", env=("AMQP_EXCHANGE",), help="the durable topic exchange everything goes through"
    )
    heartbeat: int = setting(30, env=("AMQP_HEARTBEAT",), help="seconds", check=_non_negative)

    def __post_init__(self) -> None:
        parts = _parse_url(self.url, "amqp.url", ("amqp", "amqps"))
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
    port: int = setting(None, env=("MYSQL_PORT",), help="overrides the URL's port", check=_port)
    user: str = setting(None, env=("MYSQL_USER",), help="overrides the URL's user")
    password: str = setting(
        None, env=("MYSQL_PASSWORD",), secret=True, help="overrides the URL's password"
    )
    database: str = setting(None, env=("MYSQL_DATABASE",), help="overrides the URL's database")

    def __post_init__(self) -> None:
        parts = _parse_url(self.url, "mysql.url", ("mysql", "mariadb"))
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
        help="DEBUG, INFO, WARNING or ERROR (PW_DEBUG=yes also selects DEBUG)",
        check=_one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
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
    port: int = setting(
        8443, env=("PWBUS_SIM_PORT",), help="HTTPS port (0 picks a free one)", check=_port
    )
    password: str = setting(
        "password",
        env=("PWBUS_SIM_PASSWORD", "PW_PASSWORD"),
        secret=True,
        help="the customer password the simulated gateway accepts",
    )
    seed: int = setting(1, env=("PWBUS_SIM_SEED",), help="makes a run reproducible")
    speed: float = setting(
        1.0,
        env=("PWBUS_SIM_SPEED",),
        help="simulated seconds per real second (1440: a day a minute)",
        check=_positive,
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
    timezone: str = setting("America/Los_Angeles", env=("PWBUS_SIM_TIMEZONE",), help="site zone")
    solar_kw: float = setting(
        7.6,
        env=("PWBUS_SIM_SOLAR_KW",),
        help="solar array size, kW (0: no solar)",
        check=_non_negative,
    )
    session_ttl: float = setting(
        86400.0,
        env=("PWBUS_SIM_SESSION_TTL",),
        help="seconds a login session stays valid",
        check=_positive,
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


def _at_least_one_second(value: float) -> str | None:
    return None if value >= 1.0 else "must be at least 1 second (the gateway is not a firehose)"


#: The read-only endpoints polled at the slow cadence by default: the pyPowerwall proxy's
#: allow list, less the ones with a cadence of their own and /api/customer/registration
#: (which the proxy disables).
DEFAULT_SLOW_ENDPOINTS = (
    "/api/status",
    "/api/site_info",
    "/api/site_info/site_name",
    "/api/sitemaster",
    "/api/powerwalls",
    "/api/meters/site",
    "/api/meters/solar",
    "/api/meters",
    "/api/meters/readings",
    "/api/networks",
    "/api/system/networks",
    "/api/system/update/status",
    "/api/system_status/grid_faults",
    "/api/site_info/grid_codes",
    "/api/solars",
    "/api/solars/brands",
    "/api/customer",
    "/api/installer",
    "/api/synchrometer/ct_voltage_references",
    "/api/troubleshooting/problems",
    "/api/auth/toggle/supported",
)


@dataclass(frozen=True)
class PollerSettings:
    """What the poller reads, how often, and how much it holds while the broker is away."""

    meters_interval: float = setting(
        2.0,
        env=("PWBUS_POLL_METERS",),
        check=_at_least_one_second,
        help="seconds between /api/meters/aggregates reads (also the MeterStream rate)",
    )
    soe_interval: float = setting(
        2.0,
        env=("PWBUS_POLL_SOE",),
        check=_at_least_one_second,
        help="seconds between /api/system_status/soe reads",
    )
    grid_status_interval: float = setting(
        5.0,
        env=("PWBUS_POLL_GRID_STATUS",),
        check=_at_least_one_second,
        help="seconds between /api/system_status/grid_status reads",
    )
    system_status_interval: float = setting(
        30.0,
        env=("PWBUS_POLL_SYSTEM_STATUS",),
        check=_at_least_one_second,
        help="seconds between /api/system_status reads",
    )
    operation_interval: float = setting(
        30.0,
        env=("PWBUS_POLL_OPERATION",),
        check=_at_least_one_second,
        help="seconds between /api/operation reads",
    )
    vitals_interval: float = setting(
        30.0,
        env=("PWBUS_POLL_VITALS",),
        check=_at_least_one_second,
        help="seconds between /api/devices/vitals reads (never on firmware 23.44+)",
    )
    solar_powerwall_interval: float = setting(
        30.0,
        env=("PWBUS_POLL_SOLAR_POWERWALL",),
        check=_at_least_one_second,
        help="seconds between /api/solar_powerwall reads (where the gateway has it)",
    )
    slow_interval: float = setting(
        300.0,
        env=("PWBUS_POLL_SLOW",),
        check=_at_least_one_second,
        help="seconds between reads of every other endpoint",
    )
    slow_endpoints: tuple[str, ...] = setting(
        DEFAULT_SLOW_ENDPOINTS,
        env=("PWBUS_POLL_SLOW_ENDPOINTS",),
        help="the other endpoints to read (comma separated)",
        check=lambda paths: next(
            (f"{p!r} is not an /api/ path" for p in paths if not p.startswith("/api/")), None
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
        check=_positive,
        help="seconds between poller status messages (also sent on every change)",
    )
    buffer_seconds: float = setting(
        3600.0,
        env=("PWBUS_POLL_BUFFER_SECONDS",),
        check=_positive,
        help="hold this much reading time in memory while the broker is down",
    )
    backoff_max: float = setting(
        60.0,
        env=("PWBUS_POLL_BACKOFF_MAX",),
        check=_positive,
        help="longest wait between attempts while the gateway or broker is unreachable, s",
    )


@dataclass(frozen=True)
class ProxySettings:
    """The HTTP proxy (``pwbus proxy``): pyPowerwall's endpoints, served from the bus."""

    port: int = setting(8675, env=("PWBUS_PROXY_PORT", "PW_PORT"), help="HTTP port", check=_port)
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
        check=_one_of("no", "yes", "http"),
    )
    cert_file: Path | None = setting(
        None, env=("PWBUS_PROXY_CERT",), help="PEM certificate for https=yes"
    )
    key_file: Path | None = setting(None, env=("PWBUS_PROXY_KEY",), help="PEM key of cert_file")
    style: str = setting(
        "clear",
        env=("PWBUS_PROXY_STYLE", "PW_STYLE"),
        help="power-flow page style: clear, black, white, grafana or grafana-dark",
        check=_one_of("clear", "black", "white", "grafana", "grafana-dark", "dakboard", "solar"),
    )
    neg_solar: bool = setting(
        True,
        env=("PW_NEG_SOLAR",),
        help="no: clamp negative solar to 0 and add it to the home load",
    )
    site_zero_threshold: float = setting(
        0.0,
        env=("PW_SITE_ZERO_THRESHOLD",),
        check=_non_negative,
        help="site (grid) power within +/- this many watts is shown as 0",
    )
    base_url: str = setting(
        "/", env=("PROXY_BASE_URL",), help="path prefix when served behind a reverse proxy"
    )
    browser_cache: int = setting(
        0,
        env=("PW_BROWSER_CACHE",),
        check=_non_negative,
        help="max-age in seconds for the page's static files (0: no caching)",
    )
    health_max_age: float = setting(
        30.0,
        env=("PWBUS_PROXY_HEALTH_MAX_AGE",),
        check=_positive,
        help="/health answers 503 when the meters data is older than this, s",
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
    prefetch: int = setting(
        2000,
        env=("PWBUS_MYSQL_PREFETCH",),
        check=_positive,
        help="unacknowledged messages the broker may send ahead",
    )
    batch_size: int = setting(
        1000,
        env=("PWBUS_MYSQL_BATCH_SIZE",),
        check=_positive,
        help="most messages written in one transaction",
    )
    batch_wait: float = setting(
        0.5,
        env=("PWBUS_MYSQL_BATCH_WAIT",),
        check=_positive,
        help="longest wait for a batch to fill before writing it, s",
    )
    max_message_bytes: int = setting(
        1_000_000,
        env=("PWBUS_MYSQL_MAX_MESSAGE_BYTES",),
        check=_positive,
        help="larger messages are dead-lettered unread",
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
        check=_positive,
        help="longest wait between attempts while the database is down, s",
    )
    migrate: bool = setting(
        True, env=("PWBUS_MYSQL_MIGRATE",), help="apply schema migrations at start"
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
}


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Sources:
    """The three layers settings come from, highest priority first."""

    flags: Mapping[str, Any] = field(default_factory=dict)  # dotted key -> value
    env: Mapping[str, str] = field(default_factory=dict)
    file: Mapping[str, Any] = field(default_factory=dict)  # dotted key -> value
    file_name: str = ""

    @classmethod
    def gather(
        cls,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        config_file: str | Path | None = None,
    ) -> Sources:
        """Collect the layers; the config file is ``config_file`` or ``$PWBUS_CONFIG``."""
        env = dict(os.environ if env is None else env)
        path = config_file or env.get("PWBUS_CONFIG") or None
        file_values = read_config_file(Path(path)) if path else {}
        clean_flags = {k: v for k, v in (flags or {}).items() if v is not None}
        return cls(clean_flags, env, file_values, str(path or ""))

    def lookup(self, key: str, env_names: tuple[str, ...]) -> tuple[Any, str] | None:
        """The raw value for a key and a description of where it came from."""
        if key in self.flags:
            return self.flags[key], "command line"
        for name in env_names:
            if name in self.env and self.env[name] != "":
                return self.env[name], f"environment {name}"
        if key in self.file:
            return self.file[key], f"config file {self.file_name}"
        return None


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML file, or a Tesla-API style ``credentials.json``, into dotted keys."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(raw)
            strict = False  # a foreign layout: keys we do not know are someone else's
        else:
            data = tomllib.loads(raw.decode("utf-8"))
            strict = True
    except (ValueError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError("config", f"{path} is not valid: {reason}") from None
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold an object/table at the top level")
    flat: dict[str, Any] = {}
    for section, values in data.items():
        if section not in SECTIONS:
            if strict:
                raise ConfigError(section, f"unknown section in {path}")
            continue
        if not isinstance(values, dict):
            raise ConfigError(section, f"must be a table in {path}")
        known = {f.name for f in dataclasses.fields(SECTIONS[section])}
        for name, value in values.items():
            if name not in known:
                if strict:
                    raise ConfigError(f"{section}.{name}", f"unknown key in {path}")
                continue
            flat[f"{section}.{name}"] = value
    return flat


def load(cls: type[T], section: str, sources: Sources) -> T:
    """Build one settings section from the layers, converting and checking every value."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = f"{section}.{f.name}"
        found = sources.lookup(key, f.metadata.get("env", ()))
        if found is None:
            continue
        raw, origin = found
        secret = f.metadata.get("secret", False)
        value = _convert(raw, hints[f.name], key, origin, secret)
        check = f.metadata.get("check")
        problem = check(value) if check and value is not None else None
        if problem:
            shown = "" if secret else f", got {raw!r}"
            raise ConfigError(key, f"{problem} (from {origin}{shown})")
        values[f.name] = value
    return cls(**values)


def _convert(raw: Any, hint: Any, key: str, origin: str, secret: bool) -> Any:
    target = _unwrap_optional(hint)
    shown = "" if secret else f", got {raw!r}"
    try:
        if target is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if target is int:
            if isinstance(raw, bool):
                raise ValueError
            return int(str(raw).strip()) if not isinstance(raw, int) else raw
        if target is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if target is Path:
            return Path(str(raw)).expanduser()
        if typing.get_origin(target) is tuple:
            if isinstance(raw, list | tuple):
                return tuple(str(item) for item in raw)
            return tuple(part.strip() for part in str(raw).split(",") if part.strip())
        if not isinstance(raw, str | int | float):
            raise ValueError
        return str(raw)
    except ValueError:
        kind = {bool: "yes or no", int: "a whole number", float: "a number"}.get(target, "text")
        raise ConfigError(key, f"expected {kind} (from {origin}{shown})") from None


def _unwrap_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _split_host(host: str, default_port: int) -> tuple[str, int]:
    """Accept ``host``, ``host:port``, ``[v6]:port`` and ``https://host[:port][/]``."""
    text = host.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("https", "http"):
            raise ConfigError("gateway.host", "must be a host name, host:port or https:// URL")
        try:
            return parts.hostname or "", parts.port or default_port
        except ValueError:
            raise ConfigError("gateway.host", "has an invalid port") from None
    text = text.rstrip("/")
    if text.startswith("["):
        inside, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        return inside, _parse_port(port_text, default_port)
    if text.count(":") == 1:
        name, port_text = text.split(":")
        return name, _parse_port(port_text, default_port)
    return text, default_port


def _parse_port(text: str, default: int) -> int:
    if not text:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError("gateway.host", f"has an invalid port {text!r}")
    return int(text)


def describe(sections: Mapping[str, Any]) -> list[str]:
    """Lines ``key = value`` for every effective setting, with secrets masked."""
    lines = []
    for section, obj in sections.items():
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("secret"):
                value = "***" if value else ""
            lines.append(f"{section}.{f.name} = {value}")
    return lines


def option_table() -> list[tuple[str, tuple[str, ...], str]]:
    """(key, environment names, help) for every option: used by docs and tests."""
    rows = []
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            rows.append(
                (f"{section}.{f.name}", tuple(f.metadata.get("env", ())), f.metadata["help"])
            )
    return rows


def secret_values(*sections: Any) -> list[str]:
    """Every secret value among the given settings objects (for the log redaction filter).

    A field counts when its metadata says ``secret``; its value may be one string or a
    sequence of them. Settings objects nested in others (a command's settings holding
    several sections) are searched too.
    """
    found: list[str] = []
    for obj in sections:
        if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
            continue
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if not f.metadata.get("secret"):
                found += secret_values(value)
                continue
            for text in [value] if isinstance(value, str) else list(value or ()):
                if not isinstance(text, str) or not text:
                    continue
                found.append(text)
                if "://" in text:  # a URL secret: also hide its password part alone
                    password = urlsplit(text).password
                    if password:
                        found.append(unquote(password))
    return found


def example_config() -> str:
    """The commented example TOML shipped in configuration/ (a test keeps them identical)."""
    lines = [
        "# powerwall-bus configuration (TOML). Copy to pwbus.toml and pass it with",
        "# `pwbus --config pwbus.toml ...` or PWBUS_CONFIG=pwbus.toml.",
        "# Precedence: command-line flags, then environment variables, then this file.",
        "# Every option is shown commented out with its default and its environment names.",
        "# Generated by `pwbus config --example`.",
    ]
    for section, cls in SECTIONS.items():
        lines += ["", f"[{section}]"]
        for f in dataclasses.fields(cls):
            env_names = ", ".join(f.metadata.get("env", ())) or "none"
            lines.append(f"# {f.metadata['help']} (env: {env_names})")
            default = f.default
            if f.metadata.get("secret") and section != "amqp" and section != "mysql":
                rendered = '""'
            elif default is None:
                lines.append(f"# {f.name} =")
                continue
            elif isinstance(default, bool):
                rendered = "true" if default else "false"
            elif isinstance(default, tuple):
                rendered = json.dumps(list(default))
            elif isinstance(default, str):
                rendered = json.dumps(default)
            else:
                rendered = str(default)
            lines.append(f"# {f.name} = {rendered}")
    return "\n".join(lines) + "\n"
