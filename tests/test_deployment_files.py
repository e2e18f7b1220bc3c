"""compose.yaml, the Dockerfile and configuration/ checked against the code (no Docker here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from powerwall_bus import broker_users
from powerwall_bus.shared.settings import (
    AmqpSettings,
    GatewaySettings,
    Sources,
    example_config,
    load,
    option_table,
)

ROOT = Path(__file__).resolve().parents[1]
SYSTEMD = ROOT / "configuration" / "systemd"
HEALTHCHECK = ROOT / "configuration" / "docker" / "pwbus-healthcheck"
KNOWN_ENV = {name for _, names, _ in option_table() for name in names}
IMAGE_ENV = re.compile(r"^(RABBITMQ_|MARIADB_|MPLCONFIGDIR$)")
#: One-shot services: they run once and exit, so they have no healthcheck and no restart.
ONE_SHOT = {"broker-users", "db-setup", "report"}


BROKER_PASSWORD_ENV = {broker_users.password_env(role) for role in broker_users.ROLES}
#: `pwbus db users` reads the two database passwords from these (never flags).
DB_PASSWORD_ENV = {"PWBUS_DB_WRITER_PASSWORD", "PWBUS_DB_READER_PASSWORD"}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_services_images_and_healthchecks() -> None:
    services = _compose()["services"]
    assert {"rabbitmq", "mariadb", "simulator"} <= set(services)
    assert (
        services["rabbitmq"]["image"].startswith("rabbitmq:")
        and "management" in services["rabbitmq"]["image"]
    )
    assert services["mariadb"]["image"].startswith("mariadb:")
    assert services["simulator"]["build"] == "."
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service["restart"] == "no" and "healthcheck" not in service, name
            continue
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert {"interval", "timeout", "retries"} <= set(check), name


def test_compose_ports_are_local_but_the_proxys() -> None:
    services = _compose()["services"]
    published = {
        name: [_interpolate(str(port), {}) for port in service.get("ports", [])]
        for name, service in services.items()
    }
    assert published["proxy"] == ["8675:8675"]  # the LAN's dashboards need it
    assert "127.0.0.1:5672:5672" in published["rabbitmq"]
    assert "127.0.0.1:15672:15672" in published["rabbitmq"]
    assert published["mariadb"] == ["127.0.0.1:3306:3306"]
    assert published["simulator"] == ["127.0.0.1:8443:8443"]
    for name, ports in published.items():
        if name != "proxy":
            assert all(port.startswith("127.0.0.1:") for port in ports), name
    # .env may open the broker and the database to the network, nothing else.
    opened = {"PUBLISH_BROKER_ON": "0.0.0.0", "PUBLISH_DATABASE_ON": "0.0.0.0"}
    assert "0.0.0.0:5672:5672" in [
        _interpolate(str(p), opened) for p in services["rabbitmq"]["ports"]
    ]
    assert [_interpolate(str(p), opened) for p in services["mariadb"]["ports"]] == [
        "0.0.0.0:3306:3306"
    ]
    assert services["simulator"]["command"][:1] == ["simulate"]
    assert "8443" in services["simulator"]["command"]


def test_compose_environment_uses_real_setting_names() -> None:
    for name, service in _compose()["services"].items():
        for key in service.get("environment", {}):
            known = KNOWN_ENV | BROKER_PASSWORD_ENV | DB_PASSWORD_ENV
            assert key in known or IMAGE_ENV.match(key), f"{name}: unknown variable {key}"


def test_compose_simulator_password_reaches_the_simulator() -> None:
    env = _compose()["services"]["simulator"]["environment"]
    assert "PW_PASSWORD" in env
    from powerwall_bus.shared.settings import SimulatorSettings

    sim = load(SimulatorSettings, "simulator", Sources.gather(env={"PW_PASSWORD": "xyzzy-1"}))
    assert sim.password == "xyzzy-1"


def test_dockerfile_installs_every_package_and_uses_pwbus() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("pwbus", "shared", "producers", "consumers", "simulator", "schema"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert 'ENTRYPOINT ["pwbus"]' in dockerfile
    # Not root: the user made by useradd, by its number (hadolint DL3066).
    uid = re.search(r"useradd .*--uid (\d+) .*pwbus", dockerfile)
    assert uid and int(uid.group(1)) > 0
    assert re.search(rf"^USER {uid.group(1)}:{uid.group(1)}$", dockerfile, re.M)
    # The report user's charts: `pwbus report --plot` needs the plot extra.
    (install,) = re.findall(r"pip install -c constraints.txt '\.\[([a-z,-]+)\]'", dockerfile)
    assert {"fast", "plot"} <= set(install.split(","))
    # The health-check wrapper every service of the image uses, executable as committed.
    assert "COPY configuration/docker/pwbus-healthcheck /usr/local/bin/pwbus-healthcheck" in (
        dockerfile
    )
    assert (HEALTHCHECK.stat().st_mode & 0o111) == 0o111


def test_example_config_is_current_and_loads(tmp_path: Path) -> None:
    shipped = (ROOT / "configuration" / "pwbus.toml.example").read_text()
    assert shipped == example_config(), (
        "run: pwbus config --example > configuration/pwbus.toml.example"
    )
    uncommented = "\n".join(
        line[2:] if re.match(r"^# ([a-z_]+ = |\[gateways\.)", line) else line
        for line in shipped.splitlines()
    )
    config = tmp_path / "pwbus.toml"
    config.write_text(uncommented)
    sources = Sources.gather(env={"PW_HOST": "10.0.0.9"}, config_file=config)
    gateway = load(GatewaySettings, "gateway", sources)
    assert (gateway.host, gateway.port) == ("10.0.0.9", 443)
    assert sources.gateway_names() == ["home", "garage"]
    garage = load(GatewaySettings, "gateway", sources.for_gateway("garage"))
    assert (garage.name, garage.host) == ("garage", "192.168.1.21")  # the table beats PW_HOST
    assert garage.session_file.name == "gateway-session-garage.json"


def test_credentials_example_is_tesla_api_layout(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.json"
    credentials.write_text((ROOT / "configuration" / "credentials.json.example").read_text())
    sources = Sources.gather(env={}, config_file=credentials)
    gateway = load(GatewaySettings, "gateway", sources)
    amqp = load(AmqpSettings, "amqp", sources)
    assert (gateway.host, gateway.port) == ("192.168.0.100", 443)
    assert gateway.password == json.loads(credentials.read_text())["gateway"]["password"]
    assert (amqp.host, amqp.username) == ("localhost", "guest")


def test_env_example_names_are_known() -> None:
    for line in (ROOT / "configuration" / "pwbus.env.example").read_text().splitlines():
        line = line.lstrip("# ").strip()
        match = re.match(r"^([A-Z][A-Z0-9_]+)=", line)
        if match:
            assert match.group(1) in KNOWN_ENV, match.group(1)


# --------------------------------------------------------------------------- the poller

_INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::([-?])([^}]*))?\}")
#: A value for every variable compose.yaml requires (what the user's .env holds).
DOTENV = {
    "PW_PASSWORD": "sim-Pw-1",
    **{broker_users.password_env(r): f"{r}-Br-1" for r in ("poller", "proxy", "writer")},
    "PWBUS_DB_ADMIN_PASSWORD": "admin-Db-1",
    "PWBUS_DB_WRITER_PASSWORD": "writer-Db-1",
    "PWBUS_DB_READER_PASSWORD": "reader-Db-1",
}


class MissingVariable(Exception):
    """Compose's ``${NAME:?message}`` with NAME unset or empty: compose stops with this."""


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?message}`` (both of the
    latter act when NAME is unset or empty)."""

    def one(match: re.Match[str]) -> str:
        name, kind, text = match.group(1), match.group(2), match.group(3) or ""
        if env.get(name):
            return env[name]
        if kind == "?":
            raise MissingVariable(f"required variable {name} is missing a value: {text}")
        return text if kind == "-" else ""

    return _INTERPOLATION.sub(one, value)


def _service_env(service: str, dotenv: dict[str, str] | None = None) -> dict[str, str]:
    """A service's environment as the container sees it, given the .env file's values."""
    raw = _compose()["services"][service].get("environment", {})
    env = {**DOTENV, **(dotenv or {})}
    return {key: _interpolate(str(value), env) for key, value in raw.items()}


def _health_check(service: dict) -> list[str]:
    """The real check of a service of our image, inside ``pwbus-healthcheck SECONDS ...``."""
    test = service["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pwbus-healthcheck"], test
    rest = test[4:] if test[2] == "--degraded" else test[2:]
    assert int(rest[0]) > 0, test
    return [str(arg) for arg in rest[1:]]


def _required_variables() -> dict[str, str]:
    """Every ``${NAME:?message}`` of compose.yaml: {NAME: message}."""
    text = (ROOT / "compose.yaml").read_text()
    return {m.group(1): m.group(3) for m in _INTERPOLATION.finditer(text) if m.group(2) == "?"}


def test_compose_poller_service() -> None:
    compose = _compose()
    poller = compose["services"]["poller"]
    assert poller["command"] == ["poller"]
    assert poller["build"] == "." and poller["image"] == compose["services"]["simulator"]["image"]
    assert poller["restart"] == "unless-stopped"
    assert poller["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}
    assert poller["depends_on"]["simulator"] == {
        "condition": "service_healthy",
        "required": False,
    }
    assert "poller-state:/var/lib/pwbus" in poller["volumes"]
    assert "poller-state" in compose["volumes"]
    assert poller["environment"]["PWBUS_STATE_DIR"] == "/var/lib/pwbus"
    assert {"PW_HOST", "PW_PASSWORD", "AMQP_URL"} <= set(poller["environment"])
    assert "ports" not in poller  # it listens on nothing


def test_compose_poller_settings_reach_simulator_and_broker() -> None:
    from powerwall_bus.shared.settings import SimulatorSettings

    env = _service_env("poller")
    sources = Sources.gather(env=env)
    gateway = load(GatewaySettings, "gateway", sources)
    amqp = load(AmqpSettings, "amqp", sources)
    simulator = load(SimulatorSettings, "simulator", Sources.gather(env=_service_env("simulator")))
    assert (gateway.host, gateway.port) == ("simulator", 8443)
    assert "8443" in _compose()["services"]["simulator"]["command"]
    assert gateway.password == simulator.password
    assert (amqp.host, amqp.port, amqp.vhost) == ("rabbitmq", 5672, "/")
    assert _broker_role(amqp) == "poller"
    assert gateway.state_dir == Path("/var/lib/pwbus")

    # A .env for the real gateway and other broker credentials reaches both services alike.
    dotenv = {
        "PW_HOST": "192.168.1.20",
        "PW_PASSWORD": "ABCDE",
        "PWBUS_BROKER_POLLER_PASSWORD": "p@ss/w",
    }
    sources = Sources.gather(env=_service_env("poller", dotenv))
    gateway = load(GatewaySettings, "gateway", sources)
    amqp = load(AmqpSettings, "amqp", sources)
    assert (gateway.host, gateway.port, gateway.password) == ("192.168.1.20", 443, "ABCDE")
    assert amqp.password == "p@ss/w"
    assert _broker_role(amqp, dotenv) == "poller"


def test_compose_poller_healthcheck_means_logged_in(tmp_path: Path) -> None:
    import subprocess

    from powerwall_bus.shared.gateway.session_store import SavedSession, SessionStore

    poller = _compose()["services"]["poller"]
    check = _health_check(poller)
    gateway = load(GatewaySettings, "gateway", Sources.gather(env=_service_env("poller")))
    assert str(gateway.session_file) in check  # where the poller really saves it

    session_file = tmp_path / "gateway-session.json"
    local = [str(session_file) if arg == str(gateway.session_file) else arg for arg in check]

    def healthy() -> bool:
        return subprocess.run(local, check=False, timeout=10).returncode == 0

    assert not healthy()  # no file yet
    store = SessionStore(session_file)
    origin = "https://simulator:8443"
    store.save(origin, SavedSession(cooldown_until=1e10, fingerprint="ab" * 32))
    assert not healthy()  # a file, but no login
    store.save(origin, SavedSession(cookies={"AuthCookie": "x", "UserRecord": "y"}))
    assert healthy()
    store.save(origin, SavedSession(token="t0ken"))
    assert healthy()


def test_compose_proxy_service() -> None:
    proxy = _compose()["services"]["proxy"]
    assert proxy["command"] == ["proxy"]
    assert "8675:8675" in proxy["ports"]
    assert proxy["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert "/health" in " ".join(proxy["healthcheck"]["test"])
    for key in proxy["environment"]:
        assert key in KNOWN_ENV, key


# --------------------------------------------------------------------------- the MySQL writer


def test_compose_mysql_writer_service() -> None:
    compose = _compose()
    writer = compose["services"]["mysql"]
    assert writer["command"] == ["mysql"]
    assert writer["build"] == "." and writer["image"] == compose["services"]["simulator"]["image"]
    assert writer["restart"] == "unless-stopped"
    assert writer["depends_on"]["rabbitmq"] == {"condition": "service_healthy"}
    assert writer["depends_on"]["db-setup"] == {"condition": "service_completed_successfully"}
    assert "ports" not in writer  # it listens on nothing
    assert _health_check(writer)[:3] == ["pwbus", "mysql", "--check"]
    for key in writer["environment"]:
        assert key in KNOWN_ENV, key


def test_compose_mysql_writer_settings_reach_mariadb_and_broker() -> None:
    from powerwall_bus.shared.settings import MysqlSettings, WriterSettings

    def settings(dotenv: dict[str, str] | None = None) -> tuple:
        sources = Sources.gather(env=_service_env("mysql", dotenv))
        return (
            load(MysqlSettings, "mysql", sources),
            load(AmqpSettings, "amqp", sources),
            load(WriterSettings, "writer", sources),
        )

    mysql, amqp, writer = settings()
    mariadb = _service_env("mariadb")
    setup = _service_env("db-setup")
    assert (mysql.host, mysql.port) == ("mariadb", 3306)
    assert mysql.database == mariadb["MARIADB_DATABASE"]
    # The writer is the least-privilege user that db-setup makes, with its password.
    assert mysql.user == "pwbus" and mysql.password == setup["PWBUS_DB_WRITER_PASSWORD"]
    assert (amqp.host, amqp.port, amqp.vhost) == ("rabbitmq", 5672, "/")
    assert _broker_role(amqp) == "writer"
    assert (
        amqp.exchange
        == load(AmqpSettings, "amqp", Sources.gather(env=_service_env("poller"))).exchange
    )
    # It may keep migrate on: as the writer user it only checks that the schema is current.
    assert writer.migrate and not writer.meter_stream

    # Another password in .env reaches db-setup (which sets it) and the writer alike.
    dotenv = {"PWBUS_DB_WRITER_PASSWORD": "p@ss/w:rd"}
    mysql, _, _ = settings(dotenv)
    assert mysql.password == "p@ss/w:rd"
    assert _service_env("db-setup", dotenv)["PWBUS_DB_WRITER_PASSWORD"] == "p@ss/w:rd"


def test_compose_db_setup_migrates_and_makes_the_writer_and_report_users() -> None:
    import shlex

    from powerwall_bus.cli import build_parser, commands
    from powerwall_bus.consumers.mysql.command import DB
    from powerwall_bus.shared.command import setting_flags
    from powerwall_bus.shared.settings import MysqlSettings

    services = _compose()["services"]
    setup = services["db-setup"]
    assert setup["depends_on"]["mariadb"] == {"condition": "service_healthy"}
    shell, flag, script = setup["entrypoint"]
    assert (shell, flag) == ("sh", "-c")
    steps = [shlex.split(step) for step in script.split("&&")]
    assert steps == [["pwbus", "db", "migrate"], ["pwbus", "db", "users", "--apply"]]

    env = _service_env("db-setup")
    mariadb = _service_env("mariadb")
    parser = build_parser(commands())
    args = parser.parse_args(steps[1][1:])
    command = DB.load(Sources.gather(flags=setting_flags(args), env=env), args)
    assert command.action == "users" and command.users is not None and command.users.apply
    # As the administrator (root, whose password the database was created with).
    assert (command.mysql.user, command.mysql.password) == (
        "root",
        mariadb["MARIADB_ROOT_PASSWORD"],
    )
    assert command.mysql.database == mariadb["MARIADB_DATABASE"]
    users = command.users
    # The writer connects as the writer user, the report service as the report user.
    writer = load(MysqlSettings, "mysql", Sources.gather(env=_service_env("mysql")))
    report = load(MysqlSettings, "mysql", Sources.gather(env=_service_env("report")))
    assert (writer.user, writer.password) == (users.writer_user, users.writer_password)
    assert (report.user, report.password) == (users.reader_user, users.reader_password)
    assert report.user == "pwbus_report" and writer.user != report.user
    migrate = DB.load(Sources.gather(env=env), parser.parse_args(steps[0][1:]))
    assert migrate.action == "migrate" and migrate.mysql.user == "root"


def test_compose_report_service_reads_as_the_report_user() -> None:
    from powerwall_bus.cli import build_parser, commands

    report = _compose()["services"]["report"]
    assert report["profiles"] == ["tools"]  # `up` does not start it; `run` does
    assert report["entrypoint"] == ["pwbus", "report"]
    assert "./reports:/reports" in report["volumes"]
    args = build_parser(commands()).parse_args(
        ["report", "daily", "--from", "2024-06-01", "--to", "2024-06-02", "--plot", "/r/x.png"]
    )
    assert args.plot == "/r/x.png"


def test_stack_knows_the_mysql_writer() -> None:
    from powerwall_bus.stack.plan import KNOWN

    assert KNOWN["mysql"].argv == ("mysql",)
    assert not KNOWN["mysql"].needs_gateway


# --------------------------------------------------------------------------- broker users


def _definitions(dotenv: dict[str, str] | None = None) -> dict:
    """What the broker-users service writes, made here from its command and environment."""
    from powerwall_bus.cli import build_parser, commands

    service = _compose()["services"]["broker-users"]
    args = build_parser(commands()).parse_args(service["command"])
    from powerwall_bus.shared.command import setting_flags

    env = _service_env("broker-users", dotenv)
    request = broker_users.BROKER.load(Sources.gather(flags=setting_flags(args), env=env), args)
    assert request.format == "definitions" and not request.apply
    return broker_users.definitions(request)


def _broker_role(amqp: AmqpSettings, dotenv: dict[str, str] | None = None) -> str:
    """The role whose user (and password, checked against its hash) these settings hold."""
    import base64
    import hashlib

    document = _definitions(dotenv)
    (user,) = [u for u in document["users"] if u["name"] == amqp.username]
    raw = base64.b64decode(user["password_hash"])
    assert hashlib.sha256(raw[:4] + amqp.password.encode()).digest() == raw[4:], amqp.username
    return {name: role for role, name in broker_users.ROLES.items()}[amqp.username]


def test_compose_broker_users_are_loaded_by_rabbitmq_at_boot() -> None:
    services = _compose()["services"]
    job, rabbitmq = services["broker-users"], services["rabbitmq"]
    assert job["image"] == services["poller"]["image"]
    assert job["command"][:2] == ["broker", "users"]
    output = next(a.split("=", 1)[1] for a in job["command"] if a.startswith("--output="))
    volume = next(v for v in job["volumes"] if v.endswith(":/var/lib/pwbus"))
    name = volume.split(":")[0]
    assert rabbitmq["depends_on"]["broker-users"] == {"condition": "service_completed_successfully"}
    mounted = next(v for v in rabbitmq["volumes"] if v.startswith(f"{name}:"))
    inside = mounted.split(":")[1]
    conf = next(v for v in rabbitmq["volumes"] if v.startswith("./configuration/"))
    local, target = conf.split(":")[:2]
    assert target.startswith("/etc/rabbitmq/conf.d/") and target.endswith(".conf")
    text = (ROOT / local).read_text()
    loaded = re.search(r"^load_definitions\s*=\s*(\S+)$", text, re.M)
    assert loaded and loaded.group(1) == output.replace("/var/lib/pwbus", inside)
    assert not any(key.startswith("RABBITMQ_DEFAULT") for key in rabbitmq.get("environment", {}))
    # Hashes only: no password from .env is in the file.
    document = _definitions({"PWBUS_BROKER_PROXY_PASSWORD": "Proxy-secret-9"})
    assert "Proxy-secret-9" not in json.dumps(document)
    assert document["vhosts"] == [{"name": "/"}]


def test_compose_every_bus_service_uses_its_role_and_trusts_the_poller() -> None:
    poller_user = broker_users.ROLES["poller"]
    dotenv = {broker_users.password_env(r): f"{r}-Pw@/1" for r in ("poller", "proxy", "writer")}
    for service, role in (("poller", "poller"), ("proxy", "proxy"), ("mysql", "writer")):
        amqp = load(AmqpSettings, "amqp", Sources.gather(env=_service_env(service, dotenv)))
        assert _broker_role(amqp, dotenv) == role, service
        assert amqp.password == f"{role}-Pw@/1"
        if role != "poller":
            assert amqp.poller_user == poller_user, service


# --------------------------------------------------------------------------- the LED display


def _unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values]}} (keys may repeat in systemd)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (SYSTEMD / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{name}: not key=value: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_led_display_unit_runs_pwbus_hat_unprivileged_with_spi(tmp_path: Path) -> None:
    import shlex

    from powerwall_bus.cli import build_parser, commands
    from powerwall_bus.consumers.hat.command import HAT
    from powerwall_bus.shared.command import setting_flags

    unit = _unit("pwbus-hat.service")
    service = unit["Service"]
    assert set(unit) == {"Unit", "Service", "Install"}
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert service["User"] == ["pwbus"] and service["User"] != ["root"]
    assert {"spi", "gpio"} <= set(" ".join(service["SupplementaryGroups"]).split())
    assert service["Restart"] == ["on-failure"]
    assert service["KillSignal"] == ["SIGTERM"]  # pwbus hat ends 0 with the LEDs off on it
    env_file = service["EnvironmentFile"][0]
    assert env_file.startswith("/") and not env_file.startswith("-")
    (exec_start,) = service["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0].startswith("/") and argv[0].endswith("/pwbus")
    assert argv[1:] == ["hat", "--backend", "unicornhathd"]
    # The command line parses, and the shipped environment example is enough for it.
    args = build_parser(commands()).parse_args(argv[1:])
    dotenv: dict[str, str] = {}
    for line in (ROOT / "configuration" / "pwbus.env.example").read_text().splitlines():
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            key, _, value = line.partition("=")
            dotenv[key] = value
    config = HAT.load(Sources.gather(flags=setting_flags(args), env=dotenv), args)
    assert config.backend == "unicornhathd" and config.amqp.host == "localhost"


# --------------------------------------------------------------------------- safe to run


def _compose_schema() -> dict:
    """The compose specification's JSON schema, as check-jsonschema vendors it."""
    from importlib import resources

    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text("utf-8"))


def test_compose_file_follows_the_compose_specification() -> None:
    import copy

    import jsonschema

    schema = _compose_schema()
    validator = jsonschema.Draft202012Validator(schema)
    compose = _compose()
    assert [e.message for e in validator.iter_errors(compose)] == []
    # The schema does catch a mistake: a misspelt key, a health check of the wrong shape.
    broken = copy.deepcopy(compose)
    broken["services"]["proxy"]["restart_policy"] = "always"
    broken["services"]["poller"]["healthcheck"]["interval"] = ["15s"]
    assert len(list(validator.iter_errors(broken))) >= 2


def test_compose_has_no_default_passwords() -> None:
    required = _required_variables()
    assert set(required) == set(DOTENV)
    for name, service in _compose()["services"].items():
        for key, value in service.get("environment", {}).items():
            if "PASSWORD" in key:
                assert re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]+\}", str(value)), (name, key)
    # Without .env, compose stops with a message saying what to set.
    text = (ROOT / "compose.yaml").read_text()
    with pytest.raises(MissingVariable, match=r"set \S+ in \.env"):
        _interpolate(text, {})
    for name in DOTENV:
        with pytest.raises(MissingVariable, match=rf"variable {name} is .* set {name} in \.env"):
            _interpolate(text, {**DOTENV, name: ""})
    assert "${" not in _interpolate(text, DOTENV)
    for message in required.values():
        assert "compose.env.example" in message or "simulator" in message


def test_compose_env_example_fills_every_required_password(tmp_path: Path) -> None:
    import subprocess

    example = ROOT / "configuration" / "compose.env.example"
    text = example.read_text()
    empty = re.findall(r"^([A-Z][A-Z0-9_]*)=$", text, re.M)
    assert set(empty) == set(_required_variables())  # nothing known in the example
    interpolated = set(_INTERPOLATION.findall((ROOT / "compose.yaml").read_text()))
    used = {name for name, _, _ in interpolated}
    for line in text.splitlines():
        match = re.match(r"^#? ?([A-Z][A-Z0-9_]+)=", line)
        if match:
            assert match.group(1) in used, match.group(1)
    # The loop the example's header shows gives each its own random value.
    loop = "\n".join(
        line[4:] for line in text.splitlines() if line.startswith("#   ") and "<" not in line
    )
    loop += "\ndone < configuration/compose.env.example > " + str(tmp_path / ".env")
    subprocess.run(["sh", "-c", loop], cwd=ROOT, check=True, timeout=20)
    dotenv = dict(
        line.split("=", 1)
        for line in (tmp_path / ".env").read_text().splitlines()
        if re.match(r"^[A-Z]", line)
    )
    assert set(dotenv) == set(empty)
    assert len(set(dotenv.values())) == len(dotenv) and all(len(v) >= 32 for v in dotenv.values())
    assert "${" not in _interpolate((ROOT / "compose.yaml").read_text(), dotenv)


def test_env_stays_out_of_git_and_of_the_image_build() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()


def test_compose_health_checks_restart_what_they_find_unhealthy() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        if service.get("build") != "." or name in ONE_SHOT:
            continue
        assert service["init"] is True, name  # the component is then not PID 1
        assert service["restart"] == "unless-stopped", name
        check = service["healthcheck"]
        limit = int(check["test"][4 if check["test"][2] == "--degraded" else 2])
        _health_check(service)
        interval = int(str(check["interval"]).rstrip("s"))
        start = int(str(check["start_period"]).rstrip("s"))
        # Long enough not to stop a component that is starting or a gateway that is away
        # for a minute, short enough to matter.
        assert start + 3 * interval <= limit <= 900, name


def _healthcheck(tmp_path: Path, pid: int, limit: int, ok: bool, *extra: str) -> int:
    import os
    import subprocess

    env = dict(
        os.environ,
        PWBUS_HEALTH_DIR=str(tmp_path),
        PWBUS_HEALTH_PID=str(pid),
        PWBUS_HEALTH_LOG=str(tmp_path / "log"),
        PWBUS_HEALTH_STOP="1",
    )
    check = ["true"] if ok else ["sh", "-c", "exit 3"]
    return subprocess.run(
        [str(HEALTHCHECK), *extra, str(limit), *check], env=env, check=False, timeout=10
    ).returncode


def test_healthcheck_wrapper_stops_a_component_unhealthy_for_too_long(tmp_path: Path) -> None:
    import subprocess
    import time

    from tests.support.waiting import wait_until

    component = subprocess.Popen(["sleep", "60"])
    try:
        assert _healthcheck(tmp_path, component.pid, 1, ok=False) == 3  # its status
        assert _healthcheck(tmp_path, component.pid, 1, ok=True) == 0  # a success resets
        assert _healthcheck(tmp_path, component.pid, 1, ok=False) == 3
        time.sleep(1.1)
        assert _healthcheck(tmp_path, component.pid, 1, ok=False) == 3
        wait_until(lambda: component.poll() is not None, timeout=5)
        assert component.returncode == -15  # SIGTERM, as `docker stop`
        assert "stopping pid" in (tmp_path / "log").read_text()
    finally:
        component.kill()
        component.wait()


def test_healthcheck_wrapper_kills_a_component_that_ignores_sigterm(tmp_path: Path) -> None:
    import subprocess
    import time

    from tests.support.waiting import wait_until

    stubborn = subprocess.Popen(["sh", "-c", "trap '' TERM; exec sleep 60"])
    try:
        time.sleep(0.2)
        assert _healthcheck(tmp_path, stubborn.pid, 0, ok=False) == 3
        assert _healthcheck(tmp_path, stubborn.pid, 0, ok=False) == 3  # SIGTERM
        time.sleep(0.3)
        assert stubborn.poll() is None  # ignored
        time.sleep(1)
        assert _healthcheck(tmp_path, stubborn.pid, 0, ok=False) == 3  # SIGKILL
        wait_until(lambda: stubborn.poll() is not None, timeout=5)
        assert stubborn.returncode == -9
        assert "SIGKILL" in (tmp_path / "log").read_text()
    finally:
        stubborn.kill()
        stubborn.wait()


def test_healthcheck_wrapper_ignores_marks_of_an_earlier_run(tmp_path: Path) -> None:
    import subprocess

    component = subprocess.Popen(["sleep", "60"])
    try:
        # A restarted container keeps /tmp: marks naming another process run mean nothing.
        (tmp_path / "pwbus-health-failing-since").write_text("1 1:1\n")
        (tmp_path / "pwbus-health-stopping-since").write_text("1 1:1\n")
        assert _healthcheck(tmp_path, component.pid, 5, ok=False) == 3
        assert _healthcheck(tmp_path, component.pid, 5, ok=False) == 3
        assert component.poll() is None
        assert not (tmp_path / "pwbus-health-stopping-since").exists()
        since = (tmp_path / "pwbus-health-failing-since").read_text().split()
        assert since[1].startswith(f"{component.pid}:") and int(since[0]) > 1
    finally:
        component.kill()
        component.wait()


def test_healthcheck_wrapper_never_restarts_for_a_degraded_answer(tmp_path: Path) -> None:
    import subprocess
    import time

    component = subprocess.Popen(["sleep", "60"])
    try:
        for _ in range(3):  # unhealthy (the status is passed on), never stopped for it
            assert _healthcheck(tmp_path, component.pid, 0, False, "--degraded", "3") == 3
            time.sleep(0.1)
        assert component.poll() is None
        assert not (tmp_path / "log").exists()
        assert _healthcheck(tmp_path, component.pid, 0, False, "--degraded", "4") == 3
        assert _healthcheck(tmp_path, component.pid, 0, False, "--degraded", "4") == 3
        assert component.wait(timeout=5) == -15  # another status counts
    finally:
        component.kill()
        component.wait()


def test_compose_proxy_health_check_tells_degraded_from_dead() -> None:
    import http.server
    import socket
    import subprocess
    import threading

    proxy = _compose()["services"]["proxy"]
    test = proxy["healthcheck"]["test"]
    assert test[2:4] == ["--degraded", "3"]
    check = _health_check(proxy)
    status = {"code": 200}

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            assert self.path == "/health"
            self.send_response(status["code"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    def run(at: int) -> subprocess.CompletedProcess[str]:
        local = [arg.replace("127.0.0.1:8675", f"127.0.0.1:{at}") for arg in check]
        return subprocess.run(local, capture_output=True, text=True, timeout=20, check=False)

    try:
        assert run(port).returncode == 0
        status["code"] = 503
        answer = run(port)
        assert answer.returncode == 3 and "503" in answer.stderr
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed = free.getsockname()[1]
    dead = run(closed)
    assert dead.returncode == 1 and "not answering" in dead.stderr


# --------------------------------------------------------------------------- systemd units

#: One unit per long-running component, and one for the whole stack.
UNITS = {
    "pwbus-poller.service": ["poller"],
    "pwbus-proxy.service": ["proxy"],
    "pwbus-mysql.service": ["mysql"],
    "pwbus-octopus.service": ["octopus"],
    "pwbus-dispatch.service": ["dispatch"],
    "pwbus-hat.service": ["hat", "--backend", "unicornhathd"],
    "pwbus-stack.service": ["stack"],
}
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
}


def test_systemd_units_are_the_expected_ones() -> None:
    assert {p.name for p in SYSTEMD.iterdir()} == set(UNITS)


def test_systemd_units_run_a_pwbus_command_unprivileged_and_restart() -> None:
    import shlex

    from powerwall_bus.cli import build_parser, commands

    parser = build_parser(commands())
    names = {command.name for command in commands()}
    for name, expected in UNITS.items():
        unit = _unit(name)
        assert set(unit) == {"Unit", "Service", "Install"}, name
        service = unit["Service"]
        (exec_start,) = service["ExecStart"]
        argv = shlex.split(exec_start)
        assert argv[0] == "/opt/pwbus/venv/bin/pwbus", name
        assert argv[1:] == expected and argv[1] in names, name
        parser.parse_args(argv[1:])
        assert service["User"] == ["pwbus"] and service["Group"] == ["pwbus"], name
        assert service["Restart"] == ["on-failure"] and float(service["RestartSec"][0]) >= 5
        assert unit["Unit"]["StartLimitIntervalSec"] == ["0"], name  # never gives up
        assert service["KillSignal"] == ["SIGTERM"], name
        assert 15 <= int(service["TimeoutStopSec"][0]) <= 120, name
        for key, value in HARDENING.items():
            assert service[key] == [value], (name, key)
        # The state folder: made by systemd, owned by pwbus, the one writable place.
        assert service["StateDirectory"] == ["pwbus"], name
        assert "PWBUS_STATE_DIR=/var/lib/pwbus" in service["Environment"], name
        files = service["EnvironmentFile"]
        assert files[0] == "/etc/pwbus/pwbus.env", name
        assert files[1:] == [f"-/etc/pwbus/{name.removesuffix('.service')}.env"], name
        assert "network-online.target" in unit["Unit"]["Wants"][0].split(), name
        after = unit["Unit"]["After"][0].split()
        assert "network-online.target" in after and "rabbitmq-server.service" in after, name
        assert unit["Install"]["WantedBy"] == ["multi-user.target"], name


def test_systemd_units_use_only_known_environment_names() -> None:
    for name in UNITS:
        for assignment in _unit(name)["Service"].get("Environment", []):
            for word in assignment.split():
                key = word.split("=", 1)[0]
                assert key in KNOWN_ENV, (name, key)
    from powerwall_bus.shared.settings import GatewaySettings as Gateway

    env = {"PWBUS_STATE_DIR": "/var/lib/pwbus", "PW_HOST": "10.0.0.9"}
    gateway = load(Gateway, "gateway", Sources.gather(env=env))
    assert gateway.session_file == Path("/var/lib/pwbus/gateway-session.json")


def test_systemd_stack_unit_is_the_alternative_and_stops_its_children() -> None:
    from powerwall_bus.stack.supervise import STOP_TIMEOUT

    unit = _unit("pwbus-stack.service")
    conflicts = set(unit["Unit"]["Conflicts"][0].split())
    components = {n for n, argv in UNITS.items() if argv[0] in ("poller", "proxy", "mysql")}
    assert components <= conflicts
    service = unit["Service"]
    assert service["KillMode"] == ["mixed"]  # SIGTERM to the stack alone
    # It stops the poller, the proxy and the writer one after another.
    assert int(service["TimeoutStopSec"][0]) >= 3 * STOP_TIMEOUT + 10


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: .ci/run installs Debian's systemd"
    pwbus = Path(sys.executable).with_name("pwbus")
    assert pwbus.exists()
    (tmp_path / "etc").mkdir()
    for name in UNITS:
        text = (SYSTEMD / name).read_text()
        text = text.replace("/opt/pwbus/venv/bin/pwbus", str(pwbus))
        text = text.replace("/etc/pwbus/", f"{tmp_path}/etc/")
        (tmp_path / name).write_text(text)
    (tmp_path / "etc" / "pwbus.env").write_text("PW_HOST=10.0.0.9\n")
    result = subprocess.run(
        [analyze, "verify", *UNITS],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    ours = [line for line in result.stderr.splitlines() if str(tmp_path) in line]
    assert ours == []  # no unknown key, no value systemd cannot parse
    # systemd's own exposure score (0 best, 10 worst; an unhardened service is 9.6): every
    # unit stays at 2.5 or below.
    for name in UNITS:
        security = subprocess.run(
            [analyze, "security", "--offline=yes", "--threshold=25", name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert security.returncode == 0, (name, security.stdout[-300:])
        assert re.search(r"Overall exposure level for .*: [0-2]\.\d", security.stdout), name


def test_prometheus_scrape_config_points_at_the_proxys_metrics() -> None:
    from powerwall_bus.shared.settings import ProxySettings

    config = yaml.safe_load((ROOT / "configuration" / "prometheus" / "scrape.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "powerwall-bus"
    assert job["metrics_path"] == "/metrics"
    assert job["scheme"] == "http"
    (static,) = job["static_configs"]
    assert static["targets"] == ["localhost:8675"]  # the proxy's default port (PW_PORT)
    assert static["targets"][0].endswith(f":{ProxySettings().port}")
    # Shorter than the interval, as Prometheus requires.
    seconds = {k: float(job[k].removesuffix("s")) for k in ("scrape_interval", "scrape_timeout")}
    assert seconds["scrape_timeout"] < seconds["scrape_interval"]
